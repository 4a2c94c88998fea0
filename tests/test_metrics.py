"""Tests for the metrics against published values, closed forms and direct NumPy computations."""

import jax
import numpy as np
import pytest
import scipy.linalg

from jaxrestore import degradations, metrics

SAMPLE_RATE = 22050


def noise(seed: int, shape, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# --- SI-SDR and SDR --------------------------------------------------------------------------


def test_si_sdr_oracle_value():
    reference = np.array([3.0, -0.5, 2.0, 7.0], np.float32)
    estimate = np.array([2.5, 0.0, 2.0, 8.0], np.float32)
    assert float(metrics.si_sdr(estimate, reference)) == pytest.approx(18.4030, abs=1e-4)


def test_si_sdr_and_sdr_match_numpy_over_batch_axes():
    reference = noise(0, (2, 3, 256)).astype(np.float64)
    estimate = reference + noise(1, (2, 3, 256), 0.05).astype(np.float64)
    alpha = np.sum(estimate * reference, -1, keepdims=True) / np.sum(
        reference**2, -1, keepdims=True
    )
    target = alpha * reference
    expected_si = 10 * np.log10(np.sum(target**2, -1) / np.sum((target - estimate) ** 2, -1))
    expected_sdr = 10 * np.log10(np.sum(reference**2, -1) / np.sum((reference - estimate) ** 2, -1))
    si = metrics.si_sdr(estimate.astype(np.float32), reference.astype(np.float32))
    plain = jax.jit(metrics.sdr)(estimate.astype(np.float32), reference.astype(np.float32))
    assert si.shape == plain.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(si), expected_si, atol=1e-3)
    np.testing.assert_allclose(np.asarray(plain), expected_sdr, atol=1e-3)


def test_si_sdr_ignores_gain_and_sdr_does_not():
    reference = noise(2, 512)
    error = noise(3, 512)
    error *= 0.1 * np.linalg.norm(reference) / np.linalg.norm(error)  # ‖e‖ = ‖x‖/10: 20 dB
    assert float(metrics.sdr(reference + error, reference)) == pytest.approx(20.0, abs=1e-3)
    base = float(metrics.si_sdr(reference + error, reference))
    assert float(metrics.si_sdr(3 * (reference + error), reference)) == pytest.approx(
        base, abs=1e-3
    )
    assert float(metrics.sdr(3 * reference, reference)) == pytest.approx(
        -20 * np.log10(2), abs=1e-4
    )


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        metrics.si_sdr(np.ones(8), np.ones(9))
    with pytest.raises(ValueError, match="same shape"):
        metrics.lsd(np.ones((2, 2048)), np.ones(2048))
    with pytest.raises(ValueError, match="longer"):
        metrics.lsd(np.ones(100), np.ones(100))


# --- LSD -------------------------------------------------------------------------------------


def lsd_numpy(estimate: np.ndarray, reference: np.ndarray, n_fft: int, hop: int) -> float:
    """Direct float64 LSD: periodic Hann, centred frames with reflect padding, power + 1e-8."""

    def log_power(x):
        padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
        window = np.hanning(n_fft + 1)[:-1]
        return np.log10(np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2 + 1e-8)

    difference = log_power(reference) - log_power(estimate)
    return float(np.mean(np.sqrt(np.mean(difference**2, axis=-1))))


def test_lsd_frame_parameters_follow_the_convention():
    assert metrics.lsd_frame_parameters(22050) == (1024, 220)
    assert metrics.lsd_frame_parameters(44100) == (2048, 441)
    assert metrics.lsd_frame_parameters(16000) == (743, 160)


def test_lsd_is_zero_for_identical_signals_and_matches_numpy():
    reference = noise(4, 4096)
    estimate = reference + noise(5, 4096, 0.03)
    assert float(metrics.lsd(reference, reference)) == 0.0
    expected = lsd_numpy(estimate, reference, 1024, 220)
    assert float(metrics.lsd(estimate, reference)) == pytest.approx(expected, rel=1e-3)


def test_lsd_of_a_gain_is_twice_its_log():
    # S_est = g²·S_ref in every bin, so every frame scores |log10 g²| (ε is negligible here).
    reference = noise(6, (2, 4096))
    np.testing.assert_allclose(np.asarray(metrics.lsd(0.1 * reference, reference)), 2.0, atol=1e-3)


def test_lsd_grows_as_a_lowpass_removes_more_of_the_band():
    reference = noise(7, 8192)
    scores = [
        float(metrics.lsd(degradations.lowpass(fc, SAMPLE_RATE).apply(reference), reference))
        for fc in (8000.0, 5000.0, 3000.0)
    ]
    assert 0.5 < scores[0] < scores[1] < scores[2]


# --- Fréchet distance ------------------------------------------------------------------------


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    rng = np.random.default_rng(8)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    var1, var2 = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    distance = metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert distance == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("dimension", [8, 64])
def test_frechet_distance_matches_scipy_sqrtm(dimension):
    rng = np.random.default_rng(dimension)
    a, b = rng.standard_normal((2, dimension, 2 * dimension))
    cov1, cov2 = a @ a.T / (2 * dimension), b @ b.T / (2 * dimension)
    mu1, mu2 = rng.standard_normal((2, dimension)) * 0.1
    root = scipy.linalg.sqrtm(cov1 @ cov2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * np.real(root))
    distance = metrics.frechet_distance(mu1, cov1, mu2, cov2)
    assert abs(distance - expected) <= 1e-6 * abs(expected)


def test_frechet_distance_is_zero_for_identical_gaussians():
    rng = np.random.default_rng(9)
    a = rng.standard_normal((32, 40))
    cov, mu = a @ a.T / 40, rng.standard_normal(32)
    assert metrics.frechet_distance(mu, cov, mu, cov) <= 1e-10 * np.trace(cov)
    with pytest.raises(ValueError, match="covariances"):
        metrics.frechet_distance(mu, cov, mu[:-1], cov)


# --- Real-time factor ------------------------------------------------------------------------


def test_real_time_factor():
    assert metrics.real_time_factor(3.0, 3 * 22050, 22050) == pytest.approx(1.0)
    assert metrics.real_time_factor(0.5, 65536, 22050) == pytest.approx(0.5 * 22050 / 65536)
    with pytest.raises(ValueError, match="num_samples"):
        metrics.real_time_factor(1.0, 0, 22050)


# --- Harmonicity (HNR) ------------------------------------------------------------------------


@pytest.mark.parametrize("period", [22.5, 73.3, 100.0, 220.5])
@pytest.mark.parametrize("hnr_db", [0.0, 10.0, 20.0])
def test_harmonicity_reads_the_power_ratio_of_a_periodic_signal_and_noise(period, hnr_db):
    # Truth by construction: a unit-power periodic signal (pitches 100–980 Hz, whole and
    # fractional periods) plus white noise hnr_db below it.
    rng = np.random.default_rng(int(period * 10 + hnr_db))
    t = np.arange(16384)
    partials = [k for k in range(1, 20) if k / period < 0.5]
    periodic = sum(np.cos(2 * np.pi * k * t / period + rng.uniform(0, 6.3)) / k for k in partials)
    periodic /= periodic.std()
    x = periodic + rng.standard_normal(t.size) * 10 ** (-hnr_db / 20)
    result = metrics.harmonicity(x, SAMPLE_RATE)
    assert float(result["hnr_db"]) == pytest.approx(hnr_db, abs=0.6)
    assert float(result["voiced"]) == 1.0


def test_harmonicity_of_noise_and_rests():
    rng = np.random.default_rng(7)
    white = metrics.harmonicity(rng.standard_normal((3, 16384)), SAMPLE_RATE)
    assert white["hnr_db"].shape == (3,)
    assert np.all(white["hnr_db"] < -8) and np.all(white["voiced"] == 0)
    # A rest (a faint noise floor) is not counted: the clip reads as its tone (less 1.2 dB from
    # the frames across the note's end), where counting the rest would read as noise.
    t = np.arange(16384)
    tone = np.sin(2 * np.pi * t / 50.0) + 0.1 * rng.standard_normal(t.size)  # 10·log10(0.5/0.01)
    tone[8192:] = 1e-4 * rng.standard_normal(8192)
    with_rest = metrics.harmonicity(tone, SAMPLE_RATE)
    alone = metrics.harmonicity(tone[:8192], SAMPLE_RATE)
    counting_rests = metrics.harmonicity(tone, SAMPLE_RATE, floor_db=100.0)
    assert float(alone["hnr_db"]) == pytest.approx(10 * np.log10(0.5 / 0.01), abs=0.6)
    assert float(with_rest["hnr_db"]) == pytest.approx(float(alone["hnr_db"]), abs=1.5)
    assert float(with_rest["voiced"]) == 1.0 and float(counting_rests["voiced"]) < 0.6
    with pytest.raises(ValueError, match="frame"):
        metrics.harmonicity(np.ones(1000), SAMPLE_RATE)
