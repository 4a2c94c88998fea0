"""Priors: the `Prior` object (a denoiser and its conditions) and the closed-form baselines.

`Prior` is what every loaded model is (`pretrained.load()`, `checkpoints.load_prior`) and what
the sampler takes in place of a bare denoiser (DESIGN §9). The baselines need no training:
a circular stationary Gaussian prior with power spectrum S(f) has independent DFT bins, so
its exact denoiser is the Wiener filter `S/(S + σ²)` applied in the Fourier domain, and an
ideal low-pass observation leaves the observed bins known and the others at the prior. They
check samplers against truth (`pink`, `white`) and are the structure-free baseline a learned
prior must beat (`wiener_prior`).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxrestore import edm
from jaxrestore.data import synthetic


def level_gain(y: ArrayLike, sigma_data: float) -> float:
    """Returns `σ_d / RMS(y)`, the gain that brings an observation to the prior's level.

    The RMS is taken over every sample of `y` (all channels) in float64; a silent `y` counts
    as RMS 1e-8.
    """
    rms = float(np.sqrt(np.mean(np.square(np.asarray(y), dtype=np.float64))))
    return sigma_data / max(rms, 1e-8)


@dataclasses.dataclass(frozen=True)
class Prior:
    """A diffusion prior: its denoiser and the conditions it was trained under (DESIGN §9).

    A `Prior` is itself a denoiser, `prior(x, sigma) = prior.denoiser(x, sigma)`, so it goes
    wherever a bare `denoiser(x, sigma)` does; the sampler then takes σ_d from it.

    Attributes:
      denoiser: `D(x, sigma)`, [T] and a scalar to [T].
      sample_rate: the rate it was trained at, in Hz.
      sigma_data: σ_d, the RMS level of the clips it was trained on.
      length_multiple: clip lengths it accepts are multiples of this.
      info: what its checkpoint says of itself (`checkpoints.CheckpointInfo`: network, steps,
        training config), None for a closed-form prior.
    """

    denoiser: edm.Denoiser
    sample_rate: int
    sigma_data: float
    length_multiple: int = 1
    info: Any = None

    def __call__(self, x: jax.Array, sigma: ArrayLike) -> jax.Array:
        return self.denoiser(x, sigma)

    def normalize(self, y: ArrayLike) -> tuple[Any, float]:
        """Brings an observation to the prior's level: returns `(g·y, g)`, `g = σ_d/RMS(y)`."""
        gain = level_gain(y, self.sigma_data)
        return y * gain, gain

    def denormalize(self, x: ArrayLike, gain: float) -> Any:
        """Takes a restoration at the prior's level back to the observation's: `x / g`."""
        return x / gain


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StationaryGaussian:
    """A zero-mean circular stationary Gaussian on clips of `len` samples.

    Attributes:
      power: S at the rfft bins, [T//2 + 1]: the per-sample variance density, so that white
        noise of variance v has S ≡ v and the clip variance is the mean of S over the
        full DFT (≈ the mean over the rfft bins).
    """

    power: jax.Array

    @property
    def num_samples(self) -> int:
        return 2 * (self.power.shape[-1] - 1)

    def denoiser(self, x: jax.Array, sigma: ArrayLike) -> jax.Array:
        """Returns the exact `E[x0 | x0 + σn = x]` for one clip [T] (the Wiener filter)."""
        gain = self.power / (self.power + jnp.asarray(sigma, jnp.float32) ** 2)
        return jnp.fft.irfft(gain * jnp.fft.rfft(x), n=x.shape[-1])

    def sample(self, key: jax.Array, batch: int) -> jax.Array:
        """Draws `batch` clips from the prior: [batch, T]."""
        white = jax.random.normal(key, (batch, self.num_samples))
        return jnp.fft.irfft(jnp.sqrt(self.power)[None] * jnp.fft.rfft(white), n=self.num_samples)


def welch_power(clips: np.ndarray, frame: int) -> np.ndarray:
    """Returns Welch's estimate of the power spectrum of clips [N, T] at a frame's rfft bins.

    Hann frames of `frame` samples, hop frame/2, averaged over every frame of every clip;
    scaled as `StationaryGaussian.power` (white noise of variance v gives v in every bin).
    Returns [frame/2 + 1], float64.
    """
    clips = np.asarray(clips, np.float64)
    if clips.ndim != 2 or clips.shape[-1] < frame or frame < 2 or frame % 2:
        raise ValueError(
            f"need clips [N, T] with T ≥ frame and an even frame ≥ 2, got {clips.shape}, {frame}"
        )
    window = np.hanning(frame + 1)[:-1]
    starts = np.arange(0, clips.shape[-1] - frame + 1, frame // 2)
    frames = clips[:, starts[:, None] + np.arange(frame)] * window  # [N, frames, frame]
    return np.mean(np.abs(np.fft.rfft(frames, axis=-1)) ** 2, axis=(0, 1)) / np.sum(window**2)


def white(num_samples: int, variance: float) -> StationaryGaussian:
    """Returns the white Gaussian prior of the given per-sample variance."""
    return StationaryGaussian(power=jnp.full(num_samples // 2 + 1, variance, jnp.float32))


def pink(num_samples: int, variance: float, corner: float = 0.02, slope: float = 1.0):
    """Returns a coloured prior, S(f) ∝ 1/(1 + (f/f_c))^slope, normalised to `variance`.

    `f` and `corner` are in cycles per sample (Nyquist 0.5). Audio-like: most power low.
    """
    f = np.fft.rfftfreq(num_samples)
    shape = 1.0 / (1.0 + f / corner) ** slope
    # Mean over the full DFT = (S_0 + S_N/2 + 2 Σ interior)/T.
    full_mean = (shape[0] + shape[-1] + 2 * shape[1:-1].sum()) / num_samples
    return StationaryGaussian(power=jnp.asarray(variance * shape / full_mean, jnp.float32))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FourierMask:
    """An ideal (brick-wall) low-pass: keeps the rfft bins where `keep` is 1.

    A degradation operator with `apply`, `pinv`, `project` like those of
    `jaxrestore.degradations`; being an orthogonal projection, `A† = A`.
    """

    keep: jax.Array  # [T//2 + 1], 0 or 1.

    def apply(self, x: jax.Array) -> jax.Array:
        return jnp.fft.irfft(self.keep * jnp.fft.rfft(x), n=x.shape[-1])

    def pinv(self, y: jax.Array) -> jax.Array:
        return self.apply(y)

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return x + self.pinv(y - self.apply(x))


def ideal_lowpass(num_samples: int, cutoff: float) -> FourierMask:
    """Returns the ideal low-pass at `cutoff` cycles per sample (Nyquist 0.5)."""
    f = np.fft.rfftfreq(num_samples)
    return FourierMask(keep=jnp.asarray(f < cutoff, jnp.float32))


def gaussian_prior(num_samples: int, sigma_data: float = 0.1, sample_rate: int = 22050) -> Prior:
    """Returns the closed-form prior of the tests: the exact Wiener denoiser of a pink Gaussian.

    `pink(T, σ_d²)` needs no training and no weights; clips must be `num_samples` long.
    """
    return Prior(pink(num_samples, sigma_data**2).denoiser, sample_rate, sigma_data)


def wiener_prior(
    num_samples: int,
    sigma_data: float = 0.23,
    sample_rate: int = 22050,
    num_clips: int = 64,
    frame: int = 512,
) -> Prior:
    """Returns the best prior that knows no structure: a stationary Gaussian fitted to the data.

    Its power spectrum is Welch's estimate (Hann frames of `frame` samples, hop frame/2) over
    `num_clips` clips of the synthetic voice's training split (half dry, half wet), each scaled
    to RMS `sigma_data` as restorations see clips, interpolated to the clip's DFT bins. Many
    clips (many notes) and short frames average out the partials of particular notes: a
    spectrum of a few notes is a comb that filters away the partials of every other note
    (with 8 clips the filter is worse than none). Its exact denoiser is the Wiener filter. A
    learned prior is only worth its training where it beats this one. Clips must be
    `num_samples` long.
    """
    length = max(num_samples, 4 * frame)
    clips = []
    for wet in (False, True):
        data = synthetic.SyntheticVocals(wet=wet, sample_rate=sample_rate).split("train")
        clips += [data.segment(i, length) for i in range(num_clips // 2)]
    x = np.stack(clips)
    x = x * sigma_data / np.sqrt(np.mean(x**2, axis=-1, keepdims=True))
    welch = welch_power(x, frame)
    power = np.interp(np.fft.rfftfreq(num_samples), np.fft.rfftfreq(frame), welch)
    return Prior(
        StationaryGaussian(jnp.asarray(power, jnp.float32)).denoiser, sample_rate, sigma_data
    )
