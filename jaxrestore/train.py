"""Training the EDM denoiser (DESIGN §2): loss, optimiser, EMA, a pure train step, a resumable loop.

- Loss: EDM's preconditioned denoising loss (`edm.denoising_loss`, vmapped over the batch), or
  the same with the Wiener skip (`preconditioning="wiener"`: `edm.wiener_denoising_loss`, with
  the data's power spectrum measured at the start like σ_d and kept in the checkpoint), with σ
  drawn as CQT-Diff does (`u ~ U(0, 1)` through the ρ-warped schedule, ρ = 10, σ ∈ [1e-6, 10])
  or from EDM's log-normal.
- Optimiser: Adam after a gradient-norm clip at 1; the learning rate ramps up linearly over
  `warmup_steps`, then falls ×0.8 every 60k steps (CQT-Diff: lr 2e-4), counted from step 0, or
  (`lr_schedule="cosine"`, for runs of a known, short length) follows a half cosine from the
  peak after the warm-up down to `lr_final_ratio` of it at `num_steps`.
- EMA of the weights, kept in the train state: `ema ← β·ema + (1 − β)·θ` after each update.
  With `ema_warmup` the rate is `β_t = min(β, (1 + t)/(10 + t))` at step t, so a short run's EMA
  follows the weights instead of staying near the random initialisation (with β = 0.9999 the
  plain EMA needs ~10k steps to forget it); from t ≈ 90k on the two agree.
- `train_step(state, batch, key) -> (state, metrics)` is pure and jitted with its state donated;
  its randomness is `jax.random.fold_in(key, state.step)`, and batch `s` is a function of
  `(seed, s)` only (`batch_for_step`), so a run resumed from a checkpoint takes exactly the steps
  the uninterrupted run would have taken.
- `train(config, workdir)` resumes from the latest complete checkpoint in `workdir/checkpoints`,
  appends per-step metrics (step, loss, grad norm, lr, wall time) to `workdir/metrics.jsonl`
  (dropping the lines of steps the checkpoint does not cover), and logs a progress line with
  steps/s every `log_every` steps.
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import itertools
import json
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import struct

from jaxrestore import checkpoints, edm, priors, sharding
from jaxrestore.data import readers, synthetic

DATA_SOURCES = ("synthetic", "files")
SIGMA_DISTRIBUTIONS = ("cqtdiff", "lognormal")
PRECONDITIONINGS = ("edm", "wiener")
REVERB_CHOICES = ("mixed", "dry", "wet")
SYNTHETIC_MIXES = ("wide", "classic")  # synthetic.MIXES, without importing the generator
LR_SCHEDULES = ("step", "cosine")

_QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

_DATA_AXIS = sharding.AXIS

# Seed streams: training batches and the σ_d measurement draw disjoint clips.
_TRAIN_STREAM, _SIGMA_DATA_STREAM = 0, 1

# The measured spectrum's floor relative to its mean (−80 dB): a float32 FFT's round-off from
# the loud bands swamps bands far quieter than this anyway.
_SPECTRUM_FLOOR = 1e-8


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where training clips come from.

    Attributes:
      source: "synthetic" (the embedded procedural singer) or "files": the recordings under
        `data_dirs`, each folder's layout recognised by `readers.open_dataset` (NUS-48E, NHSS,
        MUSDB18-HQ, MUSDB18 stems, or a plain folder of audio files).
      data_dirs: dataset folders for "files"; each clip comes from one of them, picked
        uniformly (so NUS-48E + NHSS + MUSDB18 gives two dry clips for one wet).
      reverb: "mixed" (synthetic: half the clips wet), "dry" or "wet"; for "files" it says what
        a plain folder of audio holds ("mixed" is refused there: a folder cannot say).
      sample_rate: rate of the training audio in Hz.
      synthetic_mix: the synthetic clips: "wide" (sung, spoken and choir takes of many voice
        types, rooms and microphones) or "classic" (the first generator's sung phrases, clip
        for clip, to reproduce runs made before the generator was widened).
    """

    source: str = "synthetic"
    data_dirs: tuple[str, ...] = ()
    reverb: str = "mixed"
    sample_rate: int = 22050
    synthetic_mix: str = "wide"

    def __post_init__(self):
        if self.source not in DATA_SOURCES:
            raise ValueError(
                f"unknown data source {self.source!r}; expected one of {', '.join(DATA_SOURCES)}"
            )
        if self.source == "files" and not self.data_dirs:
            raise ValueError("data source 'files' needs at least one data folder (--data_dir)")
        for data_dir in self.data_dirs:
            if not Path(data_dir).is_dir():
                raise ValueError(f"data folder {data_dir} does not exist")
        if self.reverb not in REVERB_CHOICES:
            raise ValueError(
                f"reverb must be one of {', '.join(REVERB_CHOICES)}, got {self.reverb!r}"
            )
        if self.sample_rate < 1:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.synthetic_mix not in SYNTHETIC_MIXES:
            raise ValueError(
                f"synthetic_mix must be one of {', '.join(SYNTHETIC_MIXES)}, "
                f"got {self.synthetic_mix!r}"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on.

    Attributes:
      model_name: "sashimi" or "cqtdiff".
      model: the network's frozen config dataclass (`SaShiMiConfig` or `CQTDiffConfig`).
      data: where the clips come from.
      seed: seeds the initial weights, the data order and the training noise.
      batch_size: clips per step, B.
      clip_length: T, the length of a training clip in samples.
      num_steps: total number of training steps (a resumed run stops there too).
      learning_rate: peak Adam learning rate.
      warmup_steps: linear ramp-up of the learning rate (0 for none).
      lr_schedule: after the warm-up, "step" (×`lr_decay_rate` every `lr_decay_every` steps,
        as CQT-Diff) or "cosine" (a half cosine to `lr_final_ratio`·lr at `num_steps`; a
        resumed run with another `num_steps` changes its remaining schedule).
      lr_decay_every: steps between learning-rate decays ("step").
      lr_decay_rate: factor of each decay ("step").
      lr_final_ratio: the cosine's last learning rate, as a fraction of the peak.
      grad_clip_norm: global gradient norm clip.
      ema_decay: β of the weights' EMA.
      ema_warmup: use `min(β, (1 + t)/(10 + t))` at step t instead of β.
      sigma_data: the data scale σ_d; None to measure it on `sigma_data_clips` clips at the start
        (it is stored in the checkpoint, so a resumed run reuses it).
      sigma_data_clips: clips for that measurement.
      preconditioning: "edm" (c_skip, c_out, c_in from σ_d) or "wiener" (c_skip the Wiener
        filter of the data's power spectrum: `edm.precondition_wiener`).
      spectrum_frame: frame of the spectrum's Welch estimate (its resolution) for "wiener".
      spectrum_clips: clips for that estimate, measured at the start and kept in the checkpoint.
      sigma_distribution: training σ: "cqtdiff" (ρ-warped uniform) or "lognormal" (EDM).
      sigma_min, sigma_max, rho: the "cqtdiff" distribution's range and warp.
      p_mean, p_std: the "lognormal" distribution's `ln σ ~ N(p_mean, p_std²)`.
      checkpoint_every: steps between checkpoints (one is also saved at the end).
      keep_checkpoints: how many checkpoints to keep.
      log_every: steps between progress lines and metric writes (every step is logged).
      data_workers: processes that draw batches ahead of the device (1: one thread, enough
        on a CPU; an accelerator outruns one core's synthetic clips, ~23 ms each). The
        batches are the same for any number.
    """

    model_name: str
    model: Any
    data: DataConfig = DataConfig()
    seed: int = 0
    batch_size: int = 4
    clip_length: int = 16384
    num_steps: int = 100_000
    learning_rate: float = 2e-4
    warmup_steps: int = 1000
    lr_schedule: str = "step"
    lr_decay_every: int = 60_000
    lr_decay_rate: float = 0.8
    lr_final_ratio: float = 0.0
    grad_clip_norm: float = 1.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    sigma_data: float | None = None
    sigma_data_clips: int = 64
    preconditioning: str = "edm"
    spectrum_frame: int = 512
    spectrum_clips: int = 256
    sigma_distribution: str = "cqtdiff"
    sigma_min: float = 1e-6
    sigma_max: float = 10.0
    rho: float = 10.0
    p_mean: float = -1.2
    p_std: float = 1.2
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    data_workers: int = 1

    def __post_init__(self):
        if self.model_name not in checkpoints.MODEL_NAMES:
            raise ValueError(
                f"unknown model {self.model_name!r}; "
                f"expected one of {', '.join(checkpoints.MODEL_NAMES)}"
            )
        for name in ("batch_size", "clip_length", "num_steps", "lr_decay_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        names = (
            "checkpoint_every",
            "keep_checkpoints",
            "log_every",
            "sigma_data_clips",
            "data_workers",
        )
        for name in (*names, "spectrum_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.learning_rate > 0 or not 0 < self.lr_decay_rate <= 1:
            raise ValueError(
                f"need learning_rate > 0 and 0 < lr_decay_rate <= 1, got "
                f"{self.learning_rate}, {self.lr_decay_rate}"
            )
        if self.preconditioning not in PRECONDITIONINGS:
            raise ValueError(
                f"preconditioning must be one of {', '.join(PRECONDITIONINGS)}, "
                f"got {self.preconditioning!r}"
            )
        if self.spectrum_frame < 2 or self.spectrum_frame % 2:
            raise ValueError(f"spectrum_frame must be even and ≥ 2, got {self.spectrum_frame}")
        if self.preconditioning == "wiener" and self.spectrum_frame > self.clip_length:
            raise ValueError(
                f"spectrum_frame {self.spectrum_frame} is longer than the clips "
                f"({self.clip_length} samples)"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if not 0 <= self.lr_final_ratio <= 1:
            raise ValueError(f"lr_final_ratio must lie in [0, 1], got {self.lr_final_ratio}")
        if not self.grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm must be positive, got {self.grad_clip_norm}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.sigma_data is not None and not self.sigma_data > 0:
            raise ValueError(
                f"sigma_data must be positive or None (measure), got {self.sigma_data}"
            )
        if self.sigma_distribution not in SIGMA_DISTRIBUTIONS:
            raise ValueError(
                f"sigma_distribution must be one of {', '.join(SIGMA_DISTRIBUTIONS)}, "
                f"got {self.sigma_distribution!r}"
            )
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}"
            )

    def to_json(self) -> dict[str, Any]:
        """Returns the config as a JSON-ready dict (the model config as its fields)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["model"] = checkpoints.config_to_json(self.model)
        fields["data"] = dataclasses.asdict(self.data)
        return fields


class Source(Protocol):
    """A dataset of clips: `segment(seed, num_samples)` returns one clip [T] that `seed` picks."""

    def segment(self, seed: int, num_samples: int) -> np.ndarray: ...


class Mixture:
    """Several datasets as one: each clip's seed picks a dataset uniformly, then a segment of it."""

    def __init__(self, datasets: list[Source]):
        if not datasets:
            raise ValueError("a Mixture needs at least one dataset")
        self.datasets = list(datasets)

    def segment(self, seed: int, num_samples: int) -> np.ndarray:
        """Returns the clip [num_samples] that `seed` picks."""
        choice, inner = np.random.SeedSequence(seed).generate_state(2)
        dataset = self.datasets[int(choice) % len(self.datasets)]
        return dataset.segment(int(inner), num_samples)


def data_source(config: DataConfig) -> Source:
    """Opens the training split of the data a `DataConfig` names."""
    wet = {"mixed": None, "dry": False, "wet": True}[config.reverb]
    if config.source == "synthetic":
        return synthetic.SyntheticVocals(
            wet=wet, sample_rate=config.sample_rate, mix=config.synthetic_mix
        )
    datasets = []
    for data_dir in config.data_dirs:
        dataset = readers.open_dataset(data_dir, wet, config.sample_rate).split("train")
        if not len(dataset):
            raise ValueError(f"{data_dir}: no recordings in the train split")
        logging.info("data: %s (%d training files)", dataset, len(dataset))
        datasets.append(dataset)
    return datasets[0] if len(datasets) == 1 else Mixture(datasets)


def example_seed(seed: int, stream: int, step: int, index: int) -> int:
    """Returns the data seed of clip `index` of batch `step`: a hash of (seed, stream, step, index).

    Each clip depends on its own coordinates only, so batch s is the same whatever the batch
    size of the steps before it or the process that draws it.
    """
    return int(np.random.SeedSequence([seed, stream, step, index]).generate_state(1)[0])


def batch_for_step(
    source: Source,
    seed: int,
    step: int,
    batch_size: int,
    num_samples: int,
    rows: range | None = None,
) -> np.ndarray:
    """Returns the batch of step `step`, float32 [B, T]: a function of (seed, step) only.

    With `rows`, only those clips of the global batch, [len(rows), T]: each process of a
    multi-process run draws its own rows, which equal the same rows of the whole batch.
    """
    rows = range(batch_size) if rows is None else rows
    if rows and not 0 <= min(rows) <= max(rows) < batch_size:
        raise ValueError(f"rows {rows} lie outside a batch of {batch_size}")
    clips = [
        np.asarray(source.segment(example_seed(seed, _TRAIN_STREAM, step, i), num_samples))
        for i in rows
    ]
    for clip in clips:
        if clip.shape != (num_samples,):
            raise ValueError(f"source gave a clip of shape {clip.shape}, expected ({num_samples},)")
    return np.stack(clips).astype(np.float32)


def draw_batches(
    source: Source,
    seed: int,
    steps: range,
    batch_size: int,
    num_samples: int,
    rows: range | None = None,
    workers: int = 1,
) -> Iterator[np.ndarray]:
    """Yields `batch_for_step` of each step in `steps`, drawn ahead while the caller uses the last.

    One thread draws batch s + 1 during step s; with `workers` > 1, that many processes
    (spawned: a forked JAX process can deadlock) keep 2·workers batches in flight. Close the
    generator (or exhaust it) to stop them.
    """
    if workers == 1:
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        draw = functools.partial(batch_for_step, source)
        depth = 1
    else:
        executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_data_worker,
            initargs=(source,),
        )
        draw = _worker_batch
        depth = 2 * workers
    try:
        ahead = iter(steps)
        queue = collections.deque(
            executor.submit(draw, seed, step, batch_size, num_samples, rows)
            for step in itertools.islice(ahead, depth)
        )
        while queue:
            batch = queue.popleft().result()
            for step in itertools.islice(ahead, 1):
                queue.append(executor.submit(draw, seed, step, batch_size, num_samples, rows))
            yield batch
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


_worker_source: Source | None = None  # a data worker's own source (`draw_batches`)


def _start_data_worker(source: Source) -> None:
    global _worker_source
    jax.config.update("jax_platforms", "cpu")  # the clips are numpy; leave the device alone
    _worker_source = source
    # A killed training process cannot stop its workers: each leaves when its parent is gone.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_after, args=(parent,), daemon=True).start()


def _exit_after(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(0)


def _worker_batch(
    seed: int, step: int, batch_size: int, num_samples: int, rows: range | None
) -> np.ndarray:
    return batch_for_step(_worker_source, seed, step, batch_size, num_samples, rows)


def measure_sigma_data(source: Source, seed: int, num_clips: int, num_samples: int) -> float:
    """Returns σ_d, the RMS over `num_clips` clips (disjoint from the training batches' seeds)."""
    total = 0.0
    for i in range(num_clips):
        clip = np.asarray(source.segment(example_seed(seed, _SIGMA_DATA_STREAM, 0, i), num_samples))
        total += float(np.sum(np.square(clip, dtype=np.float64)))
    sigma_data = math.sqrt(total / (num_clips * num_samples))
    if not sigma_data > 0:
        raise ValueError(f"the data is silent: σ_d = 0 over {num_clips} clips")
    return sigma_data


def measure_spectrum(
    source: Source, seed: int, num_clips: int, num_samples: int, frame: int
) -> np.ndarray:
    """Returns the data's power spectrum at the rfft bins of `frame`, [frame/2 + 1].

    Welch's estimate (`priors.welch_power`) over `num_clips` clips of the σ_d measurement's
    stream (disjoint from the training batches), floored at `_SPECTRUM_FLOOR` times its mean.
    """
    clips = np.stack(
        [
            np.asarray(source.segment(example_seed(seed, _SIGMA_DATA_STREAM, 0, i), num_samples))
            for i in range(num_clips)
        ]
    )
    power = priors.welch_power(clips, frame)
    if not np.mean(power) > 0:
        raise ValueError(f"the data is silent: zero power over {num_clips} clips")
    return np.maximum(power, _SPECTRUM_FLOOR * np.mean(power))


def learning_rate(step: jax.typing.ArrayLike, config: TrainConfig) -> jax.Array:
    """Returns the learning rate of update `step` (0-based).

    "step": `lr·min(1, (step + 1)/warmup_steps)·rate^⌊step/decay_every⌋`: the first update
    already gets lr/warmup_steps (not 0), and the decays count from step 0 as in CQT-Diff.
    "cosine": the same warm-up times `r + (1 − r)·½(1 + cos(π·p))`, with `r = lr_final_ratio`
    and p the fraction of the steps after the warm-up that are done (clamped to [0, 1]).
    """
    step = jnp.asarray(step, jnp.float32)
    warmup = jnp.minimum(1.0, (step + 1.0) / max(config.warmup_steps, 1))
    if config.lr_schedule == "cosine":
        span = max(config.num_steps - config.warmup_steps, 1)
        done = jnp.clip((step - config.warmup_steps) / span, 0.0, 1.0)
        r = config.lr_final_ratio
        decay = r + (1.0 - r) * 0.5 * (1.0 + jnp.cos(jnp.pi * done))
    else:
        decay = config.lr_decay_rate ** jnp.floor(step / config.lr_decay_every)
    return config.learning_rate * warmup * decay


def ema_rate(step: jax.typing.ArrayLike, config: TrainConfig) -> jax.Array:
    """Returns β_t, the EMA rate of update `step`: β, or `min(β, (1+t)/(10+t))` with warm-up."""
    step = jnp.asarray(step, jnp.float32)
    if config.ema_warmup:
        return jnp.minimum(config.ema_decay, (1.0 + step) / (10.0 + step))
    return jnp.asarray(config.ema_decay, jnp.float32)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Returns the optimiser: clip the global gradient norm, then Adam on `learning_rate`."""
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip_norm),
        optax.adam(lambda count: learning_rate(count, config)),
    )


@struct.dataclass
class TrainState:
    """The training state: a pytree, so the train step is a pure function of it.

    Attributes:
      step: number of updates done (int32 scalar).
      params: the network weights θ.
      ema_params: the EMA of θ (sample with these).
      opt_state: the optimiser state.
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any


def init_state(
    model: nn.Module, optimizer: optax.GradientTransformation, key: jax.Array, num_samples: int
) -> TrainState:
    """Returns the state before the first update: fresh weights, EMA equal to them."""
    x = jnp.zeros((1, num_samples), jnp.float32)  # [1, T]
    c_noise = jnp.zeros((1,), jnp.float32)  # [1]
    params = model.init(key, x, c_noise)["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        ema_params=jax.tree.map(jnp.copy, params),
        opt_state=optimizer.init(params),
    )


def sample_sigma(key: jax.Array, batch_size: int, config: TrainConfig) -> jax.Array:
    """Draws the training noise levels σ, [B]."""
    if config.sigma_distribution == "cqtdiff":
        return edm.sample_training_sigma_cqtdiff(
            key, (batch_size,), config.sigma_min, config.sigma_max, config.rho
        )
    return edm.sample_training_sigma_lognormal(key, (batch_size,), config.p_mean, config.p_std)


def batch_loss(
    model: nn.Module,
    params: Any,
    x0: jax.Array,
    sigma: jax.Array,
    noise: jax.Array,
    sigma_data: float,
    spectrum: jax.Array | None = None,
) -> jax.Array:
    """Returns the batch mean of EDM's per-example loss (with the Wiener skip given a `spectrum`).

    Args:
      model: the raw network, `model.apply(variables, x [B, T], c_noise [B]) -> [B, T]`.
      params: its weights.
      x0: clean clips, [B, T].
      sigma: noise levels, [B].
      noise: unit Gaussian noise, [B, T].
      sigma_data: the data scale σ_d.
      spectrum: the data's power spectrum [F] for the Wiener skip, else None.
    """

    def network(x: jax.Array, c_noise: jax.Array) -> jax.Array:  # one clip: [T], scalar
        return model.apply({"params": params}, x[None], c_noise[None])[0]

    if spectrum is None:
        loss = edm.denoising_loss
    else:
        loss = functools.partial(edm.wiener_denoising_loss, spectrum=spectrum)
    per_example = jax.vmap(loss, in_axes=(None, 0, 0, 0, None))(
        network, x0, sigma, noise, sigma_data
    )  # [B]
    return jnp.mean(per_example)


def make_train_step(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    config: TrainConfig,
    sigma_data: float,
    spectrum: jax.Array | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """Returns the jitted `train_step(state, batch, key) -> (state, metrics)` (state donated).

    `batch` is [B, T]; `key` is the run's training key, folded with `state.step`, so step s
    draws the same σ and noise whenever it runs. Metrics: "loss", "grad_norm" (before the clip)
    and "lr" (the rate this update used).

    With a `mesh` (a `'data'` axis, `sharding.data_mesh`) the step is data-parallel: the batch
    is split over the devices, the state replicated, and each device runs its own program on
    its rows (`jax.shard_map`; under plain `jax.jit` XLA would gather the whole batch onto
    every device before each FFT of the network). Each device takes its rows of the same σ and
    noise as one device would draw, and the per-device losses and gradients are averaged
    (`lax.pmean`, equal shares), so the update is that of one device with the same global
    batch, to float32 round-off. B must be a multiple of the mesh size (`check_batch_size`).
    """

    def loss_and_grads(params, batch, key, step):  # batch: this device's rows [b, T]
        sigma_key, noise_key = jax.random.split(jax.random.fold_in(key, step))
        rows, length = batch.shape
        # The global batch's draws, as one device makes them; this device keeps its rows.
        size = rows if mesh is None else rows * mesh.size
        start = 0 if mesh is None else jax.lax.axis_index(_DATA_AXIS) * rows
        sigma = sample_sigma(sigma_key, size, config)  # [B]
        noise = jax.random.normal(noise_key, (size, length), batch.dtype)  # [B, T]
        sigma = jax.lax.dynamic_slice_in_dim(sigma, start, rows)  # [b]
        noise = jax.lax.dynamic_slice_in_dim(noise, start, rows)  # [b, T]
        loss, grads = jax.value_and_grad(
            lambda params: batch_loss(model, params, batch, sigma, noise, sigma_data, spectrum)
        )(params)
        if mesh is not None:  # the mean over the global batch: every share is b clips
            loss, grads = jax.lax.pmean((loss, grads), _DATA_AXIS)
        return loss, grads

    def train_step(
        state: TrainState, batch: jax.Array, key: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        loss, grads = loss_and_grads(state.params, batch, key, state.step)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        beta = ema_rate(state.step, config)
        ema_params = jax.tree.map(
            lambda e, p: beta * e + (1.0 - beta) * p, state.ema_params, params
        )
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": learning_rate(state.step, config),
        }
        new_state = TrainState(
            step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state
        )
        return new_state, metrics

    if mesh is None:
        return jax.jit(train_step, donate_argnums=0)
    replicated, rows = jax.sharding.PartitionSpec(), jax.sharding.PartitionSpec(_DATA_AXIS)
    # check_vma=False: the network's loops start their carries from constants, which the
    # varying-axes check rejects inside shard_map; the pmean above makes the outputs equal.
    per_device = jax.shard_map(
        train_step,
        mesh=mesh,
        in_specs=(replicated, rows, replicated),
        out_specs=(replicated, replicated),
        check_vma=False,
    )
    return jax.jit(per_device, donate_argnums=0)


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh) -> None:
    """Raises ValueError unless `batch_size` splits evenly over the mesh's devices."""
    if batch_size % mesh.size:
        multiple = -(-batch_size // mesh.size) * mesh.size
        raise ValueError(
            f"batch_size {batch_size} does not divide over {mesh.size} devices: use a multiple "
            f"of {mesh.size} (e.g. --config.batch_size={multiple}) or fewer devices"
        )


class MetricsLog:
    """The JSON-lines log of per-step metrics, kept consistent with the checkpoint it resumes.

    On opening, lines of steps at or after `resume_step` (written by a run that was killed
    after its last checkpoint) and any torn last line are dropped, so the log holds each step
    once, as the uninterrupted run would have written it.
    """

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        kept = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # torn by a kill mid-write
                if isinstance(record, dict) and record.get("step", math.inf) < resume_step:
                    kept.append(line)
        temporary = path.with_suffix(".tmp")
        temporary.write_text("".join(line + "\n" for line in kept))
        os.replace(temporary, path)

    def write(self, records: list[dict[str, Any]]) -> None:
        """Appends records, one JSON object per line, and flushes them to disk."""
        with self.path.open("a") as f:
            f.write("".join(json.dumps(record) + "\n" for record in records))
            f.flush()
            os.fsync(f.fileno())


class WorkdirError(ValueError):
    """The work dir holds a run that this config cannot resume."""


def train(
    config: TrainConfig,
    workdir: str | os.PathLike,
    source: Source | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> TrainState:
    """Trains the denoiser, resuming from the latest complete checkpoint in `workdir/checkpoints`.

    Data-parallel over `mesh` (`make_train_step`). With several processes (after
    `sharding.initialize_distributed`) every process calls this with the same arguments:
    each draws only its own rows of each batch, all of them take part in the checkpoints
    (Orbax writes them once), and process 0 alone writes `metrics.jsonl`.

    Args:
      config: the run's configuration.
      workdir: folder for `checkpoints/` and `metrics.jsonl`; created if needed (shared by
        every process of a multi-process run).
      source: the clips; by default `data_source(config.data)`.
      mesh: the `'data'` mesh; by default every device of every process.

    Returns:
      The final train state (after `config.num_steps` steps).

    Raises:
      ValueError: the batch does not divide over the mesh's devices.
    """
    mesh = sharding.data_mesh() if mesh is None else mesh
    check_batch_size(config.batch_size, mesh)
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    source = data_source(config.data) if source is None else source
    model = checkpoints.build_model(config.model_name, config.model)
    optimizer = make_optimizer(config)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    state_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    local_rows = sharding.process_rows(config.batch_size, mesh)
    writer = jax.process_index() == 0  # one metrics log, however many processes

    manager = checkpoints.open_manager(workdir / "checkpoints", config.keep_checkpoints)
    try:
        latest = manager.latest_step()
        if latest is None:
            sigma_data = config.sigma_data
            if sigma_data is None:
                sigma_data = measure_sigma_data(
                    source, config.seed, config.sigma_data_clips, config.clip_length
                )
                logging.info("measured σ_d = %.5f on %d clips", sigma_data, config.sigma_data_clips)
            spectrum = None
            if config.preconditioning == "wiener":
                spectrum = measure_spectrum(
                    source,
                    config.seed,
                    config.spectrum_clips,
                    config.clip_length,
                    config.spectrum_frame,
                ).tolist()
                logging.info("measured the data's spectrum on %d clips", config.spectrum_clips)
            init = jax.jit(
                lambda key: init_state(model, optimizer, key, config.clip_length),
                out_shardings=state_sharding,
            )
            # Initialisation runs once: compiled unoptimised it compiles ~3× faster (the
            # threefry draws of ~100 weight tensors dominate) and still runs in milliseconds.
            state = init.lower(init_key).compile(compiler_options=_QUICK_COMPILE)(init_key)
        else:
            saved = checkpoints.read_metadata(manager, latest)
            if saved["model_name"] != config.model_name or not checkpoints.same_architecture(
                config.model_name, saved["model_config"], checkpoints.config_to_json(config.model)
            ):
                raise WorkdirError(
                    f"the checkpoint in {workdir} is of another model "
                    f"({saved['model_name']} {saved['model_config']}); use a fresh workdir"
                )
            spectrum = saved.get("spectrum")
            if (spectrum is not None) != (config.preconditioning == "wiener"):
                raise WorkdirError(
                    f"the checkpoint in {workdir} was trained with "
                    f"{'wiener' if spectrum is not None else 'edm'} preconditioning, the config "
                    f"asks for {config.preconditioning}; use a fresh workdir"
                )
            sigma_data = float(saved["sigma_data"])  # keep the σ_d the run started with
            if config.sigma_data is not None and config.sigma_data != sigma_data:
                logging.warning(
                    "config σ_d %g ignored: the run resumes with its own σ_d %g",
                    config.sigma_data,
                    sigma_data,
                )
            abstract = jax.eval_shape(
                lambda: init_state(model, optimizer, init_key, config.clip_length)
            )
            abstract = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=state_sharding), abstract
            )
            rest, ema_params = checkpoints.restore(
                manager, latest, _without_ema(abstract), abstract.ema_params
            )
            state = TrainState(ema_params=ema_params, **rest)
            logging.info("resumed from the checkpoint of step %d in %s", latest, workdir)

        metadata = {
            "model_name": config.model_name,
            "model_config": checkpoints.config_to_json(config.model),
            "sigma_data": sigma_data,
            "sample_rate": config.data.sample_rate,
            "train_config": config.to_json(),
            "spectrum": spectrum,
        }
        start = int(state.step)
        log = MetricsLog(workdir / "metrics.jsonl", resume_step=start) if writer else None
        train_step = make_train_step(
            model,
            optimizer,
            config,
            sigma_data,
            None if spectrum is None else jnp.asarray(spectrum, jnp.float32),
            mesh,
        )
        pending: list[tuple[int, dict[str, jax.Array]]] = []
        tick, tick_step = time.perf_counter(), start

        # This process's rows only, drawn ahead of the device.
        batches = contextlib.closing(
            draw_batches(
                source,
                config.seed,
                range(start, config.num_steps),
                config.batch_size,
                config.clip_length,
                local_rows,
                config.data_workers,
            )
        )
        with batches as stream:
            for step, batch in zip(range(start, config.num_steps), stream, strict=True):
                state, metrics = train_step(state, sharding.global_batch(batch, mesh), train_key)
                if writer:
                    pending.append((step, metrics))
                done = step + 1
                if writer and (
                    done % config.log_every == 0
                    or done % config.checkpoint_every == 0
                    or (done == config.num_steps)
                ):
                    # Fetching the metrics waits for the device; do it only every few steps.
                    records = [
                        {"step": s, **{k: float(v) for k, v in jax.device_get(m).items()}}
                        for s, m in pending
                    ]
                    now = time.time()
                    log.write([{**record, "time": now} for record in records])
                    pending.clear()
                    elapsed = time.perf_counter() - tick
                    logging.info(
                        "step %d/%d  loss %.4f  grad norm %.3f  lr %.2e  %.2f steps/s",
                        done,
                        config.num_steps,
                        records[-1]["loss"],
                        records[-1]["grad_norm"],
                        records[-1]["lr"],
                        (done - tick_step) / max(elapsed, 1e-9),
                    )
                    tick, tick_step = time.perf_counter(), done
                if done % config.checkpoint_every == 0 or done == config.num_steps:
                    checkpoints.save(manager, done, _without_ema(state), state.ema_params, metadata)
        manager.wait_until_finished()
    finally:
        manager.close()
    return state


def _without_ema(state: TrainState) -> dict[str, Any]:
    """Returns the state's fields other than the EMA (saved as its own checkpoint item)."""
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}
