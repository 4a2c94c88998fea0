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

# The variable collection that holds a prepared layer's kernel spectra, [S, H, F] per layer.
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

        # The kernels depend on the weights and L only: a prepared model (`networks.prepare`)
        # brings their spectra in the "s4_cache" collection and skips building them per call.
        n_freq = _fft_length(2 * u.shape[1]) // 2 + 1
        if self.has_variable(CACHE, "kernel_spectrum"):
            K_f = self.get_variable(CACHE, "kernel_spectrum")
            if K_f.shape[-1] == n_freq:
                return fft_convolve(u, K_f, D)
        A = -jnp.exp(log_A_real) + 1j * A_imag
        dtA, CB = zoh_discretize(A, C[..., 0] + 1j * C[..., 1], jnp.exp(log_dt))
        K_f = kernel_spectrum(s4d_kernel(dtA, CB, u.shape[1]), anticausal=jnp.arange(S) == 1)
        if self.is_mutable_collection(CACHE) and not self.is_initializing():
            self.put_variable(CACHE, "kernel_spectrum", K_f)
        return fft_convolve(u, K_f, D)
