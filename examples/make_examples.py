"""Writes the degraded example clips of README.md from held-out synthetic vocals.

  python examples/make_examples.py

Seed 99_000_001 is a validation seed (≡ 1 mod 3, see `synthetic.SyntheticVocals`): training
draws only seeds ≡ 0 mod 3, so the model never heard this clip.
"""

import os

import numpy as np

from jaxrestore import audio, degradations
from jaxrestore.data import synthetic

HERE = os.path.dirname(os.path.abspath(__file__))
SEED, LENGTH, RATE = 99_000_001, 65536, 22050


def main():
    clean = synthetic.clip(SEED, LENGTH, wet=False).astype(np.float32)
    c = float(degradations.clip_threshold_for_sdr(clean, 5.0))
    clipped = np.asarray(degradations.Clip(c).apply(clean))
    lowpassed = np.asarray(degradations.lowpass(3000.0, RATE).apply(clean))
    for name, x in (("clean", clean), ("clipped", clipped), ("lowpassed", lowpassed)):
        # 32-bit float keeps the clipped plateau exact, so the threshold reads back.
        audio.write_audio(
            os.path.join(HERE, f"{name}_vocal.wav"), x, RATE, subtype="FLOAT", overwrite=True
        )
    print(f"clip threshold {c:.5f} for 5 dB input SDR")


if __name__ == "__main__":
    main()
