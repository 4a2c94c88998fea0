"""The S4D layer: a diagonal state space model applied as one long convolution (DESIGN §6.1).

Gu, Gupta, Goel and Ré 2022, "On the parameterization and initialization of diagonal state
space models" (S4D), with the S4D-Lin initialisation and zero-order-hold (ZOH) discretisation.
Per channel h the continuous system `x' = A x + B u`, `y = 2·Re(C x) + D u` has a diagonal
`A = diag(A_n)`, `A_n = −exp(a_n) + i·b_n`, over N/2 complex modes (the other N/2 are their
conjugates, hence the `2·Re`). With `Δ = exp(log_dt)` ZOH gives `Ā_n = exp(Δ·A_n)`,
`B̄_n = (Ā_n − 1)/A_n · B_n`, and the layer is the convolution with the kernel

    K[l] = 2·Re Σ_n C_n B̄_n Ā_n^l,   l = 0 .. L−1,

plus the `D·u` skip. `B_n = 1`: B and C enter the kernel only through the product `C_n B_n`, so a
trainable B would be redundant.

Memory. The Vandermonde matrix `Ā_n^l` is (H, N/2, L): 1 GiB of complex64 at H = 64, N = 64,
L = 65,536, 4 GiB at H = 256. `s4d_kernel` never builds it: it splits `l = m·c + j` with a chunk
`c ≈ √L`, so `Ā^l = Ā^{m·c} · Ā^j` and the kernel is one batched real matrix product of a
(H, N, L/c) by a (H, N, c) factor (real and imaginary parts stacked along the state axis), with
O(H·N·L) multiply-adds like the Vandermonde sum. Per direction at L = 65,536 (c = 256) the
factors take 2·H·N·256·4 bytes (8 MiB at H = 64, 32 MiB at H = 256) and the kernel H·L·4 bytes
(16 MiB / 64 MiB). The FFT convolution (length n = 2L) adds the spectra and the length-2L
inverse. XLA's buffer assignment for one bidirectional call at L = 65,536 (temporaries plus
output, `compile().memory_analysis()`): 192 MiB at H = 64 and B = 1, +128 MiB per further
example; 768 MiB at H = 256, +512 MiB per example.

Two ways to convolve. Training changes the weights every step, so the layer builds the kernel
and convolves by FFT (`kernel_spectrum`, `fft_convolve`), the cheaper of the two with the
weights' gradients. A restoration calls the network tens of times with fixed weights: prepared
once (`networks.prepare`), the layer convolves by chunks of c samples (`chunk_operators`,
`chunked_convolve`), where a c × c Toeplitz block covers the kernel's head inside each chunk and
the N/2 diagonal states carry everything older from chunk to chunk. That is batched matrix
products of (c + N)-wide blocks plus a scan over L/c chunks, against FFTs of length 2L whose
spectra (64 MiB at H = 64, L = 65,536) spill out of the CPU's cache; the operators depend on
the weights only, so one preparation serves every clip length. The two agree to float32
round-off (tests/test_s4.py checks both against the recurrence and a direct convolution).

Bidirectional (as SaShiMi's bidirectional S4 in albertfgu/diffwave-sashimi): a second,
separate kernel (its own A, C and Δ; D shared) runs over the flipped sequence, i.e. it is
anti-causal, `y2[t] = Σ_l K2[l]·u[t + l] + D·u[t]`. The two directions are concatenated along
the channels (2H outputs), and the caller mixes them back to H channels (SaShiMi: GELU, then a
linear 2H → H), rather than summed.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

# The variable collection that holds a prepared layer's chunk operators (`chunk_operators`).
CACHE = "s4_cache"


def zoh_discretize(A: jax.Array, C: jax.Array, dt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns `(Δ·A, C·B̄)` for the ZOH discretisation of a diagonal SSM with `B = 1`.

    Args:
      A: complex state matrix diagonal, [..., N/2].
      C: complex output matrix, [..., N/2].
      dt: step sizes Δ, [...].

    Returns:
      `dtA = Δ·A` (so `Ā = exp(dtA)`) and `CB = C·(Ā − 1)/A`, both [..., N/2].
    """
    dtA = dt[..., None] * A
    CB = C * (jnp.exp(dtA) - 1.0) / A
    return dtA, CB


def _outer(a: jax.Array, b: jax.Array) -> jax.Array:
    """Returns `a[..., None] * b` for a 1-D `b`, with explicit ranks (rank promotion may raise)."""
    return a[..., None] * jnp.expand_dims(b, tuple(range(a.ndim)))


def s4d_kernel_vandermonde(dtA: jax.Array, CB: jax.Array, length: int) -> jax.Array:
    """Returns `K[l] = 2·Re Σ_n CB_n exp(dtA_n·l)` by materialising the Vandermonde matrix.

    Memory grows as [..., N/2, L]: for tests and short kernels only; use `s4d_kernel`.

    Args:
      dtA: `Δ·A_n`, [..., N/2] complex.
      CB: `C_n·B̄_n`, [..., N/2] complex.
      length: kernel length L.

    Returns:
      The real kernel, [..., L].
    """
    vandermonde = jnp.exp(_outer(dtA, jnp.arange(length)))  # [..., N/2, L]
    return 2.0 * jnp.real(jnp.einsum("...n,...nl->...l", CB, vandermonde))


def _chunk_size(length: int) -> int:
    """Returns the power of two nearest above √L: the chunk of the two-level Vandermonde split."""
    return 1 << max(0, math.ceil(math.log2(max(length, 1)) / 2))


def s4d_kernel(dtA: jax.Array, CB: jax.Array, length: int) -> jax.Array:
    """Returns `K[l] = 2·Re Σ_n CB_n exp(dtA_n·l)`, l < L, in O(N·√L) memory per channel.

    Splits `l = m·c + j` (`c` a power of two near √L, `j < c`), so that
    `K[m·c + j] = 2·Re Σ_n (CB_n e^{dtA_n·m·c}) · e^{dtA_n·j}`, a batched matrix product of
    a [N/2, L/c] by a [N/2, c] factor per channel. Writing it on real and imaginary parts,
    `Re(P·V) = [Re P, −Im P]·[Re V; Im V]`, makes it one real matrix product.

    Args:
      dtA: `Δ·A_n`, [..., N/2] complex.
      CB: `C_n·B̄_n`, [..., N/2] complex.
      length: kernel length L.

    Returns:
      The real kernel, [..., L].
    """
    c = _chunk_size(length)
    n_chunks = -(-length // c)
    inner = jnp.exp(_outer(dtA, jnp.arange(c, dtype=jnp.float32)))  # [..., N/2, c]
    starts = jnp.arange(n_chunks, dtype=jnp.float32) * c
    outer = CB[..., None] * jnp.exp(_outer(dtA, starts))  # [..., N/2, L/c]
    P = jnp.concatenate([jnp.real(outer), -jnp.imag(outer)], axis=-2)  # [..., N, L/c]
    V = jnp.concatenate([jnp.real(inner), jnp.imag(inner)], axis=-2)  # [..., N, c]
    K = 2.0 * jnp.einsum("...nm,...nc->...mc", P, V)  # [..., L/c, c]
    return K.reshape(*K.shape[:-2], n_chunks * c)[..., :length]


def _fft_length(n_min: int) -> int:
    """Returns the smallest 2^a·3^b·5^c ≥ n_min: FFTs of lengths with large primes are slow."""
    best = 1 << max(0, (n_min - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            n = p35
            while n < n_min:
                n *= 2
            best = min(best, n)
            p35 *= 3
        p5 *= 5
    return best


def kernel_spectrum(K: jax.Array, anticausal: ArrayLike = False) -> jax.Array:
    """Returns the kernels' spectra for `fft_convolve`: rfft of length ≥ 2L, [S, H, L] → [S, H, F].

    An anti-causal kernel (the flipped one of a bidirectional layer) runs as
    `y[t] = Σ_l K[l]·u[t + l]`; for a real kernel its spectrum is the conjugate of the causal one.
    Zero-padding to at least 2L keeps both from wrapping around.
    """
    S, _, L = K.shape
    K_f = jnp.fft.rfft(K, n=_fft_length(2 * L))
    flip = jnp.broadcast_to(jnp.asarray(anticausal), (S,))[:, None, None]
    return jnp.where(flip, jnp.conj(K_f), K_f)


def fft_convolve(u: jax.Array, K_f: jax.Array, D: jax.Array) -> jax.Array:
    """Returns the SSM output `y = K ∗ u + D·u` per channel, from the kernels' spectra.

    Args:
      u: input, [B, L, H].
      K_f: the kernels' spectra from `kernel_spectrum`, [S, H, F], one set per direction S.
      D: skip weights, [H].

    Returns:
      [B, L, S·H]: the S directions' outputs, concatenated along the channels.
    """
    B, L, H = u.shape
    S = K_f.shape[0]
    n = _fft_length(2 * L)
    if K_f.shape != (S, H, n // 2 + 1):
        raise ValueError(
            f"kernel spectra must have shape {(S, H, n // 2 + 1)} for input {u.shape}, "
            f"got {K_f.shape}"
        )
    u_t = jnp.swapaxes(u, -1, -2)  # [B, H, L]
    u_f = jnp.fft.rfft(u_t, n=n)  # [B, H, n/2 + 1]
    y = jnp.fft.irfft(u_f[:, None] * K_f[None], n=n)[..., :L]  # [B, S, H, L]
    y = y + D[None, None, :, None] * u_t[:, None]
    return jnp.swapaxes(y.reshape(B, S * H, L), -1, -2)


def chunk_length(d_state: int) -> int:
    """Returns the chunk c of the chunked convolution for a state size N: 2N, within [16, 128].

    Per sample and direction the chunked form costs 2c multiply-adds inside the chunk and 2N
    for the state in and out. Measured on the guided evaluation at 65,536 samples (2 CPU
    cores): N = 32 (the `cpu` preset) c = 64 was 13 % faster than 32 and 10 % faster than
    128; N = 64 (`reference`) c = 128 was 2 % faster than 64.
    """
    return min(128, max(16, 2 * d_state))


def chunk_operators(dtA: jax.Array, CB: jax.Array, c: int) -> dict[str, jax.Array]:
    """Returns the matrices of the chunked convolution with the kernels of `s4d_kernel`.

    With `λ_n = exp(dtA_n)` and `t = k·c + i` (chunk k, position i < c), the causal output is

        y[t] = Σ_{j ≤ i} K[i − j]·u[k·c + j]  +  2·Re Σ_n CB_n λ_n^i · s_{k,n},
        s_{k,n} = λ_n^c · s_{k−1,n} + z_{k−1,n},   z_{k,n} = Σ_j λ_n^{c − j}·u[k·c + j],

    the first term within the chunk (a c × c Toeplitz matrix), the second the state carried in
    from earlier chunks. The anti-causal direction mirrors it: `T[i, j] = K[j − i]`,
    `z_k = Σ_j λ^j u[k·c + j]`, the state runs from later chunks, and `λ^{c − i}` reads it out.

    Args:
      dtA: `Δ·A_n` per direction, [S, H, N/2] complex (direction 1, if any, anti-causal).
      CB: `C_n·B̄_n`, [S, H, N/2] complex.
      c: the chunk length.

    Returns:
      "w_in": [H, S·(c + N), c], per direction the Toeplitz block over the chunk's inputs and the
      real and imaginary parts of z; "w_out": [S, H, c, N], reading a state (real and imaginary
      parts) out to the chunk's c outputs, with the 2·Re folded in; "decay": λ^c, [S, H, N/2].
    """
    S = dtA.shape[0]
    K = s4d_kernel(dtA, CB, c)  # [S, H, c]
    i = jnp.arange(c)
    # T[i, j] = K[i − j] for i ≥ j, else 0: K times constant 0/1 shift matrices.
    shifts = (i[:, None, None] - i[None, :, None] == i[None, None, :]).astype(jnp.float32)
    causal = jnp.einsum("shd,ijd->shij", K, shifts)  # [S, H, c, c]
    f = i.astype(jnp.float32)
    w_in, w_out = [], []
    for s in range(S):
        toeplitz, z_power, out_power = (
            (causal[s], c - f, f) if s == 0 else (jnp.swapaxes(causal[s], -1, -2), f, c - f)
        )
        z = jnp.exp(dtA[s, :, None, :] * z_power[None, :, None])  # [H, c (j), N/2]
        w_in += [toeplitz, jnp.swapaxes(jnp.concatenate([z.real, z.imag], -1), -1, -2)]
        q = CB[s, :, None, :] * jnp.exp(
            dtA[s, :, None, :] * out_power[None, :, None]
        )  # [H, c, N/2]
        w_out.append(2.0 * jnp.concatenate([q.real, -q.imag], -1))
    return {
        "w_in": jnp.concatenate(w_in, axis=-2),
        "w_out": jnp.stack(w_out),
        "decay": jnp.exp(c * dtA),
    }


def _carry_states(z: jax.Array, decay: jax.Array, reverse: bool) -> jax.Array:
    """Returns the states entering each chunk, `s_k = decay·s_{k∓1} + z_{k∓1}`, `s` = 0 at the
    first chunk (the last if `reverse`): z [K, ...] complex, decay broadcastable to z[0]."""

    def step(state, z_k):
        return decay * state + z_k, state

    return jax.lax.scan(step, jnp.zeros_like(z[0]), z, reverse=reverse)[1]


def chunked_convolve(u: jax.Array, ops: dict[str, jax.Array], D: jax.Array) -> jax.Array:
    """Returns the SSM output `y = K ∗ u + D·u` per channel and direction, by chunks.

    Everything but the short scan over chunks is batched matrix products, per channel, over
    (c + N)-wide blocks; the length is zero-padded to a multiple of c (zeros after the end
    change neither direction's output before it).

    Args:
      u: input, [B, L, H].
      ops: the chunk operators of `chunk_operators`.
      D: skip weights, [H].

    Returns:
      [B, L, S·H]: the S directions' outputs, concatenated along the channels.
    """
    B, L, H = u.shape
    S, _, c, N = ops["w_out"].shape
    if ops["w_in"].shape != (H, S * (c + N), c):
        raise ValueError(
            f"chunk operators must have w_in of shape {(H, S * (c + N), c)} for input "
            f"{u.shape}, got {ops['w_in'].shape}"
        )
    n_chunks = -(-L // c)
    u = jnp.pad(u, ((0, 0), (0, n_chunks * c - L), (0, 0)))
    u_c = jnp.transpose(u.reshape(B, n_chunks, c, H), (3, 0, 1, 2))  # [H, B, K, c]
    r = jnp.einsum("hbkj,hrj->hbkr", u_c, ops["w_in"]).reshape(H, B, n_chunks, S, c + N)
    y = []
    for s in range(S):
        z = r[..., s, c : c + N // 2] + 1j * r[..., s, c + N // 2 :]  # [H, B, K, N/2]
        decay = ops["decay"][s][:, None, :]  # [H, 1, N/2]
        states = _carry_states(jnp.moveaxis(z, 2, 0), decay, reverse=s == 1)  # [K, H, B, N/2]
        states = jnp.concatenate([states.real, states.imag], -1)
        y_s = r[..., s, :c] + jnp.einsum("khbn,hin->hbki", states, ops["w_out"][s])
        y.append(y_s + D[:, None, None, None] * u_c)
    y = jnp.stack(y)  # [S, H, B, K, c]
    y = jnp.transpose(y, (2, 3, 4, 0, 1)).reshape(B, n_chunks * c, S * H)
    return y[:, :L]


def _s4d_lin_imag(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Initialises `b_n = π·n` (S4D-Lin), n = 0 .. N/2 − 1 along the last axis."""
    del key
    return jnp.broadcast_to(jnp.pi * jnp.arange(shape[-1], dtype=jnp.float32), shape)


def _log_dt_uniform(dt_min: float, dt_max: float) -> nn.initializers.Initializer:
    """Returns an initialiser for `log Δ ~ U[log dt_min, log dt_max]`."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(
            key, shape, dtype, minval=math.log(dt_min), maxval=math.log(dt_max)
        )

    return init


class S4D(nn.Module):
    """A (bidirectional) S4D layer: [B, L, H] → [B, L, H], or [B, L, 2H] when bidirectional.

    Parameters (S = 2 directions if bidirectional, else 1), trainable as in S4D:
    `log_A_real` a_n and `A_imag` b_n, [S, H, N/2]; `C` (real, imaginary), [S, H, N/2, 2];
    `log_dt`, [S, H]; `D`, [H] (shared by the directions, as in SaShiMi).

    Attributes:
      d_state: N, the state size counting conjugate pairs (N/2 complex modes are stored).
      bidirectional: add an anti-causal kernel and concatenate its output.
      dt_min: lower end of the initial Δ range.
      dt_max: upper end of the initial Δ range.
    """

    d_state: int = 64
    bidirectional: bool = True
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    @nn.compact
    def __call__(self, u: jax.Array) -> jax.Array:
        """Applies the layer to `u` of shape [B, L, H]; returns [B, L, S·H]."""
        if self.d_state < 2 or self.d_state % 2:
            raise ValueError(f"d_state must be an even number ≥ 2, got {self.d_state}")
        if u.ndim != 3:
            raise ValueError(f"S4D expects input of shape [B, L, H], got {u.shape}")
        H = u.shape[-1]
        S = 2 if self.bidirectional else 1
        modes = (S, H, self.d_state // 2)
        log_A_real = self.param(
            "log_A_real", nn.initializers.constant(math.log(0.5)), modes, jnp.float32
        )
        A_imag = self.param("A_imag", _s4d_lin_imag, modes)
        # Complex C ~ N(0, 1): each of the real and imaginary parts has variance 1/2.
        C = self.param("C", nn.initializers.normal(math.sqrt(0.5)), (*modes, 2), jnp.float32)
        log_dt = self.param("log_dt", _log_dt_uniform(self.dt_min, self.dt_max), (S, H))
        D = self.param("D", nn.initializers.normal(1.0), (H,), jnp.float32)

        # Two ways to the same convolution. From the weights, as in training where they change
        # every step: the kernel and its FFT, the cheaper of the two with their gradients.
        # From chunk operators prepared once for fixed weights (`networks.prepare`, a sampler's
        # denoiser): matrix products by chunks, which beat the FFTs at restoration lengths
        # (the padded spectra of a long clip spill out of the cache). Both are tested against
        # the recurrence.
        if self.has_variable(CACHE, "chunk_operators"):
            return chunked_convolve(u, self.get_variable(CACHE, "chunk_operators"), D)
        A = -jnp.exp(log_A_real) + 1j * A_imag
        dtA, CB = zoh_discretize(A, C[..., 0] + 1j * C[..., 1], jnp.exp(log_dt))
        if self.is_mutable_collection(CACHE) and not self.is_initializing():
            ops = chunk_operators(dtA, CB, chunk_length(self.d_state))
            self.put_variable(CACHE, "chunk_operators", ops)
        K_f = kernel_spectrum(s4d_kernel(dtA, CB, u.shape[1]), anticausal=jnp.arange(S) == 1)
        return fft_convolve(u, K_f, D)
