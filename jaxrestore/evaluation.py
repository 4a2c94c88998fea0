"""Batch evaluation of the restoration methods: the poster's Tables 1 and 2.

Every method (the degraded input itself, the sampler presets of `jaxrestore.sample.PRESETS`,
A-SPADE and S-SPADE for declipping) restores held-out clips of every set (dry, wet) for every
task (declipping to an input SDR of 5 or 10 dB, bandwidth extension from 3 or 5 kHz), and is
scored per clip by SI-SDR and LSD, per set by FAD (with VGGish weights) and by the weight-free
"FMD (log-mel)", never reported as FAD. `evaluate` writes `table1.md`, `table2.md` and
`results.json` (per task, set and method: mean, 95 % interval and n of each clip metric, the
set distances, NFE and wall time per clip).

How it runs:
- Clip i of a set is the held-out data seed `HELD_OUT_SEED + i` (of the test split, which
  training never draws); its random key is `fold_in(fold_in(key(seed), clip_seed), set)`, so
  a clip's result does not depend on its batch, the device count or the process count.
- Batches are sharded over a `'data'` mesh of all devices (`jaxrestore.sharding`), each
  device restoring its own clips; with several processes each handles the clips i with
  i % process_count == process_index, the global batch is joined from every process's rows,
  and the last batch is padded and masked.
- Each finished clip's record is appended at once to `metrics.<process>.jsonl` (flushed and
  fsynced, its embeddings written beside it first); a restarted evaluation skips the clips
  already recorded and drops a torn last line. Process 0 merges the files at the end, so the
  work dir must be shared by the processes (as for checkpoints).
- The prior works at one loudness: each observation is scaled to RMS σ_d before sampling and
  the restoration scaled back (as `restoration.restore_recording` does); metrics are taken at
  the clip's own level.
"""

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import PartitionSpec as P

from jaxrestore import degradations, edm, metrics, restoration, sample, sharding

HELD_OUT_SEED = 10_000_000
# Seeds tried for a clip that falls in a rest: HELD_OUT_SEED + i + attempt·_RETRY_STRIDE.
_RETRY_STRIDE = 1_000_000
_ATTEMPTS = 8

SETS = ("dry", "wet")
DEGRADED = "degraded"
CLASSICAL = ("aspade", "sspade")
METHOD_LABELS = {
    "rg": "RG",
    "rg+dc": "RG + DC",
    "rg_drho+dc": "RG δρ + DC",
    "pigdm+dc": "PIGDM + DC",
    "rg_drho+dc+rp": "RG δρ + DC + RP",
    "aspade": "A-SPADE",
    "sspade": "S-SPADE",
}
DATA_SOURCES = ("synthetic", "files")
CLIP_METRICS = ("si_sdr", "lsd")
SET_METRICS = ("fad", "fmd")


@dataclasses.dataclass(frozen=True)
class Task:
    """A degradation of the tables: declipping to an input SDR or a low-pass at a cutoff.

    Attributes:
      name: its key in `TASKS`.
      kind: "declip" or "bwe".
      value: the input SDR in dB (declip) or the cutoff in Hz (bwe).
      label: the table's column-group heading.
    """

    name: str
    kind: str
    value: float
    label: str


TASKS = {
    "declip5": Task("declip5", "declip", 5.0, "SDR = 5 dB"),
    "declip10": Task("declip10", "declip", 10.0, "SDR = 10 dB"),
    "bwe3k": Task("bwe3k", "bwe", 3000.0, "fc = 3 kHz"),
    "bwe5k": Task("bwe5k", "bwe", 5000.0, "fc = 5 kHz"),
}
DEFAULT_METHODS = (DEGRADED, *sample.PRESETS, *CLASSICAL)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    Attributes:
      tasks: names from `TASKS`.
      methods: "degraded" (the observation itself: the Clipped / LPF rows), names from
        `sample.PRESETS`, "aspade", "sspade" (declipping only; skipped for BWE).
      sets: "dry" and/or "wet".
      clips_per_set: held-out clips per set.
      num_samples: clip length T in samples.
      steps: overrides the presets' number of sampler steps (None keeps theirs).
      batch_size: clips per compiled call over all devices (rounded up to a multiple of the
        device count).
      seed: the root of every clip's random key.
      sample_rate: the prior's rate, which the data is read at.
      data: "synthetic" (the procedural singer, held-out seeds) or "files" (`data_dirs`).
      data_dirs: dataset folders; each one's layout (`readers.open_dataset`) says whether it
        is dry (NUS-48E, NHSS) or wet (MUSDB18); their test splits are used.
      reverb: what a plain folder of audio holds, "dry" or "wet" ("" when none is given).
      lowpass_design: the BWE filter, "kaiser" or "cqtdiff" (`degradations.lowpass`).
      fad: compute FAD when VGGish weights are found (`vggish_weights` or $VGGISH_WEIGHTS).
      fmd: compute the weight-free FMD (log-mel).
      vggish_weights: path to VGGish weights; None reads $VGGISH_WEIGHTS.
      min_rms: a clip quieter than this (it fell in a rest) is drawn again from the next seed.
      prior: the prior's name, recorded with the results (the caller loads the prior).
    """

    tasks: tuple[str, ...] = tuple(TASKS)
    methods: tuple[str, ...] = DEFAULT_METHODS
    sets: tuple[str, ...] = SETS
    clips_per_set: int = 50
    num_samples: int = 65536
    steps: int | None = None
    batch_size: int = 8
    seed: int = 0
    sample_rate: int = 22050
    data: str = "synthetic"
    data_dirs: tuple[str, ...] = ()
    reverb: str = ""
    lowpass_design: str = "kaiser"
    fad: bool = True
    fmd: bool = True
    vggish_weights: str | None = None
    min_rms: float = 0.01
    prior: str = "pretrained"

    def __post_init__(self):
        for name in ("tasks", "methods", "sets", "data_dirs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(
                f"tasks must be a non-empty subset of {tuple(TASKS)}, got {self.tasks}"
            )
        known = (DEGRADED, *sample.PRESETS, *CLASSICAL)
        unknown = [m for m in self.methods if m not in known]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {known}, got {self.methods}")
        if not self.sets or any(s not in SETS for s in self.sets):
            raise ValueError(f"sets must be a non-empty subset of {SETS}, got {self.sets}")
        if self.clips_per_set < 1:
            raise ValueError(f"clips_per_set must be at least 1, got {self.clips_per_set}")
        n_fft, _ = metrics.lsd_frame_parameters(self.sample_rate)
        if self.num_samples <= n_fft // 2:
            raise ValueError(
                f"num_samples must exceed {n_fft // 2} (half the LSD's FFT at "
                f"{self.sample_rate} Hz), got {self.num_samples}"
            )
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be a positive integer or None, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.data not in DATA_SOURCES:
            raise ValueError(f"data must be one of {DATA_SOURCES}, got {self.data!r}")
        if self.data == "files" and not self.data_dirs:
            raise ValueError("data 'files' needs at least one dataset folder (--data_dir)")
        if self.reverb not in ("", "dry", "wet"):
            raise ValueError(f"reverb must be '', 'dry' or 'wet', got {self.reverb!r}")
        for task in self.tasks:
            if TASKS[task].kind == "bwe" and not TASKS[task].value < self.sample_rate / 2:
                raise ValueError(
                    f"task {task} needs a sample rate above {2 * TASKS[task].value} Hz"
                )

    def methods_for(self, task: str) -> tuple[str, ...]:
        """Returns the methods run on `task`: SPADE only declips."""
        declip = TASKS[task].kind == "declip"
        return tuple(m for m in self.methods if declip or m not in CLASSICAL)

    def sampler_config(self, method: str, sigma_data: float) -> sample.SamplerConfig:
        """Returns the preset `method` with the prior's σ_d and the steps override."""
        preset = sample.PRESETS[method]
        return dataclasses.replace(preset, sigma_data=sigma_data, steps=self.steps or preset.steps)

    def identity(self) -> dict[str, Any]:
        """Returns the fields that decide the results (not batch size, devices or VGGish)."""
        fields = dataclasses.asdict(self)
        for name in ("batch_size", "fad", "fmd", "vggish_weights"):
            fields.pop(name)
        return json.loads(json.dumps(fields))  # tuples as lists, as read back from JSON


def method_label(method: str, task: str) -> str:
    """Returns the table's row name of `method` ("Clipped" / "LPF" for the degraded input)."""
    if method == DEGRADED:
        return "Clipped" if TASKS[task].kind == "declip" else "LPF"
    return METHOD_LABELS.get(method, method)


def gaussian_prior(
    num_samples: int, sigma_data: float = 0.1, sample_rate: int = 22050
) -> restoration.Prior:
    """Returns the closed-form prior of the tests: the exact Wiener denoiser of a pink Gaussian.

    `priors.pink(T, σ_d²)` needs no training and no weights; clips must be `num_samples` long.
    """
    from jaxrestore import priors  # Only this prior needs it.

    return restoration.Prior(
        priors.pink(num_samples, sigma_data**2).denoiser, sample_rate, sigma_data, 1
    )


def wiener_prior(
    num_samples: int,
    sigma_data: float = 0.23,
    sample_rate: int = 22050,
    num_clips: int = 64,
    frame: int = 512,
) -> restoration.Prior:
    """Returns the best prior that knows no structure: a stationary Gaussian fitted to the data.

    Its power spectrum is Welch's estimate (Hann frames of `frame` samples, hop frame/2) over
    `num_clips` clips of the synthetic voice's training split (half dry, half wet), each scaled
    to RMS `sigma_data` as restorations see clips, interpolated to the clip's DFT bins. Many
    clips (many notes) and short frames average out the partials of particular notes: a
    spectrum of a few notes is a comb that filters away the partials of every other note
    (with 8 clips the filter is worse than none). Its exact denoiser is the Wiener filter. A
    learned prior is only worth its training where it beats this one. Clips must be
    `num_samples` long.
    """
    from jaxrestore import priors  # Only these priors need it.
    from jaxrestore.data import synthetic

    length = max(num_samples, 4 * frame)
    clips = []
    for wet in (False, True):
        data = synthetic.SyntheticVocals(wet=wet, sample_rate=sample_rate).split("train")
        clips += [data.segment(i, length) for i in range(num_clips // 2)]
    x = np.stack(clips)
    x = x * sigma_data / np.sqrt(np.mean(x**2, axis=-1, keepdims=True))
    welch = priors.welch_power(x, frame)
    power = np.interp(np.fft.rfftfreq(num_samples), np.fft.rfftfreq(frame), welch)
    return restoration.Prior(
        priors.StationaryGaussian(jnp.asarray(power, jnp.float32)).denoiser,
        sample_rate,
        sigma_data,
        1,
    )


# ---------------------------------------------------------------------------------------------
# Held-out data.


def open_sets(config: EvalConfig) -> dict[str, Any]:
    """Returns a dataset per set name, each with `segment(seed, num_samples) -> [T]`.

    Synthetic: the generator's test split (seeds training never draws), dry and wet; the
    dry and the wet clip of one seed hold the same performance. Files: the test split of
    each folder, grouped by the wetness its layout reports; a set with no folder is left out.
    """
    if config.data == "synthetic":
        from jaxrestore.data import synthetic

        return {
            name: synthetic.SyntheticVocals(
                wet=name == "wet", sample_rate=config.sample_rate, split_name="test"
            )
            for name in config.sets
        }
    from jaxrestore.data import readers

    groups: dict[str, list] = {name: [] for name in config.sets}
    for folder in config.data_dirs:
        wet = {"": None, "dry": False, "wet": True}[config.reverb]
        dataset = readers.open_dataset(folder, wet, config.sample_rate).split("test")
        if not len(dataset):
            raise ValueError(f"{folder}: no recordings in the test split")
        name = "wet" if dataset.files[0].wet else "dry"
        if name in groups:
            groups[name].append(dataset)
    if not any(groups.values()):
        raise ValueError(f"no dataset folder holds a set among {config.sets}")
    out = {}
    for name, datasets in groups.items():
        if len(datasets) == 1:
            out[name] = datasets[0]
        elif datasets:
            from jaxrestore import train  # Its Mixture picks one dataset per seed.

            out[name] = train.Mixture(datasets)
    return out


def clip_seeds(index: int) -> list[int]:
    """Returns the data seeds tried, in order, for held-out clip `index`."""
    return [HELD_OUT_SEED + index + a * _RETRY_STRIDE for a in range(_ATTEMPTS)]


def load_clip(dataset: Any, index: int, num_samples: int, min_rms: float) -> tuple[int, np.ndarray]:
    """Returns (seed, clip [T]) of held-out clip `index`: the first seed whose clip is not quiet.

    Falls back to the loudest of the attempts when all are quieter than `min_rms`.
    """
    best = None
    for seed in clip_seeds(index):
        x = np.asarray(dataset.segment(seed, num_samples), np.float32)
        if x.shape != (num_samples,):
            raise ValueError(
                f"the dataset gave a clip of shape {x.shape}, expected ({num_samples},)"
            )
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        if rms >= min_rms:
            return seed, x
        if best is None or rms > best[0]:
            best = (rms, seed, x)
    if best[0] <= 0:
        raise ValueError(f"held-out clip {index} is silent in all {_ATTEMPTS} attempts")
    return best[1], best[2]


def clip_key(seed: int, clip_seed: int, set_name: str) -> jax.Array:
    """Returns the random key of a clip: `fold_in(fold_in(key(seed), clip_seed), set)`."""
    key = jax.random.fold_in(jax.random.key(seed), clip_seed % 2**31)
    return jax.random.fold_in(key, SETS.index(set_name))


@dataclasses.dataclass(frozen=True)
class Observation:
    """A clean clip and its degradation for one task, at the clip's own level.

    Attributes:
      x0: the clean clip [T].
      y: the observation A(x0) [T].
      threshold: the clipping level c (0 for BWE).
      gain: σ_d / RMS(y), the scale the prior sees the clip at.
    """

    x0: np.ndarray
    y: np.ndarray
    threshold: float
    gain: float


def observe(
    x0: np.ndarray, task: Task, sample_rate: int, sigma_data: float, design: str
) -> Observation:
    """Degrades a clean clip for `task`: clipping at the input SDR, or the low-pass."""
    if task.kind == "declip":
        c, y = _clip_to_sdr(jnp.asarray(x0), task.value)
        c = float(c)
    else:
        c, y = 0.0, _apply(_lowpass(task.value, sample_rate, design), jnp.asarray(x0))
    y = np.asarray(y)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    return Observation(x0, y.astype(np.float32), c, sigma_data / max(rms, 1e-8))


@jax.jit
def _clip_to_sdr(x0: jax.Array, sdr_db: jax.Array) -> tuple[jax.Array, jax.Array]:
    c = degradations.clip_threshold_for_sdr(x0, sdr_db)
    # Clipped samples exactly ±c, as in a clipped recording: `Clip.apply`'s formula may round
    # them by an ulp, and SPADE tells clipped samples by |y| >= c exactly.
    return c, jnp.clip(x0, -c, c)


@jax.jit
def _apply(operator: degradations.Lowpass, x: jax.Array) -> jax.Array:
    return operator.apply(x)


@functools.cache
def _lowpass(cutoff_hz: float, sample_rate: int, design: str) -> degradations.Lowpass:
    return degradations.lowpass(cutoff_hz, sample_rate, design=design)


# ---------------------------------------------------------------------------------------------
# Methods: batch functions of global arrays.


# The restorer of a sharded batch; it lives in `sample`, where whole recordings use it too.
ShardedRestorer = sample.ShardedRestorer


# A method maps a global batch {x0, y, threshold, gain, key} to restorations [B, T].
Method = Callable[[dict[str, jax.Array]], jax.Array]


def make_method(
    method: str,
    task: Task,
    denoiser: edm.Denoiser,
    config: EvalConfig,
    sigma_data: float,
    mesh: jax.sharding.Mesh,
) -> tuple[Method, int]:
    """Returns a batch function for `method` on `task` and its NFE per clip."""
    rows = P(sharding.AXIS)
    if method == DEGRADED:
        return (lambda batch: batch["y"]), 0
    if method in CLASSICAL:
        from jaxrestore import spade  # Only the SPADE rows need it.

        # SPADE's ε is absolute, set for signals peaking near 1: run it at the clip's level.
        declip = jax.vmap(functools.partial(spade.declip, method=method))
        declip = sharding.per_device(declip, mesh, (rows, rows), rows)
        return (lambda batch: declip(batch["y"], batch["threshold"])), 0
    if task.kind == "declip":
        make_operator = degradations.Clip
    else:
        lowpass = _lowpass(task.value, config.sample_rate, config.lowpass_design)
        make_operator = lambda _: lowpass  # noqa: E731 (one filter for every clip)
    restorer = ShardedRestorer(
        denoiser, config.sampler_config(method, sigma_data), mesh, make_operator
    )

    def run(batch):
        # The prior sees every clip at RMS σ_d: scale the observation, and the result back.
        gain = batch["gain"][:, None]  # [B, 1]
        return restorer(batch["y"] * gain, batch["threshold"] * batch["gain"], batch["key"]) / gain

    return run, restorer.nfe


def _clip_metrics(sample_rate: int, mesh: jax.sharding.Mesh):
    def scores(x_hat, x0):  # [B, T] each -> [B] each
        return {"si_sdr": metrics.si_sdr(x_hat, x0), "lsd": metrics.lsd(x_hat, x0, sample_rate)}

    rows = P(sharding.AXIS)
    return sharding.per_device(scores, mesh, (rows, rows), rows)


# ---------------------------------------------------------------------------------------------
# Embeddings for the set distances.


class Embedder:
    """Per-clip embeddings for FAD (VGGish patches) and FMD (log-mel frames).

    Attributes:
      fad_note: why FAD is missing ("" when VGGish weights were loaded).
      fmd: whether FMD embeddings are made.
    """

    def __init__(self, config: EvalConfig):
        self.sample_rate = config.sample_rate
        self.weights = None
        self.fad_note = ""
        try:
            from jaxrestore import fad as fad_module
        except ImportError as error:
            self.module = None
            self.fad_note = f"FAD: not available ({error})"
            self.fmd = False
            return
        self.module = fad_module
        self.fmd = config.fmd and hasattr(fad_module, "log_mel_embedding_set")
        if not config.fad:
            self.fad_note = "FAD: not computed (fad=False)"
            return
        try:
            self.weights = fad_module.load_vggish(config.vggish_weights)
        except fad_module.NoVGGishWeights:
            self.fad_note = "FAD: no VGGish weights"

    @property
    def active(self) -> bool:
        return self.fmd or self.weights is not None

    def __call__(self, clip: np.ndarray) -> dict[str, np.ndarray]:
        """Returns {"fmd": frames [F, 64], "fad": patches' embeddings [P, 128]} as available."""
        out = {}
        if self.fmd:
            out["fmd"] = self.module.log_mel_embedding_set([clip], self.sample_rate).embeddings
        if self.weights is not None:
            patches = self.module.log_mel_patches([clip], self.sample_rate)
            out["fad"] = (
                self.module.embed_patches(self.weights, patches)
                if len(patches)
                else np.zeros((0, 128), np.float32)
            )
        return out


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes arrays to `path` atomically: a killed run leaves the old file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _embedding_path(workdir: Path, task: str, set_name: str, method: str, index: int) -> Path:
    return workdir / "embeddings" / task / set_name / method / f"{index:06d}.npz"


def _reference_path(workdir: Path, set_name: str, index: int) -> Path:
    return workdir / "embeddings" / "reference" / set_name / f"{index:06d}.npz"


# ---------------------------------------------------------------------------------------------
# The per-clip record files.


class RecordLog:
    """This process's JSON-lines file of finished clips: append, flush and fsync per batch.

    Opening drops a torn last line (a run killed mid-write), so that appends start on a line
    of their own.
    """

    def __init__(self, path: Path):
        self.path = path
        if path.exists():
            text = path.read_text()
            lines = text.splitlines()
            good = [line for line in lines if _parse(line) is not None]
            if len(good) != len(lines) or (text and not text.endswith("\n")):
                temporary = path.with_name(path.name + ".tmp")
                temporary.write_text("".join(line + "\n" for line in good))
                os.replace(temporary, path)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Appends records, one JSON object per line, and makes them durable."""
        text = "".join(json.dumps(record) + "\n" for record in records)
        if not text:
            return
        with self.path.open("a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "task" in record else None


def read_records(workdir: str | os.PathLike) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """Returns the records of `workdir/metrics.*.jsonl` by (task, set, method, index).

    Torn or unreadable lines are skipped; a clip recorded twice keeps its first record.
    """
    records = {}
    for path in sorted(Path(workdir).glob("metrics.*.jsonl")):
        for line in path.read_text().splitlines():
            record = _parse(line)
            if record is not None:
                key = (record["task"], record["set"], record["method"], int(record["index"]))
                records.setdefault(key, record)
    return records


# ---------------------------------------------------------------------------------------------
# The evaluation.


def evaluate(
    config: EvalConfig,
    prior: restoration.Prior,
    workdir: str | os.PathLike,
    *,
    mesh: jax.sharding.Mesh | None = None,
    datasets: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Runs the evaluation, resuming from `workdir`, and writes the tables on process 0.

    Args:
      config: what to evaluate.
      prior: the denoiser, its sample rate (must equal `config.sample_rate`) and σ_d.
      workdir: folder for `metrics.<process>.jsonl`, `embeddings/`, `config.json`,
        `results.json`, `table1.md` and `table2.md`; shared by all processes.
      mesh: the `'data'` mesh; by default every device (`sharding.data_mesh()`).
      datasets: a dataset per set name; by default `open_sets(config)`.

    Returns:
      The results (as written to `results.json`) on process 0, None on the others.
    """
    if prior.sample_rate != config.sample_rate:
        raise ValueError(
            f"the prior works at {prior.sample_rate} Hz but the config reads data at "
            f"{config.sample_rate} Hz; set sample_rate={prior.sample_rate}"
        )
    if config.num_samples % prior.length_multiple:
        raise ValueError(
            f"num_samples {config.num_samples} must be a multiple of {prior.length_multiple} "
            "for this prior"
        )
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    _check_workdir(workdir, config, prior)
    mesh = sharding.data_mesh() if mesh is None else mesh
    datasets = open_sets(config) if datasets is None else datasets
    logging.info(
        "evaluation: process %d of %d, %d devices in the mesh (%d here)",
        jax.process_index(),
        jax.process_count(),
        mesh.size,
        sharding.local_device_count(mesh),
    )

    run = _Run(config, prior, Path(workdir), mesh, datasets)
    run.embed_references()
    for task in config.tasks:
        for method in config.methods_for(task):
            run.evaluate_method(TASKS[task], method)
    sharding.barrier("evaluation: every clip recorded")
    if jax.process_index() != 0:
        return None
    results = summarize(config, workdir, prior, run.embedder.fad_note, mesh)
    _write_text(workdir / "results.json", json.dumps(results, indent=1, allow_nan=False) + "\n")
    _write_text(workdir / "table1.md", table(results, "declip"))
    _write_text(workdir / "table2.md", table(results, "bwe"))
    return results


class _Run:
    """One process's part of an evaluation: its clips, its record file, its batches."""

    def __init__(self, config, prior, workdir, mesh, datasets):
        self.config, self.prior, self.workdir, self.mesh = config, prior, workdir, mesh
        self.datasets = datasets
        units = [(s, i) for s in config.sets if s in datasets for i in range(config.clips_per_set)]
        self.units = [units[k] for k in sharding.process_share(len(units))]  # (set, index)
        self.embedder = Embedder(config)
        self.log = RecordLog(workdir / f"metrics.{jax.process_index()}.jsonl")
        self.done = set(read_records(workdir))  # every process's, should their count change
        self.clips: dict[tuple[str, int], tuple[int, np.ndarray]] = {}  # unit -> (seed, x0)
        self.observations: dict[tuple[str, str, int], Observation] = {}  # (task, *unit)
        self.scores = _clip_metrics(config.sample_rate, mesh)
        self.local_batch = sharding.local_batch_size(config.batch_size, mesh)
        self.compiled = set()  # (method, task kind): the first batch of each compiles

    def clean(self, unit: tuple[str, int]) -> tuple[int, np.ndarray]:
        """Returns (seed, clean clip) of a unit, loaded once."""
        if unit not in self.clips:
            dataset = self.datasets[unit[0]]
            self.clips[unit] = load_clip(
                dataset, unit[1], self.config.num_samples, self.config.min_rms
            )
        return self.clips[unit]

    def observation(self, task: Task, unit: tuple[str, int]) -> Observation:
        """Returns the degraded clip of a unit for `task`, made once."""
        key = (task.name, *unit)
        if key not in self.observations:
            self.observations = {k: v for k, v in self.observations.items() if k[0] == task.name}
            self.observations[key] = observe(
                self.clean(unit)[1],
                task,
                self.config.sample_rate,
                self.prior.sigma_data,
                self.config.lowpass_design,
            )
        return self.observations[key]

    def embed_references(self) -> None:
        """Writes the embeddings of this process's clean clips that are not there yet."""
        if not self.embedder.active:
            return
        for set_name, index in self.units:
            path = _reference_path(self.workdir, set_name, index)
            if not path.exists():
                _write_npz(path, self.embedder(self.clean((set_name, index))[1]))

    def evaluate_method(self, task: Task, method: str) -> None:
        """Restores and scores every clip of this process not yet done, batch by batch.

        Every process runs the same number of batches (the most any process needs), so that
        the collective computation lines up; a process out of clips sends padding.
        """
        pending = [u for u in self.units if (task.name, u[0], method, u[1]) not in self.done]
        size = self.local_batch
        num_batches = sharding.max_over_processes(-(-len(pending) // size))
        if num_batches == 0:
            return
        run, nfe = make_method(
            method, task, self.prior.denoiser, self.config, self.prior.sigma_data, self.mesh
        )
        for b in range(num_batches):
            chunk = pending[b * size : (b + 1) * size]
            batch, mask = self._local_batch(task, chunk)
            first = (method, task.kind) not in self.compiled
            start = time.perf_counter()
            rows = sharding.global_batch(batch, self.mesh)
            x_hat = run(rows)
            scores = jax.block_until_ready(self.scores(x_hat, rows["x0"]))
            seconds = (time.perf_counter() - start) / (size * jax.process_count())
            self.compiled.add((method, task.kind))
            if self.embedder.active:
                scores["x_hat"] = x_hat
            local = sharding.local_rows(scores, self.mesh)
            records = []
            for row in np.flatnonzero(mask):  # padded rows are never recorded
                set_name, index = chunk[row]
                if self.embedder.active:
                    path = _embedding_path(self.workdir, task.name, set_name, method, index)
                    _write_npz(path, self.embedder(local["x_hat"][row]))
                records.append(
                    {
                        "task": task.name,
                        "set": set_name,
                        "method": method,
                        "index": index,
                        "clip_seed": self.clips[(set_name, index)][0],
                        **{name: float(local[name][row]) for name in CLIP_METRICS},
                        "nfe": nfe,
                        "seconds": seconds,
                        "first_batch": first,
                    }
                )
            self.log.append(records)  # the commit: embeddings are written before
            logging.info(
                "%s %s: batch %d/%d, %.3f s per clip%s",
                task.name,
                method,
                b + 1,
                num_batches,
                seconds,
                " (with compilation)" if first else "",
            )

    def _local_batch(self, task, chunk):
        """Returns this process's rows of a batch (NumPy, padded) and the mask of real rows."""
        rows = []
        for unit in chunk:
            o = self.observation(task, unit)
            key = jax.random.key_data(clip_key(self.config.seed, self.clean(unit)[0], unit[0]))
            rows.append((o.x0, o.y, o.threshold, o.gain, np.asarray(key)))
        if rows:  # padding repeats a real clip…
            fill = rows[0]
        else:  # … or is silence, when this process has no clip left
            T = self.config.num_samples
            key = np.zeros_like(jax.random.key_data(jax.random.key(0)))
            fill = (np.zeros(T), np.zeros(T), 1.0, 1.0, key)
        batch = {}
        for k, name in enumerate(("x0", "y", "threshold", "gain", "key")):
            column = [np.asarray(r[k]) for r in rows]
            batch[name], mask = sharding.pad_rows(column, self.local_batch, np.asarray(fill[k]))
        dtypes = {"key": np.uint32}
        return {k: v.astype(dtypes.get(k, np.float32)) for k, v in batch.items()}, mask


def _check_workdir(workdir: Path, config: EvalConfig, prior: restoration.Prior) -> None:
    """Refuses a work dir that holds results of another configuration; records this one."""
    identity = {"config": config.identity(), "sigma_data": float(prior.sigma_data)}
    path = workdir / "config.json"
    if path.exists():
        recorded = json.loads(path.read_text())
        if recorded != identity:
            changed = sorted(
                k
                for k in set(recorded["config"]) | set(identity["config"])
                if recorded["config"].get(k) != identity["config"].get(k)
            )
            if recorded.get("sigma_data") != identity["sigma_data"]:
                changed.append("the prior's sigma_data")
            raise ValueError(
                f"{workdir} holds results of another evaluation (different {', '.join(changed)}); "
                "use a new --workdir or the same configuration"
            )
    sharding.barrier("evaluation: work dir checked")  # every process has read it before…
    if jax.process_index() == 0 and not path.exists():  # … the first run records it.
        _write_text(path, json.dumps(identity, indent=1) + "\n")


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------
# Statistics and tables.


def mean_interval(values: Sequence[float]) -> dict[str, Any]:
    """Returns {"mean", "ci95", "n"}: the mean and the half-width of its 95 % t interval.

    `ci95 = t_{0.975, n−1} · s / √n` with s the sample standard deviation; None for n < 2.
    Non-finite values (an SI-SDR of a silent clip, say) are left out and counted under
    "non_finite", so that one bad clip cannot turn a cell into NaN.
    """
    import scipy.stats  # Only the summary needs it.

    x = np.asarray(values, np.float64)
    finite = x[np.isfinite(x)]
    n = int(finite.size)
    cell: dict[str, Any] = {"mean": float(finite.mean()) if n else None, "ci95": None, "n": n}
    if n >= 2:
        t = scipy.stats.t.ppf(0.975, n - 1)
        cell["ci95"] = float(t * finite.std(ddof=1) / math.sqrt(n))
    if n < x.size:
        cell["non_finite"] = int(x.size - n)
    return cell


def _set_distance(
    workdir: Path, kind: str, task: str, set_name: str, method: str, indices
) -> float | None:
    """Returns the Fréchet distance of `kind` ("fad"/"fmd") between clean and restored clips."""
    from jaxrestore import fad as fad_module

    reference, restored = [], []
    for index in indices:
        paths = (
            _reference_path(workdir, set_name, index),
            _embedding_path(workdir, task, set_name, method, index),
        )
        if not all(p.exists() for p in paths):
            return None
        pair = [np.load(p) for p in paths]
        if any(kind not in p.files for p in pair):
            return None
        reference.append(pair[0][kind])
        restored.append(pair[1][kind])
    a, b = np.concatenate(reference), np.concatenate(restored)
    if min(len(a), len(b)) < 2:
        return None  # e.g. VGGish on clips shorter than one 0.96 s patch
    a, b = fad_module.EmbeddingSet.fit(a), fad_module.EmbeddingSet.fit(b)
    return metrics.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def summarize(
    config: EvalConfig,
    workdir: str | os.PathLike,
    prior: restoration.Prior,
    fad_note: str = "",
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """Aggregates the records of `workdir` into the results of `results.json`.

    Per task, set and method: mean/ci95/n of SI-SDR and LSD over the clips (in index order,
    so the numbers do not depend on which process or batch did a clip), FAD and FMD over the
    set, NFE, and seconds per clip (mean over batches that did not compile, when any did not).
    """
    workdir = Path(workdir)
    records = read_records(workdir)
    results: dict[str, Any] = {}
    for task in config.tasks:
        for set_name in config.sets:
            for method in config.methods_for(task):
                rows = sorted(
                    (
                        r
                        for (t, s, m, _), r in records.items()
                        if (t, s, m) == (task, set_name, method)
                    ),
                    key=lambda r: r["index"],
                )
                if not rows:
                    continue
                entry = {name: mean_interval([r[name] for r in rows]) for name in CLIP_METRICS}
                indices = [r["index"] for r in rows]
                for kind in SET_METRICS:
                    entry[kind] = _set_distance(workdir, kind, task, set_name, method, indices)
                warm = [r["seconds"] for r in rows if not r["first_batch"]]
                entry["nfe"] = rows[0]["nfe"]
                entry["seconds_per_clip"] = float(np.mean(warm or [r["seconds"] for r in rows]))
                entry["seconds_include_compilation"] = not warm
                results.setdefault(task, {}).setdefault(set_name, {})[method] = entry
    return {
        "config": dataclasses.asdict(config),
        "prior": {
            "name": config.prior,
            "sample_rate": prior.sample_rate,
            "sigma_data": prior.sigma_data,
        },
        "fad_note": fad_note,
        "devices": None if mesh is None else mesh.size,
        "processes": jax.process_count(),
        "results": results,
    }


def _cell(value: float | None, ci95: float | None = None, digits: int = 2) -> str:
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    return text if ci95 is None else f"{text} ± {ci95:.{digits}f}"


def table(results: dict[str, Any], kind: str) -> str:
    """Returns the poster's Table 1 (kind "declip") or Table 2 ("bwe") as Markdown.

    Columns per task: the set distance (FAD, or FMD when there are no VGGish weights) and
    the clip metric (SI-SDR for declipping, LSD for BWE) on the dry and the wet set, as
    mean ± 95 % interval; then NFE and seconds per clip (averaged over the table's cells).
    The best restoration of each column (the degraded input excluded) is in bold.
    """
    config = results["config"]
    tasks = [t for t in config["tasks"] if TASKS[t].kind == kind]
    number, what = ("1", "declipping") if kind == "declip" else ("2", "bandwidth extension")
    title = f"**Table {number}.** Objective metrics for {what}"
    if not tasks:
        return f"{title}: no {what} task in this evaluation.\n"
    clip_metric, clip_label, higher = (
        ("si_sdr", "SI-SDR ↑", True) if kind == "declip" else ("lsd", "LSD ↓", False)
    )
    data = results["results"]
    has_fad = any(
        e.get("fad") is not None
        for t in tasks
        for s in data.get(t, {}).values()
        for e in s.values()
    )
    distance, distance_label = ("fad", "FAD ↓") if has_fad else ("fmd", "FMD ↓")
    sets = config["sets"]
    methods = [m for m in config["methods"] if kind == "declip" or m not in CLASSICAL]

    columns = []  # (task, set, metric)
    for task in tasks:
        columns += [(task, s, distance) for s in sets] + [(task, s, clip_metric) for s in sets]

    def entry(task, set_name, method):
        return data.get(task, {}).get(set_name, {}).get(method)

    def value(task, set_name, method, metric):
        e = entry(task, set_name, method)
        if e is None:
            return None
        return e[metric]["mean"] if metric in CLIP_METRICS else e[metric]

    best = {}
    for column in columns:
        candidates = [(value(*column[:2], m, column[2]), m) for m in methods if m != DEGRADED]
        candidates = [(v, m) for v, m in candidates if v is not None]
        if candidates:
            maximise = higher if column[2] in CLIP_METRICS else False
            best[column] = (max if maximise else min)(candidates)[1]

    header = (
        ["Method"]
        + [
            f"{TASKS[t].label} {distance_label if metric == distance else clip_label} {s}"
            for t, s, metric in columns
        ]
        + ["NFE", "s/clip"]
    )
    lines = [title + ".", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    compile_mark = False
    for method in methods:
        cells = [method_label(method, tasks[0])]
        for column in columns:
            e = entry(*column[:2], method)
            if e is None:
                cells.append("—")
                continue
            metric = column[2]
            if metric in CLIP_METRICS:
                text = _cell(e[metric]["mean"], e[metric]["ci95"])
            else:
                text = _cell(e[metric])
            cells.append(f"**{text}**" if best.get(column) == method and text != "—" else text)
        entries = [entry(t, s, method) for t in tasks for s in sets]
        entries = [e for e in entries if e is not None]
        if entries:
            cells.append(str(entries[0]["nfe"]))
            seconds = float(np.mean([e["seconds_per_clip"] for e in entries]))
            mark = "†" if any(e["seconds_include_compilation"] for e in entries) else ""
            compile_mark |= bool(mark)
            cells.append(f"{seconds:.3g}{mark}")
        else:
            cells += ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")

    n = sorted(
        {e[clip_metric]["n"] for t in tasks for s in data.get(t, {}).values() for e in s.values()}
    )
    notes = [
        "",
        f"Mean ± 95 % interval over n = {', '.join(map(str, n))} clips per set of "
        f"{config['num_samples']} samples at {results['prior']['sample_rate']} Hz; prior "
        f"{results['prior']['name']!r} (σ_d = {results['prior']['sigma_data']:.4g}); data "
        f"{config['data']!r}; sampler steps {config['steps'] or 'of the presets'}.",
    ]
    if not has_fad:
        notes.append(
            f"{results['fad_note'] or 'FAD: no VGGish weights'}. FMD (log-mel) is the Fréchet "
            "distance between Gaussians of VGGish log-mel frames, without the network: not FAD, "
            "not comparable with published FAD values."
        )
    notes.append(
        "s/clip: wall-clock seconds per clip over all devices"
        + ("; † includes compilation (a single batch ran)." if compile_mark else ".")
    )
    return "\n".join(lines + notes) + "\n"


# ---------------------------------------------------------------------------------------------
# Throughput.


def throughput(
    denoiser: edm.Denoiser,
    config: sample.SamplerConfig,
    *,
    num_samples: int,
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
      One record per (n, B): devices, batch_size, num_samples, nfe, seconds_per_batch,
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
        lowpass = _lowpass(spec.value, sample_rate, "kaiser")
        make_operator = lambda _: lowpass  # noqa: E731
    counts = [jax.device_count()] if device_counts is None else list(device_counts)
    records = []
    for n in counts:
        mesh = sharding.data_mesh(n if jax.process_count() == 1 else None)
        restorer = ShardedRestorer(denoiser, config, mesh, make_operator)
        sizes = sorted({sharding.local_batch_size(b, mesh) for b in batch_sizes})
        for local in sizes:  # this process's rows of each global batch size
            rng = np.random.default_rng(jax.process_index())
            x0 = config.sigma_data * rng.standard_normal((local, num_samples), np.float32)
            c = np.full(local, config.sigma_data, np.float32)  # declipping: clipped at 1 σ_d
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
                    "num_samples": num_samples,
                    "nfe": restorer.nfe,
                    "seconds_per_batch": seconds,
                    "clips_per_second": size / seconds,
                    "real_time_factor": metrics.real_time_factor(
                        seconds, size * num_samples, sample_rate
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
