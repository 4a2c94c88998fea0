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
from jaxrestore.networks.s4 import CACHE


def prepare(model: nn.Module, params: Any, length: int) -> dict[str, Any]:
    """Returns what `model` can compute once for fixed weights, as variables.

    SaShiMi's S4D layers take their chunk operators (`s4.chunk_operators`), which depend on
    the weights only: with them the layers convolve by chunked matrix products instead of
    building a kernel and its FFT in every call, the same function, faster at restoration
    lengths. `length` only sizes the trace that builds them; they serve clips of any length.
    Models with nothing to prepare (CQT-Diff), traced weights, and any backend but the CPU get
    an empty dict. On a GPU the scan over chunks (a few small kernels per chunk) loses to the
    FFTs: on an H200 the prepared `reference` network had not finished its first timings after
    100 s, where the FFT path ran the forward in 17 ms and forward + VJP in 44 ms.
    """
    if jax.default_backend() != "cpu":
        return {}
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(params)):
        return {}

    @jax.jit
    def run(params):
        zeros = jnp.zeros((1, length), jnp.float32)
        return model.apply({"params": params}, zeros, zeros[:, 0], mutable=[CACHE])[1]

    # Compiled as one program, then run on concrete weights even when the caller is being
    # traced, so the result is a constant of the caller's program. (A plain `run(params)` under
    # `ensure_compile_time_eval` dispatches op by op, compiling each: 7× slower on the tiny net.)
    compiled = run.lower(params).compile()
    with jax.ensure_compile_time_eval():
        return dict(compiled(params))


def as_denoiser(
    model: nn.Module,
    params: Any,
    sigma_data: float,
    spectrum: ArrayLike | None = None,
    prepared: bool = True,
) -> edm.Denoiser:
    """Returns `D(x; σ)` for one clip `x` of shape [T], from a model and its parameters.

    With a `spectrum` (the data's power spectrum, [F]) the network was trained with the Wiener
    skip (`edm.precondition_wiener`); without, with EDM's preconditioning. The network is
    prepared (`prepare`) at its first call, unless `prepared` is False (the same function:
    SaShiMi then convolves by FFT in every call, as in training).
    """

    variables = [] if prepared else [{}]  # what `prepare` computed, once

    def network(x: jax.Array, c_noise: jax.Array) -> jax.Array:
        if not variables:
            variables.append(prepare(model, params, x.shape[-1]))
        return model.apply({"params": params, **variables[0]}, x[None], c_noise[None])[0]

    if spectrum is not None:
        return edm.precondition_wiener(network, sigma_data, jnp.asarray(spectrum, jnp.float32))
    return edm.precondition(network, sigma_data)
