"""Tests for the procedural singing voice and the algorithmic reverb (jaxrestore.data.synthetic)."""

import dataclasses

import jax
import numpy as np
import pytest
from scipy import signal

from jaxrestore import metrics
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
    with pytest.raises(ValueError, match="glide_to_hz"):
        synthetic.Note(220.0, 0.5, glide_to_hz=5000.0)
    with pytest.raises(ValueError, match="onset"):
        synthetic.Note(220.0, 0.5, onset="sudden")
    with pytest.raises(ValueError, match="kind"):
        synthetic.Take(kind="rap")
    with pytest.raises(ValueError, match="room"):
        synthetic.reverb_ir(0, 1.0, room="stadium")
    with pytest.raises(ValueError, match="mix"):
        synthetic.SyntheticVocals(mix="new")
    with pytest.raises(ValueError, match="detune"):
        synthetic.sing_choir([synthetic.Note(220.0, 0.1)], [synthetic.Singer()], (0.0, 5.0))


# ---------------------------------------------------------------------------------------------
# The wide mix: spoken prosody, fry, onsets, consonants, timbres, choirs, rooms, microphones.


def _periodicity(x, sample_rate, f_min=60.0, f_max=1000.0):
    """The largest normalised autocorrelation over the pitch lags: ~1 periodic, small for noise."""
    x = np.asarray(x, np.float64) - np.mean(x)
    n = x.size
    products = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * n)) ** 2)[:n]
    energy = np.concatenate([[0.0], np.cumsum(x**2)])
    lags = np.arange(n)
    r = products / np.sqrt(energy[n - lags] * (energy[n] - energy[lags]) + 1e-30)
    return float(np.max(r[int(sample_rate / f_max) : int(sample_rate / f_min) + 1]))


def _high_band_db(x, sample_rate, edge_hz=7000.0):
    """The share of the power above `edge_hz`, in dB."""
    f, p = signal.welch(x, sample_rate, nperseg=2048)
    return 10 * np.log10(p[f >= edge_hz].sum() / p.sum())


def test_classic_mix_reproduces_the_first_generator():
    # Numbers of the generator before issue #15, so runs on its clips can be reproduced.
    x = synthetic.clip(7, 3000, wet=True, mix="classic")
    np.testing.assert_allclose(np.abs(x.astype(np.float64)).sum(), 418.39914, rtol=1e-4)
    np.testing.assert_allclose(
        x[1000:1004], [-0.0629479, -0.1046302, -0.1455845, -0.1830576], rtol=1e-4, atol=1e-6
    )
    dataset = synthetic.SyntheticVocals(wet=True, mix="classic").split("test")
    np.testing.assert_array_equal(
        dataset.segment(2, 3000), synthetic.clip(8, 3000, True, mix="classic")
    )
    assert not np.allclose(synthetic.clip(7, 3000, wet=True), x)  # the default is the wide mix


@pytest.mark.parametrize(
    "voice, start_hz, end_hz", [("male", 110.0, 180.0), ("female", 330.0, 220.0)]
)
def test_glides_follow_the_commanded_contour(voice, start_hz, end_hz):
    singer = synthetic.Singer(voice=voice, vibrato_cents=0.0, drift_cents=0.0)  # jitter stays on
    duration = 1.2
    note = synthetic.Note(start_hz, duration, "a", glide_to_hz=end_hz)
    audio, info = synthetic.sing_notes([note], singer, SR, seed=3)
    for start in range(int(0.1 * SR), int(1.1 * SR) - 1024, 1024):
        centre_s = (start + 512) / SR
        commanded = start_hz * (end_hz / start_hz) ** (centre_s / duration)
        measured = _estimate_f0(audio[start : start + 1024], SR)
        assert abs(measured / commanded - 1) < 0.01, (centre_s, measured, commanded)


@pytest.mark.parametrize("consonant", ["s", "sh", "f", "h"])
def test_unvoiced_consonants_carry_no_periodicity(consonant):
    notes = [synthetic.Note(200.0, 0.5, "a"), synthetic.Note(200.0, 0.5, "a", consonant)]
    audio, info = synthetic.sing_notes(notes, synthetic.Singer(), SR, seed=4)
    length = synthetic._OBSTRUENTS[consonant][0]
    # The middle of the consonant, clear of the 20 ms voicing crossfades at its two ends.
    middle = audio[int((0.5 - length + 0.015) * SR) : int((0.5 - 0.015) * SR)]
    assert _periodicity(middle, SR) < 0.35
    assert np.sqrt(np.mean(middle**2)) > 1e-3  # the noise is there
    assert _periodicity(audio[int(0.15 * SR) : int(0.15 * SR) + middle.size], SR) > 0.9


def test_voiced_fricatives_buzz_under_their_noise():
    notes = [synthetic.Note(200.0, 0.5, "a"), synthetic.Note(200.0, 0.5, "a", "z")]
    audio, _ = synthetic.sing_notes(notes, synthetic.Singer(), SR, seed=4)
    assert _periodicity(audio[int(0.435 * SR) : int(0.485 * SR)], SR) > 0.6


def test_spoken_takes_alternate_voicing_at_the_syllable_rate():
    take = synthetic.Take("spoken", "alto")
    for seed in (0, 1):
        audio, info = synthetic.perform(take, seed, 6 * SR)
        notes = [note for note in info["notes"] if note.f0_hz is not None]
        assert sum(note.glide_to_hz != note.f0_hz for note in notes) > 0.9 * len(notes)
        syllables = sum(note.duration_s for note in notes) / len(notes)
        assert 1 / 7.5 < syllables < 1 / 3.5
        # Each unvoiced onset consonant and each pause splits the voicing.
        voiced = info["voicing"] > 0.01 * info["voicing"].max()
        starts = np.flatnonzero(voiced[1:] & ~voiced[:-1]) + 1
        unvoiced = {name for name in synthetic.CONSONANTS if not synthetic._is_voiced(name)}
        expected = [
            note.f0_hz is not None and (previous.f0_hz is None or note.consonant in unvoiced)
            for previous, note in zip(info["notes"][:-1], info["notes"][1:], strict=True)
        ]
        assert abs(starts.size - sum(expected)) <= 1, (starts.size, sum(expected))
        assert starts.size / 6.0 > 1.2  # voiced stretches per second
        # The fricatives between them carry no periodicity (their middles, clear of the
        # 20 ms crossfades into and out of the vowels).
        checked = 0
        for note, start_s in zip(info["notes"], info["note_starts_s"], strict=True):
            if note.consonant in ("s", "sh", "f"):
                length_s = synthetic._OBSTRUENTS[note.consonant][0]
                middle = audio[int((start_s - length_s + 0.02) * SR) : int((start_s - 0.02) * SR)]
                assert _periodicity(middle, SR) < 0.35, note
                checked += 1
        assert checked >= 2


def test_vocal_fry_is_low_and_irregular():
    singer = synthetic.Singer(vibrato_cents=0.0, drift_cents=0.0)
    fry, fry_info = synthetic.sing_notes([synthetic.Note(55.0, 1.0, "a", fry=True)], singer, SR)
    modal, modal_info = synthetic.sing_notes([synthetic.Note(55.0, 1.0, "a")], singer, SR)
    inside = slice(int(0.2 * SR), int(0.9 * SR))
    f0 = fry_info["f0"][inside]
    assert abs(np.exp(np.mean(np.log(f0))) / 55.0 - 1) < 0.03
    assert np.std(np.log(f0)) > 0.06 > 0.02 > np.std(np.log(modal_info["f0"][inside]))
    # Every other pulse is weaker: the autocorrelation peaks at two periods, not one.
    period = int(round(SR / 55.0))
    x = fry[inside] - np.mean(fry[inside])
    r = [np.dot(x[:-lag], x[lag:]) for lag in range(period - 40, 2 * period + 40)]
    assert np.argmax(r) + period - 40 > 1.5 * period
    assert _periodicity(modal[inside][:4096], SR, f_min=40.0) > 0.8


@pytest.mark.parametrize(
    "onset, rise_range_s",
    [("hard", (0.0, 0.015)), ("soft", (0.015, 0.1)), ("breathy", (0.04, 0.2))],
)
def test_onsets_rise_at_their_speed(onset, rise_range_s):
    notes = [synthetic.Note(None, 0.3), synthetic.Note(220.0, 0.6, "a", onset=onset)]
    audio, info = synthetic.sing_notes(notes, synthetic.Singer(vibrato_cents=0.0), SR, seed=5)
    envelope = info["voicing"][int(0.3 * SR) - 400 :]
    settled = envelope[int(0.2 * SR)]  # the note's arc moves the level later on
    rise_s = (np.argmax(envelope > 0.7 * settled) - np.argmax(envelope > 0.1 * settled)) / SR
    assert rise_range_s[0] < rise_s < rise_range_s[1]
    if onset == "breathy":  # the breath is heard before the voice
        assert np.sqrt(np.mean(audio[int(0.24 * SR) : int(0.29 * SR)] ** 2)) > 1e-3


def test_voiced_frames_carry_harmonics_above_7khz():
    notes = [synthetic.Note(196.0, 1.2, "a")]
    quiet = {"vibrato_cents": 0.0, "breathiness_db": -80.0, "jitter": 0.0, "shimmer": 0.0}
    audio, _ = synthetic.sing_notes(notes, synthetic.Singer(**quiet), SR)
    first, _ = synthetic.sing_notes(notes, synthetic.Singer(**quiet, tract_tail=False), SR)
    steady = slice(SR // 4, SR)
    assert _high_band_db(audio[steady], SR) > -50.0
    assert _high_band_db(first[steady], SR) < -65.0  # the first generator's empty band
    # Harmonics, not noise: the partials stand out of the 7–10 kHz band.
    n = 16384
    power = np.abs(np.fft.rfft(audio[steady][:n] * signal.windows.blackmanharris(n))) ** 2
    frequency = np.fft.rfftfreq(n, 1 / SR)
    band = (frequency > 7000) & (frequency < 10000)
    harmonic = np.abs(frequency / 196.0 - np.round(frequency / 196.0)) * 196.0 < 6.0
    assert power[band & harmonic].mean() > 30 * power[band & ~harmonic].mean()
    # In the wide mix, every kind's voiced frames reach there too.
    for kind in synthetic.KINDS:
        size = 3 if kind == "choir" else 1
        x, info = synthetic.perform(synthetic.Take(kind, "mezzo", choir_size=size), 1, 2 * SR)
        voicing = info["voices"][0]["voicing"] if kind == "choir" else info["voicing"]
        assert _high_band_db(x[voicing > 0.5 * voicing.max()], SR) > -55.0, kind


def test_effort_brightens_the_voice_and_breathiness_lowers_its_hnr():
    soft = synthetic.voice_singer(np.random.default_rng(0), "tenor", effort=0.0)
    loud = synthetic.voice_singer(np.random.default_rng(0), "tenor", effort=1.0)
    assert loud.tilt_hz > 3 * soft.tilt_hz and loud.open_quotient < soft.open_quotient
    assert loud.breathiness_db < soft.breathiness_db - 15.0
    notes = [synthetic.Note(180.0, 1.0, "a")]
    hnr = {}
    for name, singer in (("soft", soft), ("loud", loud)):
        singer = dataclasses.replace(singer, vibrato_cents=0.0)
        audio, _ = synthetic.sing_notes(notes, singer, SR)
        hnr[name] = float(metrics.harmonicity(audio[SR // 4 :], SR)["hnr_db"])
    assert hnr["loud"] > hnr["soft"] + 5.0, hnr


@pytest.mark.parametrize("voice_type", synthetic.VOICE_TYPES)
def test_voice_types_sing_in_their_range_with_their_timbre(voice_type):
    voice, scales, (low, high), _, _ = synthetic._VOICE_TYPES[voice_type]
    rng = np.random.default_rng(1)
    singer = synthetic.voice_singer(rng, voice_type)
    assert singer.voice == voice and scales[0] <= singer.formant_scale <= scales[1]
    notes = synthetic.random_score(rng, voice, 20.0, voice_type, synthetic.CONSONANTS)
    midi = [69 + 12 * np.log2(n.f0_hz / 440.0) for n in notes if n.f0_hz is not None]
    assert low - 1e-6 <= min(midi) and max(midi) <= high + 1e-6


def test_choir_voices_are_detuned_by_the_requested_cents():
    singers = [
        synthetic.Singer(
            voice="female", vibrato_cents=0.0, drift_cents=0.0, jitter=0.0, formant_scale=scale
        )
        for scale in (0.95, 1.0, 1.05)
    ]
    cents = (-15.0, 0.0, 11.0)
    audio, info = synthetic.sing_choir(
        [synthetic.Note(220.0, 1.0, "a")], singers, cents, (0.0, 0.02, 0.03), SR, seed=6
    )
    np.testing.assert_allclose(info["stems"].sum(axis=0), audio, atol=1e-5)
    for stem, requested in zip(info["stems"], cents, strict=True):
        measured = 1200 * np.log2(_estimate_f0(stem[SR // 4 : SR // 4 + 8192], SR) / 220.0)
        assert abs(measured - requested) < 2.0, (measured, requested)


@pytest.mark.parametrize(
    "room, rt60", [(room, rt60) for room in synthetic.ROOMS for rt60 in synthetic._ROOMS[room][0]]
)
def test_rooms_decay_at_the_requested_rt60(room, rt60):
    for seed in (0, 1):
        ir = synthetic.reverb_ir(seed, rt60, SR, room)
        np.testing.assert_allclose(np.sum(ir.astype(np.float64) ** 2), 1.0, rtol=1e-5)
        mid_band = _rt60_schroeder(ir, SR, band=(707.0, 1414.0))
        assert abs(mid_band / rt60 - 1) < 0.2, (seed, mid_band)
        # The room's size: its first reflection comes after its pre-delay.
        first_s = np.argmax(np.abs(ir) > 0) / SR
        low, high = synthetic._ROOMS[room][1]
        assert low - 1 / SR <= first_s <= high + 1 / SR


def test_levels_are_as_requested():
    for level_db, wet in ((-1.0, False), (-12.0, True), (-18.0, False)):
        microphone = synthetic.Microphone(presence_db=5.0)
        take = synthetic.Take("sung", "tenor", level_db=level_db, microphone=microphone)
        x = synthetic.render(take, 2, SR, wet)
        assert abs(20 * np.log10(np.max(np.abs(x))) - level_db) < 0.01
    # Clips cut from a take never exceed its level.
    for seed in range(4):
        take = synthetic.random_take(seed)
        assert np.max(np.abs(synthetic.clip(seed, 4096))) <= 10 ** (take.level_db / 20) + 1e-6


def test_microphone_response_matches_its_settings():
    mic = synthetic.Microphone(
        highpass_hz=10.0,
        low_shelf_db=6.0,
        low_shelf_hz=300.0,
        presence_db=4.0,
        presence_hz=4000.0,
        high_shelf_db=-5.0,
        high_shelf_hz=8000.0,
    )
    frequencies = np.array([30.0, 4000.0, 11024.0])
    _, response = signal.sosfreqz(mic.sos(SR), worN=frequencies, fs=SR)
    gains_db = 20 * np.log10(np.abs(response))
    np.testing.assert_allclose(gains_db, [6.0, 4.0, -5.0], atol=0.6)
    alone = synthetic.Microphone(highpass_hz=80.0, presence_db=3.0, presence_hz=2500.0)
    _, response = signal.sosfreqz(alone.sos(SR), worN=[80.0, 2500.0], fs=SR)
    np.testing.assert_allclose(20 * np.log10(np.abs(response)), [-3.01, 3.0], atol=0.05)


def test_wide_mix_draws_every_kind_in_its_share():
    takes = [synthetic.random_take(seed) for seed in range(1000)]
    for kind, odds in zip(synthetic.KINDS, synthetic.KIND_ODDS, strict=True):
        assert abs(np.mean([take.kind == kind for take in takes]) - odds) < 0.05
    assert {take.voice_type for take in takes} == set(synthetic.VOICE_TYPES)
    assert {take.room for take in takes} == set(synthetic.ROOMS)
    choirs = [take for take in takes if take.kind == "choir"]
    assert {take.choir_size for take in choirs} == {2, 3, 4, 5}
    male = {synthetic.random_take(seed, "male").voice_type for seed in range(100)}
    assert male == {"bass", "baritone", "tenor"}
    np.testing.assert_array_equal(synthetic.clip(9, 2048), synthetic.clip(9, 2048))
