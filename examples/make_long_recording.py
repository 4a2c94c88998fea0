"""Writes a long 48 kHz stereo test recording for the memory measurements of the README.

  python examples/make_long_recording.py 60 long.wav   # 60 minutes, 16-bit PCM

A 220 Hz tone with noise at about −20 dBFS, 0.1 s of it clipped at 0.5 in every 10 s (the
same signal as `tests/test_restoration.py`'s peak-memory test), written 10 s at a time so
that making it needs no memory in proportion to its length.
"""

import sys

import numpy as np
import soundfile as sf

RATE = 48000


def main(minutes: float, path: str) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", RATE, 2, "PCM_16") as f:
        for start in range(0, int(minutes * 60 * RATE), 10 * RATE):
            t = (start + np.arange(10 * RATE)) / RATE
            block = 0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)
            block[: RATE // 10] *= 8.0  # a loud burst, clipped at 0.5 below
            f.write(np.clip(np.stack([block, block[::-1]], axis=1), -0.5, 0.5))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/make_long_recording.py MINUTES OUT.wav")
    main(float(sys.argv[1]), sys.argv[2])
