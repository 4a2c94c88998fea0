"""Tests for jaxrestore.evaluation.clips: the held-out sets read from dataset folders."""

import numpy as np
import pytest
import soundfile

from jaxrestore.data import readers
from jaxrestore.evaluation import clips, tasks

T = 2048


def test_file_datasets_give_their_test_splits_as_the_dry_and_wet_sets(tmp_path):
    def tone(f, n, rate=22050):
        return 0.3 * np.sin(2 * np.pi * f * np.arange(n) / rate)

    # NUS-48E (dry): a file whose path hashes into the test split, one into train.
    names = [f"song{k}.wav" for k in range(200)]
    test_name = next(n for n in names if readers.hash_split(f"anna/sing/{n}") == "test")
    train_name = next(n for n in names if readers.hash_split(f"anna/sing/{n}") == "train")
    (tmp_path / "nus" / "anna" / "sing").mkdir(parents=True)
    soundfile.write(tmp_path / "nus/anna/sing" / test_name, tone(440, 8000), 22050)
    soundfile.write(tmp_path / "nus/anna/sing" / train_name, tone(880, 8000), 22050)
    # MUSDB18-HQ (wet): test/ is the test split; stereo at 44.1 kHz.
    for subset, f in (("test", 330), ("train", 660)):
        (tmp_path / "musdb" / subset / "track").mkdir(parents=True)
        stereo = np.stack([tone(f, 16000, 44100)] * 2, axis=1)
        soundfile.write(tmp_path / "musdb" / subset / "track" / "vocals.wav", stereo, 44100)

    config = tasks.EvalConfig(
        data="files", data_dirs=(str(tmp_path / "nus"), str(tmp_path / "musdb")), clip_length=T
    )
    sets = clips.open_sets(config)
    assert set(sets) == {"dry", "wet"}
    for name, f in (("dry", 440), ("wet", 330)):  # the test files' tones, not the others'
        _, x = clips.load_clip(sets[name], 0, T, config.min_rms)
        spectrum = np.abs(np.fft.rfft(x * np.hanning(T)))
        assert np.argmax(spectrum) * 22050 / T == pytest.approx(f, abs=22050 / T)
