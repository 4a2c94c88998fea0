"""Tests for jaxrestore.evaluation.clips: the held-out sets read from dataset folders."""

import numpy as np
import pytest
import soundfile

from jaxrestore.data import readers
from jaxrestore.evaluation import clips, tasks

T = 2048


def _tone(f, n, rate=22050):
    return 0.3 * np.sin(2 * np.pi * f * np.arange(n) / rate)


def _nus_tree(root, tones):
    """Writes a NUS-48E-like folder: per split in `tones`, one file whose path hashes into it."""
    names = [f"song{k}.wav" for k in range(200)]
    (root / "anna" / "sing").mkdir(parents=True)
    for split, f in tones.items():
        name = next(n for n in names if readers.hash_split(f"anna/sing/{n}") == split)
        soundfile.write(root / "anna/sing" / name, _tone(f, 8000), 22050)


def _peak_hz(x):
    return np.argmax(np.abs(np.fft.rfft(x * np.hanning(x.size)))) * 22050 / x.size


def test_file_datasets_give_their_test_splits_as_the_dry_and_wet_sets(tmp_path):
    # NUS-48E (dry): a file whose path hashes into the test split, one into train.
    _nus_tree(tmp_path / "nus", {"test": 440, "train": 880})
    # MUSDB18-HQ (wet): test/ is the test split; stereo at 44.1 kHz.
    for subset, f in (("test", 330), ("train", 660)):
        (tmp_path / "musdb" / subset / "track").mkdir(parents=True)
        stereo = np.stack([_tone(f, 16000, 44100)] * 2, axis=1)
        soundfile.write(tmp_path / "musdb" / subset / "track" / "vocals.wav", stereo, 44100)

    config = tasks.EvalConfig(
        data="files", data_dirs=(str(tmp_path / "nus"), str(tmp_path / "musdb")), clip_length=T
    )
    sets = clips.open_sets(config)
    assert set(sets) == {"dry", "wet"}
    for name, f in (("dry", 440), ("wet", 330)):  # the test files' tones, not the others'
        _, x = clips.load_clip(sets[name], 0, T, config.min_rms)
        assert _peak_hz(x) == pytest.approx(f, abs=22050 / T)


def test_the_validation_split_is_read_instead_of_the_test_split_when_asked(tmp_path):
    _nus_tree(tmp_path / "nus", {"test": 440, "validation": 550, "train": 880})
    for split, f in (("test", 440), ("validation", 550)):
        config = tasks.EvalConfig(
            data="files", data_dirs=(str(tmp_path / "nus"),), clip_length=T, split=split
        )
        _, x = clips.load_clip(clips.open_sets(config)["dry"], 0, T, config.min_rms)
        assert _peak_hz(x) == pytest.approx(f, abs=22050 / T)
    # The synthetic singer: the same clip index draws disjoint seeds in the two splits.
    by_split = {
        split: clips.load_clip(
            clips.open_sets(tasks.EvalConfig(clip_length=T, sets=("dry",), split=split))["dry"],
            0,
            T,
            0.0,
        )[1]
        for split in ("test", "validation")
    }
    assert not np.allclose(by_split["test"], by_split["validation"])
    with pytest.raises(ValueError, match="split must be one of"):
        tasks.EvalConfig(split="train")
