"""The model shipped in the package: a CPU-trained SaShiMi-Diff prior of sung vocals.

`load()` needs no download and no path: the EMA weights lie beside this file as Flax
msgpack (pickle-free) with a JSON sidecar. How they were trained is in README.md.
"""

import dataclasses
import functools
import os
from typing import Any

from jaxrestore import checkpoints, edm

WEIGHTS = os.path.join(os.path.dirname(__file__), "sashimi_vocals.msgpack")


@dataclasses.dataclass(frozen=True)
class PretrainedModel:
    """A loaded prior.

    Attributes:
      denoiser: `D(x, sigma)` on one clip of any length that is a multiple of 256 samples.
      sample_rate: the rate it was trained at (22,050 Hz).
      sigma_data: the data scale σ_d it was trained with.
      config: the network's config.
      info: everything the checkpoint says of itself (training steps, …).
    """

    denoiser: edm.Denoiser
    sample_rate: int
    sigma_data: float
    config: Any
    info: checkpoints.CheckpointInfo


@functools.cache
def load(path: str = WEIGHTS) -> PretrainedModel:
    """Loads the shipped model (or another `export_msgpack` file)."""
    if not os.path.exists(path):
        raise ValueError(f"no pretrained weights at {path}; reinstall jaxrestore")
    denoiser, info = checkpoints.load_msgpack(path)
    return PretrainedModel(
        denoiser=denoiser,
        sample_rate=info.sample_rate,
        sigma_data=info.sigma_data,
        config=info.model_config,
        info=info,
    )
