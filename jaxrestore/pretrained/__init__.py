"""The model shipped in the package: a CPU-trained SaShiMi-Diff prior of sung vocals.

`load()` needs no download and no path: the EMA weights lie beside this file as Flax
msgpack (pickle-free) with a JSON sidecar. How they were trained is in README.md.
"""

import functools
import os

from jaxrestore import checkpoints, priors

WEIGHTS = os.path.join(os.path.dirname(__file__), "sashimi_vocals.msgpack")


@functools.cache
def load(path: str = WEIGHTS) -> priors.Prior:
    """Loads the shipped prior (or another `export_msgpack` file).

    Returns:
      A `priors.Prior`: the denoiser on clips whose length is a multiple of 256 samples, its
      sample rate (22,050 Hz), σ_d, and `info` (network config, training steps, …).
    """
    if not os.path.exists(path):
        raise ValueError(f"no pretrained weights at {path}; reinstall jaxrestore")
    return checkpoints.load_msgpack(path)
