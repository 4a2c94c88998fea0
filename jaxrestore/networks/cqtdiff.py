"""The CQT-Diff U-Net (Moliner, Lehtinen, Välimäki 2023), DESIGN §6.2.

The network works on the matrix-form CQT of its input (`jaxrestore.cqt`): real and imaginary
parts as two channels of a [B, F, M, 2] image (frequency rows × time frames × channels, NHWC),
plus 64 channels of a fixed frequency-position encoding. A U-Net halves only the time axis, so
every level keeps all F frequency rows. Each level has one residual block: FiLM (a scale from
the 512-d noise embedding), a 1×1 convolution, then `layers_per_block` residual layers
`y ← (y + conv(GELU(y)))/√2` with a 5 × 3 (frequency × time) kernel dilated 1, 2, 4, … in
frequency (CQT-Diff's "gated residual layers", which have no multiplicative gate in its code).
Pyramid combiners (progressive growing à la StyleGAN2): the encoder adds a 1×1 projection of
the time-downsampled input CQT at every level; the decoder sums 1×1 projections of every level
into an output pyramid that it upsamples along the way. The output pyramid's two channels are
the complex CQT of the output, which the inverse CQT takes back to [B, T].

Differences from CQT-Diff's PyTorch code, all parameter-free except the last:
- Time resampling by 2 is a 23-tap Hann-windowed half-band filter, circular like the CQT's
  time axis, where CQT-Diff uses torchaudio's windowed-sinc resampler (also 6 zero crossings).
- Convolutions pad frequency by reflection (as CQT-Diff) and time circularly (CQT-Diff
  reflects), since the CQT's frames are periodic in time.
- The last output combiner has its own zero-initialised weights (CQT-Diff reuses the previous
  level's), so this model has 64 more parameters: 15,458,432 against 15,458,368.
All output combiners start at zero, so the untrained network returns 0 and the preconditioned
denoiser returns exactly `c_skip·x`.
"""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrestore import cqt as cqt_lib

_RSQRT2 = 1.0 / math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class CQTDiffConfig:
    """Hyperparameters of the CQT-Diff U-Net.

    Attributes:
      sample_rate: audio sampling rate in Hz.
      num_octaves: CQT octaves below Nyquist.
      bins_per_octave: CQT bins per octave.
      channels: features per U-Net level; the depth is `len(channels)` and the time axis is
        halved `depth − 1` times.
      layers_per_block: dilated residual layers per block, with dilations 1, 2, …, 2^(n−1).
      kernel_size: (frequency, time) size of the dilated kernels.
      noise_features: random Fourier frequencies of `c_noise` (sin and cos: twice as many
        inputs to the noise MLP).
      embedding_dims: widths of the noise MLP; the last is the FiLM embedding size.
      freq_features: random Fourier frequencies of the row index (twice as many channels).
      fourier_scale: standard deviation of the random Fourier frequencies.
      seed: seed of the fixed (untrained) random Fourier frequencies.
    """

    sample_rate: float = 22050.0
    num_octaves: int = 7
    bins_per_octave: int = 64
    channels: tuple[int, ...] = (32, 64, 64, 128, 128, 128)
    layers_per_block: int = 8
    kernel_size: tuple[int, int] = (5, 3)
    noise_features: int = 32
    embedding_dims: tuple[int, ...] = (128, 256, 512)
    freq_features: int = 32
    fourier_scale: float = 16.0
    seed: int = 0

    def __post_init__(self):
        if not self.channels or min(self.channels) < 1:
            raise ValueError(
                f"channels must be a non-empty tuple of positive ints: {self.channels}"
            )
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block must be at least 1, got {self.layers_per_block}")
        if any(k < 1 or k % 2 == 0 for k in self.kernel_size) or len(self.kernel_size) != 2:
            raise ValueError(f"kernel_size must be two odd positive ints, got {self.kernel_size}")
        if not self.embedding_dims:
            raise ValueError("embedding_dims must name at least one MLP width")

    @property
    def depth(self) -> int:
        """Returns the number of U-Net levels."""
        return len(self.channels)

    @property
    def num_rows(self) -> int:
        """Returns the CQT rows F: DC, the bands, Nyquist."""
        return self.num_octaves * self.bins_per_octave + 2


CONFIGS = {
    # CQT-Diff as published: 65,536 samples at 22.05 kHz give a [450, 704] CQT.
    "reference": CQTDiffConfig(),
    # For tests at T = 4096: a [26, 512] CQT and two levels of 8 channels.
    "tiny": CQTDiffConfig(
        num_octaves=3,
        bins_per_octave=8,
        channels=(8, 8),
        layers_per_block=2,
        noise_features=8,
        embedding_dims=(32, 32),
        freq_features=4,
    ),
    # Trainable on a 2-core CPU at T = 16,384 (0.74 s): a [86, 904] CQT, 4 levels, about
    # 6.6 GFLOP per forward (the reference: 1.06 TFLOP).
    "cpu": CQTDiffConfig(
        num_octaves=7,
        bins_per_octave=12,
        channels=(8, 16, 16, 32),
        layers_per_block=4,
        noise_features=16,
        embedding_dims=(64, 128, 128),
        freq_features=8,
    ),
}


def _fixed_frequencies(config: CQTDiffConfig, stream: int, count: int) -> np.ndarray:
    """Returns `count` fixed random Fourier frequencies (not trained), N(0, scale²)."""
    rng = np.random.default_rng([config.seed, stream])
    return config.fourier_scale * rng.standard_normal(count)


def _fourier_features(v: jax.Array, frequencies: np.ndarray) -> jax.Array:
    """Returns `[sin(2π v f), cos(2π v f)]` for v [...] and f [n]: shape [..., 2n]."""
    f = jnp.asarray(frequencies, jnp.float32).reshape((1,) * v.ndim + (-1,))
    angle = 2.0 * jnp.pi * v[..., None] * f
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


def _halfband_taps(zero_crossings: int = 6) -> np.ndarray:
    """Returns the odd taps h[1], h[3], … of a Hann-windowed half-band low-pass (h[0] = ½).

    `h[k] = ½·sinc(k/2)·cos²(πk/(4W))` for |k| < 2W, rescaled so the odd taps sum to ½: unit
    gain at DC, zero at Nyquist.
    """
    k = np.arange(1, 2 * zero_crossings, 2)
    h = 0.5 * np.sinc(k / 2) * np.cos(np.pi * k / (4 * zero_crossings)) ** 2
    return h * (0.25 / h.sum())  # each odd tap appears twice (±k)


_HALFBAND = _halfband_taps()


def _shifted(h: jax.Array, shifts: range) -> list[jax.Array]:
    """Returns `h[:, :, n + s]` (circular in time) for every shift s in `shifts`."""
    lo, hi = -min(shifts.start, 0), max(shifts.stop - 1, 0)
    padded = jnp.pad(h, ((0, 0), (0, 0), (lo, hi), (0, 0)), mode="wrap")
    m = h.shape[2]
    return [padded[:, :, lo + s : lo + s + m] for s in shifts]


@jax.custom_vjp
def _downsample_time(h: jax.Array) -> jax.Array:
    """Halves the time axis of [B, F, M, C]: half-band low-pass (circular), keep even frames."""
    # y[n] = ½·x[2n] + Σ_j h[2j+1]·(x[2n−2j−1] + x[2n+2j+1]), and x[2n+2s+1] = odd[n+s].
    taps = len(_HALFBAND)
    odd = _shifted(h[:, :, 1::2], range(-taps, taps))  # odd[n+s], s = −W … W−1
    y = 0.5 * h[:, :, 0::2]
    for j, tap in enumerate(_HALFBAND):
        y = y + float(tap) * (odd[taps - j - 1] + odd[taps + j])
    return y


@jax.custom_vjp
def _upsample_time(h: jax.Array) -> jax.Array:
    """Doubles the time axis of [B, F, M, C]: zero-stuffing and the half-band low-pass ×2."""
    # Even outputs are the input; odd ones interpolate: y[2n+1] = Σ_j 2h[2j+1]·(x[n−j] + x[n+1+j]).
    taps = len(_HALFBAND)
    near = _shifted(h, range(1 - taps, taps + 1))  # x[n+s], s = 1−W … W
    odd = 0.0
    for j, tap in enumerate(_HALFBAND):
        odd = odd + 2.0 * float(tap) * (near[taps - 1 - j] + near[taps + j])
    b, f, m, c = h.shape
    return jnp.stack([h, odd], axis=3).reshape(b, f, 2 * m, c)


# The filter is symmetric and circular, so each resampler's adjoint is the other one:
# downᵀ = ½·up and upᵀ = 2·down. Spelling the VJPs out keeps the backward pass as cheap to
# compile and run as the forward (differentiating the shifted slices costs twice the compile).
_downsample_time.defvjp(
    lambda h: (_downsample_time(h), None), lambda _, g: (0.5 * _upsample_time(g),)
)
_upsample_time.defvjp(
    lambda h: (_upsample_time(h), None), lambda _, g: (2.0 * _downsample_time(g),)
)


def _row_runs(sources: list[np.ndarray]) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
    """Cuts the rows r into runs in which every term reads a plain or reversed row range.

    `sources[t][r]` is the row that term t reads for row r, or −1 where it reads nothing.
    Returns `(lo, hi, [(t, start, step), …])` with step +1 or −1 for each term present.
    """
    runs, lo, steps = [], 0, [0] * len(sources)  # step 0: not known yet
    for r in range(1, len(sources[0]) + 1):
        extend = r < len(sources[0])
        new_steps = []
        for t, src in enumerate(sources if extend else []):
            before, now = src[r - 1], src[r]
            if before < 0 and now < 0:
                new_steps.append(0)
                continue
            step = now - before
            if before < 0 or now < 0 or abs(step) != 1 or steps[t] not in (0, step):
                extend = False
                break
            new_steps.append(step)
        if extend:
            steps = new_steps
            continue
        terms = [(t, int(src[lo]), steps[t] or 1) for t, src in enumerate(sources) if src[lo] >= 0]
        runs.append((lo, r, terms))
        lo, steps = r, [0] * len(sources)
    return runs


def _gather_rows(parts: list[jax.Array], sources: list[np.ndarray]) -> jax.Array:
    """Returns the rows `Σ_t parts[t][:, sources[t][r]]`, [B, R, M, C], from parts [B, ·, M, C].

    Built from plain and flipped slices, one run of rows at a time: XLA's CPU loops run this
    about 7× faster than slices of a reflect-padded array (and gathers are slower still).
    """
    b, _, m, c = parts[0].shape
    pieces = []
    for lo, hi, terms in _row_runs(sources):
        total = jnp.zeros((b, hi - lo, m, c), parts[0].dtype)
        for t, start, step in terms:
            if step == 1:
                total = total + parts[t][:, start : start + hi - lo]
            else:
                total = total + jnp.flip(parts[t][:, start - (hi - lo) + 1 : start + 1], axis=1)
        pieces.append(total)
    return jnp.concatenate(pieces, axis=1)


def _reflected(rows: int, shift: int) -> np.ndarray:
    """Returns the row `reflect(r + shift)` that a tap at offset `shift` reads for each r."""
    src = np.abs(np.arange(rows) + shift)
    return np.where(src > rows - 1, 2 * (rows - 1) - src, src)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _reflect_shift_sum(y: jax.Array, dilation: int) -> jax.Array:
    """Returns `Σ_i y[:, reflect(f + (i − ⌊k/2⌋)·dilation), :, i]` for y [B, F, M, k, C]."""
    rows, k = y.shape[1], y.shape[3]
    sources = [_reflected(rows, (i - k // 2) * dilation) for i in range(k)]
    return _gather_rows([y[:, :, :, i] for i in range(k)], sources)


def _reflect_shift_sum_fwd(y: jax.Array, dilation: int):
    return _reflect_shift_sum(y, dilation), y.shape[3]


def _reflect_shift_sum_bwd(dilation: int, k: int, g: jax.Array):
    # The adjoint returns each row's cotangent to every row it read: for tap i, row r collects
    # g[f] over the f with reflect(f + s_i) = r, at most one read straight and one through
    # each edge's mirror. (Autodiff's own transpose pads, several times slower on the CPU.)
    rows = g.shape[1]
    taps = []
    for i in range(k):
        shift = (i - k // 2) * dilation
        readers = [np.full(rows, -1) for _ in range(3)]  # straight, top mirror, bottom mirror
        for f, r in enumerate(_reflected(rows, shift)):
            kind = 0 if 0 <= f + shift < rows else (1 if f + shift < 0 else 2)
            readers[kind][r] = f
        taps.append(_gather_rows([g, g, g], readers))
    return (jnp.stack(taps, axis=3),)


_reflect_shift_sum.defvjp(_reflect_shift_sum_fwd, _reflect_shift_sum_bwd)


def _dilated_conv(h: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
    """Convolves [B, F, M, C] with a bias-free kernel [k_f, k_t, C, out], dilated in frequency.

    Reflect padding in frequency, circular in time; cross-correlation like `lax.conv`. Computed
    as one matrix product per position, with the time taps stacked on the input channels and the
    frequency taps on the output channels, then the shifted sum over the frequency taps (about
    2× faster than XLA's CPU convolution here). Shifting the product rather than the input is
    exact, since the product acts per position, and spares the wide-dilation layers from
    multiplying padding rows.
    """
    k_f, k_t, c, features = kernel.shape
    b, f, m, _ = h.shape
    if dilation * (k_f // 2) > f - 1:
        raise ValueError(f"dilation {dilation} reaches beyond the {f} rows that reflection allows")
    taps_t = jnp.concatenate(
        [jnp.roll(h, k_t // 2 - j, axis=2) for j in range(k_t)], axis=-1
    )  # [B, F, M, k_t·C]: frames t−1, t, t+1 for k_t = 3
    weights = jnp.transpose(kernel, (1, 2, 0, 3)).reshape(k_t * c, k_f * features)
    y = jnp.einsum("bftc,co->bfto", taps_t, weights)  # [B, F, M, k_f·out]
    return _reflect_shift_sum(y.reshape(b, f, m, k_f, features), dilation)


def _residual_layer(y: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
    """Returns `(y + conv(GELU(y)))/√2`, one of CQT-Diff's "gated residual layers"."""
    return (y + _dilated_conv(nn.gelu(y, approximate=False), kernel, dilation)) * _RSQRT2


class _ResBlock(nn.Module):
    """FiLM, 1×1 convolution, dilated residual layers, plus a (projected) skip."""

    features: int
    layers: int
    kernel_size: tuple[int, int]

    @nn.compact
    def __call__(self, h: jax.Array, embedding: jax.Array) -> jax.Array:
        gamma = nn.Dense(h.shape[-1], name="film")(embedding)  # [B, C_in]
        h = h * gamma[:, None, None, :]
        y = nn.Dense(self.features, use_bias=False, name="first")(nn.gelu(h, approximate=False))
        kernels = self.param(
            "dilated_kernels",
            nn.initializers.lecun_normal(batch_axis=(0,)),
            (self.layers, *self.kernel_size, self.features, self.features),
            jnp.float32,
        )  # [layers, k_f, k_t, C, C]

        # A scan over the layers (a switch picks each one's dilation) keeps every layer's output
        # in memory: unrolled, XLA fuses the residual chain and recomputes all earlier layers
        # inside each later one (10× the memory traffic).
        layers = [functools.partial(_residual_layer, dilation=2**i) for i in range(self.layers)]

        def step(y, kernel_and_index):
            kernel, i = kernel_and_index
            return jax.lax.switch(i, layers, y, kernel), None

        y, _ = jax.lax.scan(step, y, (kernels, jnp.arange(self.layers)))
        if h.shape[-1] != self.features:
            h = nn.Dense(self.features, use_bias=False, name="skip")(h)
        return (y + h) * _RSQRT2


class CQTDiff(nn.Module):
    """The CQT-Diff U-Net: `F_θ(x, c_noise)` with x [B, T] and c_noise [B], returning [B, T]."""

    config: CQTDiffConfig = CQTDiffConfig()

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array) -> jax.Array:
        """Returns the network output for signals x [B, T] at noise conditionings c_noise [B]."""
        cfg = self.config
        if x.ndim != 2 or c_noise.shape != x.shape[:1]:
            raise ValueError(
                f"expected x [B, T] and c_noise [B], got {x.shape} and {c_noise.shape}"
            )
        cqt = cqt_lib.cached_cqt(
            cfg.sample_rate,
            x.shape[1],
            cfg.num_octaves,
            cfg.bins_per_octave,
            None,
            "matrix",
            2 ** (cfg.depth - 1),  # the U-Net halves the time axis depth − 1 times
        )
        rows, frames = cqt.shape
        reach = cfg.kernel_size[0] // 2 * 2 ** (cfg.layers_per_block - 1)
        if reach > rows - 1:
            raise ValueError(
                f"{cfg.layers_per_block} layers dilate the frequency kernel to ±{reach} rows, "
                f"more than reflect padding allows for {rows} CQT rows; use at most "
                f"{int(math.log2((rows - 1) // (cfg.kernel_size[0] // 2))) + 1} layers per block"
            )

        # Noise embedding: random Fourier features of c_noise, then an MLP.
        embedding = _fourier_features(
            c_noise.astype(jnp.float32), _fixed_frequencies(cfg, 0, cfg.noise_features)
        )
        for i, width in enumerate(cfg.embedding_dims):
            embedding = nn.relu(nn.Dense(width, name=f"noise_mlp_{i}")(embedding))

        coeffs = cqt.forward(x.astype(jnp.float32))  # [B, F, M] complex
        pyramid = jnp.stack([coeffs.real, coeffs.imag], axis=-1)  # [B, F, M, 2]
        position = _fourier_features(
            jnp.arange(rows, dtype=jnp.float32), _fixed_frequencies(cfg, 1, cfg.freq_features)
        )  # [F, 2·freq_features]
        position = jnp.broadcast_to(
            position[None, :, None, :], (x.shape[0], rows, frames, position.shape[-1])
        )
        h = jnp.concatenate([pyramid, position], axis=-1)  # [B, F, M, 2 + 2·freq_features]
        input_kernel = self.param(
            "input_kernel",
            nn.initializers.lecun_normal(),
            (*cfg.kernel_size, h.shape[-1], cfg.channels[0]),
            jnp.float32,
        )
        h = _dilated_conv(h, input_kernel, 1)

        # Encoder: a block per level, then halve time and add the input pyramid's projection.
        skips = []
        for level, features in enumerate(cfg.channels):
            h = _ResBlock(features, cfg.layers_per_block, cfg.kernel_size, name=f"down_{level}")(
                h, embedding
            )
            skips.append(h)
            if level < cfg.depth - 1:
                h = _downsample_time(h)
                pyramid = _downsample_time(pyramid)
                projected = nn.Dense(features, use_bias=False, name=f"combine_down_{level}")
                h = (h + projected(pyramid)) * _RSQRT2

        h = _ResBlock(cfg.channels[-1], cfg.layers_per_block, cfg.kernel_size, name="middle")(
            h, embedding
        )

        # Decoder: concatenate the skip, a block, add its projection to the output pyramid.
        output = None
        for level in reversed(range(cfg.depth)):
            features = cfg.channels[max(level - 1, 0)]
            h = jnp.concatenate([h, skips[level]], axis=-1)
            h = _ResBlock(features, cfg.layers_per_block, cfg.kernel_size, name=f"up_{level}")(
                h, embedding
            )
            head = nn.Dense(
                2, use_bias=False, kernel_init=nn.initializers.zeros, name=f"combine_up_{level}"
            )(h)
            output = head if output is None else (output + head) * _RSQRT2
            if level > 0:
                h = _upsample_time(h)
                output = _upsample_time(output)

        return cqt.inverse(jax.lax.complex(output[..., 0], output[..., 1]))  # [B, T]
