"""Running an evaluation resumably and sharded over devices and processes.

How it runs:
- Batches are sharded over a `'data'` mesh of all devices (`jaxrestore.sharding`), each
  device restoring its own clips; with several processes each handles the clips i with
  i % process_count == process_index, the global batch is joined from every process's rows,
  and the last batch is padded and masked.
- Each finished clip's record is appended at once to `metrics.<process>.jsonl`
  (`evaluation.records`); a restarted evaluation skips the clips already recorded. Process 0
  merges the files at the end, so the work dir must be shared by the processes (as for
  checkpoints).
- The prior works at one loudness: each observation is brought to the prior's level before
  sampling and the restoration back (`priors.Prior`); metrics are taken at the clip's own level.
"""

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxrestore import fad, priors, sharding
from jaxrestore.evaluation import clips, methods, records, tables
from jaxrestore.evaluation.tasks import CLIP_METRICS, TASKS, EvalConfig, Task


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
        self.fmd = config.fmd
        if not config.fad:
            self.fad_note = "FAD: not computed (fad=False)"
            return
        try:
            self.weights = fad.load_vggish(config.vggish_weights)
        except fad.NoVGGishWeights:
            self.fad_note = "FAD: no VGGish weights"

    @property
    def active(self) -> bool:
        return self.fmd or self.weights is not None

    def __call__(self, clip: np.ndarray) -> dict[str, np.ndarray]:
        """Returns {"fmd": frames [F, 64], "fad": patches' embeddings [P, 128]} as available."""
        out = {}
        if self.fmd:
            out["fmd"] = fad.log_mel_embedding_set([clip], self.sample_rate).embeddings
        if self.weights is not None:
            patches = fad.log_mel_patches([clip], self.sample_rate)
            out["fad"] = (
                fad.embed_patches(self.weights, patches)
                if len(patches)
                else np.zeros((0, 128), np.float32)
            )
        return out


def evaluate(
    config: EvalConfig,
    prior: priors.Prior,
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
      datasets: a dataset per set name; by default `clips.open_sets(config)`.

    Returns:
      The results (as written to `results.json`) on process 0, None on the others.
    """
    if prior.sample_rate != config.sample_rate:
        raise ValueError(
            f"the prior works at {prior.sample_rate} Hz but the config reads data at "
            f"{config.sample_rate} Hz; set sample_rate={prior.sample_rate}"
        )
    if config.clip_length % prior.length_multiple:
        raise ValueError(
            f"clip_length {config.clip_length} must be a multiple of {prior.length_multiple} "
            "for this prior"
        )
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    _check_workdir(workdir, config, prior)
    mesh = sharding.data_mesh() if mesh is None else mesh
    datasets = clips.open_sets(config) if datasets is None else datasets
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
    results = tables.summarize(config, workdir, prior, run.embedder.fad_note, mesh)
    records.write_text(
        workdir / "results.json", json.dumps(results, indent=1, allow_nan=False) + "\n"
    )
    records.write_text(workdir / "table1.md", tables.table(results, "declip"))
    records.write_text(workdir / "table2.md", tables.table(results, "bwe"))
    return results


class _Run:
    """One process's part of an evaluation: its clips, its record file, its batches."""

    def __init__(self, config, prior, workdir, mesh, datasets):
        self.config, self.prior, self.workdir, self.mesh = config, prior, workdir, mesh
        self.datasets = datasets
        units = [(s, i) for s in config.sets if s in datasets for i in range(config.clips_per_set)]
        self.units = [units[k] for k in sharding.process_share(len(units))]  # (set, index)
        self.embedder = Embedder(config)
        self.log = records.RecordLog(workdir / f"metrics.{jax.process_index()}.jsonl")
        self.done = set(records.read_records(workdir))  # every process's, should their count change
        self.clips: dict[tuple[str, int], tuple[int, np.ndarray]] = {}  # unit -> (seed, x0)
        self.observations: dict[tuple[str, str, int], clips.Observation] = {}  # (task, *unit)
        self.scores = methods.clip_metrics(config.sample_rate, mesh)
        self.local_batch = sharding.local_batch_size(config.batch_size, mesh)
        self.compiled = set()  # (method, task kind): the first batch of each compiles

    def clean(self, unit: tuple[str, int]) -> tuple[int, np.ndarray]:
        """Returns (seed, clean clip) of a unit, loaded once."""
        if unit not in self.clips:
            dataset = self.datasets[unit[0]]
            self.clips[unit] = clips.load_clip(
                dataset, unit[1], self.config.clip_length, self.config.min_rms
            )
        return self.clips[unit]

    def observation(self, task: Task, unit: tuple[str, int]) -> clips.Observation:
        """Returns the degraded clip of a unit for `task`, made once."""
        key = (task.name, *unit)
        if key not in self.observations:
            self.observations = {k: v for k, v in self.observations.items() if k[0] == task.name}
            self.observations[key] = clips.observe(
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
            path = records.reference_path(self.workdir, set_name, index)
            if not path.exists():
                records.write_npz(path, self.embedder(self.clean((set_name, index))[1]))

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
        run, nfe = methods.make_method(method, task, self.prior, self.config, self.mesh)
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
            finished = []
            for row in np.flatnonzero(mask):  # padded rows are never recorded
                set_name, index = chunk[row]
                if self.embedder.active:
                    path = records.embedding_path(self.workdir, task.name, set_name, method, index)
                    records.write_npz(path, self.embedder(local["x_hat"][row]))
                finished.append(
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
            self.log.append(finished)  # the commit: embeddings are written before
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
            key = jax.random.key_data(
                clips.clip_key(self.config.seed, self.clean(unit)[0], unit[0])
            )
            rows.append((o.x0, o.y, o.threshold, o.gain, np.asarray(key)))
        if rows:  # padding repeats a real clip…
            fill = rows[0]
        else:  # … or is silence, when this process has no clip left
            T = self.config.clip_length
            key = np.zeros_like(jax.random.key_data(jax.random.key(0)))
            fill = (np.zeros(T), np.zeros(T), 1.0, 1.0, key)
        batch = {}
        for k, name in enumerate(("x0", "y", "threshold", "gain", "key")):
            column = [np.asarray(r[k]) for r in rows]
            batch[name], mask = sharding.pad_rows(column, self.local_batch, np.asarray(fill[k]))
        dtypes = {"key": np.uint32}
        return {k: v.astype(dtypes.get(k, np.float32)) for k, v in batch.items()}, mask


def _check_workdir(workdir: Path, config: EvalConfig, prior: priors.Prior) -> None:
    """Refuses a work dir that holds results of another configuration; records this one."""
    identity = {"config": config.identity(), "sigma_data": float(prior.sigma_data)}
    path = workdir / "config.json"
    if path.exists():
        recorded = json.loads(path.read_text())
        if "num_samples" in recorded["config"]:  # written before the field was renamed
            recorded["config"]["clip_length"] = recorded["config"].pop("num_samples")
        recorded["config"].setdefault("split", "test")  # written before there was a choice
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
        records.write_text(path, json.dumps(identity, indent=1) + "\n")
