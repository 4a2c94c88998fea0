"""Whole recordings: degradation estimates, segments and cross-fades, the restore pipeline."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from jaxrestore import audio, degradations, priors, restoration, sample
from jaxrestore.data import synthetic

ROOT = Path(__file__).resolve().parents[1]


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


def test_blockwise_restoration_equals_the_one_shot_restoration():
    """Groups of one segment, resampled piecewise at 48 kHz stereo: the one-shot's samples."""
    rate = 48000
    x = np.stack([audio.resample(_voice(s, 22050 * 3 // 2), 22050, rate) for s in (5, 6)])
    c = 0.4 * float(np.abs(x).max())
    y = np.clip(x, -c, c)
    settings = restoration.Settings(
        task="declip",
        config=dataclasses.replace(sample.PRESETS["rg+dc"], steps=2, sigma_data=0.2),
        segment_length=4096,
        overlap=512,
        num_draws=2,
        batch_size=4,
    )
    whole = restoration.restore_recording(y, rate, _white_prior(), settings)
    source = restoration.ArraySource(y, rate)
    # Blocks of 10,000 input samples for the survey and the level, one segment per group.
    plan, found = restoration.plan(source, _white_prior(), settings, block=10_000)
    assert found.peak == float(np.abs(y).max())
    assert plan.settings.clip_threshold == whole.clip_threshold and plan.per_channel > 8
    blocks = list(restoration.restore_blocks(source, _white_prior(), plan, group=1))
    assert len(blocks) > 8  # handed on piece by piece, not all at the end
    joined = np.concatenate(blocks, axis=-1)
    assert joined.shape == whole.draws.shape
    # The level is summed over blocks in float64 here, in one float32 mean there: round-off.
    np.testing.assert_allclose(joined, whole.draws, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate_in,rate_out", [(48000, 22050), (22050, 48000), (8000, 22050)])
def test_a_resampled_range_is_that_range_of_the_whole(rate_in, rate_out):
    x = np.random.default_rng(0).normal(size=(2, 20011)).astype(np.float32)
    whole = audio.resample(x, rate_in, rate_out)
    source = restoration.ArraySource(x, rate_in)
    for start, stop in [(0, 700), (1234, 5678), (whole.shape[1] - 99, whole.shape[1])]:
        part = restoration.resampled_range(source.read, rate_in, rate_out, start, stop)
        np.testing.assert_array_equal(part, whole[:, start:stop])


def test_aspade_in_pieces_equals_aspade_on_the_whole_channel():
    from jaxrestore import sharding, spade

    x = np.stack([_voice(s, 11025) for s in (7, 8)])
    c = 0.5 * float(np.abs(x).max())
    y = np.clip(x, -c, c)
    peak = float(np.abs(y).max())
    whole = np.stack([np.asarray(spade.declip(ch, c)) for ch in y])
    source = restoration.ArraySource(y, 22050)
    # Pieces of 1,024 samples (and a margin of 768 either side), two clips per call.
    pieces = list(
        restoration.declip_blocks(source, c, peak, piece=1024, batch=2, mesh=sharding.data_mesh(1))
    )
    assert len(pieces) == 11
    np.testing.assert_array_equal(np.concatenate(pieces, axis=-1), whole)
    # On several devices XLA rounds the frame's FFTs otherwise, and hard thresholding turns
    # some of that round-off into other choices: the same answer, to about -40 dB.
    spread = restoration.declip_classical(y, c)
    assert spread.shape == whole.shape
    assert np.sum((spread - whole) ** 2) < 1e-3 * np.sum(whole**2)


def _peak_rss_of_aspade(tmp_path, minutes: float) -> tuple[int, float]:
    """Declips `minutes` of 48 kHz stereo with the CLI in a child; its peak RSS (kB), seconds."""
    rate, path = 48000, tmp_path / f"long{minutes}.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", rate, 2, "PCM_16") as f:
        for start in range(0, int(minutes * 60 * rate), 10 * rate):  # 10 s at a time
            t = (start + np.arange(10 * rate)) / rate
            block = 0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)
            if start == 0:  # one loud burst, clipped at 0.5: SPADE's work is the same
                block[: rate // 10] *= 8.0
            f.write(np.clip(np.stack([block, block[::-1]], axis=1), -0.5, 0.5))
    child = (
        "import resource, subprocess, sys, time; start = time.perf_counter(); "
        "code = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
        "time.perf_counter() - start, code)"
    )
    command = [
        sys.executable,
        "-m",
        "experiments.restore",
        f"--input={path}",
        f"--output={tmp_path / f'out{minutes}.wav'}",
        "--method=aspade",
        "--clip_threshold=0.5",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    result = subprocess.run(
        [sys.executable, "-c", child, *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    rss, seconds, code = result.stdout.splitlines()[-1].split()  # after the tool's own line
    assert code == "0", result.stderr[-3000:]
    assert sf.info(tmp_path / f"out{minutes}.wav").frames == int(minutes * 60 * rate)
    return int(rss), float(seconds)


def test_peak_memory_of_a_long_recording_does_not_grow_with_its_length(tmp_path):
    # 0.5 and 5 minutes of 48 kHz stereo: the long one would hold 115 MB per whole copy (the
    # tool held the input, its resampled copy and the output, and A-SPADE its frames, at once).
    short, _ = _peak_rss_of_aspade(tmp_path, 0.5)
    long, _ = _peak_rss_of_aspade(tmp_path, 5.0)
    assert long <= 1.15 * short, (short, long)
