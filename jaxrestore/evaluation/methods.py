"""The table rows as batch functions of sharded global arrays: input, sampler presets, SPADE."""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxrestore import degradations, edm, metrics, priors, sample, sharding, spade
from jaxrestore.evaluation import clips
from jaxrestore.evaluation.tasks import CLASSICAL, DEGRADED, EvalConfig, Task


class ShardedRestorer:
    """Restores a batch sharded over the `'data'` mesh, each device its own clips.

    The host loop of `sample.Restorer` over the public `sample.initial_state` and
    `sample.sampler_pass`, with each pass run per device (`sharding.per_device`): under plain
    `jax.jit` the partitioner would gather the whole batch onto every device before each FFT
    of the denoiser and the operator. Each clip's result is that of `sample.restore`.

    The operator is built per clip, inside the traced pass, from per-clip parameters: a
    `Clip` cannot be built outside from a global array that spans other processes.

    Args:
      denoiser: `D(x, sigma)` on one clip, or a `priors.Prior`.
      config: the sampler's configuration.
      mesh: the `'data'` mesh.
      make_operator: per-clip parameters (e.g. a threshold) → the clip's operator.
    """

    def __init__(
        self,
        denoiser: edm.Denoiser,
        config: sample.SamplerConfig,
        mesh: jax.sharding.Mesh,
        make_operator: Callable[[Any], Any],
    ):
        self.config = config
        self.schedule = sample.schedule(config)
        self.nfe = sample.nfe(config)
        rows, replicated = P(sharding.AXIS), P()

        def init(y, params, key):
            return sample.initial_state(config, y, make_operator(params), key)

        def one_pass(y, params, key, x, i, cycle):
            operator = make_operator(params)
            return sample.sampler_pass(denoiser, config, y, operator, key, x, i, cycle)

        def batched(fn, in_axes):
            def run(y, params, key_data, *rest):
                keys = jax.random.wrap_key_data(key_data)
                return jax.vmap(fn, in_axes=in_axes)(y, params, keys, *rest)

            return run

        self._init = sharding.per_device(batched(init, 0), mesh, rows, rows)
        self._pass = sharding.per_device(
            batched(one_pass, (0, 0, 0, 0, None, None)),
            mesh,
            (rows, rows, rows, rows, replicated, replicated),
            rows,
        )

    def __call__(self, y: jax.Array, params: Any, key_data: jax.Array) -> jax.Array:
        """Restores `y` [B, T] with per-clip operator parameters and raw keys [B, 2] → [B, T]."""
        x = self._init(y, params, key_data)
        for i, cycle in self.schedule.passes():
            x = self._pass(y, params, key_data, x, jnp.int32(i), jnp.int32(cycle))
        return x


# A method maps a global batch {x0, y, threshold, gain, key} to restorations [B, T].
Method = Callable[[dict[str, jax.Array]], jax.Array]


def make_method(
    method: str,
    task: Task,
    prior: priors.Prior,
    config: EvalConfig,
    mesh: jax.sharding.Mesh,
) -> tuple[Method, int]:
    """Returns a batch function for `method` on `task` and its NFE per clip."""
    rows = P(sharding.AXIS)
    if method == DEGRADED:
        return (lambda batch: batch["y"]), 0
    if method in CLASSICAL:
        # SPADE's ε is absolute, set for signals peaking near 1: run it at the clip's level.
        declip = jax.vmap(functools.partial(spade.declip, method=method))
        declip = sharding.per_device(declip, mesh, (rows, rows), rows)
        return (lambda batch: declip(batch["y"], batch["threshold"])), 0
    if task.kind == "declip":
        make_operator = degradations.Clip
    else:
        lowpass = clips.lowpass_operator(task.value, config.sample_rate, config.lowpass_design)
        make_operator = lambda _: lowpass  # noqa: E731 (one filter for every clip)
    restorer = ShardedRestorer(prior, config.sampler_config(method), mesh, make_operator)

    def run(batch):
        # The prior sees every clip at its level (`Prior.normalize`'s gain, computed per clip
        # on the host): scale the observation and the threshold, and the result back.
        gain = batch["gain"][:, None]  # [B, 1]
        x_hat = restorer(batch["y"] * gain, batch["threshold"] * batch["gain"], batch["key"])
        return prior.denormalize(x_hat, gain)

    return run, restorer.nfe


def clip_metrics(sample_rate: int, mesh: jax.sharding.Mesh):
    def scores(x_hat, x0):  # [B, T] each -> [B] each
        return {"si_sdr": metrics.si_sdr(x_hat, x0), "lsd": metrics.lsd(x_hat, x0, sample_rate)}

    rows = P(sharding.AXIS)
    return sharding.per_device(scores, mesh, (rows, rows), rows)
