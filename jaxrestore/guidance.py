"""Guidance: turns a denoiser into one whose estimate `x̂0` is pulled towards the observation.

The conditional score is the prior score plus a likelihood score (DESIGN §1). In `x̂0` form a
likelihood-score term `s` becomes `x̂0 ← x̂0 + σ²·s`, so each method here maps
`(x̂, σ̂) ↦ x̂0` and the sampler takes its slope `d = (x̂ − x̂0)/σ̂` as usual:

- reconstruction guidance (RG, DPS-style as in CQT-Diff, DESIGN §4.1);
- pseudoinverse guidance (ΠGDM, Song et al. 2023, DESIGN §4.4);
- data consistency (DC, DESIGN §4.3), a projection applied after either.

Nothing here imports Flax: a network enters as a function `denoiser(x, sigma)`.
"""

from typing import Protocol

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrestore import edm


class Operator(Protocol):
    """A degradation `A` on one clip [T] (see `jaxrestore.degradations`)."""

    def apply(self, x: jax.Array) -> jax.Array: ...

    def pinv(self, y: jax.Array) -> jax.Array: ...

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array: ...


def _rms(v: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(v**2))


def _residual_norm(x0: jax.Array, y: jax.Array, operator: Operator) -> jax.Array:
    # ‖y − A(x̂0)‖₂, the norm and not its square (CQT-Diff). The tiny floor keeps its
    # gradient finite where the residual is exactly zero.
    residual = y - operator.apply(x0)
    return jnp.sqrt(jnp.sum(residual**2) + 1e-30)


def _clip_elementwise(v: jax.Array, grad_clip: float | None) -> jax.Array:
    # CQT-Diff's `treshold_on_grads`: a hard element-wise bound on the guidance gradient.
    if grad_clip is None or grad_clip <= 0:
        return v
    return jnp.clip(v, -grad_clip, grad_clip)


def reconstruction_guidance(
    denoiser: edm.Denoiser,
    x_hat: jax.Array,
    sigma_hat: ArrayLike,
    y: jax.Array,
    operator: Operator,
    xi: ArrayLike,
    grad_clip: float | None = None,
) -> jax.Array:
    """Returns the RG-guided estimate `x̂0 − ξ·σ̂·g/(RMS(g) + 1e-6)` (DESIGN §4.1).

    `g = ∇_x̂ ‖y − A(D(x̂; σ̂))‖₂` comes from one VJP through the denoiser. The step is normalised
    by the gradient's RMS (computed before any element-wise clip, as CQT-Diff does), so `ξ`
    sets its size relative to the noise level.

    Args:
      denoiser: `D(x, sigma)` on one clip.
      x_hat: the noisy signal at `σ̂`, [T].
      sigma_hat: scalar noise level.
      y: the observation, [T].
      operator: the degradation `A` (differentiable `apply`).
      xi: the guidance scale ξ (scalar, may be traced).
      grad_clip: optional element-wise bound on `g`.
    """
    x0, vjp_denoiser = jax.vjp(lambda z: denoiser(z, sigma_hat), x_hat)
    h = jax.grad(_residual_norm)(x0, y, operator)
    (g,) = vjp_denoiser(h)
    scale = xi * sigma_hat / (_rms(g) + 1e-6)
    return x0 - scale * _clip_elementwise(g, grad_clip)


def pseudoinverse_guidance(
    denoiser: edm.Denoiser,
    x_hat: jax.Array,
    sigma_hat: ArrayLike,
    y: jax.Array,
    operator: Operator,
    sigma_data: float,
    scale: ArrayLike = 1.0,
    grad_clip: float | None = None,
) -> jax.Array:
    """Returns the ΠGDM-guided estimate `x̂0 + scale·(σ̂²/r²)·vjp(A†y − A†A x̂0)` (DESIGN §4.4).

    `r² = σ̂²σ_d²/(σ̂²+σ_d²)` is the exact posterior variance of `x0` given `x_σ̂` under a white
    Gaussian prior of variance σ_d², so `σ̂²/r² = (σ̂² + σ_d²)/σ_d²`. Only `A†` is needed, never
    a gradient of `A`.
    """
    x0, vjp_denoiser = jax.vjp(lambda z: denoiser(z, sigma_hat), x_hat)
    v = operator.pinv(y) - operator.pinv(operator.apply(x0))
    (g,) = vjp_denoiser(v)
    sigma_hat = jnp.asarray(sigma_hat, jnp.float32)
    gain = (sigma_hat**2 + sigma_data**2) / sigma_data**2
    return x0 + scale * gain * _clip_elementwise(g, grad_clip)


def guided_estimate(
    denoiser: edm.Denoiser,
    x_hat: jax.Array,
    sigma_hat: ArrayLike,
    y: jax.Array,
    operator: Operator,
    *,
    guidance: str,
    xi: ArrayLike,
    sigma_data: float,
    pigdm_scale: float,
    grad_clip: float | None,
    data_consistency: bool,
) -> jax.Array:
    """Returns `x̂0` at `(x̂, σ̂)` after the chosen guidance and, if asked, data consistency."""
    if guidance == "rg":
        x0 = reconstruction_guidance(denoiser, x_hat, sigma_hat, y, operator, xi, grad_clip)
    elif guidance == "pigdm":
        x0 = pseudoinverse_guidance(
            denoiser, x_hat, sigma_hat, y, operator, sigma_data, pigdm_scale, grad_clip
        )
    elif guidance == "none":
        x0 = denoiser(x_hat, sigma_hat)
    else:
        raise ValueError(f"guidance must be 'none', 'rg' or 'pigdm', got {guidance!r}")
    if data_consistency:
        x0 = operator.project(x0, y)
    return x0
