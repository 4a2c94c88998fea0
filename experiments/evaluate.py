r"""Evaluates the restoration methods and writes the poster's Tables 1 and 2.

  python -m experiments.evaluate --config=experiments/configs/evaluate_synthetic.py \
      --workdir=/tmp/eval
  python -m experiments.evaluate --config=experiments/configs/evaluate_synthetic.py:smoke \
      --config.prior=gaussian --workdir=/tmp/eval_smoke
  python -m experiments.evaluate --config=... --data_dir=/data/nus48e,/data/musdb18hq --workdir=...

Writes `table1.md`, `table2.md` and `results.json` to --workdir and resumes there if killed.
Several processes (one per host, or several on one machine):

  python -m experiments.evaluate --config=... --workdir=/shared/eval --multihost \
      --coordinator_address=10.0.0.1:12345 --num_processes=2 --process_id=0    # and =1

--throughput prints one JSON line per (device count, batch size) instead of evaluating.
This file is intentionally kept short: the logic is in `jaxrestore.evaluation.runner`.
"""

import json
import sys

import jax
import ml_collections
from absl import flags, logging
from ml_collections import config_flags

from experiments import cli
from jaxrestore import priors, sample, sharding
from jaxrestore.evaluation import runner, tasks, throughput

_CONFIG = config_flags.DEFINE_config_file("config", None, "Evaluation configuration file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the records, tables and results.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "Dataset folder(s), comma-separated: evaluates their held-out split (--config.split).",
)
_NUM_DEVICES = flags.DEFINE_integer("num_devices", None, "Use only the first N devices.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Join a multi-process run first.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_THROUGHPUT = flags.DEFINE_bool("throughput", False, "Measure clips/s instead of evaluating.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "2", "4", "8"], "Throughput batch sizes.")
_DEVICE_COUNTS = flags.DEFINE_list("device_counts", None, "Throughput device counts (all).")


def _choices(value: str, every: tuple[str, ...]) -> tuple[str, ...]:
    value = value.strip()
    return every if value == "all" else tuple(v.strip() for v in value.split(",") if v.strip())


def eval_config(config: ml_collections.ConfigDict, data_dir: str | None, sample_rate: int):
    """Converts the ConfigDict into the library's frozen `EvalConfig` (raises ValueError)."""
    fields = config.to_dict()
    folders = data_dir if data_dir is not None else fields.pop("data_dir")
    fields.pop("data_dir", None)
    if data_dir is not None:
        fields["data"] = "files"  # a data folder on the command line means: evaluate on it
    fields["data_dirs"] = tuple(f for f in folders.split(",") if f)
    fields["tasks"] = _choices(fields["tasks"], tuple(tasks.TASKS))
    fields["methods"] = _choices(fields["methods"], tasks.DEFAULT_METHODS)
    fields["sets"] = _choices(fields["sets"], tasks.SETS)
    unknown = sorted(set(fields) - set(tasks.EvalConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(unknown)}")
    return tasks.EvalConfig(sample_rate=sample_rate, **fields)


def load_prior(name: str, clip_length: int):
    """Returns the prior a config names: "pretrained", "gaussian", "wiener" or a checkpoint."""
    if name == "gaussian":
        return priors.gaussian_prior(clip_length)
    if name == "wiener":
        return priors.wiener_prior(clip_length)
    return cli.load_prior(None if name == "pretrained" else name)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _WORKDIR.value is None and not _THROUGHPUT.value:
        raise cli.UsageError("--workdir is required (or --throughput)")

    if _MULTIHOST.value:
        sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)

    cli.enable_compilation_cache()
    logging.info(
        "JAX process %d of %d; %d local devices of %d",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    prior = load_prior(_CONFIG.value.prior, _CONFIG.value.clip_length)
    config = eval_config(_CONFIG.value, _DATA_DIR.value, prior.sample_rate)
    if _THROUGHPUT.value:
        method = next((m for m in config.methods if m in sample.PRESETS), "rg+dc")
        counts = _DEVICE_COUNTS.value or [str(_NUM_DEVICES.value or jax.device_count())]
        for record in throughput.throughput(
            prior,
            config.sampler_config(method),
            clip_length=config.clip_length,
            sample_rate=config.sample_rate,
            batch_sizes=[int(b) for b in _BATCH_SIZES.value],
            device_counts=[int(n) for n in counts],
            task=config.tasks[0],
        ):
            if jax.process_index() == 0:
                print(json.dumps({"method": method, **record}), flush=True)
        return
    mesh = sharding.data_mesh(_NUM_DEVICES.value)
    results = runner.evaluate(config, prior, _WORKDIR.value, mesh=mesh)
    if results is not None:
        print(f"wrote {_WORKDIR.value}/table1.md, table2.md, results.json", file=sys.stderr)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    cli.run(main)
