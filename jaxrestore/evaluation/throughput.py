"""Restoration throughput against batch size and device count (`evaluate --throughput`)."""

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrestore import degradations, edm, metrics, sample, sharding
from jaxrestore.evaluation import clips
from jaxrestore.evaluation.methods import ShardedRestorer
from jaxrestore.evaluation.tasks import TASKS


def throughput(
    denoiser: edm.Denoiser,
    config: sample.SamplerConfig,
    *,
    clip_length: int,
    sample_rate: int,
    batch_sizes: Sequence[int],
    device_counts: Sequence[int] | None = None,
    task: str = "declip10",
    repeats: int = 2,
) -> list[dict[str, Any]]:
    """Measures restoration throughput against batch size and device count.

    For each device count n (one process: the first n devices; several processes: all of
    them) and batch size B (rounded up to a multiple of n), restores B noise clips of RMS σ_d
    once to compile, then `repeats` times, and reports the median.

    Returns:
      One record per (n, B): devices, batch_size, clip_length, nfe, seconds_per_batch,
      clips_per_second, real_time_factor (compute seconds per second of audio, all devices
      together) and compile_seconds (the first call's extra time).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {task!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    spec = TASKS[task]
    if spec.kind == "declip":
        make_operator = degradations.Clip
    else:
        lowpass = clips.lowpass_operator(spec.value, sample_rate, "kaiser")
        make_operator = lambda _: lowpass  # noqa: E731
    sigma_data = sample.sigma_data(denoiser, config)
    counts = [jax.device_count()] if device_counts is None else list(device_counts)
    records = []
    for n in counts:
        mesh = sharding.data_mesh(n if jax.process_count() == 1 else None)
        restorer = ShardedRestorer(denoiser, config, mesh, make_operator)
        sizes = sorted({sharding.local_batch_size(b, mesh) for b in batch_sizes})
        for local in sizes:  # this process's rows of each global batch size
            rng = np.random.default_rng(jax.process_index())
            x0 = sigma_data * rng.standard_normal((local, clip_length), np.float32)
            c = np.full(local, sigma_data, np.float32)  # declipping: clipped at 1 σ_d
            y = np.clip(x0, -c[:, None], c[:, None])
            if spec.kind == "bwe":
                y = np.asarray(jax.vmap(lowpass.apply)(jnp.asarray(x0)))
            keys = np.stack([jax.random.key_data(jax.random.key(i)) for i in range(local)])
            rows = sharding.global_batch({"y": y, "c": c, "key": keys}, mesh)
            first, seconds = _time(
                functools.partial(restorer, rows["y"], rows["c"], rows["key"]), repeats
            )
            size = local * jax.process_count()
            records.append(
                {
                    "devices": mesh.size,
                    "batch_size": size,
                    "clip_length": clip_length,
                    "nfe": restorer.nfe,
                    "seconds_per_batch": seconds,
                    "clips_per_second": size / seconds,
                    "real_time_factor": metrics.real_time_factor(
                        seconds, size * clip_length, sample_rate
                    ),
                    "compile_seconds": max(first - seconds, 0.0),
                }
            )
    return records


def _time(call: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Returns the seconds of the first call and the median of `repeats` more."""
    start = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return first, float(np.median(times))
