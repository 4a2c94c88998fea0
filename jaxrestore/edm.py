"""The EDM diffusion prior: noise-level schedule, preconditioning, training σ and loss.

Karras et al. 2022 ("Elucidating the design space of diffusion-based generative models"),
in the form CQT-Diff uses it (DESIGN.md §2 and §3). Everything here is a small pure function
that is safe under `jit` and `vmap`.
"""

from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
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
