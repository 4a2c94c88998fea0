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

from experiments.configs import sashimi_synthetic


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the training config; `arg="smoke"` gives a few-step run of the tiny model."""
    config = sashimi_synthetic.get_config(arg)
    config.data.source = "files"
    if arg == "smoke":
        return config
    config.model.preset = "reference"
    config.batch_size = 8
    config.clip_length = 65536
    config.num_steps = 300_000
    config.warmup_steps = 1000
    # CQT-Diff's optimiser, σ distribution and EDM's preconditioning, as the poster's models
    # were trained.
    config.learning_rate = 2e-4
    config.lr_schedule = "step"
    config.preconditioning = "edm"
    config.sigma_distribution = "cqtdiff"
    config.sigma_data_clips = 256
    config.checkpoint_every = 5000
    config.log_every = 100
    config.data_workers = 1  # processes drawing batches: more on an accelerator
    return config
