"""Denoiser networks: 1D SaShiMi-Diff and the CQT-Diff U-Net (DESIGN §6).

Every model here is a Flax linen module called as `model.apply(variables, x, c_noise)` with
`x` of shape [B, T] (already scaled by c_in) and `c_noise` of shape [B]; it returns F_θ of shape
[B, T]. `as_denoiser` closes a model over its parameters and preconditions it into the one
denoiser contract of DESIGN §9, so the sampler never sees Flax.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrestore import edm


def as_denoiser(
    model: nn.Module, params: Any, sigma_data: float, spectrum: ArrayLike | None = None
) -> edm.Denoiser:
    """Returns `D(x; σ)` for one clip `x` of shape [T], from a model and its parameters.

    With a `spectrum` (the data's power spectrum, [F]) the network was trained with the Wiener
    skip (`edm.precondition_wiener`); without, with EDM's preconditioning.
    """

    def network(x: jax.Array, c_noise: jax.Array) -> jax.Array:
        return model.apply({"params": params}, x[None], c_noise[None])[0]

    if spectrum is not None:
        return edm.precondition_wiener(network, sigma_data, jnp.asarray(spectrum, jnp.float32))
    return edm.precondition(network, sigma_data)
