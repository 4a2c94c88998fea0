"""The CQT-Diff U-Net on the embedded synthetic singing voice, dry and wet (half each).

The reference architecture (DESIGN §6.2) with CQT-Diff's optimiser. Its default is the
CPU-sized preset at 16,384 samples; `model.preset = "reference"` with `clip_length = 65536`
and a larger batch is the GPU run. σ_d is measured on 64 clips at the start.

  python -m experiments.train --config=experiments/configs/cqtdiff_synthetic.py --workdir=/tmp/cqt
"""

import ml_collections

from experiments import configs
from experiments.configs import sashimi_synthetic


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the training config; `arg="smoke"` gives a few-step run of the tiny model."""
    config = sashimi_synthetic.get_config(arg)
    config.model = configs.model("cqtdiff", config.model.preset)
    # CQT-Diff's optimiser, σ distribution and EDM's preconditioning, set here rather than
    # inherited: the SaShiMi recipe is tuned to its own network.
    config.learning_rate = 2e-4
    config.lr_schedule = "step"
    config.preconditioning = "edm"
    config.sigma_distribution = "cqtdiff"
    if arg == "smoke":
        config.clip_length = 4096  # the CQT of the tiny preset needs a few octaves' worth
        return config
    config.batch_size = 4
    config.clip_length = 16384
    config.num_steps = 6000
    return config
