"""The EDM diffusion prior: noise-level schedule, preconditioning, training σ and loss.

Karras et al. 2022 ("Elucidating the design space of diffusion-based generative models"),
in the form CQT-Diff uses it (DESIGN.md §2 and §3). Everything here is a small pure function
that is safe under `jit` and `vmap`.
"""

from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
import scipy.fft
from jax.typing import ArrayLike


class Denoiser(Protocol):
    """The one denoiser contract: `D(x; σ)` for one clip `x` of shape [T] and a scalar σ."""

    def __call__(self, x: jax.Array, sigma: ArrayLike) -> jax.Array: ...


# A raw network F_θ(c_in·x, c_noise), before preconditioning; same shapes as `Denoiser`.
RawNetwork = Callable[[jax.Array, jax.Array], jax.Array]


def sigma_schedule(
    steps: int, sigma_min: float = 1e-4, sigma_max: float = 1.0, rho: float = 13.0
) -> jax.Array:
    """Returns the `steps` noise levels of DESIGN §3 followed by a final 0: shape [steps + 1].

    `σ_i = (σ_max^{1/ρ} + i/(T−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`, i = 0..T−1, then σ_T = 0.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    return jnp.append(
        _rho_interpolation(jnp.linspace(0.0, 1.0, steps), sigma_min, sigma_max, rho), 0.0
    )


def _rho_interpolation(u: jax.Array, sigma_min: float, sigma_max: float, rho: float) -> jax.Array:
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
# Spectral preconditioning: EDM's derivation with σ_d² replaced by the data's power spectrum.
#
# Karras et al. choose c_in, c_skip and c_out (their Appendix B.6) for data of variance σ_d²:
# unit-variance input, the skip that minimises the target's variance, a unit-variance target.
# Made per frequency for data with power spectrum S(f) (white data, S ≡ σ_d², gives EDM back):
#   c_in(f) = 1/√(S + σ²),   c_skip(f) = S/(S + σ²),   c_out(f) = σ·√S/√(S + σ²),
# each applied as a zero-phase filter. The skip alone is then the Wiener filter of the data's
# spectrum: an untrained network is already the best structure-free denoiser, and the network
# learns only what a stationary Gaussian cannot know. It also sees noise whitened to unit
# level in bands where the data is silent: EDM's network must amplify it by σ_d/σ there to
# remove it (~2,000 at σ = 1e-4), which a small network learns slowly.


def spectral_preconditioning(
    sigma: ArrayLike, power: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns `(c_skip, c_out, c_in)` per frequency for a data power spectrum `power` [F]."""
    sigma = jnp.asarray(sigma, jnp.float32)
    total = power + sigma**2
    c_skip = power / total
    c_out = sigma * jnp.sqrt(power / total)
    c_in = jax.lax.rsqrt(total)
    return c_skip, c_out, c_in


def _spectral_frame(spectrum: jax.Array) -> int:
    """Returns the frame length of a spectrum given at the rfft bins of that frame."""
    return 2 * (spectrum.shape[-1] - 1)


def _filter_length(num_samples: int, spectrum: jax.Array) -> int:
    """Returns the FFT length of the zero-phase filters: the clip plus one frame of zeros.

    The filters' impulse responses are about a frame long (their responses are interpolated
    from a spectrum at the frame's bins), so a frame of zero padding keeps them from wrapping
    around: the filters act as linear convolutions of the clip.
    """
    return scipy.fft.next_fast_len(num_samples + _spectral_frame(spectrum), real=True)


def _power_at_bins(spectrum: jax.Array, n: int) -> jax.Array:
    """Interpolates a spectrum given at the bins of its frame to the rfft bins of length n."""
    frame = _spectral_frame(spectrum)
    return jnp.interp(jnp.fft.rfftfreq(n), jnp.fft.rfftfreq(frame), spectrum)


def precondition_spectral(network: RawNetwork, spectrum: jax.Array) -> Denoiser:
    """Wraps a raw network into `D(x; σ) = c_skip∗x + c_out∗F(c_in∗x, c_noise)`, per frequency.

    Args:
      network: the raw network `F(x, c_noise)` on one clip [T].
      spectrum: the data's power spectrum S at the rfft bins of a frame of 2(F − 1) samples,
        [F], in the convention of `priors.StationaryGaussian` (white noise of variance v has
        S ≡ v); strictly positive.
    """
    spectrum = jnp.asarray(spectrum, jnp.float32)

    def denoiser(x: jax.Array, sigma: ArrayLike) -> jax.Array:
        T = x.shape[-1]
        n = _filter_length(T, spectrum)
        c_skip, c_out, c_in = spectral_preconditioning(sigma, _power_at_bins(spectrum, n))
        X = jnp.fft.rfft(x, n=n)
        skip = jnp.fft.irfft(c_skip * X, n=n)[:T]
        F = network(jnp.fft.irfft(c_in * X, n=n)[:T], 0.25 * jnp.log(sigma))
        return skip + jnp.fft.irfft(c_out * jnp.fft.rfft(F, n=n), n=n)[:T]

    return denoiser


def spectral_denoising_loss(
    network: RawNetwork,
    x0: jax.Array,
    sigma: ArrayLike,
    noise: jax.Array,
    spectrum: jax.Array,
) -> jax.Array:
    """Returns the spectral analogue of EDM's loss: the denoiser's error weighted by 1/c_out².

    EDM's `λ(σ)‖D − x0‖²` with `λ = 1/c_out²` is `‖F − target‖²`; per frequency the weight is
    `1/c_out(f)²`, applied to the error's spectrum (Parseval, on the zero-padded error). With a
    white spectrum it equals `denoising_loss` exactly.

    Args:
      network: the raw network `F(x, c_noise)`.
      x0: clean signal, [T].
      sigma: scalar noise level.
      noise: unit Gaussian noise, [T].
      spectrum: the data's power spectrum, as in `precondition_spectral`.
    """
    T = x0.shape[-1]
    n = _filter_length(T, spectrum)
    error = precondition_spectral(network, spectrum)(x0 + sigma * noise, sigma) - x0
    c_out = spectral_preconditioning(sigma, _power_at_bins(jnp.asarray(spectrum), n))[1]
    weighted = jnp.abs(jnp.fft.rfft(error, n=n) / c_out) ** 2
    # Σ_t e_t² = (1/n)·Σ over the full DFT: the rfft's interior bins count twice.
    counts = jnp.full(n // 2 + 1, 2.0).at[0].set(1.0)
    counts = counts.at[-1].set(1.0 if n % 2 == 0 else 2.0)
    return jnp.sum(counts * weighted) / (n * T)
