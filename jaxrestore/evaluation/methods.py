"""The table rows as batch functions of sharded global arrays: input, sampler presets, SPADE."""

import functools
from collections.abc import Callable

import jax
from jax.sharding import PartitionSpec as P

from jaxrestore import degradations, metrics, priors, sample, sharding, spade
from jaxrestore.evaluation import clips
from jaxrestore.evaluation.tasks import CLASSICAL, DEGRADED, EvalConfig, Task, parse_method

# One restorer for a batch on every device, shared with whole-recording restoration.
ShardedRestorer = sample.ShardedRestorer


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
    _, num_draws = parse_method(method)

    def run(batch):
        # The prior sees every clip at its level (`Prior.normalize`'s gain, computed per clip
        # on the host): scale the observation and the threshold, and the result back.
        gain = batch["gain"][:, None]  # [B, 1]
        y, threshold = batch["y"] * gain, batch["threshold"] * batch["gain"]
        if num_draws == 1:
            x_hat = restorer(y, threshold, batch["key"])
        else:  # draw d with the key fold_in(key, d), as `sample.posterior_mean`
            draws = [restorer(y, threshold, _fold_in(batch["key"], d)) for d in range(num_draws)]
            x_hat = sum(draws) / num_draws
        return prior.denormalize(x_hat, gain)

    return run, num_draws * restorer.nfe


@functools.partial(jax.jit, static_argnums=1)
def _fold_in(key_data: jax.Array, d: int) -> jax.Array:
    """Returns the raw keys [B, 2] of `fold_in(key, d)` for raw keys [B, 2]."""
    fold = lambda k: jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(k), d))  # noqa: E731
    return jax.vmap(fold)(key_data)


def clip_metrics(sample_rate: int, mesh: jax.sharding.Mesh):
    def scores(x_hat, x0):  # [B, T] each -> [B] each
        return {"si_sdr": metrics.si_sdr(x_hat, x0), "lsd": metrics.lsd(x_hat, x0, sample_rate)}

    rows = P(sharding.AXIS)
    return sharding.per_device(scores, mesh, (rows, rows), rows)
