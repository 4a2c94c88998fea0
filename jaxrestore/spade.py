"""SPADE, the classical sparse audio declippers: A-SPADE and the consistent S-SPADE.

DESIGN §4.7. Both look for the sparsest signal, in a Parseval tight frame, that lies in the set of
signals consistent with the clipped observation `y` (DESIGN §4.3):

    Γ(y) = {x : x = y where |y| < c,  x ≥ c where y ≥ c,  x ≤ −c where y ≤ −c}.

- A-SPADE (Kitić, Bertin, Gribonval, LVA/ICA 2015), the analysis (cosparse) model: ADMM on
  `min ‖Ax‖₀ s.t. x ∈ Γ` with hard thresholding `H_k` in place of the ℓ0 proximal step.
- S-SPADE (Záviška, Rajmic, Mokrý, Průša, ICASSP 2019, "A proper version of synthesis-based sparse
  audio declipper"), the synthesis model `min ‖z‖₀ s.t. Dz ∈ Γ`, with the ADMM split on the signal
  `x = Dz` so that the dual variable lives in the time domain and every iterate `x̂` is in Γ.

The signal is cut into Hann-windowed blocks (window 1024, hop 256 by default); each block is
analysed by a redundant DFT frame, `A = (zero-pad to redundancy·window, then DFT)`, scaled so that
`A*A = I` exactly (see `analysis`). The sparsity `k` starts at `s` and grows by `s` every `r`
iterations; a block stops once its ADMM residual is at most `ε`. All blocks of a clip iterate
together in a `lax.while_loop` (no Python loop over blocks); a converged block is frozen, the
still-running blocks are gathered into smaller batches as the others converge (`_run_blocks`), and
the loop ends when every block has converged or after `max_iter` iterations. The restored blocks
are overlap-added with the canonical dual window `g / Σ_j g(· − j·hop)²`, which keeps the result
in Γ (each block is consistent with the windowed observation, and the dual window is non-negative
and weighs the windows to a sum of one).
A final projection onto Γ of the whole signal only removes the float rounding of that overlap-add.

`ε` is a threshold on a coefficient (or sample) norm, as in the papers, whose signals peak near
1: each clip is declipped scaled to a peak near 1 (by a power of two, and scaled back), so `ε`
means the same for a quiet clip as for a loud one and callers need not scale.
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxrestore import degradations

METHODS = ("aspade", "sspade")


# ---------------------------------------------------------------------------------------------
# The Parseval frame of one block: a zero-padded real DFT with weights.


def _fft_length(window_length: int, redundancy: int) -> int:
    """Returns the DFT length N = redundancy·window of the block frame."""
    return redundancy * window_length


def _analysis_weights(n_fft: int) -> np.ndarray:
    """Returns the weights `w_k` that make the half-spectrum DFT an isometry: shape [N//2 + 1].

    The bins 0 < k < N/2 stand for a conjugate pair of the full DFT, so they carry √(2/N);
    the DC bin (and the Nyquist bin when N is even) stands alone and carries √(1/N). Then
    `Σ_k |w_k X_k|² = (1/N)·Σ_{all N bins} |X_k|² = ‖x‖²` by Parseval's theorem.
    """
    multiplicity = np.full(n_fft // 2 + 1, 2.0)
    multiplicity[0] = 1.0
    if n_fft % 2 == 0:
        multiplicity[-1] = 1.0
    return np.sqrt(multiplicity / n_fft).astype(np.float32)


def _along_last_axis(v: np.ndarray, ndim: int) -> np.ndarray:
    """Reshapes a vector to broadcast along the last of `ndim` axes (rank promotion is explicit)."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def analysis(x: ArrayLike, redundancy: int = 2) -> jax.Array:
    """Applies the block frame's analysis operator `A`: [..., w] real → [..., N//2 + 1] complex.

    `A x = w ⊙ rfft(zero-pad(x, N))` with `N = redundancy·w` and the weights of
    `_analysis_weights`. It is a Parseval tight frame for the real inner product
    `⟨a, b⟩ = Re Σ a·conj(b)` on the coefficients: `‖Ax‖ = ‖x‖` and `A*A = I`.
    """
    x = jnp.asarray(x)
    if redundancy < 1:
        raise ValueError(f"redundancy must be a positive integer, got {redundancy}")
    n_fft = _fft_length(x.shape[-1], redundancy)
    return jnp.fft.rfft(x, n=n_fft, axis=-1) * _along_last_axis(_analysis_weights(n_fft), x.ndim)


def synthesis(z: ArrayLike, window_length: int, redundancy: int = 2) -> jax.Array:
    """Applies the adjoint `A*` of `analysis`: [..., N//2 + 1] complex → [..., w] real.

    `(A*z)_n = Re Σ_k w_k z_k e^{2πikn/N}` for `n < w`. `irfft` computes
    `(1/N)·(Re Z_0 + Re Z_{N/2}·(−1)^n + 2·Re Σ_{0<k<N/2} Z_k e^{2πikn/N})`, so feeding it
    `Z_k = (N/m_k)·w_k·z_k = z_k / w_k` (`m_k` the bin's multiplicity, 1 or 2, and
    `w_k² = m_k/N`) gives exactly `A*z`, real parts at DC and Nyquist included.
    """
    z = jnp.asarray(z)
    n_fft = _fft_length(window_length, redundancy)
    if z.shape[-1] != n_fft // 2 + 1:
        raise ValueError(
            f"coefficients must have {n_fft // 2 + 1} bins for window {window_length} and "
            f"redundancy {redundancy}, got {z.shape[-1]}"
        )
    weights = _along_last_axis(_analysis_weights(n_fft), z.ndim)
    return jnp.fft.irfft(z / weights, n=n_fft, axis=-1)[..., :window_length]


# ---------------------------------------------------------------------------------------------
# The consistent set and hard thresholding.


def project_consistent(x: ArrayLike, y: ArrayLike, threshold: ArrayLike) -> jax.Array:
    """Projects `x` onto the clipping-consistent set Γ(y) of threshold `c` (DESIGN §4.3).

    Reliable samples (`|y| < c`) become `y`; samples clipped at `+c` become `max(x, c)`, at `−c`
    become `min(x, −c)`. Shapes: `x` and `y` alike, `threshold` a scalar.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    high, low = _clip_masks(y, threshold)
    return _project(x, y, high, low)


def _clip_masks(y: jax.Array, threshold: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Returns the masks of the samples clipped at `+c` and at `−c`.

    With the tolerance of `degradations.Clip`: its formula may round a clipped sample an ulp
    below c, which must not make it "reliable".
    """
    c = jnp.asarray(threshold, y.dtype) * (1 - degradations.CLIPPED_RTOL)
    return y >= c, y <= -c


def _project(x: jax.Array, bound: jax.Array, high: jax.Array, low: jax.Array) -> jax.Array:
    """Projects onto Γ given by bounds: `= bound` where reliable, `≥`/`≤ bound` where clipped.

    On a windowed block the bound of a clipped sample is the windowed observation `g·y = ±g·c`,
    so the observation itself carries the per-sample threshold.
    """
    return jnp.where(high, jnp.maximum(x, bound), jnp.where(low, jnp.minimum(x, bound), bound))


def hard_threshold(z: jax.Array, k: ArrayLike) -> jax.Array:
    """Keeps the `k` largest-magnitude coefficients of each row of `z` and zeroes the rest: `H_k`.

    `k` may be traced. The k-th largest `|z|²` is found exactly by bisection on the float's bit
    pattern (monotone for non-negative floats): 31 passes of compare-and-count, several times
    cheaper on the CPU than a sort. Magnitudes tied with the k-th largest are all kept; `k` at or
    beyond the row length keeps everything.
    """
    power = jnp.real(z) ** 2 + jnp.imag(z) ** 2
    bits = jax.lax.bitcast_convert_type(power, jnp.int32)  # [..., K], monotone in |z|
    k = jnp.asarray(k, jnp.float32)  # compared with a float32 count

    def halve(_, bounds):
        # Invariant: count(bits ≥ lo) ≥ k and count(bits ≥ hi) < k.
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        # A float32 count is exact below 2^24 and vectorises better on the CPU than an int32 one.
        enough = jnp.sum(bits >= mid[..., None], axis=-1, dtype=jnp.float32) >= k
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

    lo = jnp.zeros(bits.shape[:-1], jnp.int32)
    hi = jnp.full(bits.shape[:-1], jnp.iinfo(jnp.int32).max, jnp.int32)
    lo, _ = jax.lax.fori_loop(0, 31, halve, (lo, hi))
    return jnp.where(bits >= lo[..., None], z, 0)


# ---------------------------------------------------------------------------------------------
# The two ADMM iterations, and the loop that runs them on a batch of blocks.

# A batch of blocks: the windowed observation g·y [B, w] and its clipped-at-±c masks.
Blocks = tuple[jax.Array, jax.Array, jax.Array]


def _aspade_init(blocks: Blocks, redundancy: int) -> tuple[jax.Array, ...]:
    """Returns A-SPADE's start `(x̂, A x̂, u) = (y, A y, 0)`."""
    yb, _, _ = blocks
    Ay = analysis(yb, redundancy)
    return yb, Ay, jnp.zeros_like(Ay)


def _aspade_step(blocks: Blocks, carry, k, redundancy: int):
    """Runs one A-SPADE iteration (Kitić et al. 2015, Algorithm 1); returns (carry, residual norm).

    z̄ = H_k(A x̂ + u)
    x̂ = P_Γ(A*(z̄ − u))          (the argmin of ‖Ax − z̄ + u‖ over Γ, since A*A = I)
    u ← u + A x̂ − z̄,           residual ‖A x̂ − z̄‖.
    """
    yb, high, low = blocks
    _, Ax_hat, u = carry
    z_bar = hard_threshold(Ax_hat + u, k)
    x_hat = _project(synthesis(z_bar - u, yb.shape[-1], redundancy), yb, high, low)
    Ax_hat = analysis(x_hat, redundancy)
    residual = Ax_hat - z_bar
    return (x_hat, Ax_hat, u + residual), jnp.linalg.norm(residual, axis=-1)


def _sspade_init(blocks: Blocks, redundancy: int) -> tuple[jax.Array, ...]:
    """Returns S-SPADE's start `(x̂, u) = (y, 0)`."""
    yb, _, _ = blocks
    return yb, jnp.zeros_like(yb)


def _sspade_step(blocks: Blocks, carry, k, redundancy: int):
    """Runs one consistent S-SPADE iteration (Záviška et al. 2019); returns (carry, residual norm).

    ADMM on `min ‖z‖₀ s.t. Dz = x, x ∈ Γ` with `D = A*` and the dual variable u in the time domain:
        z̄ = H_k(A(x̂ − u))
        x̂ = P_Γ(D z̄ + u)
        u ← u + D z̄ − x̂,           residual ‖D z̄ − x̂‖.
    """
    yb, high, low = blocks
    x_hat, u = carry
    Dz_bar = synthesis(hard_threshold(analysis(x_hat - u, redundancy), k), yb.shape[-1], redundancy)
    x_hat = _project(Dz_bar + u, yb, high, low)
    residual = Dz_bar - x_hat
    return (x_hat, u + residual), jnp.linalg.norm(residual, axis=-1)


_SOLVERS = {"aspade": (_aspade_init, _aspade_step), "sspade": (_sspade_init, _sspade_step)}


def _handover_sizes(n_blocks: int) -> list[int]:
    """Returns the batch sizes the loop shrinks to as blocks converge, ending with 0 (all done)."""
    sizes = []
    while n_blocks > 8:
        n_blocks = -(-n_blocks // 4)
        sizes.append(n_blocks)
    return sizes + [0]


def _run_blocks(method: str, blocks: Blocks, *, redundancy, s, r, eps, max_iter):
    """Runs `method` on every block to convergence or `max_iter`: x̂ [B, w], iterations [B].

    All blocks iterate in lockstep (the sparsity `k` depends only on the iteration number), and a
    block is frozen from the iteration its residual falls to `eps`; a block with nothing clipped
    is solved from the start (x̂ = y). So that a few slow blocks do not keep the whole batch busy,
    once at most a quarter of the blocks still run, those are gathered into a batch a quarter the
    size, which goes on alone (and so on), and the results are scattered back. This changes no
    block's iterates, only the work spent on frozen ones.
    """
    init, step = _SOLVERS[method]
    _, high, low = blocks
    running = jnp.any(high | low, axis=-1)  # [B]
    carry = init(blocks, redundancy)
    iterations = jnp.zeros(running.shape, jnp.int32)

    def freeze(done, old, new):
        return jnp.where(done.reshape(done.shape + (1,) * (old.ndim - 1)), old, new)

    def run(i, blocks, carry, done, iterations, sizes):
        handover = sizes[0]

        def more(state):
            i, _, done, _ = state
            return (i < max_iter) & (jnp.sum(~done) > handover)

        def body(state):
            i, carry, done, iterations = state
            new, residual = step(blocks, carry, _sparsity(i, s, r), redundancy)
            carry = jax.tree.map(functools.partial(freeze, done), carry, new)
            return i + 1, carry, done | (residual <= eps), iterations + ~done

        i, carry, done, iterations = jax.lax.while_loop(more, body, (i, carry, done, iterations))
        if handover == 0:
            return carry, done, iterations
        # The running blocks first (a stable sort puts False before True), topped up with done ones.
        chosen = jnp.argsort(done, stable=True)[:handover]
        sub = run(
            i,
            jax.tree.map(lambda a: a[chosen], blocks),
            jax.tree.map(lambda a: a[chosen], carry),
            done[chosen],
            iterations[chosen],
            sizes[1:],
        )
        return jax.tree.map(lambda a, b: a.at[chosen].set(b), (carry, done, iterations), sub)

    carry, _, iterations = run(
        jnp.int32(0), blocks, carry, ~running, iterations, _handover_sizes(running.shape[0])
    )
    return carry[0], iterations


def _sparsity(i: jax.Array, s: int, r: int) -> jax.Array:
    """Returns the sparsity of iteration `i` (from 0): `k = s`, growing by `s` every `r`."""
    return s * (1 + i // r)


# ---------------------------------------------------------------------------------------------
# Blocks: segmentation, canonical dual window, overlap-add.


def hann(window_length: int) -> np.ndarray:
    """Returns the periodic Hann window `g[n] = sin²(πn/w)`, peak 1: shape [w]."""
    n = np.arange(window_length)
    return (np.sin(np.pi * n / window_length) ** 2).astype(np.float32)


def _block_layout(length: int, window: int, hop: int) -> tuple[int, int, int]:
    """Returns `(pad_left, pad_right, n_blocks)` so that every sample is covered by full windows.

    `pad_left = window − hop` zeros put the first sample under as many windows as an interior
    sample; blocks start at multiples of `hop` until the last sample is covered likewise.
    """
    pad_left = window - hop
    last = pad_left + length - 1  # index of the last signal sample in the padded signal
    n_blocks = last // hop + 1  # every block start ≤ last, so `last` sees all its windows
    pad_right = (n_blocks - 1) * hop + window - pad_left - length
    return pad_left, pad_right, n_blocks


def _windows(length: int, window: int, hop: int):
    """Returns `(pad_left, pad_right, index, g, g_dual)` of a clip's windowed blocks.

    `index` [B, w] maps each block to the padded clip, `g` is the Hann window [w] and `g_dual`
    [B, w] the canonical dual of the painless Gabor system, `g / Σ_j g(· − j·hop)²`, which is
    non-negative and weighs the windows of each sample to a sum of one.
    """
    pad_left, pad_right, n_blocks = _block_layout(length, window, hop)
    index = hop * np.arange(n_blocks)[:, None] + np.arange(window)  # [B, w]
    g = hann(window)
    energy = np.bincount(
        index.ravel(), np.tile(g**2, n_blocks), minlength=pad_left + length + pad_right
    )
    # [B, w]; the energy vanishes only where g does, at the padded signal's first sample.
    g_dual = np.where(energy[index] > 0, g / np.maximum(energy[index], 1e-12), 0.0)
    return pad_left, pad_right, index, g, g_dual.astype(np.float32)


def _check_params(y, window, hop, redundancy, s, r, max_iter):
    """Raises ValueError on arguments the declippers cannot use."""
    if y.ndim != 1:
        raise ValueError(f"y must be one clip of shape [T]; vmap for batches, got shape {y.shape}")
    if window < 2 or not 1 <= hop <= window:
        raise ValueError(f"need window >= 2 and 1 <= hop <= window, got {window}, {hop}")
    if window % hop or 2 * hop > window:
        # Otherwise the Hann windows' squares leave gaps (g vanishes at each block's start).
        raise ValueError(f"hop must divide window and be at most window/2, got {window}, {hop}")
    if redundancy < 1:
        raise ValueError(f"redundancy must be a positive integer, got {redundancy}")
    if s < 1 or r < 1:
        raise ValueError(f"s and r must be positive integers, got s={s}, r={r}")
    if max_iter is not None and max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer or None, got {max_iter}")


def _declip_blocks(
    y, threshold, method, *, window, hop, redundancy, s, r, eps, max_iter, peak=None
):
    """Cuts `y` into windowed blocks, runs SPADE `method` on all of them, overlap-adds.

    Returns the declipped clip [T] and each block's iteration count [n_blocks] (0 for a block
    with nothing clipped).
    """
    y_in = y = jnp.asarray(y, jnp.float32)
    _check_params(y, window, hop, redundancy, s, r, max_iter)
    # Near unit peak, where the papers' absolute ε was tuned: scaled by a power of two 2^-e
    # (peak in [0.7, 1.4]), which is exact in floating point, so the result does not depend on
    # how XLA rounds a division (hard thresholding turns round-off into other choices).
    peak = jnp.max(jnp.abs(y)) if peak is None else jnp.asarray(peak, jnp.float32)
    e = jnp.round(jnp.log2(jnp.maximum(peak, 1e-30))).astype(jnp.int32)
    y, unit_threshold = jnp.ldexp(y, -e), jnp.ldexp(jnp.asarray(threshold, jnp.float32), -e)
    if max_iter is None:
        # The papers' default: enough iterations for k to reach every coefficient.
        max_iter = math.ceil((_fft_length(window, redundancy) // 2 + 1) * r / s)
    (length,) = y.shape
    pad_left, pad_right, index, g, g_dual = _windows(length, window, hop)
    y_pad = jnp.pad(y, (pad_left, pad_right))  # padding is reliable silence
    high, low = _clip_masks(y_pad, unit_threshold)

    x_blocks, iterations = _run_blocks(
        method,
        (g[None, :] * y_pad[index], high[index], low[index]),
        redundancy=redundancy,
        s=s,
        r=r,
        eps=eps,
        max_iter=max_iter,
    )
    x = jnp.zeros_like(y_pad).at[index].add(g_dual * x_blocks)[pad_left : pad_left + length]
    # x is in Γ up to the rounding of the overlap-add and of the scaling; the projection, at
    # the input's own scale, removes that rounding.
    return project_consistent(jnp.ldexp(x, e), y_in, threshold), iterations


_STATIC = ("window", "hop", "redundancy", "s", "r", "max_iter")


@functools.partial(jax.jit, static_argnames=_STATIC)
def aspade(
    y: ArrayLike,
    threshold: ArrayLike,
    *,
    window: int = 1024,
    hop: int = 256,
    redundancy: int = 2,
    s: int = 1,
    r: int = 1,
    eps: ArrayLike = 0.1,
    max_iter: int | None = None,
    peak: ArrayLike | None = None,
) -> jax.Array:
    """Declips one clip with A-SPADE (Kitić, Bertin, Gribonval 2015).

    Args:
      y: the clipped clip, shape [T].
      threshold: the clipping threshold `c > 0` (a scalar; may be traced, so clips vmap).
      window: block length in samples (Hann window).
      hop: block shift in samples; must divide `window`.
      redundancy: the DFT frame's redundancy (the block is zero-padded to redundancy·window).
      s: the sparsity's start and increment.
      r: the sparsity grows by `s` every `r` iterations.
      eps: a block stops once `‖A x̂ − z̄‖ ≤ eps`, with the clip scaled to a peak near 1.
      max_iter: iteration cap; None takes `ceil((N/2 + 1)·r/s)`, enough for `k` to keep every
        coefficient (N = redundancy·window).
      peak: the level `eps` is relative to (the clip is scaled by the power of two nearest
        to 1/peak); None: the clip's own peak. Pass a long recording's peak when declipping it
        piece by piece (`restoration.declip_stream`), so that each block stops as in the whole.

    Returns:
      The declipped clip, shape [T], in the consistent set of `y`.
    """
    return _declip_blocks(
        y,
        threshold,
        "aspade",
        window=window,
        hop=hop,
        redundancy=redundancy,
        s=s,
        r=r,
        eps=eps,
        max_iter=max_iter,
        peak=peak,
    )[0]


@functools.partial(jax.jit, static_argnames=_STATIC)
def sspade(
    y: ArrayLike,
    threshold: ArrayLike,
    *,
    window: int = 1024,
    hop: int = 256,
    redundancy: int = 2,
    s: int = 1,
    r: int = 1,
    eps: ArrayLike = 0.1,
    max_iter: int | None = None,
    peak: ArrayLike | None = None,
) -> jax.Array:
    """Declips one clip with the consistent S-SPADE (Záviška, Rajmic, Mokrý, Průša 2019).

    Arguments as for `aspade`; a block stops once `‖D z̄ − x̂‖ ≤ eps`.

    Returns:
      The declipped clip, shape [T], in the consistent set of `y`.
    """
    return _declip_blocks(
        y,
        threshold,
        "sspade",
        window=window,
        hop=hop,
        redundancy=redundancy,
        s=s,
        r=r,
        eps=eps,
        max_iter=max_iter,
        peak=peak,
    )[0]


def declip(y: ArrayLike, threshold: ArrayLike, method: str = "aspade", **kwargs) -> jax.Array:
    """Declips one clip [T] with `method`, "aspade" or "sspade"; `kwargs` go to that function."""
    if method == "aspade":
        return aspade(y, threshold, **kwargs)
    if method == "sspade":
        return sspade(y, threshold, **kwargs)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


@dataclasses.dataclass(frozen=True)
class ASpadeStart:
    """A sampler warm start from A-SPADE's declipping (`sample.SamplerConfig.init`, DESIGN §4.6).

    Returns `x_init = aspade(y, c)` for a `degradations.Clip` operator of threshold c.
    """

    def __call__(self, y: jax.Array, operator: Any) -> jax.Array:
        if not isinstance(operator, degradations.Clip):
            raise ValueError(
                "the A-SPADE warm start needs a Clip operator (declipping), got "
                f"{type(operator).__name__}"
            )
        return aspade(y, operator.threshold)


def sparse_projection(
    x: ArrayLike,
    y: ArrayLike,
    threshold: ArrayLike,
    *,
    iterations: int = 10,
    sparsity: float = 0.05,
    window: int = 1024,
    hop: int = 256,
    redundancy: int = 2,
) -> jax.Array:
    """Moves an estimate `x` to a sparse signal of the clipping-consistent set Γ(y).

    Runs `iterations` A-SPADE iterations (`_aspade_step`: hard thresholding in the redundant
    DFT frame, then the projection onto Γ) at a fixed sparsity, started from the projection
    P_Γ(x) of the estimate instead of from `y`: what SPADE knows (a voice is sparse in a
    short-time DFT) applied to what the prior knows. The result is in Γ exactly (reliable
    samples equal `y`, clipped ones at or beyond ±c). Pure and traceable; vmap for batches.

    Args:
      x: the estimate, [T] (a denoiser's x̂0).
      y: the clipped observation, [T].
      threshold: the clipping level c (a scalar; may be traced).
      iterations: ADMM iterations.
      sparsity: the fraction of each block's `redundancy·window/2 + 1` DFT coefficients kept.
      window, hop, redundancy: the blocks and the frame, as for `aspade`.

    Returns:
      The sparse consistent signal, [T].
    """
    y = jnp.asarray(y, jnp.float32)
    _check_params(y, window, hop, redundancy, 1, 1, None)
    x = project_consistent(jnp.asarray(x, jnp.float32), y, threshold)
    (length,) = y.shape
    pad_left, pad_right, index, g, g_dual = _windows(length, window, hop)
    y_pad, x_pad = jnp.pad(y, (pad_left, pad_right)), jnp.pad(x, (pad_left, pad_right))
    high, low = _clip_masks(y_pad, threshold)
    blocks = (g[None, :] * y_pad[index], high[index], low[index])
    k = max(1, round(sparsity * (_fft_length(window, redundancy) // 2 + 1)))
    x_blocks = g[None, :] * x_pad[index]
    Ax = analysis(x_blocks, redundancy)
    carry = (x_blocks, Ax, jnp.zeros_like(Ax))
    carry = jax.lax.fori_loop(
        0, iterations, lambda _, c: _aspade_step(blocks, c, k, redundancy)[0], carry
    )
    out = jnp.zeros_like(y_pad).at[index].add(g_dual * carry[0])[pad_left : pad_left + length]
    return project_consistent(out, y, threshold)


@dataclasses.dataclass(frozen=True)
class SparseConsistency:
    """A sparsity-aware data consistency transform (`guidance.Transform`), for declipping.

    The guided estimate is moved by `sparse_projection` to a sparse signal of the
    clipping-consistent set; with an operator other than `degradations.Clip` it is plain DC
    (`operator.project`).

    Attributes:
      iterations: A-SPADE iterations per estimate.
      sparsity: the fraction of DFT coefficients kept per block.
    """

    iterations: int = 10
    sparsity: float = 0.05

    def __call__(self, denoiser: Any, context: Any) -> Any:
        operator, y = context.operator, context.y

        def projected(x_hat: jax.Array, sigma_hat: ArrayLike) -> jax.Array:
            x0 = denoiser(x_hat, sigma_hat)
            if not isinstance(operator, degradations.Clip):
                return operator.project(x0, y)
            return sparse_projection(
                x0, y, operator.threshold, iterations=self.iterations, sparsity=self.sparsity
            )

        return projected
