"""The EDM diffusion prior: noise-level schedule, preconditioning, training σ and loss.

Karras et al. 2022 ("Elucidating the design space of diffusion-based generative models"),
in the form CQT-Diff uses it (DESIGN.md §2 and §3). Everything here is a small pure function
that is safe under `jit` and `vmap`.
"""

from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
from jax.typing import ArrayLike


class Denoiser(Protocol):
    """The one denoiser contract: `D(x; σ)` for one clip `x` of shape [T] and a scalar σ."""

    def __call__(self, x: jax.Array, sigma: ArrayLike) -> jax.Array: ...


# A raw network F_θ(c_in·x, c_noise), before preconditioning; same shapes as `Denoiser`.
RawNetwork = Callable[[jax.Array, jax.Array], jax.Array]


def sigma_schedule(
    steps: int, sigma_min: float = 1e-4, sigma_max: float = 1.0, rho: float = 13.0
) -> np.ndarray:
    """Returns the `steps` noise levels of DESIGN §3 followed by a final 0: shape [steps + 1].

    `σ_i = (σ_max^{1/ρ} + i/(T−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`, i = 0..T−1, then σ_T = 0.
    In NumPy float32: the schedule is static, and eager JAX would compile each of its ops.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    f32 = np.float32
    u = np.linspace(0.0, 1.0, steps, dtype=f32)
    return np.append(_rho_interpolation(u, f32(sigma_min), f32(sigma_max), f32(rho)), f32(0.0))


def _rho_interpolation(u: ArrayLike, sigma_min: float, sigma_max: float, rho: float) -> ArrayLike:
    """Maps u ∈ [0, 1] to σ on the ρ-warped segment from σ_max (u = 0) to σ_min (u = 1)."""
    inv_rho = 1.0 / rho
    return (sigma_max**inv_rho + u * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho


def preconditioning(
    sigma: ArrayLike, sigma_data: float
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Returns EDM's `(c_skip, c_out, c_in, c_noise)` at noise level σ (Karras et al., Table 1)."""
    sigma = jnp.asarray(sigma, jnp.float32)
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data * jax.lax.rsqrt(total)
    c_in = jax.lax.rsqrt(total)
    c_noise = 0.25 * jnp.log(sigma)
    return c_skip, c_out, c_in, c_noise


def precondition(network: RawNetwork, sigma_data: float) -> Denoiser:
    """Wraps a raw network into the denoiser `D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise)`."""

    def denoiser(x: jax.Array, sigma: ArrayLike) -> jax.Array:
        c_skip, c_out, c_in, c_noise = preconditioning(sigma, sigma_data)
        return c_skip * x + c_out * network(c_in * x, c_noise)

    return denoiser


def sample_training_sigma_cqtdiff(
    key: jax.Array,
    shape: tuple[int, ...],
    sigma_min: float = 1e-6,
    sigma_max: float = 10.0,
    rho: float = 10.0,
) -> jax.Array:
    """Draws training σ as CQT-Diff does: `u ~ U(0, 1)` through the sampling schedule's formula."""
    u = jax.random.uniform(key, shape)
    return _rho_interpolation(u, sigma_min, sigma_max, rho)


def sample_training_sigma_lognormal(
    key: jax.Array, shape: tuple[int, ...], p_mean: float = -1.2, p_std: float = 1.2
) -> jax.Array:
    """Draws training σ from EDM's log-normal: `ln σ ~ N(P_mean, P_std²)`."""
    return jnp.exp(p_mean + p_std * jax.random.normal(key, shape))


def denoising_loss(
    network: RawNetwork,
    x0: jax.Array,
    sigma: ArrayLike,
    noise: jax.Array,
    sigma_data: float,
) -> jax.Array:
    """Returns EDM's per-example loss `‖F(c_in·x_σ, c_noise) − (x0 − c_skip·x_σ)/c_out‖²` (mean).

    Args:
      network: the raw network `F(x, c_noise)`.
      x0: clean signal, [T].
      sigma: scalar noise level.
      noise: unit Gaussian noise, [T].
      sigma_data: the data scale σ_d.
    """
    c_skip, c_out, c_in, c_noise = preconditioning(sigma, sigma_data)
    x_sigma = x0 + sigma * noise
    target = (x0 - c_skip * x_sigma) / c_out
    return jnp.mean((network(c_in * x_sigma, c_noise) - target) ** 2)


# ---------------------------------------------------------------------------------------------
# The Wiener skip: EDM's c_skip derived per frequency from the data's power spectrum.
#
# Karras et al. choose c_skip (their Appendix B.6) to minimise the variance of the network's
# target, for data of variance σ_d²: c_skip = σ_d²/(σ² + σ_d²), and then c_out so that the target
# has unit variance. Derived per frequency for data with power spectrum S(f), c_skip is the
# Wiener filter, applied as a zero-phase filter, and c_out the RMS of what it leaves:
#   c_skip(f) = S(f)/(S(f) + σ²),   c_out(σ)² = mean over f of S(f)·σ²/(S(f) + σ²),
# the Wiener filter's error variance (white data, S ≡ σ_d², gives EDM's c_skip and c_out back);
# c_in stays EDM's 1/√(σ² + σ_d²). An untrained network (F = 0) is then already the best
# structure-free denoiser, and F learns only what a stationary Gaussian cannot know: harmonics,
# notes, rests. It no longer has to remove the noise in bands where the data is silent, which
# EDM's F must do with a gain of σ_d/σ (~2,000 at σ = 1e-4), slow for a small network to learn.
# And with λ = 1/c_out² every σ's loss starts near 1, as in EDM: with EDM's c_out the mid-σ
# levels, where the Wiener filter already removes most of the noise, would weigh 3× less.
# (c_out per frequency, `σ√S/√(S + σ²)`, would weight the loss by 1/S: rare bursts in bands
# that are quiet on average, a breath at 10 kHz, then dominate the loss by orders of magnitude.)


def _spectral_frame(spectrum: jax.Array) -> int:
    """Returns the frame length of a spectrum given at the rfft bins of that frame."""
    return 2 * (spectrum.shape[-1] - 1)


def _filter_length(num_samples: int, spectrum: jax.Array) -> int:
    """Returns the FFT length of the zero-phase filter: the clip plus one frame of zeros.

    The filter's impulse response is about a frame long (its response is interpolated from a
    spectrum at the frame's bins), so a frame of zero padding keeps it from wrapping around:
    the filter acts as a linear convolution of the clip.
    """
    return scipy.fft.next_fast_len(num_samples + _spectral_frame(spectrum), real=True)


def wiener_c_out(sigma: ArrayLike, spectrum: jax.Array) -> jax.Array:
    """Returns c_out(σ) of the Wiener skip: the RMS error of the Wiener filter of `spectrum`.

    `c_out² = mean over the full DFT of S·σ²/(S + σ²)`, S at the rfft bins of a frame.
    """
    spectrum = jnp.asarray(spectrum, jnp.float32)
    sigma = jnp.asarray(sigma, jnp.float32)
    error = spectrum * sigma**2 / (spectrum + sigma**2)  # [F]
    # The full DFT holds every interior rfft bin twice: (e_0 + e_{N/2} + 2·Σ interior)/N.
    full_sum = error[0] + error[-1] + 2.0 * jnp.sum(error[1:-1])
    return jnp.sqrt(full_sum / _spectral_frame(spectrum))


def wiener_skip(x: jax.Array, sigma: ArrayLike, spectrum: jax.Array) -> jax.Array:
    """Returns `c_skip∗x`, the Wiener filter `S/(S + σ²)` of a spectrum applied to a clip [T].

    Args:
      x: one clip, [T].
      sigma: scalar noise level.
      spectrum: the data's power spectrum S at the rfft bins of a frame of 2(F − 1) samples,
        [F], in the convention of `priors.StationaryGaussian` (white noise of variance v has
        S ≡ v).
    """
    T = x.shape[-1]
    n = _filter_length(T, spectrum)
    power = jnp.interp(
        jnp.fft.rfftfreq(n), jnp.fft.rfftfreq(_spectral_frame(spectrum)), spectrum
    )  # [n/2 + 1]
    c_skip = power / (power + jnp.asarray(sigma, jnp.float32) ** 2)
    return jnp.fft.irfft(c_skip * jnp.fft.rfft(x, n=n), n=n)[:T]


def precondition_wiener(network: RawNetwork, sigma_data: float, spectrum: jax.Array) -> Denoiser:
    """Wraps a raw network into `D(x; σ) = c_skip∗x + c_out·F(c_in·x, c_noise)`, Wiener skip.

    `c_skip∗` is `wiener_skip`, `c_out` is `wiener_c_out`; `c_in` and `c_noise` are EDM's.
    """
    spectrum = jnp.asarray(spectrum, jnp.float32)

    def denoiser(x: jax.Array, sigma: ArrayLike) -> jax.Array:
        _, _, c_in, c_noise = preconditioning(sigma, sigma_data)
        c_out = wiener_c_out(sigma, spectrum)
        return wiener_skip(x, sigma, spectrum) + c_out * network(c_in * x, c_noise)

    return denoiser


def wiener_denoising_loss(
    network: RawNetwork,
    x0: jax.Array,
    sigma: ArrayLike,
    noise: jax.Array,
    sigma_data: float,
    spectrum: jax.Array,
) -> jax.Array:
    """Returns EDM's loss `‖D − x0‖²/c_out²` (mean) for the Wiener-skip denoiser.

    Equal to `‖F − (x0 − c_skip∗x_σ)/c_out‖²`; with a white spectrum S ≡ σ_d² it is
    `denoising_loss`. For data drawn from the spectrum's Gaussian, F = 0 scores 1 at every σ.
    """
    c_out = wiener_c_out(sigma, spectrum)
    x_sigma = x0 + sigma * noise
    error = precondition_wiener(network, sigma_data, spectrum)(x_sigma, sigma) - x0
    return jnp.mean(error**2) / c_out**2
