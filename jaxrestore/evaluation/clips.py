"""The held-out clips: the sets, clip i of a set, its random key and its degradation.

Clip i of a set is the held-out data seed `HELD_OUT_SEED + i` of the config's split (test, or
validation for choosing settings; training draws neither); its random key is
`fold_in(fold_in(key(seed), clip_seed), set)`, so a clip's result does not depend on its
batch, the device count or the process count.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrestore import degradations, priors, train
from jaxrestore.data import readers, synthetic
from jaxrestore.evaluation.tasks import SETS, EvalConfig, Task

HELD_OUT_SEED = 10_000_000


# Seeds tried for a clip that falls in a rest: HELD_OUT_SEED + i + attempt·_RETRY_STRIDE.
_RETRY_STRIDE = 1_000_000


_ATTEMPTS = 8


def open_sets(config: EvalConfig) -> dict[str, Any]:
    """Returns a dataset per set name, each with `segment(seed, num_samples) -> [T]`.

    Synthetic: the generator's held-out split `config.split` (seeds training never draws), dry
    and wet; the dry and the wet clip of one seed hold the same performance. Files: that split
    of each folder, grouped by the wetness its layout reports; a set with no folder is left out.
    """
    if config.data == "synthetic":
        return {
            name: synthetic.SyntheticVocals(
                wet=name == "wet", sample_rate=config.sample_rate, split_name=config.split
            )
            for name in config.sets
        }
    groups: dict[str, list] = {name: [] for name in config.sets}
    for folder in config.data_dirs:
        wet = {"": None, "dry": False, "wet": True}[config.reverb]
        dataset = readers.open_dataset(folder, wet, config.sample_rate).split(config.split)
        if not len(dataset):
            raise ValueError(f"{folder}: no recordings in the {config.split} split")
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
            out[name] = train.Mixture(datasets)  # one dataset per seed
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
        c, y = 0.0, _apply(lowpass_operator(task.value, sample_rate, design), jnp.asarray(x0))
    y = np.asarray(y)
    return Observation(x0, y.astype(np.float32), c, priors.level_gain(y, sigma_data))


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
def lowpass_operator(cutoff_hz: float, sample_rate: int, design: str) -> degradations.Lowpass:
    return degradations.lowpass(cutoff_hz, sample_rate, design=design)
