"""The poster's Tables 1 and 2 on held-out synthetic vocals, dry and wet.

Every sampler preset plus the degraded input on declipping (input SDR 5 and 10 dB) and
bandwidth extension (3 and 5 kHz); A-SPADE and S-SPADE on declipping.

  python -m experiments.evaluate --config=experiments/configs/evaluate_synthetic.py \
      --workdir=/tmp/eval
  python -m experiments.evaluate --config=experiments/configs/evaluate_synthetic.py:smoke ...
  python -m experiments.evaluate --config=...:smoke --config.prior=gaussian ...   # no weights

Lists (tasks, methods, sets) are comma-separated strings, so that they can be overridden on
the command line; "all" takes every choice.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the evaluation config; `arg="smoke"` gives a run of a few minutes on a CPU."""
    if arg not in (None, "", "smoke"):
        raise ValueError(f"unknown variant {arg!r}; expected none or 'smoke'")
    config = ml_collections.ConfigDict()
    # "pretrained" (the shipped model), "gaussian" (the closed-form Wiener prior of the tests,
    # σ_d = 0.1), "wiener" (a Gaussian with the training data's spectrum: the structure-free
    # baseline a learned prior must beat) or a checkpoint: a work dir or an exported .msgpack.
    config.prior = "pretrained"
    config.data = "synthetic"  # or "files": the held-out split of each folder in data_dir
    config.data_dir = ""  # comma-separated dataset folders (NUS-48E, NHSS, MUSDB18, …)
    config.split = "test"  # or "validation": to choose a default, a setting or a prior
    config.reverb = ""  # "dry" or "wet": what a plain folder of audio holds
    config.tasks = "all"  # declip5, declip10, bwe3k, bwe5k
    config.methods = "all"  # degraded, the sampler presets, aspade, sspade
    config.sets = "dry,wet"
    config.clips_per_set = 50
    config.clip_length = 65536
    config.steps = config_dict.placeholder(int)  # None: the presets' 35
    config.batch_size = 8
    config.seed = 0
    config.lowpass_design = "kaiser"
    config.fad = True
    config.fmd = True
    config.vggish_weights = config_dict.placeholder(str)  # None: $VGGISH_WEIGHTS

    if arg == "smoke":
        # Every sampler preset compiles its own program (about 25 s each for the CPU SaShiMi
        # model): the smoke run keeps the baseline, the first and the last table rows.
        config.methods = "degraded,rg+dc,rg_drho+dc+rp,aspade"
        config.clips_per_set = 2
        config.clip_length = 8192
        config.steps = 4
        config.batch_size = 4
    return config
