"""Guidance as transforms: each turns a denoiser into one whose `x̂0` is pulled towards `y`.

The conditional score is the prior score plus a likelihood score (DESIGN §1). In `x̂0` form a
likelihood-score term `s` becomes `x̂0 ← x̂0 + σ²·s`, so a guided denoiser still maps
`(x̂, σ̂) ↦ x̂0` and the sampler takes its slope `d = (x̂ − x̂0)/σ̂` as usual. A transform is a
small frozen object, `transform(denoiser, context) -> denoiser`; the sampler applies a
config's transforms in order (`guide`), so RG then DC is `DC(RG(D))`:

- `ReconstructionGuidance` (RG, DPS-style as in CQT-Diff, DESIGN §4.1), with a ξ schedule
  (`ConstantXi`, `LinearXi` and `SigmaPowerXi`: RG δρ, DESIGN §4.2);
- `PseudoinverseGuidance` (ΠGDM, Song et al. 2023, DESIGN §4.4);
- `DataConsistency` (DC, DESIGN §4.3), a projection onto the set consistent with `y`.

A new method is one more transform here (or in its own module): the sampler needs no change.
Nothing here imports Flax: a network enters as a function `denoiser(x, sigma)`.
"""

import dataclasses
from collections.abc import Callable, Sequence
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


@dataclasses.dataclass(frozen=True)
class Context:
    """What a transform may read besides `(x̂, σ̂)`: the observation and the sampler's place.

    Attributes:
      y: the observation, [T].
      operator: the degradation `A`.
      sigma_data: σ_d of the prior (ΠGDM's `r²`).
      step: i, the index of the sampler step being taken (traced int32).
      steps: T, the number of steps of the schedule.
      sigma_max: σ_0, the schedule's highest level.
    """

    y: jax.Array
    operator: Operator
    sigma_data: float
    step: jax.Array
    steps: int
    sigma_max: float


class Transform(Protocol):
    """Turns a denoiser into a guided one, given the context of the current step."""

    def __call__(self, denoiser: edm.Denoiser, context: Context) -> edm.Denoiser: ...


def guide(
    transforms: Sequence[Transform], denoiser: edm.Denoiser, context: Context
) -> edm.Denoiser:
    """Returns `denoiser` with every transform applied in order (the first innermost)."""
    for transform in transforms:
        denoiser = transform(denoiser, context)
    return denoiser


# ---------------------------------------------------------------------------------------------
# ξ schedules of RG δρ (DESIGN §4.2): ξ at the current step and level.


@dataclasses.dataclass(frozen=True)
class ConstantXi:
    """ξ the same at every step (CQT-Diff's RG: 0.2)."""

    xi: float = 0.2

    def __call__(self, sigma: jax.Array, context: Context) -> jax.Array:
        return jnp.asarray(self.xi, jnp.float32)


@dataclasses.dataclass(frozen=True)
class LinearXi:
    """ξ linear in the step index, from `start` at the first step to `end` at the last."""

    start: float
    end: float

    def __call__(self, sigma: jax.Array, context: Context) -> jax.Array:
        frac = context.step.astype(jnp.float32) / max(context.steps - 1, 1)
        return self.start + frac * (self.end - self.start)


@dataclasses.dataclass(frozen=True)
class SigmaPowerXi:
    """ξ·(σ/σ_max)^power: a power of the noise level."""

    xi: float
    power: float

    def __call__(self, sigma: jax.Array, context: Context) -> jax.Array:
        return self.xi * (sigma / context.sigma_max) ** self.power


# ---------------------------------------------------------------------------------------------
# The transforms.


@dataclasses.dataclass(frozen=True)
class ReconstructionGuidance:
    """RG: `x̂0 − ξ·σ̂·g/(RMS(g) + 1e-6)` (DESIGN §4.1; `reconstruction_guidance`).

    Attributes:
      xi: the ξ schedule (a `ConstantXi`, `LinearXi`, `SigmaPowerXi` or any callable
        `(sigma, context) -> ξ`).
      grad_clip: element-wise bound on the gradient (CQT-Diff's `treshold_on_grads`); None or
        0 for none.
    """

    xi: Callable[[jax.Array, Context], jax.Array] = ConstantXi(0.2)
    grad_clip: float | None = None

    def __call__(self, denoiser: edm.Denoiser, context: Context) -> edm.Denoiser:
        def guided(x_hat: jax.Array, sigma_hat: ArrayLike) -> jax.Array:
            xi = self.xi(sigma_hat, context)
            return reconstruction_guidance(
                denoiser, x_hat, sigma_hat, context.y, context.operator, xi, self.grad_clip
            )

        return guided


@dataclasses.dataclass(frozen=True)
class PseudoinverseGuidance:
    """ΠGDM: `x̂0 + scale·(σ̂²/r²)·vjp(A†y − A†A x̂0)` (DESIGN §4.4; `pseudoinverse_guidance`).

    Attributes:
      scale: the strength of the update (1 in the paper).
      grad_clip: element-wise bound on the VJP; None or 0 for none.
    """

    scale: float = 1.0
    grad_clip: float | None = None

    def __call__(self, denoiser: edm.Denoiser, context: Context) -> edm.Denoiser:
        def guided(x_hat: jax.Array, sigma_hat: ArrayLike) -> jax.Array:
            return pseudoinverse_guidance(
                denoiser,
                x_hat,
                sigma_hat,
                context.y,
                context.operator,
                context.sigma_data,
                self.scale,
                self.grad_clip,
            )

        return guided


@dataclasses.dataclass(frozen=True)
class DataConsistency:
    """DC: projects the estimate onto the set of signals consistent with `y` (DESIGN §4.3)."""

    def __call__(self, denoiser: edm.Denoiser, context: Context) -> edm.Denoiser:
        def projected(x_hat: jax.Array, sigma_hat: ArrayLike) -> jax.Array:
            return context.operator.project(denoiser(x_hat, sigma_hat), context.y)

        return projected
