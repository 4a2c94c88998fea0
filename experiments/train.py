"""Trains an EDM denoiser; resumes from the latest checkpoint in --workdir.

  python -m experiments.train --config=experiments/configs/sashimi_synthetic.py --workdir=/tmp/run
  python -m experiments.train --config=experiments/configs/sashimi_vocals.py \
      --data_dir=/data/nus48e,/data/nhss,/data/musdb18hq --workdir=/tmp/vocals

Data-parallel over every device; several processes (one per host) train together with

  python -m experiments.train --config=... --workdir=/shared/run --multihost \
      --coordinator_address=10.0.0.1:12345 --num_processes=2 --process_id=0    # and =1

each drawing its own rows of every batch; process 0 alone writes metrics.jsonl, and all of
them take part in the checkpoints (Orbax writes each once) in the shared --workdir.

This file is intentionally kept short: the logic is in `jaxrestore.train`.
"""

import logging as pylogging
import sys

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxrestore import checkpoints, sharding, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints and metrics.jsonl.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Dataset folder(s), comma-separated; replaces config.data.data_dir."
)
_NUM_DEVICES = flags.DEFINE_integer("num_devices", None, "Use only the first N devices.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Join a multi-process run first.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def train_config(config: ml_collections.ConfigDict, data_dir: str | None) -> train.TrainConfig:
    """Converts the ConfigDict into the library's frozen `TrainConfig` (raises ValueError)."""
    fields = config.to_dict()
    model = dict(fields.pop("model"))
    name, preset = model.pop("name"), model.pop("preset")
    model = {key: value for key, value in model.items() if value is not None}  # None: preset's
    data = dict(fields.pop("data"))
    config_folders = data.pop("data_dir", "")
    folders = config_folders if data_dir is None else data_dir
    if data_dir is not None and data.get("source") == "synthetic":
        raise ValueError(
            "--data_dir given, but this config trains on synthetic data; use a config with "
            "data.source = 'files' (sashimi_vocals.py) or add --config.data.source=files"
        )
    data["data_dirs"] = tuple(folder for folder in folders.split(",") if folder)
    known = {field for field in train.TrainConfig.__dataclass_fields__} - {"model_name", "model"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(unknown)}")
    return train.TrainConfig(
        model_name=name,
        model=checkpoints.model_config(name, preset, **model),
        data=train.DataConfig(**data),
        **fields,
    )


class _QuietOrbax(pylogging.Filter):
    """Drops Orbax's INFO lines (dozens per checkpoint); its warnings and errors still show."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or "/orbax/" not in record.pathname


def _fail(error: Exception) -> None:
    """Reports bad input in one line (the last of a nested message) and exits with status 2."""
    if isinstance(error, KeyError | AttributeError):
        message = f"no such config key: {error}"
    else:
        message = [line for line in str(error).splitlines() if line.strip()][-1].strip()
    print(f"train: error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
    """Parses the flags; a bad config path, variant or override is one line and exit 2."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError, OSError) as error:
        _fail(error)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.get_absl_handler().addFilter(_QuietOrbax())
    try:
        if _MULTIHOST.value:  # before anything touches a device
            sharding.initialize_distributed(
                _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
            )
        mesh = sharding.data_mesh(_NUM_DEVICES.value)
    except ValueError as error:
        _fail(error)
    logging.info(
        "JAX process %d of %d; %d local devices of %d: %s",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices(),
    )
    try:
        config = train_config(_CONFIG.value, _DATA_DIR.value)
        train.check_batch_size(config.batch_size, mesh)
        source = train.data_source(config.data)
    except (ValueError, OSError) as error:  # OSError: a config file that did not load
        _fail(error)
    try:
        train.train(config, _WORKDIR.value, source, mesh)
    except train.WorkdirError as error:
        _fail(error)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
