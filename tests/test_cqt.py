"""Tests for the invertible CQT: exact inversion, closed-form coefficients, CQT-Diff's shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrestore.cqt import CQT

SR = 22050
N_REF = 65536  # CQT-Diff's segment: 7 octaves of 64 bins from 86.13 Hz at 22.05 kHz


@pytest.fixture(scope="module", params=["matrix", "octave"])
def reference_cqt(request):
    return CQT(SR, N_REF, num_octaves=7, bins_per_octave=64, layout=request.param)


def _signals(n: int, dtype=np.float32) -> np.ndarray:
    """Returns white noise and a 50 Hz → 10 kHz linear chirp, [2, n]."""
    t = np.arange(n) / SR
    chirp = np.sin(2 * np.pi * (50 * t + (10_000 - 50) / (2 * t[-1]) * t**2))
    noise = np.random.default_rng(0).standard_normal(n)
    return np.stack([noise, chirp]).astype(dtype)


def _blocks(cqt: CQT, coeffs) -> list[np.ndarray]:
    """Returns the coefficients as a list of [..., rows_g, M_g] NumPy arrays, rows in order."""
    return [np.asarray(coeffs)] if cqt.layout == "matrix" else [np.asarray(c) for c in coeffs]


def _relative_error(estimate, truth) -> np.ndarray:
    return np.linalg.norm(estimate - truth, axis=-1) / np.linalg.norm(truth, axis=-1)


def test_cqtdiff_matrix_shape_and_frequency_grid():
    cqt = CQT(SR, N_REF, num_octaves=7, bins_per_octave=64)
    assert cqt.shape == (450, 704)  # CQT-Diff's (2, 450, 704) network input
    coeffs = cqt.forward(np.zeros(N_REF, np.float32))
    assert coeffs.shape == (450, 704) and coeffs.dtype == jnp.complex64
    np.testing.assert_allclose(cqt.redundancy, 2 * 450 * 704 / N_REF)  # ≈ 9.7×
    # DC, 448 log-spaced bands from 11025/2^7 = 86.13 Hz, Nyquist.
    assert cqt.frequencies[0] == 0 and cqt.frequencies[-1] == SR / 2
    np.testing.assert_allclose(cqt.frequencies[1], 11025 / 2**7)
    ratios = cqt.frequencies[2:-2] / cqt.frequencies[1:-3]
    np.testing.assert_allclose(ratios, 2 ** (7 / 447), rtol=1e-12)


def test_octave_layout_is_less_redundant():
    matrix = CQT(SR, N_REF, 7, 64, layout="matrix")
    octave = CQT(SR, N_REF, 7, 64, layout="octave")
    assert len(octave.shape) == 7 + 2  # DC, 7 octaves, Nyquist
    assert [rows for rows, _ in octave.shape] == [1] + [64] * 7 + [1]
    # Each group's frames cover its widest window; an octave up needs (about) twice as many.
    starts = np.cumsum([0] + [rows for rows, _ in octave.shape])[:-1]
    for start, (rows, frames) in zip(starts, octave.shape, strict=True):
        assert frames >= octave.window_lengths[start : start + rows].max()
    octave_frames = np.array([frames for _, frames in octave.shape[1:-1]])
    assert np.all(np.abs(octave_frames[1:] / octave_frames[:-1] - 2) < 0.25)
    assert octave.redundancy < matrix.redundancy / 2


def test_round_trip_float32_noise_and_chirp(reference_cqt):
    x = _signals(N_REF)
    x_hat = jax.jit(lambda v: reference_cqt.inverse(reference_cqt.forward(v)))(x)
    assert x_hat.shape == x.shape and x_hat.dtype == jnp.float32
    assert np.all(_relative_error(np.asarray(x_hat), x) <= 1e-5)


def test_round_trip_float64(reference_cqt):
    x = _signals(N_REF, np.float64)
    with jax.enable_x64(True):
        x_hat = reference_cqt.inverse(reference_cqt.forward(jnp.asarray(x, jnp.float64)))
        assert x_hat.dtype == jnp.float64
        x_hat = np.asarray(x_hat)
    assert np.all(_relative_error(x_hat, x) <= 1e-10)


def test_coefficients_of_a_sinusoid_match_the_closed_form(reference_cqt):
    # x = cos(2π p n/N + φ) has X[±p] = (N/2)e^{±iφ}, so a row with centre bin ν, Hann window
    # of L bins and M frames holds (N/2M)·e^{iφ}·g(o)·e^{2πi o m/M}, o = p − ν, if o is in its
    # support, and nothing otherwise (the tone is far from the flat-top DC window).
    cqt = reference_cqt
    n, phi = N_REF, 0.7
    p = int(cqt.centre_bins[300]) + 3
    x = np.cos(2 * np.pi * p * np.arange(n) / n + phi).astype(np.float32)
    expected = []
    for nu, length, frames in zip(cqt.centre_bins, cqt.window_lengths, cqt.frames, strict=True):
        row = np.zeros(frames, complex)
        for q, phase in ((p, phi), (n - p, -phi)):
            o = (q - nu + n // 2) % n - n // 2
            if -(length // 2) <= o <= length - length // 2 - 1:
                g = 0.5 + 0.5 * np.cos(2 * np.pi * o / length)
                amplitude = n / (2 * frames) * np.exp(1j * phase) * g
                row += amplitude * np.exp(2j * np.pi * o * np.arange(frames) / frames)
        expected.append(row)
    got = [row for block in _blocks(cqt, cqt.forward(x)) for row in block]
    scale = max(np.abs(r).max() for r in expected)
    assert sum(np.abs(r).max() > 0 for r in expected) >= 2  # the tone reaches two windows
    for row_got, row_expected in zip(got, expected, strict=True):
        np.testing.assert_allclose(row_got, row_expected, atol=1e-5 * scale)


def test_pure_tone_peaks_in_its_bin(reference_cqt):
    cqt = reference_cqt
    rows = np.array([1, 2, 30, 64, 65, 200, 333, 447, 448])
    t = np.arange(N_REF) / SR
    tones = np.cos(2 * np.pi * cqt.frequencies[rows, None] * t + 0.3).astype(np.float32)
    # Σ_m |c_k[m]|²·M_k = Σ_l |X[ν_k + l]·g_k[l]|² (Parseval): comparable across any M_k.
    energy = np.concatenate(
        [np.sum(np.abs(b) ** 2, axis=-1) * b.shape[-1] for b in _blocks(cqt, cqt.forward(tones))],
        axis=-1,
    )
    np.testing.assert_array_equal(np.argmax(energy, axis=-1), rows)


def test_batched_forward_matches_single_signals_and_vmap():
    cqt = CQT(SR, 4096, num_octaves=3, bins_per_octave=8)
    x = np.random.default_rng(1).standard_normal((2, 3, 4096)).astype(np.float32)
    batched = np.asarray(cqt.forward(x))
    assert batched.shape == (2, 3) + cqt.shape
    np.testing.assert_allclose(batched[1, 2], cqt.forward(x[1, 2]), atol=1e-5)
    np.testing.assert_allclose(jax.vmap(cqt.forward)(x[0]), batched[0], atol=1e-5)
    np.testing.assert_allclose(cqt.inverse(batched), x, atol=1e-5)


def test_frames_multiple_rounds_the_matrix_up_and_stays_exact():
    cqt = CQT(SR, 16384, num_octaves=7, bins_per_octave=12, frames_multiple=16)
    assert cqt.shape[1] % 16 == 0 and cqt.shape[1] >= cqt.window_lengths.max()
    x = _signals(16384)
    assert np.all(_relative_error(np.asarray(cqt.inverse(cqt.forward(x))), x) <= 1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_samples=4095), "even"),
        (dict(num_samples=1024, num_octaves=7, bins_per_octave=64), "too short"),
        (dict(layout="stft"), "layout"),
        (dict(fmax=20_000), "fmax"),
        (dict(bins_per_octave=0), "bins_per_octave"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    settings = dict(sample_rate=SR, num_samples=4096, num_octaves=3, bins_per_octave=8)
    with pytest.raises(ValueError, match=message):
        CQT(**(settings | kwargs))


def test_wrong_lengths_raise():
    cqt = CQT(SR, 4096, num_octaves=3, bins_per_octave=8)
    with pytest.raises(ValueError, match="4096"):
        cqt.forward(np.zeros(4000, np.float32))
    with pytest.raises(ValueError, match="shape"):
        cqt.inverse(np.zeros((26, 100), np.complex64))
