"""Whole recordings: degradation estimates, segments and cross-fades, the restore pipeline."""

import dataclasses

import numpy as np
import pytest
import scipy.signal

from jaxrestore import degradations, priors, restoration, sample
from jaxrestore.data import synthetic


def _white_prior(sigma_data=0.2):
    # The exact denoiser of a white Gaussian prior: any length, no training.
    def denoiser(x, sigma):
        return sigma_data**2 / (sigma_data**2 + sigma**2) * x

    return priors.Prior(denoiser, 22050, sigma_data, length_multiple=256)


def _voice(seed=0, n=22050):
    return synthetic.sing(seed, n)[0].astype(np.float32)


@pytest.mark.parametrize("length,overlap,total", [(1024, 256, 5000), (512, 0, 512), (256, 64, 100)])
def test_segments_join_back_exactly(length, overlap, total):
    x = np.random.default_rng(0).normal(size=total).astype(np.float32)
    segments = restoration.split_segments(x, length, overlap)
    assert segments.shape[1] == length
    np.testing.assert_allclose(restoration.join_segments(segments, total, overlap), x, atol=1e-6)
    # The cross-fade weights are a partition of unity over the joined signal.
    w = restoration.crossfade_weights(len(segments), length, overlap)
    ones = restoration.join_segments(np.ones_like(segments), total, overlap)
    np.testing.assert_allclose(ones, 1.0, atol=1e-6)
    assert w.min() >= 0


def test_clip_threshold_is_found_on_clipped_audio_and_refused_on_clean_audio():
    x = _voice()
    c = float(degradations.clip_threshold_for_sdr(x, 5.0))
    y = np.clip(x, -c, c)
    assert abs(restoration.estimate_clip_threshold(y) - c) < 1e-6 * max(c, 1)
    with pytest.raises(restoration.RestorationError, match="no clipping"):
        restoration.estimate_clip_threshold(x)
    with pytest.raises(restoration.RestorationError, match="silent"):
        restoration.estimate_clip_threshold(np.zeros(100))


@pytest.mark.parametrize("cutoff", [3000.0, 5000.0])
def test_cutoff_is_found_on_lowpassed_audio(cutoff):
    x = _voice(1, 44100)
    y = np.asarray(degradations.lowpass(cutoff, 22050).apply(x))
    estimate = restoration.estimate_cutoff(y, 22050)
    assert abs(estimate - cutoff) < 0.1 * cutoff, estimate
    with pytest.raises(restoration.RestorationError, match="no band limit"):
        restoration.estimate_cutoff(np.random.default_rng(0).normal(size=44100), 22050)


def test_gaps_are_detected():
    x = np.ones(1000, np.float32)
    x[100:150] = 0
    x[500:510] = 0  # too short to be a dropout
    mask = restoration.detect_gaps(x, min_length=32)
    assert mask[100:150].sum() == 0 and mask[:100].all() and mask[500:510].all()


def test_bad_settings_are_refused():
    x = _voice()[None]
    settings = restoration.Settings(task="declip", config=sample.SamplerConfig(steps=2))
    with pytest.raises(restoration.RestorationError, match="out of range"):
        restoration.resolve_settings(x, 22050, dataclasses.replace(settings, clip_threshold=5.0))
    bwe = dataclasses.replace(settings, task="bwe", cutoff_hz=20000.0)
    with pytest.raises(restoration.RestorationError, match="out of range"):
        restoration.resolve_settings(x, 22050, bwe)
    with pytest.raises(restoration.RestorationError, match="NaN"):
        restoration.check_recording(np.full((1, 10), np.nan))
    with pytest.raises(restoration.RestorationError, match="silent"):
        restoration.check_recording(np.zeros((2, 10)))


@pytest.mark.parametrize("rate,channels", [(22050, 1), (8000, 2), (48000, 1)])
def test_restore_recording_keeps_rate_length_and_channels(rate, channels):
    x = np.stack([_voice(s, rate) for s in range(channels)])  # 1 s at `rate`
    c = 0.5 * float(np.abs(x).max())
    y = np.clip(x, -c, c)
    config = dataclasses.replace(sample.PRESETS["rg+dc"], steps=3, sigma_data=0.2)
    settings = restoration.Settings(
        task="declip", config=config, segment_length=4096, overlap=512, batch_size=4
    )
    result = restoration.restore_recording(y, rate, _white_prior(), settings)
    assert result.mean.shape == y.shape and result.draws.shape == (1, *y.shape)
    assert np.all(np.isfinite(result.mean))
    assert result.clip_threshold == pytest.approx(c, rel=1e-5)
    if rate == 22050:
        # At the model's rate DC makes the output consistent with the recording.
        reliable = np.abs(y) < c * (1 - 1e-4)
        np.testing.assert_allclose(result.mean[reliable], y[reliable], atol=1e-4)


def test_long_recording_is_consistent_across_seams():
    # Several segments: cross-faded neighbours that each satisfy DC must still satisfy it
    # where they overlap, which fails if the weights do not sum to one or are misaligned.
    x = _voice(3, 22050 * 2)[None]
    c = 0.4 * float(np.abs(x).max())
    y = np.clip(x, -c, c)
    settings = restoration.Settings(
        task="declip",
        config=dataclasses.replace(sample.PRESETS["rg+dc"], steps=3, sigma_data=0.2),
        clip_threshold=c,
        segment_length=8192,
        overlap=1024,
        num_draws=2,
    )
    result = restoration.restore_recording(y, 22050, _white_prior(), settings)
    assert result.draws.shape == (2, 1, x.shape[1])
    for out in result.draws[:, 0]:
        reliable = np.abs(y[0]) < c * (1 - 1e-4)
        np.testing.assert_allclose(out[reliable], y[0][reliable], atol=1e-5)
        clipped = ~reliable
        assert np.all(np.sign(y[0][clipped]) * out[clipped] >= c * (1 - 1e-4))


def test_bandwidth_extension_keeps_the_low_band_across_seams():
    x = _voice(4, 22050 * 2)[None]
    y = np.asarray(degradations.lowpass(5000.0, 22050).apply(x[0]))[None]
    settings = restoration.Settings(
        task="bwe",
        config=dataclasses.replace(sample.PRESETS["rg+dc"], steps=3, sigma_data=0.2),
        cutoff_hz=5000.0,
        segment_length=8192,
        overlap=1024,
    )
    out = restoration.restore_recording(y, 22050, _white_prior(), settings).mean[0]
    sos = scipy.signal.butter(8, 3000, fs=22050, output="sos")
    low, ref = scipy.signal.sosfiltfilt(sos, out), scipy.signal.sosfiltfilt(sos, y[0])
    assert np.linalg.norm(low - ref) < 0.05 * np.linalg.norm(ref)
