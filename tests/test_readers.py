"""Tests for the dataset readers (jaxrestore.data.readers) on small trees built in tmp_path."""

import sys
import types

import jax
import numpy as np
import pytest
import soundfile as sf

from jaxrestore.data import readers

SR = readers.SAMPLE_RATE


def _tone(path, rate=44100, seconds=0.2, channels=1, frequency=440.0, amplitude=0.5):
    """Writes a sine (channel c at amplitude·(c + 1)) and returns it as [T, C]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    x = np.stack(
        [amplitude * (c + 1) * np.sin(2 * np.pi * frequency * t) for c in range(channels)], 1
    )
    sf.write(path, x, rate, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")
    return x


def _keys(dataset):
    return sorted(item.key for item in dataset.files)


def test_nus48e_uses_sing_not_read(tmp_path):
    for singer in ("ADIZ", "JLS"):
        for song in ("01", "09"):
            _tone(tmp_path / singer / "sing" / f"{song}.wav")
            _tone(tmp_path / singer / "read" / f"{song}.wav")
    dataset = readers.nus48e(tmp_path)
    assert dataset.name == "NUS-48E"
    assert _keys(dataset) == [
        "ADIZ/sing/01.wav",
        "ADIZ/sing/09.wav",
        "JLS/sing/01.wav",
        "JLS/sing/09.wav",
    ]
    assert not any(item.wet for item in dataset.files)
    assert readers.open_dataset(tmp_path).name == "NUS-48E"


def test_nhss_uses_song_not_speech(tmp_path):
    for singer, song in (("M01", "Song1"), ("M01", "Song2"), ("F03", "Song7")):
        _tone(tmp_path / singer / song / "song.wav")
        _tone(tmp_path / singer / song / "speech.wav")
    dataset = readers.nhss(tmp_path)
    assert _keys(dataset) == ["F03/Song7/song.wav", "M01/Song1/song.wav", "M01/Song2/song.wav"]
    assert not any(item.wet for item in dataset.files)
    assert readers.open_dataset(tmp_path).name == "NHSS"


def test_musdb18hq_is_wet_resampled_mono_and_keeps_its_test_folder(tmp_path):
    stereo = {}
    for subset, track in (("train", "A - One"), ("train", "B - Two"), ("test", "C - Three")):
        stereo[track] = _tone(tmp_path / subset / track / "vocals.wav", rate=44100, channels=2)
        _tone(tmp_path / subset / track / "mixture.wav", rate=44100, channels=2)
    dataset = readers.open_dataset(tmp_path)
    assert dataset.name == "MUSDB18-HQ"
    assert _keys(dataset) == [
        "test/C - Three/vocals.wav",
        "train/A - One/vocals.wav",
        "train/B - Two/vocals.wav",
    ]
    assert all(item.wet for item in dataset.files)
    assert {item.key for item in dataset.split("test").files} == {"test/C - Three/vocals.wav"}
    assert all(
        item.split in ("train", "validation")
        for item in dataset.files
        if item.key.startswith("train")
    )

    item = dataset.split("test").files[0]
    x = dataset.load(item)
    assert x.dtype == np.float32 and x.shape == (int(np.ceil(0.2 * 44100 / 2)),)  # 4,410 samples
    # Mono is the mean of the channels (0.5 and 1.0 amplitude sines): a 0.75 sine at 22,050 Hz.
    t = np.arange(x.size) / SR
    np.testing.assert_allclose(
        x[200:-200], 0.75 * np.sin(2 * np.pi * 440.0 * t)[200:-200], atol=2e-3
    )


def test_folder_reader_is_recursive_and_needs_a_wet_flag(tmp_path):
    _tone(tmp_path / "a.wav", rate=48000)
    _tone(tmp_path / "deep" / "deeper" / "b.flac", rate=16000)
    (tmp_path / "notes.txt").write_text("not audio")
    dataset = readers.audio_folder(tmp_path, wet=True)
    assert _keys(dataset) == ["a.wav", "deep/deeper/b.flac"]
    assert all(item.wet for item in dataset.files)
    assert dataset.load(dataset.files[1]).shape == (4410,)  # 3,200 samples at 16 kHz
    with pytest.raises(ValueError, match="wet"):
        readers.open_dataset(tmp_path)
    assert readers.open_dataset(tmp_path, wet=False).name == "folder"


def test_empty_or_unknown_layouts_name_the_folder_and_the_layout(tmp_path):
    with pytest.raises(ValueError) as info:
        readers.open_dataset(tmp_path)
    assert str(tmp_path) in str(info.value) and "<singer>/sing/*.wav" in str(info.value)
    _tone(tmp_path / "M01" / "Song1" / "song.wav")
    with pytest.raises(ValueError, match="NUS-48E.*<singer>/sing/\\*.wav"):
        readers.nus48e(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        readers.nhss(tmp_path / "missing")


def test_splits_are_deterministic_disjoint_and_independent_of_the_other_files(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    for k in range(40):
        _tone(small / f"take{k:02d}.wav", seconds=0.01)
        _tone(large / f"take{k:02d}.wav", seconds=0.01)
    for k in range(40, 80):
        _tone(large / f"take{k:02d}.wav", seconds=0.01)
    small_set, large_set = readers.audio_folder(small, False), readers.audio_folder(large, False)
    splits = {name: _keys(large_set.split(name)) for name in readers.SPLITS}
    assert sum(len(keys) for keys in splits.values()) == 80
    assert set(splits["train"]).isdisjoint(splits["validation"])
    assert set(splits["train"]).isdisjoint(splits["test"])
    assert set(splits["validation"]).isdisjoint(splits["test"])
    # The 40 shared files land in the same split whatever else is in the folder.
    shared = {item.key: item.split for item in large_set.files if item.key in set(_keys(small_set))}
    assert shared == {item.key: item.split for item in small_set.files}
    # The hash spreads keys in the requested proportions.
    names = [readers.hash_split(f"singer{k}/song.wav") for k in range(4000)]
    for name, fraction in zip(readers.SPLITS, readers.DEFAULT_FRACTIONS, strict=True):
        assert abs(names.count(name) / 4000 - fraction) < 0.03


def test_segments_skip_silence(tmp_path):
    # Half a file of silence, then noise: a start drawn uniformly lands in silence half the time.
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(SR), 0.3 * rng.standard_normal(SR)])
    sf.write(tmp_path / "half.wav", x, SR, subtype="FLOAT")
    dataset = readers.audio_folder(tmp_path, wet=False)
    threshold = 0.1 * np.sqrt(np.mean(x**2))

    def rms(segment):
        return np.sqrt(np.mean(segment**2))

    skipping = [dataset.segment(seed, 2048, attempts=30) for seed in range(20)]
    assert all(rms(segment) >= threshold for segment in skipping)
    uniform = [dataset.segment(seed, 2048, attempts=1) for seed in range(20)]
    assert sum(rms(segment) < threshold for segment in uniform) >= 3


def test_segments_are_reproducible_and_short_files_are_padded(tmp_path):
    _tone(tmp_path / "long.wav", rate=SR, seconds=1.0, frequency=300.0)
    _tone(tmp_path / "short.wav", rate=SR, seconds=0.05, frequency=500.0)
    dataset = readers.audio_folder(tmp_path, wet=False)
    segments = [dataset.segment(seed, 2048) for seed in range(12)]
    np.testing.assert_array_equal(segments[3], dataset.segment(3, 2048))
    np.testing.assert_array_equal(
        dataset.segment(jax.random.key(4), 2048), dataset.segment(jax.random.key(4), 2048)
    )
    assert all(segment.shape == (2048,) and segment.dtype == np.float32 for segment in segments)
    padded = [segment for segment in segments if np.all(segment[int(0.05 * SR) :] == 0)]
    assert padded and len(padded) < len(segments)  # both files were drawn
    starts = {round(float(segment[0]), 6) for segment in segments}
    assert len(starts) > 3  # different seeds give different segments
    with pytest.raises(ValueError, match="no files"):
        readers.AudioDataset(str(tmp_path), []).segment(0, 16)


def test_decoded_files_are_cached(tmp_path):
    for k in range(3):
        _tone(tmp_path / f"{k}.wav", rate=SR, seconds=0.05)
    calls = []

    def decode(item):
        calls.append(item.key)
        return sf.read(item.path, dtype="float32", always_2d=True)[0].T, SR

    folder = readers.audio_folder(tmp_path, wet=False)
    dataset = readers.AudioDataset(folder.root, folder.files, decode=decode, cache_size=2)
    first, second, third = dataset.files
    dataset.load(first)
    dataset.load(first)
    dataset.load(second)
    assert calls == ["0.wav", "1.wav"]
    dataset.load(third)  # evicts the least recently used, "0.wav"
    dataset.load(second)
    dataset.load(first)
    assert calls == ["0.wav", "1.wav", "2.wav", "0.wav"]


def test_musdb_stems_through_the_musdb_package(tmp_path, monkeypatch):
    # A stand-in for the optional `musdb` package, with the attributes the reader uses.
    rate = 44100
    t = np.arange(4410) / rate
    vocals = np.stack([np.sin(2 * np.pi * 220 * t), np.zeros_like(t)], 1)

    class Track:
        def __init__(self, name, subset):
            self.name, self.subset, self.rate = name, subset, rate
            self.path = str(tmp_path / subset / f"{name}.stem.mp4")
            self.targets = {"vocals": types.SimpleNamespace(audio=vocals)}

    class DB:
        def __init__(self, root, subsets, is_wav):
            assert not is_wav and set(subsets) == {"train", "test"}
            self.tracks = [Track("A", "train"), Track("B", "test")]

    monkeypatch.setitem(sys.modules, "musdb", types.SimpleNamespace(DB=DB))
    dataset = readers.musdb18(tmp_path)
    assert _keys(dataset) == ["test/B", "train/A"] and all(item.wet for item in dataset.files)
    assert [item.key for item in dataset.split("test").files] == ["test/B"]
    x = dataset.load(dataset.split("test").files[0])
    assert x.shape == (2205,)
    np.testing.assert_allclose(
        x[100:-100], 0.5 * np.sin(2 * np.pi * 220 * np.arange(2205) / SR)[100:-100], atol=2e-3
    )

    monkeypatch.setitem(sys.modules, "musdb", None)  # not installed: import fails
    with pytest.raises(ValueError, match="musdb"):
        readers.musdb18(tmp_path)


def test_as_seed_accepts_ints_generators_and_jax_keys():
    assert readers.as_seed(5) == 5
    assert readers.as_seed(jax.random.key(1)) == readers.as_seed(jax.random.key(1))
    assert readers.as_seed(jax.random.key(1)) != readers.as_seed(jax.random.key(2))
    assert readers.as_seed(jax.random.PRNGKey(1)) == readers.as_seed(jax.random.key(1))
    assert readers.as_seed(np.random.default_rng(0)) == readers.as_seed(np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-negative"):
        readers.as_seed(-3)
    with pytest.raises(ValueError, match="JAX key"):
        readers.as_seed(1.5)
