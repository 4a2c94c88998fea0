"""Tests for jaxrestore.audio: reading, resampling, mono mixing, atomic writing, bad files."""

import os

import numpy as np
import pytest
import soundfile as sf

from jaxrestore import audio


def _sine(frequency, rate, num_samples, phase=0.0):
    return np.sin(2 * np.pi * frequency * np.arange(num_samples) / rate + phase)


def test_read_returns_channels_first_float32(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = 0.5 * _sine(440, 16000, 1600), 0.25 * _sine(660, 16000, 1600)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    x, rate = audio.read_audio(path)
    assert rate == 16000 and x.dtype == np.float32 and x.shape == (2, 1600)
    np.testing.assert_allclose(x[0], left, atol=1e-7)
    np.testing.assert_allclose(x[1], right, atol=1e-7)


def test_stereo_48k_resampled_to_22050_has_the_right_length_and_content(tmp_path):
    path = tmp_path / "stereo48k.wav"
    num_samples = 48000  # one second
    stereo = np.stack(
        [0.5 * _sine(1000, 48000, num_samples), 0.3 * _sine(1000, 48000, num_samples)], 1
    )
    sf.write(path, stereo, 48000, subtype="FLOAT")
    x, rate = audio.read_audio(path, sample_rate=22050)
    assert rate == 22050
    assert x.shape == (2, int(np.ceil(num_samples * 22050 / 48000)))  # 22,050 samples
    # Away from the edges the result is the same sine sampled at 22,050 Hz.
    reference = _sine(1000, 22050, x.shape[1])
    interior = slice(500, -500)
    np.testing.assert_allclose(x[0, interior], 0.5 * reference[interior], atol=2e-3)
    np.testing.assert_allclose(x[1, interior], 0.3 * reference[interior], atol=2e-3)


def test_resample_uses_the_reduced_ratio_and_keeps_a_sine():
    x = _sine(300, 44100, 4410).astype(np.float32)  # 0.1 s
    y = audio.resample(x, 44100, 22050)
    assert y.shape == (2205,) and y.dtype == np.float32
    np.testing.assert_allclose(y[100:-100], _sine(300, 22050, 2205)[100:-100], atol=2e-3)
    np.testing.assert_array_equal(audio.resample(x, 22050, 22050), x)
    with pytest.raises(ValueError, match="positive"):
        audio.resample(x, 0, 22050)


def test_to_mono_averages_channels():
    x = np.array([[1.0, 2.0, -1.0], [3.0, 4.0, 1.0]])
    np.testing.assert_allclose(audio.to_mono(x), [2.0, 3.0, 0.0])
    np.testing.assert_allclose(audio.to_mono(np.array([1.0, 2.0])), [1.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        audio.to_mono(np.zeros((2, 3, 4)))


@pytest.mark.parametrize("extension", [".wav", ".flac", ".ogg", ".mp3"])
def test_reads_every_container(tmp_path, extension):
    path = tmp_path / f"tone{extension}"
    x = 0.5 * _sine(440, 22050, 22050)
    subtype = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS", ".mp3": "MPEG_LAYER_III"}
    sf.write(path, x, 22050, subtype=subtype[extension])
    y, rate = audio.read_audio(path)
    assert rate == 22050 and y.shape[0] == 1
    # Lossy codecs add a delay and some error: compare the levels, not the samples.
    assert abs(np.sqrt(np.mean(y**2)) - 0.5 / np.sqrt(2)) < 0.02


def _assert_one_line_error(path, match):
    with pytest.raises(audio.AudioError) as info:
        audio.read_audio(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert match in message
    assert isinstance(info.value, ValueError)


def test_bad_inputs_raise_audio_error_naming_the_file(tmp_path):
    _assert_one_line_error(tmp_path / "missing.wav", "no such file")

    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    _assert_one_line_error(text, "not a readable audio file")

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    _assert_one_line_error(empty, "empty")

    no_samples = tmp_path / "no_samples.wav"
    sf.write(no_samples, np.zeros((0, 1)), 22050)
    _assert_one_line_error(no_samples, "no samples")

    nan = tmp_path / "nan.wav"
    x = np.zeros(100, np.float32)
    x[[3, 50]] = np.nan
    sf.write(nan, x, 22050, subtype="FLOAT")
    _assert_one_line_error(nan, "NaN or Inf in 2 of 100 samples")

    inf = tmp_path / "inf.wav"
    x[:] = 0.0
    x[7] = np.inf
    sf.write(inf, x, 22050, subtype="DOUBLE")
    _assert_one_line_error(inf, "NaN or Inf in 1 of 100 samples")


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "out.wav"
    first = 0.5 * _sine(220, 22050, 2205)
    audio.write_audio(path, first, 22050)
    assert os.listdir(tmp_path) == ["out.wav"]  # no temporary file left behind
    y, rate = audio.read_audio(path)
    np.testing.assert_allclose(y[0], first, atol=2**-22)  # 24-bit PCM

    second = np.stack([first, -first]).astype(np.float32)
    with pytest.raises(audio.AudioError, match="already exists"):
        audio.write_audio(path, second, 22050)
    np.testing.assert_allclose(audio.read_audio(path)[0][0], first, atol=2**-22)  # untouched

    audio.write_audio(path, second, 22050, subtype="FLOAT", overwrite=True)
    y, _ = audio.read_audio(path)
    np.testing.assert_array_equal(y, second)
    assert os.listdir(tmp_path) == ["out.wav"]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):  # soundfile rejects a PCM subtype for Ogg
        audio.write_audio(tmp_path / "bad.ogg", np.zeros(100), 22050, subtype="PCM_24")
    assert os.listdir(tmp_path) == []
    with pytest.raises(audio.AudioError, match="NaN"):
        audio.write_audio(tmp_path / "nan.wav", np.full(10, np.nan), 22050)
    with pytest.raises(ValueError, match="extension"):
        audio.write_audio(tmp_path / "x.txt", np.zeros(10), 22050)
    with pytest.raises(ValueError, match="non-empty"):
        audio.write_audio(tmp_path / "x.wav", np.zeros(0), 22050)
    assert os.listdir(tmp_path) == []
