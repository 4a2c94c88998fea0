"""SaShiMi-Diff on real vocals: the poster's setting (dry NUS-48E and NHSS, wet MUSDB18).

The data folders come from the command line; each folder's layout is recognised (NUS-48E
`<singer>/sing/*.wav`, NHSS `<singer>/<song>/song.wav`, MUSDB18-HQ `{train,test}/<track>/
vocals.wav`, MUSDB18 stems, or a plain folder of audio files, which needs
`--config.data.reverb=dry` or `wet`), and each clip comes from one folder picked uniformly:

  python -m experiments.train --config=experiments/configs/sashimi_vocals.py \
      --data_dir=/data/NUS-48E,/data/NHSS,/data/musdb18hq --workdir=/ckpt/sashimi_vocals

The default is the reference model (7.5 M parameters) at CQT-Diff's segment of 65,536 samples
(2.97 s at 22.05 kHz): a GPU run. σ_d is measured on 256 training clips at the start.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the training config; `arg="smoke"` gives a few-step run of the tiny model."""
    if arg not in (None, "", "smoke"):
        raise ValueError(f"unknown variant {arg!r}; expected none or 'smoke'")
    config = ml_collections.ConfigDict()
    # Keys besides name and preset replace fields of the preset's config dataclass.
    config.model = ml_collections.ConfigDict({"name": "sashimi", "preset": "reference"})
    config.data = ml_collections.ConfigDict(
        {"source": "files", "data_dir": "", "reverb": "mixed", "sample_rate": 22050}
    )
    config.seed = 0
    config.batch_size = 8
    config.num_samples = 65536
    config.num_steps = 300_000
    config.learning_rate = 2e-4
    config.warmup_steps = 1000
    config.lr_decay_every = 60_000
    config.lr_decay_rate = 0.8
    config.grad_clip_norm = 1.0
    config.ema_decay = 0.9999
    config.ema_warmup = True
    config.sigma_data = config_dict.placeholder(float)  # None: measure on the data
    config.sigma_data_clips = 256
    config.sigma_distribution = "cqtdiff"
    config.checkpoint_every = 5000
    config.keep_checkpoints = 3
    config.log_every = 100

    if arg == "smoke":
        config.model.preset = "tiny"
        config.batch_size = 2
        config.num_samples = 2048
        config.num_steps = 6
        config.warmup_steps = 2
        config.sigma_data_clips = 4
        config.checkpoint_every = 2
        config.log_every = 1
    return config
