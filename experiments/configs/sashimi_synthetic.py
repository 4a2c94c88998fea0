"""SaShiMi-Diff on the embedded synthetic singing voice, dry and wet (half each).

The default is the recipe of the shipped model: the CPU-sized network (FiLM conditioning) on
2 CPU cores, batches of 16 clips of 4,096 samples (0.19 s at 22.05 kHz), EDM with the Wiener
skip (`edm.precondition_wiener`), Adam at 1e-3 on a cosine schedule over 4,000 steps. Training
σ is log-normal around 0.05 (ln σ ~ N(-3, 1.5²)): the skip alone already restores small and
large σ, and a budget spread over CQT-Diff's σ range left the network nothing learned in the
middle. The network is fully convolutional plus S4, so it restores clips of any multiple of 16
samples later. σ_d (64 clips) and the data's spectrum (256 clips) are measured at the start
and stored in the checkpoint.

  python -m experiments.train --config=experiments/configs/sashimi_synthetic.py --workdir=/tmp/run
  python -m experiments.train --config=experiments/configs/sashimi_synthetic.py:smoke ...
"""

import ml_collections
from ml_collections import config_dict

from experiments import configs


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the training config; `arg="smoke"` gives a few-step run of the tiny model."""
    if arg not in (None, "", "smoke"):
        raise ValueError(f"unknown variant {arg!r}; expected none or 'smoke'")
    config = ml_collections.ConfigDict()
    # Fields besides name and preset replace those of the preset when set (None: the preset's).
    config.model = configs.model("sashimi", "cpu")
    config.data = ml_collections.ConfigDict(
        {
            "source": "synthetic",
            "data_dir": "",
            "reverb": "mixed",
            "sample_rate": 22050,
            # "classic" reproduces runs on the first generator's clips (before issue #15).
            "synthetic_mix": "wide",
        }
    )
    config.seed = 0
    config.batch_size = 16
    config.clip_length = 4096
    config.num_steps = 4000
    config.learning_rate = 1e-3
    config.warmup_steps = 200
    config.lr_schedule = "cosine"
    config.lr_decay_every = 60_000
    config.lr_decay_rate = 0.8
    config.lr_final_ratio = 0.02
    config.grad_clip_norm = 1.0
    config.ema_decay = 0.9999
    config.ema_warmup = True
    config.sigma_data = config_dict.placeholder(float)  # None: measure on the data
    config.sigma_data_clips = 64
    config.preconditioning = "wiener"
    config.spectrum_frame = 512
    config.spectrum_clips = 256
    config.sigma_distribution = "lognormal"
    config.sigma_min, config.sigma_max, config.rho = 1e-6, 10.0, 10.0  # "cqtdiff"
    config.p_mean, config.p_std = -3.0, 1.5  # "lognormal": ln σ ~ N(p_mean, p_std²)
    config.checkpoint_every = 500
    config.keep_checkpoints = 3
    config.log_every = 50
    config.data_workers = 1  # processes drawing batches: more on an accelerator

    if arg == "smoke":
        config.model.preset = "tiny"
        config.batch_size = 2
        config.clip_length = 2048
        config.num_steps = 6
        config.warmup_steps = 2
        config.sigma_data_clips = 4
        config.spectrum_clips = 4
        config.checkpoint_every = 2
        config.log_every = 1
    return config
