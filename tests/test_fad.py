"""Tests for jaxrestore.fad: Fréchet Audio Distance with VGGish, and the weight-free FMD.

No published VGGish weights exist here, so the network is a narrow VGGish with He-normal random
weights (in a sweep of ten seeds, all ten gave FAD rising at every step of the cutoffs below).
"""

import math

import numpy as np
import pytest
import scipy.linalg

from jaxrestore import fad, vggish

SR = 22_050  # the project's rate: every clip goes through the resampler to 16 kHz
NARROW = {"conv_widths": ((16,), (32,), (32, 32), (64, 64)), "fc_widths": (512, 512),
          "embedding_size": 64}  # fmt: skip


def random_weights(seed=0):
    model = vggish.VGGish(**NARROW)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shapes in vggish.parameter_shapes(model).items():
        fan_in = math.prod(shapes["kernel"][:-1])
        kernel = rng.normal(size=shapes["kernel"]) * math.sqrt(2.0 / fan_in)
        bias = rng.normal(0.0, 0.1, shapes["bias"])
        params[name] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    return vggish.VGGishWeights(params)


def voice_like_clips(count=6, seconds=2.0, seed=0):
    """Harmonic tones with vibrato (partials up to 10 kHz, 1/k amplitudes) and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    clips = []
    for i in range(count):
        f0 = 140.0 + 40.0 * i
        phase = 2 * np.pi * f0 * (t - 0.01 * np.cos(2 * np.pi * 5 * t) / (2 * np.pi * 5))
        x = sum(np.sin(k * phase) / k for k in range(1, int(10_000 / f0)))
        clips.append(0.1 * x + 0.01 * rng.standard_normal(t.size))
    return clips


def lowpass(x, cutoff_hz):
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(x.size, 1 / SR) > cutoff_hz] = 0
    return np.fft.irfft(spectrum, x.size)


def reference_frechet(a, b):
    """‖μa − μb‖² + tr(Σa + Σb − 2(ΣaΣb)^½) with SciPy's general matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def test_no_weights_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(fad.VGGISH_WEIGHTS_ENV, raising=False)
    clips = voice_like_clips(2)
    with pytest.raises(fad.NoVGGishWeights, match="FAD: no VGGish weights"):
        fad.fad(clips, clips, SR)
    monkeypatch.setenv(fad.VGGISH_WEIGHTS_ENV, str(tmp_path / "missing.msgpack"))
    with pytest.raises(RuntimeError, match="FAD: no VGGish weights"):
        fad.load_vggish()


def test_weights_are_found_through_the_environment(monkeypatch, tmp_path):
    weights = random_weights()
    vggish.save_weights(weights, tmp_path / "vggish.msgpack")
    monkeypatch.setenv(fad.VGGISH_WEIGHTS_ENV, str(tmp_path / "vggish.msgpack"))
    loaded = fad.load_vggish()
    assert loaded.model() == vggish.VGGish(**NARROW)
    np.testing.assert_array_equal(loaded.params["fc2"]["kernel"], weights.params["fc2"]["kernel"])


def test_fad_is_the_frechet_distance_of_the_patch_embeddings():
    weights = random_weights()
    clean = voice_like_clips()
    degraded = [lowpass(c, 3_000) for c in clean]
    # Embeddings computed here, patch by patch, straight through the model.
    model = weights.model()

    def embeddings(clips):
        patches = np.concatenate([vggish.log_mel_patches(c, SR) for c in clips])
        return np.asarray(model.apply({"params": weights.params}, patches.astype(np.float32)))

    e_clean, e_degraded = embeddings(clean), embeddings(degraded)
    assert e_clean.shape == (12, 64)  # two 0.96 s patches per 2 s clip
    expected = reference_frechet(e_clean.astype(np.float64), e_degraded.astype(np.float64))
    got = fad.fad(clean, degraded, SR, weights=weights, batch_size=7)  # 7, then 5 padded to 7
    assert got == pytest.approx(expected, rel=1e-3)
    assert fad.fad(clean, clean, SR, weights=weights) == pytest.approx(0.0, abs=1e-6)


def test_fad_and_fmd_grow_as_the_cutoff_falls():
    weights = random_weights()
    clean = voice_like_clips()
    reference = fad.vggish_embedding_set(clean, SR, weights)  # embedded once for every cutoff
    mel_reference = fad.log_mel_embedding_set(clean, SR)
    fads, fmds = [], []
    for cutoff in (7_000, 5_500, 4_000, 2_500):
        degraded = [lowpass(c, cutoff) for c in clean]
        fads.append(fad.fad(reference, degraded, SR, weights=weights))
        fmds.append(fad.frechet_mel_distance(mel_reference, degraded, SR))
    assert np.all(np.diff(fads) > 0), fads
    assert np.all(np.diff(fmds) > 0), fmds
    assert fads[0] > 0 and fmds[0] > 0


def test_fmd_is_the_frechet_distance_of_log_mel_frames():
    clean = voice_like_clips(3)
    degraded = [lowpass(c, 4_000) for c in clean]

    def frames(clips):
        return np.concatenate([vggish.log_mel_spectrogram(vggish.resample(c, SR)) for c in clips])

    expected = reference_frechet(frames(clean), frames(degraded))
    assert fad.frechet_mel_distance(clean, degraded, SR) == pytest.approx(expected, rel=1e-6)
    assert fad.frechet_mel_distance(clean, clean, SR) == pytest.approx(0.0, abs=1e-6)
    assert fad.FMD_NAME == "FMD (log-mel)" and "FAD" not in fad.FMD_NAME


def test_bad_clip_sets_are_refused():
    with pytest.raises(ValueError, match="N >= 2"):  # 0.5 s clips have no 0.96 s patch
        fad.fad([np.zeros(SR // 2)], [np.zeros(SR // 2)], SR, weights=random_weights())
    with pytest.raises(ValueError, match="mono clips"):
        fad.frechet_mel_distance([np.zeros((2, SR))], [np.zeros(SR)], SR)
