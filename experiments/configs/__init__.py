"""Config files of the experiments (ml_collections), and the model block they share."""

import dataclasses

import ml_collections
from ml_collections import config_dict

from jaxrestore import checkpoints


def model(name: str, preset: str) -> ml_collections.ConfigDict:
    """Returns a config's `model` block: the network, its preset and every field as an override.

    Each field of the network's config dataclass is a typed placeholder (None: the preset's
    value), so `--config.model.d_model=32` or `--config.model.remat=false` work from the
    command line; ml_collections only overrides keys that exist.
    """
    module, _, config_class = checkpoints.network_module(name)
    defaults = module.CONFIGS[preset]
    block = ml_collections.ConfigDict({"name": name, "preset": preset})
    for field in dataclasses.fields(config_class):
        block[field.name] = config_dict.placeholder(type(getattr(defaults, field.name)))
    return block
