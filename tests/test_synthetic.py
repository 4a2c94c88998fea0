"""Tests for the procedural singing voice and the algorithmic reverb (jaxrestore.data.synthetic)."""

import jax
import numpy as np
import pytest
from scipy import signal

from jaxrestore.data import synthetic

SR = 22050


def _estimate_f0(x, sample_rate, f_min=60.0, f_max=1000.0):
    """Autocorrelation pitch: the best-correlated lag, moved to a sub-multiple if one is as good."""
    x = np.asarray(x, np.float64) - np.mean(x)
    n = x.size
    products = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * n)) ** 2)[:n]
    energy = np.concatenate([[0.0], np.cumsum(x**2)])
    lags = np.arange(n)
    # r(τ) = Σ x_j x_{j+τ} / √(Σ x_j² Σ x_{j+τ}²) over the overlap: 1 for a periodic signal.
    r = products / np.sqrt(energy[n - lags] * (energy[n] - energy[lags]) + 1e-30)
    low, high = int(sample_rate / f_max), int(sample_rate / f_min) + 1
    tau = low + int(np.argmax(r[low:high]))
    for k in (4, 3, 2):  # a period of τ/k that is (nearly) as good means τ was a multiple
        short = int(round(tau / k))
        if short - 2 >= low:
            short = short - 2 + int(np.argmax(r[short - 2 : short + 3]))
            if r[short] > 0.97 * r[tau]:
                tau = short
                break
    a, b, c = r[tau - 1], r[tau], r[tau + 1]
    return sample_rate / (tau + 0.5 * (a - c) / (a - 2 * b + c))


def _rt60_schroeder(ir, sample_rate, band=None, top_db=-5.0, bottom_db=-25.0):
    """RT60 from Schroeder's backward-integrated energy decay, fitted between two levels."""
    h = np.asarray(ir, np.float64)
    if band is not None:
        h = signal.sosfilt(signal.butter(4, band, "bandpass", fs=sample_rate, output="sos"), h)
    decay = np.cumsum(h[::-1] ** 2)[::-1]
    decay_db = 10 * np.log10(decay / decay[0])
    fitted = np.flatnonzero((decay_db <= top_db) & (decay_db >= bottom_db))
    slope_db_per_s = np.polyfit(fitted / sample_rate, decay_db[fitted], 1)[0]
    return -60.0 / slope_db_per_s


def test_estimator_finds_a_known_pitch():
    # The test's own pitch tracker, on a signal whose period is known exactly.
    t = np.arange(4096) / SR
    x = sum(np.sin(2 * np.pi * k * 196.0 * t) * (4.0 if k == 2 else 1.0 / k) for k in range(1, 8))
    assert abs(_estimate_f0(x, SR) / 196.0 - 1) < 1e-3


def test_same_seed_same_samples_different_seeds_differ():
    a, info_a = synthetic.sing(7, 8192)
    b, _ = synthetic.sing(7, 8192)
    c, _ = synthetic.sing(8, 8192)
    assert a.dtype == np.float32 and a.shape == (8192,)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert info_a["f0"].shape == (8192,)
    np.testing.assert_array_equal(
        synthetic.clip(3, 4096, wet=True), synthetic.clip(3, 4096, wet=True)
    )


@pytest.mark.parametrize(
    "voice, f0s",
    [("male", (98.0, 130.81, 196.0, 349.23)), ("female", (174.61, 261.63, 523.25, 783.99))],
)
def test_sustained_notes_have_the_requested_pitch(voice, f0s):
    singer = synthetic.Singer(voice=voice, vibrato_cents=0.0)  # jitter and shimmer stay on
    notes = [synthetic.Note(f0, 0.45, vowel) for f0, vowel in zip(f0s, "aoiu", strict=True)]
    audio, _ = synthetic.sing_notes(notes, singer, SR, seed=1)
    for k, f0 in enumerate(f0s):
        start = int((0.45 * k + 0.12) * SR)  # past the glide from the previous note
        measured = _estimate_f0(audio[start : start + 4096], SR)
        assert abs(measured / f0 - 1) < 0.01, (voice, f0, measured)


def test_vibrato_averages_to_the_requested_pitch():
    singer = synthetic.Singer(
        voice="female", vibrato_cents=60.0, vibrato_rate_hz=6.0, vibrato_delay_s=0.1
    )
    audio, _ = synthetic.sing_notes([synthetic.Note(440.0, 1.5, "a")], singer, SR, seed=2)
    frames = range(int(0.3 * SR), int(1.3 * SR), 256)  # 1 s: six vibrato cycles
    measured = np.array([_estimate_f0(audio[i : i + 1024], SR) for i in frames])
    assert abs(np.exp(np.mean(np.log(measured))) / 440.0 - 1) < 0.01
    # The vibrato is there: the pitch swings by tens of cents.
    swing_cents = 1200 * np.log2(measured.max() / measured.min())
    assert 40.0 < swing_cents < 200.0


def test_highest_note_is_free_of_aliasing():
    # A steady periodic tone has energy only at multiples of f0; aliased partials of a naive
    # pulse train fold in between them (about −20 dB of the total at 784 Hz).
    singer = synthetic.Singer(
        voice="female", vibrato_cents=0, jitter=0, shimmer=0, drift_cents=0, breathiness_db=-200
    )
    f0 = 783.99
    audio, _ = synthetic.sing_notes([synthetic.Note(f0, 1.4, "a")], singer, SR)
    n = 16384
    power = (
        np.abs(np.fft.rfft(audio[SR // 2 : SR // 2 + n] * signal.windows.blackmanharris(n))) ** 2
    )
    frequency = np.fft.rfftfreq(n, 1 / SR)
    harmonic = np.abs(frequency / f0 - np.round(frequency / f0)) * f0 < 12.0
    above_hum = frequency > 100.0
    inharmonic_db = 10 * np.log10(power[~harmonic & above_hum].sum() / power[above_hum].sum())
    assert inharmonic_db < -60.0


def test_rests_are_silent_and_output_has_no_dc():
    notes = [synthetic.Note(220.0, 0.5), synthetic.Note(None, 0.3), synthetic.Note(220.0, 0.5, "o")]
    audio, info = synthetic.sing_notes(notes, synthetic.Singer(), SR)
    assert audio.shape == (int(round(1.3 * SR)),)
    sung = np.sqrt(np.mean(audio[int(0.1 * SR) : int(0.4 * SR)] ** 2))
    rest = np.sqrt(np.mean(audio[int(0.6 * SR) : int(0.75 * SR)] ** 2))
    assert rest < 1e-3 * sung
    assert np.all(info["voicing"][int(0.6 * SR) : int(0.75 * SR)] == 0)
    assert abs(np.mean(audio)) < 1e-3 * sung


@pytest.mark.parametrize("rt60", [0.4, 1.0, 2.2])
def test_reverb_decays_at_the_requested_rt60(rt60):
    for seed in (0, 1):
        ir = synthetic.reverb_ir(seed, rt60, SR)
        assert ir.dtype == np.float32
        np.testing.assert_allclose(np.sum(ir.astype(np.float64) ** 2), 1.0, rtol=1e-5)
        mid_band = _rt60_schroeder(ir, SR, band=(707.0, 1414.0))  # the 1 kHz octave
        assert abs(mid_band / rt60 - 1) < 0.2, (seed, mid_band)
        broadband = _rt60_schroeder(ir, SR, bottom_db=-35.0)
        assert abs(broadband / rt60 - 1) < 0.2, (seed, broadband)


def test_apply_reverb_is_a_dry_wet_mix_of_the_convolution():
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal(500).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    expected = 0.7 * x + 0.3 * np.convolve(x, h)[:500]
    np.testing.assert_allclose(synthetic.apply_reverb(x, h, 0.3), expected, atol=1e-4)
    np.testing.assert_allclose(synthetic.apply_reverb(x, np.ones(1), 1.0), x, atol=1e-6)
    with pytest.raises(ValueError, match="wet"):
        synthetic.apply_reverb(x, h, 1.5)


def test_clip_is_normalised_and_wet_adds_reverberation():
    dry = synthetic.clip(11, 16384, wet=False)
    wet = synthetic.clip(11, 16384, wet=True)
    for x in (dry, wet):
        assert x.dtype == np.float32 and x.shape == (16384,) and np.all(np.isfinite(x))
        assert np.max(np.abs(x)) <= 0.9 + 1e-6
    assert np.std(dry) > 0.01
    # The same performance underneath: strongly correlated, but not the same signal.
    correlation = np.corrcoef(dry, wet)[0, 1]
    assert 0.3 < correlation < 0.999


def test_dataset_splits_draw_disjoint_clips():
    dataset = synthetic.SyntheticVocals(wet=False)
    train = dataset.split("train").segment(5, 2048)
    np.testing.assert_array_equal(train, synthetic.clip(15, 2048, False))  # seed 5 → clip 3·5
    np.testing.assert_array_equal(
        dataset.split("test").segment(5, 2048), synthetic.clip(17, 2048, False)
    )
    assert not np.allclose(train, dataset.split("validation").segment(5, 2048))
    from_key = dataset.segment(jax.random.key(0), 2048)
    np.testing.assert_array_equal(from_key, dataset.segment(jax.random.key(0), 2048))
    assert dataset.files == ()
    with pytest.raises(ValueError, match="split"):
        dataset.split("dev")


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="vowel"):
        synthetic.Note(220.0, 0.5, vowel="y")
    with pytest.raises(ValueError, match="f0_hz"):
        synthetic.Note(5.0, 0.5)
    with pytest.raises(ValueError, match="voice"):
        synthetic.Singer(voice="child")
    with pytest.raises(ValueError, match="seed"):
        synthetic.sing(-1, 100)
    with pytest.raises(ValueError, match="rt60"):
        synthetic.reverb_ir(0, 0.0)
    with pytest.raises(ValueError, match="sample_rate"):
        synthetic.sing_notes([synthetic.Note(220.0, 0.1)], sample_rate=8000)
