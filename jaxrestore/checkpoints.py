"""Checkpoints: save and resume training, load a trained denoiser, export it for shipping.

A checkpoint directory is managed by Orbax's `CheckpointManager`: one sub-folder per saved step,
each holding three items,
  - `state`: the training state without the EMA (step, params, optimiser state),
  - `ema_params`: the EMA of the weights (the weights to sample with),
  - `metadata`: JSON with the model name and config, σ_d (and the data's power spectrum when the
    network was trained with the Wiener skip), the sample rate and the training config,
so a denoiser can be rebuilt knowing only the directory. Orbax writes a step into a
`<step>.orbax-checkpoint-tmp-*` folder and renames it when it is complete; such a folder is never
listed, so a run killed while saving resumes from the previous complete step.

`export_msgpack` writes the EMA weights with `flax.serialization` (msgpack, no pickle) and a JSON
sidecar; `load_msgpack` reads them back. That pair is how a pretrained model ships in the package.
Every loader of weights returns a `priors.Prior` (`load_prior` takes either kind of path); the
`CheckpointInfo` it carries is the on-disk record of what the network is.
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxrestore import edm, networks, priors
from jaxrestore.networks import cqtdiff, sashimi

MODEL_NAMES = ("sashimi", "cqtdiff")
_FORMAT = "jaxrestore-denoiser-v1"
# Clip lengths every network here accepts are multiples of this (SaShiMi's pooling, CQT frames).
LENGTH_MULTIPLE = 256


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What a saved denoiser is: enough to rebuild the network and precondition it.

    Attributes:
      model_name: "sashimi" or "cqtdiff".
      model_config: the network's frozen config dataclass.
      sigma_data: the data scale σ_d the network was trained with.
      sample_rate: sample rate of the training audio in Hz.
      step: number of training steps behind the weights.
      train_config: the training configuration as a JSON-ready dict (empty if unknown).
      spectrum: the data's power spectrum at the rfft bins of a frame, when the network was
        trained with the Wiener skip (`edm.precondition_wiener`); None for EDM's c_skip.
    """

    model_name: str
    model_config: Any
    sigma_data: float
    sample_rate: int
    step: int
    train_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    spectrum: tuple[float, ...] | None = None

    def denoiser(self, model: nn.Module, params: Any) -> edm.Denoiser:
        """Returns the preconditioned denoiser of the network `model` with weights `params`."""
        return networks.as_denoiser(model, params, self.sigma_data, self.spectrum)

    def prior(self, model: nn.Module, params: Any) -> priors.Prior:
        """Returns the `Prior` of the network `model` with weights `params`: its denoiser, rate
        and σ_d, with this record as its `info`."""
        return priors.Prior(
            denoiser=self.denoiser(model, params),
            sample_rate=self.sample_rate,
            sigma_data=self.sigma_data,
            length_multiple=LENGTH_MULTIPLE,
            info=self,
        )


def network_module(model_name: str):
    """Returns (module, network class, config class) of a model name."""
    if model_name == "sashimi":
        return sashimi, sashimi.SaShiMi, sashimi.SaShiMiConfig
    if model_name == "cqtdiff":
        return cqtdiff, cqtdiff.CQTDiff, cqtdiff.CQTDiffConfig
    raise ValueError(f"unknown model {model_name!r}; expected one of {', '.join(MODEL_NAMES)}")


def model_config(model_name: str, preset: str, **overrides: Any) -> Any:
    """Returns a network config: the named preset of `CONFIGS`, with some fields replaced.

    Args:
      model_name: "sashimi" or "cqtdiff".
      preset: a key of the network module's `CONFIGS` (e.g. "reference", "cpu", "tiny").
      **overrides: config fields to replace.
    """
    module, _, config_class = network_module(model_name)
    if preset not in module.CONFIGS:
        raise ValueError(
            f"unknown {model_name} preset {preset!r}; expected one of {', '.join(module.CONFIGS)}"
        )
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown {model_name} config field(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(module.CONFIGS[preset], **overrides)


def build_model(model_name: str, config: Any) -> nn.Module:
    """Returns the Flax network for a model name and its config dataclass."""
    _, model_class, config_class = network_module(model_name)
    if not isinstance(config, config_class):
        raise ValueError(
            f"model {model_name!r} needs a {config_class.__name__}, got {type(config).__name__}"
        )
    return model_class(config)


def _as_tuples(value: Any) -> Any:
    """Turns JSON lists back into the tuples that frozen config dataclasses hold."""
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_tuples(v) for k, v in value.items()}
    return value


def config_to_json(config: Any) -> dict[str, Any]:
    """Returns a frozen config dataclass as a JSON-ready dict."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


# Config fields that change how a network computes, not its parameters or outputs: a run
# resumed with another value (remat on or off) loads the same checkpoint.
COMPUTE_ONLY_FIELDS = frozenset({"remat"})


def same_architecture(model_name: str, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two `config_to_json` dicts of one network describe the same parameters and function.

    A field missing from a dict (written before the field existed) takes its default.
    """

    def strip(fields):
        fields = config_to_json(config_from_json(model_name, fields))
        return {k: v for k, v in fields.items() if k not in COMPUTE_ONLY_FIELDS}

    return strip(a) == strip(b)


def config_from_json(model_name: str, fields: dict[str, Any]) -> Any:
    """Rebuilds a network config dataclass from `config_to_json`'s dict."""
    _, _, config_class = network_module(model_name)
    return config_class(**_as_tuples(fields))


def abstract_params(model: nn.Module, clip_length: int) -> Any:
    """Returns the shapes and dtypes of the model's parameters, without computing them."""
    x = jnp.zeros((1, clip_length), jnp.float32)  # [1, T]
    c_noise = jnp.zeros((1,), jnp.float32)  # [1]
    return jax.eval_shape(model.init, jax.random.key(0), x, c_noise)["params"]


def open_manager(
    directory: str | os.PathLike, max_to_keep: int | None = 3
) -> ocp.CheckpointManager:
    """Opens (creating it if needed) the checkpoint manager of a directory.

    Orbax needs an absolute path: a relative one fails later, in a background thread.
    """
    directory = Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(directory, options=options)


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    ema_params: Any,
    metadata: dict[str, Any],
) -> None:
    """Starts an asynchronous save of one step; call `manager.wait_until_finished()` before exit.

    The arrays are copied to host memory first, so the caller may donate or overwrite the device
    buffers (the jitted train step donates its state) while the files are still being written.

    Args:
      manager: from `open_manager`.
      step: the number of training steps done.
      state: pytree of the training state without the EMA (step, params, optimiser state).
      ema_params: pytree of the EMA weights.
      metadata: JSON-ready dict; see the module docstring.
    """
    state, ema_params = jax.device_get((state, ema_params))
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            ema_params=ocp.args.StandardSave(ema_params),
            metadata=ocp.args.JsonSave({**metadata, "step": int(step)}),
        ),
    )


def read_metadata(manager: ocp.CheckpointManager, step: int | None = None) -> dict[str, Any]:
    """Returns the JSON metadata saved with a step (default: the latest complete one)."""
    step = _existing_step(manager, step)
    restored = manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
    return dict(restored.metadata)


def restore(
    manager: ocp.CheckpointManager,
    step: int,
    abstract_state: Any,
    abstract_ema_params: Any,
) -> tuple[Any, Any]:
    """Restores the training state and EMA weights of one step onto the abstract arrays' shardings.

    Args:
      manager: from `open_manager`.
      step: a saved step.
      abstract_state: `jax.ShapeDtypeStruct` pytree (with shardings) of the state to restore.
      abstract_ema_params: the same for the EMA weights.
    """
    step = _existing_step(manager, step)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            ema_params=ocp.args.StandardRestore(abstract_ema_params),
        ),
    )
    return restored.state, restored.ema_params


def _existing_step(manager: ocp.CheckpointManager, step: int | None) -> int:
    """Returns `step`, or the latest step when None, after checking that it was saved."""
    steps = manager.all_steps()
    if not steps:
        raise ValueError(f"no complete checkpoint in {manager.directory}")
    if step is None:
        return max(steps)
    if step not in steps:
        raise ValueError(f"no checkpoint of step {step} in {manager.directory}; saved: {steps}")
    return step


def _checkpoint_directory(directory: str | os.PathLike) -> Path:
    """Accepts a training workdir (with a `checkpoints` folder) or the checkpoint folder itself."""
    directory = Path(directory).absolute()
    if not directory.is_dir():
        raise ValueError(f"checkpoint directory {directory} does not exist")
    if (directory / "checkpoints").is_dir():
        return directory / "checkpoints"
    return directory


def _clip_length(fields: dict[str, Any]) -> int:
    """Returns the clip length a stored config or sidecar records (4,096 if none).

    Files written before the field was renamed call it `num_samples`.
    """
    return int(fields.get("clip_length", fields.get("num_samples", 4096)))


def _info_from_metadata(metadata: dict[str, Any]) -> CheckpointInfo:
    """Builds the `CheckpointInfo` that a metadata dict describes."""
    name = metadata["model_name"]
    return CheckpointInfo(
        model_name=name,
        model_config=config_from_json(name, metadata["model_config"]),
        sigma_data=float(metadata["sigma_data"]),
        sample_rate=int(metadata["sample_rate"]),
        step=int(metadata["step"]),
        train_config=dict(metadata.get("train_config", {})),
        spectrum=None if metadata.get("spectrum") is None else tuple(metadata["spectrum"]),
    )


def load_params(
    checkpoint_dir: str | os.PathLike, step: int | None = None
) -> tuple[nn.Module, Any, CheckpointInfo]:
    """Loads the network and its EMA weights from a checkpoint directory.

    Args:
      checkpoint_dir: a training workdir or its `checkpoints` folder.
      step: the step to load; the latest complete one when None.

    Returns:
      `(model, ema_params, info)`.
    """
    manager = open_manager(_checkpoint_directory(checkpoint_dir), max_to_keep=None)
    try:
        step = _existing_step(manager, step)
        info = _info_from_metadata(read_metadata(manager, step))
        model = build_model(info.model_name, info.model_config)
        abstract = abstract_params(model, _clip_length(info.train_config))
        restored = manager.restore(
            step, args=ocp.args.Composite(ema_params=ocp.args.StandardRestore(abstract))
        )
    finally:
        manager.close()
    ema_params = jax.tree.map(jnp.asarray, restored.ema_params)
    return model, ema_params, info


def load_denoiser(checkpoint_dir: str | os.PathLike, step: int | None = None) -> priors.Prior:
    """Returns the EMA prior of a checkpoint: its denoiser `D(x; σ)` (x [T], σ scalar) and info.

    Args:
      checkpoint_dir: a training workdir or its `checkpoints` folder.
      step: the step to load; the latest complete one when None.
    """
    model, ema_params, info = load_params(checkpoint_dir, step)
    return info.prior(model, ema_params)


def _sidecar_path(path: Path) -> Path:
    """Returns where the JSON sidecar of a msgpack file lives: same name, `.json` suffix."""
    return path.with_suffix(".json")


def export_msgpack(
    checkpoint_dir: str | os.PathLike, out_path: str | os.PathLike, step: int | None = None
) -> Path:
    """Writes a checkpoint's EMA weights as msgpack (pickle-free) and a JSON sidecar beside it.

    The sidecar (`out_path` with suffix `.json`) holds the model name and config, σ_d (and the
    data's spectrum for the Wiener skip), the sample rate and the number of training
    steps: everything `load_msgpack` needs.

    Args:
      checkpoint_dir: a training workdir or its `checkpoints` folder.
      out_path: the `.msgpack` file to write.
      step: the step to export; the latest complete one when None.

    Returns:
      The path of the msgpack file.
    """
    _, ema_params, info = load_params(checkpoint_dir, step)
    return write_msgpack(out_path, ema_params, info, clip_length=_clip_length(info.train_config))


def write_msgpack(
    out_path: str | os.PathLike, params: Any, info: CheckpointInfo, clip_length: int = 4096
) -> Path:
    """Writes parameters as msgpack (pickle-free) with the JSON sidecar `load_msgpack` reads.

    Args:
      out_path: the `.msgpack` file to write.
      params: the network's parameters.
      info: what the network is (model name and config, σ_d, sample rate, step).
      clip_length: a clip length the network accepts, to rebuild its parameter shapes.
    """
    out_path = Path(out_path)
    if out_path.suffix != ".msgpack":
        raise ValueError(f"out_path must end in .msgpack, got {out_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(flax.serialization.to_bytes(jax.device_get(params)))
    sidecar = {
        "format": _FORMAT,
        "model_name": info.model_name,
        "model_config": config_to_json(info.model_config),
        "sigma_data": info.sigma_data,
        "sample_rate": info.sample_rate,
        "step": info.step,
        "clip_length": int(clip_length),
        "spectrum": None if info.spectrum is None else [float(v) for v in info.spectrum],
    }
    _sidecar_path(out_path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return out_path


def load_msgpack_params(path: str | os.PathLike) -> tuple[nn.Module, Any, CheckpointInfo]:
    """Loads the network and weights of an `export_msgpack` file (its JSON sidecar beside it).

    Returns:
      `(model, params, info)`; the parameters are checked against the model's shapes.
    """
    path = Path(path)
    sidecar_path = _sidecar_path(path)
    if not path.is_file() or not sidecar_path.is_file():
        raise ValueError(f"need both {path} and its sidecar {sidecar_path}")
    sidecar = json.loads(sidecar_path.read_text())
    if sidecar.get("format") != _FORMAT:
        raise ValueError(f"{sidecar_path} is not a {_FORMAT} sidecar")
    info = _info_from_metadata(sidecar)
    model = build_model(info.model_name, info.model_config)
    params = flax.serialization.msgpack_restore(path.read_bytes())
    expected = abstract_params(model, _clip_length(sidecar))
    got = jax.tree.map(lambda a: (np.shape(a), np.asarray(a).dtype), params)
    want = jax.tree.map(lambda a: (a.shape, a.dtype), expected)
    if got != want:
        raise ValueError(f"{path} does not hold the parameters of {info.model_name} as configured")
    return model, jax.tree.map(jnp.asarray, params), info


def load_msgpack(path: str | os.PathLike) -> priors.Prior:
    """Returns the prior (denoiser `D(x; σ)`, rate, σ_d and info) of an `export_msgpack` file."""
    model, params, info = load_msgpack_params(path)
    return info.prior(model, params)


def load_prior(path: str | os.PathLike) -> priors.Prior:
    """Returns the prior of a training work dir (its latest checkpoint) or an exported `.msgpack`.

    Raises:
      ValueError: `path` does not exist, or holds neither.
    """
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file or folder")
    if str(path).endswith(".msgpack"):
        return load_msgpack(path)
    return load_denoiser(path)
