"""Closed-form Gaussian priors: exact denoisers and posteriors to check samplers against truth.

A circular stationary Gaussian prior with power spectrum S(f) has independent DFT bins, so
its exact denoiser is the Wiener filter `S/(S + σ²)` applied in the Fourier domain, and an
ideal low-pass observation leaves the observed bins known and the others at the prior.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


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
