"""The denoiser networks timed: forward, forward + VJP, a guided restore, older checkouts.

A network is named `"model:preset"` (`"sashimi:reference"`, `"cqtdiff:reference"`); its
weights are random (`model.init`), since speed does not depend on them.
"""

import dataclasses
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxrestore import checkpoints, degradations, networks, sample
from jaxrestore.benchmarks import costs


def build(spec: str) -> tuple[str, str, nn.Module]:
    """Returns (model name, preset, network) for `"model:preset"` (preset default reference)."""
    name, _, preset = spec.partition(":")
    preset = preset or "reference"
    return name, preset, checkpoints.build_model(name, checkpoints.model_config(name, preset))


def record(
    spec: str,
    machine_gflops: float,
    *,
    clip_length: int,
    batch: int,
    repeats: int,
    restore_steps: int,
    sample_rate: int,
    prepared: bool = True,
) -> dict:
    """Times one network: forward, forward + VJP, guided Heun steps → a 35-step restore.

    The network is prepared for the clip length first, as a sampler's denoiser is.

    The restore time is `restore_steps` guided Heun steps (RG + DC, declipping) of the host
    loop, extrapolated to the preset's steps; the FLOP rates are fractions of
    `machine_gflops`, the matrix-product rate measured in the same process. `restore_steps=0`
    leaves the restore out; `prepared=False` times the network unprepared (SaShiMi's FFT path).
    """
    name, preset, model = build(spec)
    T, B = clip_length, batch
    start = time.perf_counter()
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, T)), jnp.zeros((1,)))["params"]
    init_s = time.perf_counter() - start
    x = 0.1 * jax.random.normal(jax.random.key(1), (B, T))
    c_noise = jnp.full((B,), -0.5)

    # Timed as a restoration runs it: prepared once for the clip length (`networks.prepare`),
    # which for SaShiMi switches its S4D layers to the chunked convolution.
    variables = networks.prepare(model, params, T) if prepared else {}

    def apply(p, x, c):
        return model.apply({"params": p, **variables}, x, c)

    def forward_vjp(p, x, c):
        out, vjp = jax.vjp(lambda z: apply(p, z, c), x)
        return vjp(out)[0]

    forward = jax.jit(apply)
    start = time.perf_counter()
    jax.block_until_ready(forward(params, x, c_noise))
    compile_s = time.perf_counter() - start
    forward_s, _ = costs.timed(forward, params, x, c_noise, repeats=repeats)
    flops = costs.count_flops(apply, params, x, c_noise)
    vjp_fn = jax.jit(forward_vjp).lower(params, x, c_noise).compile()  # once, for both uses
    vjp_memory = vjp_fn.memory_analysis()
    jax.block_until_ready(vjp_fn(params, x, c_noise))
    vjp_s, _ = costs.timed(vjp_fn, params, x, c_noise, repeats=repeats)
    vjp_flops = costs.count_flops(forward_vjp, params, x, c_noise)

    # A guided Heun restore (RG + DC, declipping), timed over a few steps of the host loop.
    config = dataclasses.replace(sample.PRESETS["rg+dc"], sigma_data=0.1)
    restore = {}
    if restore_steps:
        denoiser = networks.as_denoiser(model, params, 0.1, prepared=prepared)
        restorer = sample.Restorer(denoiser, config, operator_in_axes=None)
        y = jnp.clip(x, -0.1, 0.1)
        op = degradations.Clip(jnp.float32(0.1))
        keys = jax.random.split(jax.random.key(2), B)
        state = restorer._init(y, op, keys)
        step = functools.partial(restorer._pass, y, op, keys)
        jax.block_until_ready(step(state, jnp.int32(0), jnp.int32(0)))
        step_s, _ = costs.timed(
            lambda s: step(s, jnp.int32(1), jnp.int32(0)), state, repeats=restore_steps
        )
        restore_s = step_s * (config.steps - 1) + step_s / 2  # the last step has no Heun pass
        restore = {
            "guided_heun_step_s": round(step_s, 3),
            "restore_35_steps_s": round(restore_s, 2),
            "restore_is_extrapolated": True,
            "nfe": sample.nfe(config),
            "real_time_factor": round(restore_s / (B * T / sample_rate), 3),
        }
    gflops, vjp_gflops = flops / forward_s / 1e9, vjp_flops / vjp_s / 1e9
    return {
        "model": name,
        "config": preset,
        "params": costs.count_params(model, T),
        "batch": B,
        "num_samples": T,
        "platform": jax.default_backend(),
        "prepared": bool(variables),  # False where nothing was prepared (CQT-Diff, a GPU)
        "init_s": round(init_s, 3),
        "compile_forward_s": round(compile_s, 3),
        "forward_s": round(forward_s, 4),
        "forward_vjp_s": round(vjp_s, 4),
        "forward_gflop": round(flops / 1e9, 3),
        "forward_gflops_rate": round(gflops, 1),
        "machine_matmul_gflops": round(machine_gflops, 1),
        "fraction_of_matmul_rate": round(gflops / machine_gflops, 3),
        "forward_vjp_gflop": round(vjp_flops / 1e9, 3),
        "forward_vjp_fraction_of_matmul_rate": round(vjp_gflops / machine_gflops, 3),
        "forward_vjp_temp_mib": round(vjp_memory.temp_size_in_bytes / 2**20, 1),
        **restore,
    }


def comparisons(records: Sequence[dict]) -> Iterator[dict]:
    """Yields the CQT-Diff : SaShiMi speed ratios of each preset timed for both networks."""
    by_preset: dict[str, dict[str, dict]] = {}
    for r in records:
        by_preset.setdefault(r["config"], {})[r["model"]] = r
    for preset, pair in by_preset.items():
        if "sashimi" not in pair or "cqtdiff" not in pair:
            continue
        s, c = pair["sashimi"], pair["cqtdiff"]
        flop_ratio = None
        if s["forward_gflop"] and c["forward_gflop"]:
            flop_ratio = round(c["forward_gflop"] / s["forward_gflop"], 2)
        yield {
            "comparison": "cqtdiff:sashimi",
            "config": preset,
            "forward_speed_ratio": round(c["forward_s"] / s["forward_s"], 2),
            "forward_vjp_speed_ratio": round(c["forward_vjp_s"] / s["forward_vjp_s"], 2),
            "restore_speed_ratio": (
                round(c["restore_35_steps_s"] / s["restore_35_steps_s"], 2)
                if "restore_35_steps_s" in s and "restore_35_steps_s" in c
                else None
            ),
            "flop_ratio": flop_ratio,
        }


def side_by_side(
    spec: str,
    trees: Mapping[str, str],
    script: str,
    *,
    clip_length: int,
    batch: int,
    repeats: int,
    pairs: int,
    train: bool = False,
) -> Iterator[dict]:
    """Times `spec` in several checkouts, alternating whole processes; yields each run.

    Each process runs `script` (this tree's `experiments/network_timing.py`) with the
    checkout's folder first on PYTHONPATH, so it imports that checkout's `jaxrestore`. The
    last record gives each tree's speed-up over the first tree, from the best of `pairs`
    processes each. With `train`, each process times a training step on [batch, clip_length]
    clips instead (`network_timing.py --train`).

    Raises:
      ValueError: a timing process failed (its stderr's tail is in the message).
    """
    args = [spec, str(clip_length), str(batch), str(repeats)] + (["--train"] if train else [])
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(pairs):
        for name, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
            out = subprocess.run(
                [sys.executable, script, *args], env=env, capture_output=True, text=True
            )
            if out.returncode:
                raise ValueError(f"network_timing failed in {tree}: {out.stderr[-500:]}")
            run = json.loads(out.stdout.strip().splitlines()[-1])
            runs[name].append(run)
            yield {"tree": name, **run}
    keys = ("train_step_s",) if train else ("forward_s", "forward_vjp_s", "guided_evaluation_s")
    best = {name: {k: min(r[k] for r in rs) for k in keys} for name, rs in runs.items()}
    first, *others = trees
    for name in others:
        yield {
            "comparison": f"{first}:{name}",
            "model": spec,
            **{f"{k[:-2]}_speedup": round(best[first][k] / best[name][k], 2) for k in keys},
        }
