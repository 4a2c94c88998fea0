r"""Times one denoiser network in a process of its own, for side-by-side runs of two trees.

  python experiments/network_timing.py sashimi:cpu 65536 1 3
  PYTHONPATH=/path/to/old/checkout python experiments/network_timing.py sashimi:cpu 65536 1 3
  python experiments/network_timing.py sashimi:cpu 65536 1 2 --profile   # where the time goes
  python experiments/network_timing.py shipped 65536 1 3                 # the shipped weights
  python experiments/network_timing.py sashimi:cpu:d_model=32 65536 1 3  # a preset, fields replaced
  python experiments/network_timing.py sashimi:cpu 4096 16 3 --train     # a training step
  python experiments/network_timing.py sashimi:cpu 4096 16 3 --train --profile

Prints one JSON line: forward, forward + VJP with respect to the input, and the guided
evaluation the sampler runs (forward + VJP through `networks.as_denoiser`, σ = 0.1), each the
minimum over the repeats after compilation, with XLA's temporary memory of the forward + VJP.
With --train it times one training step instead (`train.make_train_step`: EDM loss with the
Wiener skip, gradients, Adam and the EMA; the shipped recipe is `sashimi:cpu 4096 16`).
It uses only APIs that every version of the package has had (`checkpoints.model_config`,
`build_model`, `load_msgpack_params`, `networks.as_denoiser`, `train.make_train_step`), so
`benchmark --sections=networks --baseline=DIR` runs it alternately on an older checkout and
on this one.
"""

import ast
import collections
import glob
import gzip
import json
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from jaxrestore import checkpoints, networks, pretrained, train


def _best_of(fn, *args, repeats: int) -> float:

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def _model_config(spec: str):
    """Returns (name, config) of `"model:preset[:field=value...]"` (preset default reference)."""
    name, _, rest = spec.partition(":")
    preset, *fields = rest.split(":") if rest else ["reference"]
    overrides = {}
    for field in fields:
        key, _, value = field.partition("=")
        overrides[key] = ast.literal_eval(value)
    return name, checkpoints.model_config(name, preset or "reference", **overrides)


def train_step(
    spec: str, num_samples: int, batch: int, repeats: int, profile: bool = False
) -> dict:
    """Times one training step of `spec` on [batch, num_samples] clips (the state donated)."""
    name, model_config = _model_config(spec)
    model = checkpoints.build_model(name, model_config)
    config = train.TrainConfig(
        model_name=name,
        model=model_config,
        batch_size=batch,
        clip_length=num_samples,
        preconditioning="wiener",
        sigma_distribution="lognormal",
        p_mean=-3.0,
        p_std=1.5,
        spectrum_frame=min(512, num_samples),
    )
    optimizer = train.make_optimizer(config)
    state = train.init_state(model, optimizer, jax.random.key(0), num_samples)
    spectrum = jnp.linspace(1.0, 0.01, config.spectrum_frame // 2 + 1)
    step = train.make_train_step(model, optimizer, config, 0.1, spectrum)
    batch_x = 0.1 * jax.random.normal(jax.random.key(1), (batch, num_samples))
    key = jax.random.key(2)
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(step(state, batch_x, key))
    record = {
        "model": spec,
        "num_samples": num_samples,
        "batch": batch,
        "package": networks.__file__,
        "train_step_first_call_s": round(time.perf_counter() - start, 2),
    }
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = jax.block_until_ready(step(state, batch_x, key))
        times.append(time.perf_counter() - start)
    record["train_step_s"] = round(min(times), 4)
    record["loss"] = float(metrics["loss"])
    if profile:
        states = [state]  # each step consumes (donates) the state the last one returned

        def next_step(batch_x):
            states[0], metrics = step(states[0], batch_x, key)
            return metrics

        record["train_step_profile_ms"] = _profile(next_step, (batch_x,), repeats)
    return record


def main(spec: str, num_samples: int, batch: int, repeats: int, profile: bool = False) -> dict:

    T, B = num_samples, batch
    if spec == "shipped":  # the shipped prior's network and weights (`pretrained.WEIGHTS`)
        model, params, _ = checkpoints.load_msgpack_params(pretrained.WEIGHTS)
    else:
        name, config = _model_config(spec)
        model = checkpoints.build_model(name, config)
        init = jax.jit(model.init)
        params = init(jax.random.key(0), jnp.zeros((1, T)), jnp.zeros((1,)))["params"]
    x = 0.1 * jax.random.normal(jax.random.key(1), (B, T))
    c_noise = jnp.full((B,), -0.5)
    record = {"model": spec, "num_samples": T, "batch": B, "package": networks.__file__}

    # A restoration runs the network prepared for its clips (`networks.prepare`, in checkouts
    # that have it), so the forward and its VJP are timed prepared too.
    prepare = getattr(networks, "prepare", None)
    variables = {"params": params, **(prepare(model, params, T) if prepare else {})}
    forward = jax.jit(lambda x, c: model.apply(variables, x, c))

    def fwd_vjp(x, c):
        out, vjp = jax.vjp(lambda z: model.apply(variables, z, c), x)
        return vjp(out)[0]

    denoiser = jax.vmap(networks.as_denoiser(model, params, 0.1), in_axes=(0, None))

    def guided(x, sigma):
        out, vjp = jax.vjp(lambda z: denoiser(z, sigma), x)
        return vjp(out)[0]

    sigma = jnp.float32(0.1)
    for key, fn, args in (
        ("forward", forward, (x, c_noise)),
        ("forward_vjp", jax.jit(fwd_vjp), (x, c_noise)),
        ("guided_evaluation", jax.jit(guided), (x, sigma)),
    ):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        record[f"{key}_first_call_s"] = round(time.perf_counter() - start, 2)
        record[f"{key}_s"] = round(_best_of(fn, *args, repeats=repeats), 4)
    memory = jax.jit(fwd_vjp).lower(x, c_noise).compile().memory_analysis()
    record["forward_vjp_temp_mib"] = round(memory.temp_size_in_bytes / 2**20, 1)
    if profile:
        record["guided_evaluation_profile_ms"] = _profile(jax.jit(guided), (x, sigma), repeats)
    return record


def _profile(fn, args, repeats: int) -> dict[str, float]:
    """Returns the CPU time per call of each kind of XLA op (fft, fusions by their name's
    stem: `bitcast_pad_fusion`, `copy_bitcast_fusion`, …), from a Perfetto trace."""
    folder = tempfile.mkdtemp()
    jax.profiler.start_trace(folder, create_perfetto_trace=True)
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    jax.profiler.stop_trace()
    (path,) = glob.glob(f"{folder}/**/perfetto_trace.json.gz", recursive=True)
    trace = json.load(gzip.open(path))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    kinds = collections.Counter()
    for event in events:
        name = event.get("name", "")
        # Leaf ops only: not the executor, the loops that hold them, or Python frames.
        host_side = name.startswith(("$", "while")) or "::" in name or "(" in name
        if event.get("ph") != "X" or host_side:
            continue
        kinds[re.sub(r"\.\d+$", "", name)] += event.get("dur", 0) / 1e3 / repeats
    return {kind: round(ms, 1) for kind, ms in kinds.most_common(12)}


if __name__ == "__main__":
    spec, num_samples, batch, repeats = sys.argv[1], *map(int, sys.argv[2:5])
    profile = "--profile" in sys.argv[5:]
    if "--train" in sys.argv[5:]:
        record = train_step(spec, num_samples, batch, repeats, profile)
    else:
        record = main(spec, num_samples, batch, repeats, profile)
    print(json.dumps(record), flush=True)
