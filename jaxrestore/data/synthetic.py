"""A procedural singing voice and an algorithmic reverb: the project's embedded default data.

Source-filter synthesis (DESIGN §8), seeded and reproducible, in NumPy:

- Score: phrases of 3–9 notes on a major or minor scale, in a male (G2–F4, 98–349 Hz) or female
  (F3–G5, 175–784 Hz) range around a random tessitura, at 60–140 BPM, with rests of 0.25–1.2 s
  between phrases. Each note carries a vowel (a, e, i, o, u) and often an onset consonant.
- Pitch: log-f0 glides between notes (portamento, a Hann-shaped glide of 40–150 ms), vibrato of
  4.8–6.8 Hz and 20–70 cents that fades in after a 0.15–0.45 s onset delay, a slow drift of a few
  cents, and cycle-to-cycle jitter (0.2–0.8 % of the period).
- Source: the derivative of a Rosenberg glottal pulse (raised-cosine opening, quarter-cosine
  closing, closed phase), rendered at twice the output rate with PolyBLEP at the closure jump and
  PolyBLAMP at the two corners, then decimated by a polyphase filter: what still folds back below
  Nyquist is more than 80 dB down, even at 784 Hz. A shimmer of 2–6 % per cycle; aspiration
  noise gated by the glottal flow; a one-pole spectral tilt (the LF model's return phase) that
  darkens softer notes.
- Vocal tract: a cascade of five two-pole resonators (F1–F5 with bandwidths, DC gain 1, Klatt's
  form) moving between vowel targets (the classic tenor and soprano formant tables, scaled per
  singer; F1 kept above f0 as singers tune it), continued above F5 by the tube's higher
  resonances every ~1 kHz, and a 70 Hz high-pass. The time-varying filter is applied frame by
  frame to Hann-windowed, zero-padded blocks (overlap-add at a quarter window), which is an exact
  linear convolution wherever the filter holds still.
- Noise: fricatives (s, sh, f, h), plosive closures and bursts (t, k, p), nasals and liquids (m,
  n, l: voiced, with their own resonances), and inhalations in the longer rests; each a
  white-noise envelope shaped by a fourth-order resonant band filter, at a level relative to the
  voiced signal.
- Loudness: per-note levels and arcs, a crescendo or decrescendo per phrase, soft phrase onsets
  (40–120 ms) and releases (60–200 ms), vibrato-linked amplitude modulation.

The wet version goes through `reverb_ir`: early reflections and an exponentially decaying noise
tail whose mid-band (500 Hz–4 kHz) decays at the requested RT60, the low band a little slower and
the high band faster (air and wall absorption), applied by FFT convolution with a dry/wet mix.

`clip(seed, num_samples, wet)` is the entry point for training and evaluation.
"""

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import scipy.fft
from scipy import signal

from jaxrestore.data import readers

VOICES = ("male", "female")
VOWELS = ("a", "e", "i", "o", "u")

# Formant frequencies F1–F5 and bandwidths B1–B5 in Hz of sung vowels (the widely published
# tenor and soprano tables used by formant synthesisers), the vowel order of `VOWELS`.
_FORMANTS = {
    "male": np.array(
        [
            [650, 1080, 2650, 2900, 3250],
            [400, 1700, 2600, 3200, 3580],
            [290, 1870, 2800, 3250, 3540],
            [400, 800, 2600, 2800, 3000],
            [350, 600, 2700, 2900, 3300],
        ],
        np.float64,
    ),
    "female": np.array(
        [
            [800, 1150, 2900, 3900, 4950],
            [350, 2000, 2800, 3600, 4950],
            [270, 2140, 2950, 3900, 4950],
            [450, 800, 2830, 3800, 4950],
            [325, 700, 2700, 3800, 4950],
        ],
        np.float64,
    ),
}
_BANDWIDTHS = {
    "male": np.array(
        [
            [80, 90, 120, 130, 140],
            [70, 80, 100, 120, 120],
            [40, 90, 100, 120, 120],
            [40, 80, 100, 120, 120],
            [40, 60, 100, 120, 120],
        ],
        np.float64,
    ),
    "female": np.array(
        [
            [80, 90, 120, 130, 140],
            [60, 100, 120, 150, 200],
            [60, 90, 100, 120, 120],
            [70, 80, 100, 130, 135],
            [50, 60, 170, 180, 200],
        ],
        np.float64,
    ),
}
# Nasal and liquid consonants: voiced, quieter, with their own resonances (a low murmur formant,
# damped upper ones). Rows follow the male table; female voices scale them by 1.15.
_SONORANTS = {
    "m": (0.3, [250, 1100, 2200, 3000, 3600], [80, 300, 300, 400, 400]),
    "n": (0.3, [250, 1400, 2400, 3000, 3600], [80, 300, 300, 400, 400]),
    "l": (0.5, [350, 1100, 2600, 3000, 3500], [60, 120, 150, 200, 200]),
}
# Unvoiced consonants: (duration s, band centre Hz, bandwidth Hz, level dB relative to the vowel,
# burst?). Plosives are a short closure followed by a burst.
_OBSTRUENTS = {
    "s": (0.09, 6500.0, 3000.0, -18.0, False),
    "sh": (0.09, 3000.0, 1800.0, -18.0, False),
    "f": (0.08, 5000.0, 6000.0, -26.0, False),
    "h": (0.06, 1500.0, 2500.0, -24.0, False),
    "t": (0.05, 4000.0, 3500.0, -18.0, True),
    "k": (0.06, 2200.0, 1500.0, -18.0, True),
    "p": (0.05, 1200.0, 2500.0, -22.0, True),
}
CONSONANTS = tuple(_SONORANTS) + tuple(_OBSTRUENTS)

# Score ranges (MIDI note numbers) and tessitura centres per voice.
_RANGE = {"male": (43, 65), "female": (53, 79)}
_CENTRE = {"male": (48, 58), "female": (62, 72)}
_SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10))

_CONTROL_HOP = 32  # samples between control points (1.5 ms at 22.05 kHz)
_FRAME = 1024  # Hann window of the time-varying filter
_FRAME_HOP = 256  # a quarter window: the shifted Hann windows sum to 2
_NFFT = 2048  # 1,024 samples of resonator ring-down fit before it wraps (a 40 Hz band: −50 dB)
_OVERSAMPLE = 2  # the glottal source is rendered at twice the output rate
_HIGHPASS_HZ = 70.0


@dataclasses.dataclass(frozen=True)
class Note:
    """One sung note (or a rest when `f0_hz` is None).

    Attributes:
      f0_hz: fundamental frequency, or None for a rest.
      duration_s: length in seconds (onset consonants take their time from the previous note).
      vowel: one of `VOWELS`.
      consonant: one of `CONSONANTS` sung before the vowel, or None.
      level_db: loudness relative to the phrase.
    """

    f0_hz: float | None
    duration_s: float
    vowel: str = "a"
    consonant: str | None = None
    level_db: float = 0.0

    def __post_init__(self):
        if self.f0_hz is not None and not 20.0 <= self.f0_hz <= 2000.0:
            raise ValueError(f"f0_hz must lie in [20, 2000] Hz or be None, got {self.f0_hz}")
        if not self.duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {self.duration_s}")
        if self.vowel not in VOWELS:
            raise ValueError(f"vowel must be one of {VOWELS}, got {self.vowel!r}")
        if self.consonant is not None and self.consonant not in CONSONANTS:
            raise ValueError(
                f"consonant must be one of {CONSONANTS} or None, got {self.consonant!r}"
            )


@dataclasses.dataclass(frozen=True)
class Singer:
    """The voice: vocal-tract size, glottal source and expression parameters.

    Attributes:
      voice: "male" or "female" (picks the formant table).
      formant_scale: vocal-tract length factor applied to every formant (1 = the table).
      open_quotient: open fraction of the glottal cycle (opening plus closing).
      speed_quotient: opening time over closing time; larger gives a sharper closure.
      jitter: standard deviation of the relative period change from cycle to cycle.
      shimmer: standard deviation of the relative amplitude change from cycle to cycle.
      breathiness_db: aspiration noise relative to the voiced source.
      vibrato_rate_hz, vibrato_cents, vibrato_delay_s: vibrato rate, depth (peak) and onset delay.
      drift_cents: standard deviation of the slow pitch drift.
      portamento_s: length of the glide between notes.
      tilt_hz: corner of the source's extra −6 dB/octave tilt at full loudness (the glottal
        return phase of the LF model acts as this one-pole low-pass); softer notes get darker.
    """

    voice: str = "male"
    formant_scale: float = 1.0
    open_quotient: float = 0.6
    speed_quotient: float = 2.5
    jitter: float = 0.004
    shimmer: float = 0.03
    breathiness_db: float = -26.0
    vibrato_rate_hz: float = 5.8
    vibrato_cents: float = 40.0
    vibrato_delay_s: float = 0.3
    drift_cents: float = 3.0
    portamento_s: float = 0.08
    tilt_hz: float = 2500.0

    def __post_init__(self):
        if self.voice not in VOICES:
            raise ValueError(f"voice must be one of {VOICES}, got {self.voice!r}")
        if not 0.2 <= self.open_quotient <= 0.95:
            raise ValueError(f"open_quotient must lie in [0.2, 0.95], got {self.open_quotient}")
        if not 0.5 <= self.speed_quotient <= 6.0:
            raise ValueError(f"speed_quotient must lie in [0.5, 6], got {self.speed_quotient}")
        if not 300.0 <= self.tilt_hz <= 20000.0:
            raise ValueError(f"tilt_hz must lie in [300, 20000] Hz, got {self.tilt_hz}")
        if min(self.jitter, self.shimmer, self.vibrato_cents, self.drift_cents) < 0:
            raise ValueError("jitter, shimmer, vibrato_cents and drift_cents must be >= 0")
        if self.portamento_s < 0 or self.vibrato_delay_s < 0:
            raise ValueError("portamento_s and vibrato_delay_s must be >= 0")


def random_singer(rng: np.random.Generator, voice: str | None = None) -> Singer:
    """Draws a singer (of the given voice, or either with equal odds) from `rng`."""
    if voice is None:
        voice = VOICES[int(rng.integers(2))]
    return Singer(
        voice=voice,
        formant_scale=rng.uniform(0.92, 1.06),
        open_quotient=rng.uniform(0.5, 0.75),
        speed_quotient=rng.uniform(2.0, 3.5),
        jitter=rng.uniform(0.002, 0.008),
        shimmer=rng.uniform(0.02, 0.06),
        breathiness_db=rng.uniform(-34.0, -18.0),
        vibrato_rate_hz=rng.uniform(4.8, 6.8),
        vibrato_cents=rng.uniform(20.0, 70.0),
        vibrato_delay_s=rng.uniform(0.15, 0.45),
        drift_cents=rng.uniform(1.0, 5.0),
        portamento_s=rng.uniform(0.04, 0.15),
        tilt_hz=rng.uniform(1500.0, 4000.0),
    )


def random_score(rng: np.random.Generator, voice: str, duration_s: float) -> list[Note]:
    """Draws phrases of notes (with rests between) that last at least `duration_s` seconds."""
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {VOICES}, got {voice!r}")
    low, high = _RANGE[voice]
    centre = int(rng.integers(_CENTRE[voice][0], _CENTRE[voice][1] + 1))
    scale = _SCALES[int(rng.integers(2))]
    root = centre - int(rng.integers(12))
    # Scale degrees as MIDI notes inside the voice range and an octave either side of the centre.
    pitches = [
        root + 12 * octave + step
        for octave in range(-2, 3)
        for step in scale
        if max(low, centre - 12) <= root + 12 * octave + step <= min(high, centre + 12)
    ]
    beat = 60.0 / rng.uniform(60.0, 140.0)
    beats = np.array([0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 3.0, 4.0])
    notes = [Note(None, rng.uniform(0.05, 0.6))]
    position = int(np.argmin(np.abs(np.array(pitches) - centre)))
    total = notes[0].duration_s
    while total < duration_s:
        phrase_level = rng.uniform(-3.0, 3.0)
        for _ in range(int(rng.integers(3, 10))):
            position = int(
                np.clip(position + rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3]), 0, len(pitches) - 1)
            )
            consonant = (
                CONSONANTS[int(rng.integers(len(CONSONANTS)))] if rng.random() < 0.6 else None
            )
            duration = max(0.2, beat * float(rng.choice(beats)))
            notes.append(
                Note(
                    f0_hz=440.0 * 2.0 ** ((pitches[position] - 69) / 12),
                    duration_s=duration,
                    vowel=VOWELS[int(rng.integers(len(VOWELS)))],
                    consonant=consonant,
                    level_db=phrase_level + rng.uniform(-2.0, 2.0),
                )
            )
            total += duration
        rest = rng.uniform(0.25, 1.2)
        notes.append(Note(None, rest))
        total += rest
    return notes


def sing(
    seed: int, num_samples: int, sample_rate: int = 22050, voice: str | None = None
) -> tuple[np.ndarray, dict]:
    """Sings a random performance: a random singer (of `voice`, or either) and a random score.

    Args:
      seed: a non-negative integer; the same seed gives the same samples.
      num_samples: length of the result.
      sample_rate: output rate in Hz (at least 16 kHz, so the formants fit).
      voice: "male", "female", or None to draw one.

    Returns:
      `(audio, info)`: float32 audio of shape [T] peaking at 0.8, and the `sing_notes` info.
    """
    seed = _check_seed(seed)
    rng = np.random.default_rng([seed, 0])
    singer = random_singer(rng, voice)
    notes = random_score(rng, singer.voice, num_samples / sample_rate)
    audio, info = sing_notes(notes, singer, sample_rate, seed=seed, num_samples=num_samples)
    return audio, info


def sing_notes(
    notes: Sequence[Note],
    singer: Singer | None = None,
    sample_rate: int = 22050,
    seed: int = 0,
    num_samples: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Sings the given notes, one after another.

    Args:
      notes: the score; a `Note` with `f0_hz=None` is a rest.
      singer: the voice; the default `Singer()` when None.
      sample_rate: output rate in Hz (at least 16 kHz).
      seed: seeds the jitter, shimmer and noises.
      num_samples: length of the result; by default the score's total duration.

    Returns:
      `(audio, info)`: float32 audio of shape [T] scaled to peak at 0.8, and a dict with "f0"
      (float32 [T], the glottal frequency in Hz, held through rests), "voicing" (float32 [T], the
      voiced amplitude envelope, 0 in rests), "notes" (the score), "note_starts_s" (float64
      [N]) and "singer".
    """
    seed = _check_seed(seed)
    singer = Singer() if singer is None else singer
    if not notes:
        raise ValueError("notes must hold at least one Note")
    if sample_rate < 16000:
        raise ValueError(
            f"sample_rate must be at least 16000 Hz (formants up to 5 kHz), got {sample_rate}"
        )
    durations = np.array([note.duration_s for note in notes])
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    if num_samples is None:
        num_samples = int(round(durations.sum() * sample_rate))
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    rng = np.random.default_rng([seed, 1])
    audio, f0, voicing = _render(list(notes), starts, singer, sample_rate, num_samples, rng)
    peak = np.max(np.abs(audio))
    if peak > 0:
        audio = audio * (0.8 / peak)
    info = {
        "f0": f0,
        "voicing": voicing,
        "notes": tuple(notes),
        "note_starts_s": starts,
        "singer": singer,
    }
    return audio.astype(np.float32), info


def reverb_ir(seed: int, rt60: float, sample_rate: int = 22050) -> np.ndarray:
    """Draws a room impulse response (reverberant part only, no direct sound), unit energy.

    A pre-delay of 4–20 ms, 6–14 early reflections in the next 70 ms, and a Gaussian-noise tail
    that builds up over 20–80 ms and decays exponentially: the 500 Hz–4 kHz band at `rt60`
    (60 dB of energy in `rt60` seconds), below 500 Hz 10 % slower, above 4 kHz at 0.45–0.8 of
    `rt60`. The response lasts 1.1·rt60 + 0.1 s.

    Args:
      seed: a non-negative integer.
      rt60: mid-band reverberation time in seconds, in (0, 10].
      sample_rate: rate in Hz.

    Returns:
      float32 impulse response of shape [L].
    """
    seed = _check_seed(seed)
    if not 0.0 < rt60 <= 10.0:
        raise ValueError(f"rt60 must lie in (0, 10] seconds, got {rt60}")
    rng = np.random.default_rng([seed, 2])
    length = int(math.ceil((1.1 * rt60 + 0.1) * sample_rate))
    t = np.arange(length) / sample_rate
    predelay = rng.uniform(0.004, 0.02)
    buildup = rng.uniform(0.02, 0.08)
    # Amplitude decay 10^(−3t/RT60): the energy falls 60 dB in RT60 seconds.
    rt60_bands = (1.1 * rt60, rt60, rng.uniform(0.45, 0.8) * rt60)
    edges_hz = (500.0, 4000.0)
    noise = scipy.fft.rfft(rng.standard_normal(length))
    frequencies = scipy.fft.rfftfreq(length, 1.0 / sample_rate)
    masks = _crossover(frequencies, edges_hz)
    delayed = np.maximum(t - predelay, 0.0)
    tail = np.zeros(length)
    for mask, band_rt60 in zip(masks, rt60_bands, strict=True):
        tail += scipy.fft.irfft(noise * mask, n=length) * 10.0 ** (-3.0 * delayed / band_rt60)
    onset = np.clip((t - predelay) / buildup, 0.0, 1.0)
    tail *= 0.5 - 0.5 * np.cos(np.pi * onset)
    # Early reflections: sparse taps on the same decay, a little stronger than the tail there.
    count = int(rng.integers(6, 15))
    times = predelay + np.sort(rng.uniform(0.0, 0.07, count))
    taps = np.round(times * sample_rate).astype(int)
    gains = rng.uniform(1.0, 3.0, count) * rng.choice([-1.0, 1.0], count)
    gains *= 10.0 ** (-3.0 * (times - predelay) / rt60)
    np.add.at(tail, taps, gains)
    return (tail / np.sqrt(np.sum(tail**2))).astype(np.float32)


def apply_reverb(audio: np.ndarray, ir: np.ndarray, wet: float) -> np.ndarray:
    """Mixes dry audio [T] with its convolution by `ir` [L]: `(1 − wet)·x + wet·(x ∗ h)`, [T]."""
    audio = np.asarray(audio, np.float32)
    ir = np.asarray(ir, np.float32)
    if audio.ndim != 1 or ir.ndim != 1 or ir.size == 0:
        raise ValueError(
            f"expected audio [T] and a non-empty ir [L], got {audio.shape}, {ir.shape}"
        )
    if not 0.0 <= wet <= 1.0:
        raise ValueError(f"wet must lie in [0, 1], got {wet}")
    reverberant = signal.oaconvolve(audio, ir)[: audio.size]
    return ((1.0 - wet) * audio + wet * reverberant).astype(np.float32)


def clip(
    seed: int,
    num_samples: int,
    wet: bool = False,
    sample_rate: int = 22050,
    voice: str | None = None,
) -> np.ndarray:
    """Returns one training clip [T]: a random performance, dry or through a random room.

    The performance is sung for one second more than asked and the first second is cut off, so
    the clip starts anywhere in a phrase and a wet clip carries the reverb of what came before.
    The dry and the wet clip of one seed hold the same performance. Wet: RT60 ~ U(0.3, 2.5) s,
    wet mix ~ U(0.25, 0.6). Scaling: the whole rendered performance (before the cut) peaks at a
    level drawn from U(0.5, 0.9), so a clip that falls in a rest stays quiet.
    """
    seed = _check_seed(seed)
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    preroll = sample_rate
    audio, _ = sing(seed, num_samples + preroll, sample_rate, voice)
    rng = np.random.default_rng([seed, 3])
    rt60, mix, peak = rng.uniform(0.3, 2.5), rng.uniform(0.25, 0.6), rng.uniform(0.5, 0.9)
    if wet:
        audio = apply_reverb(audio, reverb_ir(seed, rt60, sample_rate), mix)
    audio = audio * (peak / max(float(np.max(np.abs(audio))), 1e-12))
    return audio[preroll:].astype(np.float32)


synthetic_clip = clip


class SyntheticVocals:
    """The generator as a dataset, with the readers' interface (`files`, `split`, `segment`).

    Segment seeds of the three splits are disjoint: seed s draws clip 3s (train), 3s + 1
    (validation) or 3s + 2 (test).

    Args:
      wet: True for reverberant clips, False for dry, None to draw either with equal odds.
      sample_rate: rate in Hz.
      voice: "male", "female" or None (either).
      split_name: "train", "validation" or "test".
    """

    files: tuple = ()

    def __init__(
        self,
        wet: bool | None = False,
        sample_rate: int = 22050,
        voice: str | None = None,
        split_name: str = "train",
    ):
        if split_name not in readers.SPLITS:
            raise ValueError(f"split must be one of {readers.SPLITS}, got {split_name!r}")
        if voice is not None and voice not in VOICES:
            raise ValueError(f"voice must be one of {VOICES} or None, got {voice!r}")
        self.wet = wet
        self.sample_rate = sample_rate
        self.voice = voice
        self.split_name = split_name

    def __repr__(self) -> str:
        return f"SyntheticVocals(wet={self.wet}, split={self.split_name!r}, voice={self.voice!r})"

    def split(self, name: str) -> "SyntheticVocals":
        """Returns the same generator restricted to the seeds of split `name`."""
        return SyntheticVocals(self.wet, self.sample_rate, self.voice, name)

    def segment(self, key_or_seed, num_samples: int) -> np.ndarray:
        """Returns the clip [num_samples] picked by `key_or_seed` (int, Generator or JAX key)."""
        seed = readers.as_seed(key_or_seed)
        clip_seed = 3 * (seed % 2**60) + readers.SPLITS.index(self.split_name)
        wet = self.wet
        if wet is None:
            wet = bool(np.random.default_rng([clip_seed, 4]).integers(2))
        return clip(clip_seed, num_samples, wet, self.sample_rate, self.voice)


# ---------------------------------------------------------------------------------------------
# Rendering.


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _render(
    notes: list[Note],
    starts: np.ndarray,
    singer: Singer,
    sample_rate: int,
    num_samples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders the score: returns audio, f0 and the voicing envelope, each [T]."""
    control = _controls(notes, starts, singer, sample_rate, num_samples, rng)
    positions = np.arange(num_samples)
    control_positions = np.arange(control["log_f0"].size) * _CONTROL_HOP
    log_f0 = np.interp(positions, control_positions, control["log_f0"])
    voicing = np.interp(positions, control_positions, control["voicing"])
    noise_envelope = np.interp(positions, control_positions, control["noise"])

    flow_derivative, flow, f0 = _glottal_source(np.exp(log_f0), singer, sample_rate, rng)
    # Aspiration: white noise, lightly high-passed, louder while the glottis is open, at
    # `breathiness_db` below the pulses where the voice sounds.
    white = rng.standard_normal(num_samples + 1)
    aspiration = (white[1:] - 0.5 * white[:-1]) * (0.2 + flow)
    sounding = voicing > 0.3 * voicing.max()
    ratio = _rms(flow_derivative[sounding]) / max(_rms(aspiration[sounding]), 1e-12)
    voiced = (flow_derivative + 10.0 ** (singer.breathiness_db / 20) * ratio * aspiration) * voicing
    unvoiced = rng.standard_normal(num_samples) * noise_envelope

    audio = _vocal_tract(voiced, unvoiced, control, singer, sample_rate)
    return audio, f0.astype(np.float32), voicing.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


def _slow_noise(rng: np.random.Generator, count: int, length: int) -> np.ndarray:
    """Returns unit-variance Gaussian noise [count], low-passed by a Hann kernel of `length`."""
    kernel = np.hanning(length + 2)[1:-1]
    kernel /= np.sqrt(np.sum(kernel**2))
    return np.convolve(rng.standard_normal(count + length - 1), kernel, mode="valid")


def _smooth(x: np.ndarray, length: int) -> np.ndarray:
    """Low-passes a control track with a normalised Hann kernel of `length` points, edges held."""
    if length < 2:
        return x
    kernel = np.hanning(length + 2)[1:-1]
    kernel /= kernel.sum()
    padded = np.pad(x, (length, length), mode="edge")
    return np.convolve(padded, kernel, mode="same")[length:-length]


def _controls(
    notes: list[Note],
    starts: np.ndarray,
    singer: Singer,
    sample_rate: int,
    num_samples: int,
    rng: np.random.Generator,
) -> dict:
    """Builds the control tracks at one point per `_CONTROL_HOP` samples, plus per-frame filters."""
    count = num_samples // _CONTROL_HOP + 2
    rate = sample_rate / _CONTROL_HOP
    t = np.arange(count) / rate
    index = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(notes) - 1)
    ends = starts + np.array([note.duration_s for note in notes])
    is_note = np.array([note.f0_hz is not None for note in notes])
    sounding = is_note[index] & (t < ends[index])

    # Pitch: each note's log-f0, held through rests (from the next note, or the last one).
    log_f0_notes = np.array([np.log(note.f0_hz) if note.f0_hz else np.nan for note in notes])
    if np.all(np.isnan(log_f0_notes)):
        log_f0_notes[:] = np.log(220.0)
    log_f0_notes = _fill_nan(log_f0_notes)
    glide = max(2, int(round(singer.portamento_s * rate)))
    log_f0 = _smooth(log_f0_notes[index], glide)

    # Vibrato: one oscillator with a slowly wandering rate; its depth fades in after each onset.
    wander = 1.0 + 0.04 * _slow_noise(rng, count, int(0.5 * rate))  # ±4 % in rate
    phase = 2 * np.pi * np.cumsum(singer.vibrato_rate_hz * wander) / rate + rng.uniform(0, 6.3)
    since_onset = t - starts[index]
    depth = np.clip((since_onset - singer.vibrato_delay_s) / 0.3, 0.0, 1.0) * sounding
    depth = _smooth(depth * rng.uniform(0.8, 1.2, len(notes))[index], int(0.06 * rate))
    drift = _slow_noise(rng, count, int(0.4 * rate))
    cents = singer.vibrato_cents * depth * np.sin(phase) + singer.drift_cents * drift
    log_f0 = log_f0 + cents * (np.log(2) / 1200)

    # Loudness: note levels, an arc over each note, a crescendo or decrescendo over each phrase
    # (in dB); soft onsets at phrase starts and releases at phrase ends.
    level_db = np.array([note.level_db for note in notes])[index]
    phrase = np.cumsum(~is_note)[index]  # phrases are numbered by the rests before them
    phrase_start = np.maximum.accumulate(np.where(~sounding, t, 0.0))
    slope_db_per_s = rng.uniform(-3.0, 3.0, len(notes) + 1)[phrase]
    level_db = level_db + slope_db_per_s * np.minimum(t - phrase_start, 1.5)
    gate = sounding.astype(np.float64)
    for k, note in enumerate(notes):
        if note.f0_hz is None:
            continue
        inside = (index == k) & sounding
        progress = (t[inside] - starts[k]) / note.duration_s
        level_db[inside] += rng.uniform(-1.0, 3.0) * np.sin(np.pi * progress)
        if k == 0 or notes[k - 1].f0_hz is None:
            attack = np.clip((t[inside] - starts[k]) / rng.uniform(0.04, 0.12), 0.0, 1.0)
            gate[inside] *= np.sin(0.5 * np.pi * attack) ** 2
        if k == len(notes) - 1 or notes[k + 1].f0_hz is None:
            release = np.clip((ends[k] - t[inside]) / rng.uniform(0.06, 0.2), 0.0, 1.0)
            gate[inside] *= np.sin(0.5 * np.pi * release) ** 2
    level_db = _smooth(level_db, int(0.08 * rate))

    # Consonants: each takes its time from before its note's onset.
    voiced_formants = np.zeros(count, int) - 1  # index into the sonorant list, −1 = the vowel
    noise = np.zeros(count)
    noise_centre = np.full(count, 1500.0)
    noise_width = np.full(count, 2500.0)
    sonorants = list(_SONORANTS)
    for k, note in enumerate(notes):
        if note.f0_hz is None or note.consonant is None:
            continue
        if note.consonant in _SONORANTS:
            level, _, _ = _SONORANTS[note.consonant]
            span = (t >= starts[k] - 0.07) & (t < starts[k])
            gate[span] = level
            voiced_formants[span] = sonorants.index(note.consonant)
            continue
        duration, centre, width, level_db_rel, burst = _OBSTRUENTS[note.consonant]
        span = (t >= starts[k] - duration) & (t < starts[k])
        gate[span] = 0.0
        if burst:
            # A closure (silence) and then a burst in the last 20 ms.
            into = t[span] - (starts[k] - 0.02)
            envelope = np.where(into >= 0, np.exp(-np.maximum(into, 0) / 0.008), 0.0)
        else:
            into = (t[span] - (starts[k] - duration)) / duration
            envelope = np.sin(np.pi * into) ** 0.5
        noise[span] = np.maximum(noise[span], 10 ** (level_db_rel / 20) * envelope)
        noise_centre[span] = min(centre, 0.42 * sample_rate)
        noise_width[span] = width

    # Inhalations in the longer rests, ending just before the next phrase.
    for k, note in enumerate(notes):
        if note.f0_hz is None and note.duration_s >= 0.35 and rng.random() < 0.7:
            length = min(note.duration_s - 0.05, rng.uniform(0.25, 0.5))
            end = starts[k] + note.duration_s - 0.05
            span = (t >= end - length) & (t < end)
            envelope = np.sin(np.pi * (t[span] - (end - length)) / length) ** 2
            noise[span] = np.maximum(noise[span], 10 ** (rng.uniform(-32.0, -22.0) / 20) * envelope)
            noise_centre[span] = 1600.0
            noise_width[span] = 3000.0

    gate = _smooth(gate, int(0.02 * rate))
    loudness = 10.0 ** (level_db / 20)
    tremolo = 1.0 + 0.1 * depth * np.sin(phase)  # the vibrato moves the loudness a little too
    return {
        "log_f0": log_f0,
        "voicing": gate * loudness * tremolo,
        "noise": noise,
        "loudness_db": level_db,
        "vowel": np.array([VOWELS.index(note.vowel) for note in notes])[index],
        "sonorant": voiced_formants,
        "noise_centre": noise_centre,
        "noise_width": noise_width,
    }


def _fill_nan(x: np.ndarray) -> np.ndarray:
    """Fills NaN entries with the next valid value (the last valid one at the end)."""
    x = x.copy()
    for k in range(len(x) - 2, -1, -1):
        if np.isnan(x[k]):
            x[k] = x[k + 1]
    for k in range(1, len(x)):
        if np.isnan(x[k]):
            x[k] = x[k - 1]
    return x


def _glottal_source(
    f0: np.ndarray, singer: Singer, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders the glottal flow derivative, the flow and the jittered f0, each [T].

    Rosenberg's pulse over the cycle phase p ∈ [0, 1): opening 0 ≤ p < T_p with flow
    `½(1 − cos(π p/T_p))`, closing T_p ≤ p < T_c with flow `cos(π(p − T_p)/(2T_n))`, closed after
    T_c = T_p + T_n. Its derivative (in phase) jumps by π/(2T_n) at closure, which PolyBLEP turns
    into a band-limited step, and changes slope at 0 and T_p, which PolyBLAMP rounds off. Rendered
    at `_OVERSAMPLE` times the rate and decimated by a polyphase filter, the partials that still
    fold back below Nyquist are more than 80 dB down at 784 Hz.
    """
    size = f0.size
    fine_rate = sample_rate * _OVERSAMPLE
    fine = np.interp(np.arange(size * _OVERSAMPLE) / _OVERSAMPLE, np.arange(size), f0)
    # Jitter: each glottal cycle gets its own period perturbation.
    cycle = np.floor(np.cumsum(fine) / fine_rate).astype(int)
    fine = fine * (1.0 + singer.jitter * rng.standard_normal(cycle[-1] + 2))[cycle]
    increment = fine / fine_rate  # dt: phase advance per sample
    phase = np.cumsum(increment) + rng.uniform()
    cycle = np.floor(phase).astype(int)
    p = phase - cycle

    t_n = singer.open_quotient / (1.0 + singer.speed_quotient)
    t_p = singer.open_quotient - t_n
    t_c = singer.open_quotient
    opening, closing = p < t_p, (p >= t_p) & (p < t_c)
    derivative = np.zeros_like(p)
    derivative[opening] = np.pi / (2 * t_p) * np.sin(np.pi * p[opening] / t_p)
    derivative[closing] = -np.pi / (2 * t_n) * np.sin(np.pi * (p[closing] - t_p) / (2 * t_n))
    # Band-limit the corners: the jump at closure (PolyBLEP) and the slope changes at the
    # opening and at the peak of the flow (PolyBLAMP), each of them per sample.
    slope_at_opening = np.pi**2 / (2 * t_p**2)
    slope_at_peak = np.pi**2 / (2 * t_p**2) - (np.pi / (2 * t_n)) ** 2
    _add_polyblep(derivative, p, increment, t_c, np.pi / (2 * t_n))
    _add_polyblamp(derivative, p, increment, 0.0, slope_at_opening)
    _add_polyblamp(derivative, p, increment, t_p, slope_at_peak)
    flow = np.zeros_like(p)
    flow[opening] = 0.5 - 0.5 * np.cos(np.pi * p[opening] / t_p)
    flow[closing] = np.cos(np.pi * (p[closing] - t_p) / (2 * t_n))
    # Shimmer: each cycle gets its own amplitude; the pulse is zero at the cycle boundary.
    amplitude = np.exp(singer.shimmer * rng.standard_normal(cycle[-1] + 1 - cycle[0]))[
        cycle - cycle[0]
    ]
    derivative = signal.resample_poly(derivative * amplitude, 1, _OVERSAMPLE)[:size]
    return derivative, flow[::_OVERSAMPLE], fine[::_OVERSAMPLE]


def _near(p: np.ndarray, dt: np.ndarray, corner: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns the samples within one sample of phase `corner`, and their signed distance x.

    x = (p − corner)/dt in samples, wrapped to the nearest cycle, for the |x| < 1 samples only.
    """
    distance = (p - corner + 0.5) % 1.0 - 0.5
    index = np.flatnonzero(np.abs(distance) < dt)
    return index, distance[index] / dt[index]


def _add_polyblep(out: np.ndarray, p: np.ndarray, dt: np.ndarray, corner: float, jump: float):
    """Adds the two-sample PolyBLEP residual that turns a jump at phase `corner` band-limited.

    For an upward jump J the residual is J·(1 + x)²/2 just before the jump and −J·(1 − x)²/2
    just after it (x the signed distance in samples).
    """
    index, x = _near(p, dt, corner)
    out[index] += jump * np.where(x < 0, 0.5 * (1 + x) ** 2, -0.5 * (1 - x) ** 2)


def _add_polyblamp(out: np.ndarray, p: np.ndarray, dt: np.ndarray, corner: float, slope: float):
    """Adds the PolyBLAMP residual that rounds a slope change at phase `corner`.

    The integral of the PolyBLEP residual: ΔS·(1 − |x|)³/6, with ΔS the change of slope per
    sample (`slope` per unit phase times the phase advance dt).
    """
    index, x = _near(p, dt, corner)
    out[index] += slope * dt[index] * (1 - np.abs(x)) ** 3 / 6


def _crossover(frequencies: np.ndarray, edges_hz: Sequence[float]) -> list[np.ndarray]:
    """Splits the spectrum into bands at `edges_hz` with raised-cosine half-octave transitions.

    The band magnitudes sum to one at every frequency.
    """
    log_f = np.log2(np.maximum(frequencies, 1.0))
    below = [np.clip(0.5 - (log_f - np.log2(edge)) / 0.5, 0.0, 1.0) for edge in edges_hz]
    below = [0.5 - 0.5 * np.cos(np.pi * b) for b in below]  # 1 well below the edge, 0 above
    masks, previous = [], np.zeros_like(log_f)
    for b in below:
        masks.append(b - previous)
        previous = b
    masks.append(1.0 - previous)
    return masks


def _vocal_tract(
    voiced: np.ndarray, unvoiced: np.ndarray, control: dict, singer: Singer, sample_rate: int
) -> np.ndarray:
    """Filters the voiced stream by the moving formant cascade and the noise by its band filter.

    Hann-windowed blocks of `_FRAME` samples every `_FRAME_HOP`, zero-padded to `_NFFT`, are
    multiplied by the frame's frequency response and overlapped-added.
    """
    size = voiced.size
    frames = -(-(size + _FRAME) // _FRAME_HOP)
    padded_length = frames * _FRAME_HOP + _FRAME
    streams = np.zeros((2, padded_length), np.float32)
    streams[0, _FRAME : _FRAME + size] = voiced
    streams[1, _FRAME : _FRAME + size] = unvoiced
    window = np.hanning(_FRAME + 1)[:-1].astype(np.float32)  # periodic: shifted copies sum to 2
    blocks = np.lib.stride_tricks.sliding_window_view(streams, _FRAME, axis=1)[:, ::_FRAME_HOP]
    spectra = scipy.fft.rfft(blocks[:, :frames] * window, n=_NFFT, axis=-1)  # [2, M, F]

    # Control values at each frame's centre.
    centres = np.arange(frames) * _FRAME_HOP - _FRAME // 2
    at = np.clip(centres // _CONTROL_HOP, 0, control["log_f0"].size - 1)
    omega = np.linspace(0.0, np.pi, _NFFT // 2 + 1, dtype=np.float32)
    unit = (np.cos(omega), np.sin(omega), np.cos(2 * omega), np.sin(2 * omega))

    # The formant cascade Π_k g_k / (1 − c_k z⁻¹ + r_k² z⁻²) (Klatt's resonators, DC gain 1),
    # times a one-pole tilt (1 − a)/(1 − a z⁻¹), a = exp(−2π·f_tilt/f_s): softer notes are darker.
    formants, bandwidths = _formant_tracks(control, singer, at, sample_rate)
    loudness_db = control["loudness_db"][at]
    corner = singer.tilt_hz * 10.0 ** (np.clip(loudness_db, -15.0, 0.0) / 40.0)
    tilt = np.exp(-2 * np.pi * corner / sample_rate)
    tilt = tilt[:, None].astype(np.float32)
    denominator = (1.0 - tilt * unit[0], tilt * unit[1])
    gain = 1.0 - tilt
    for k in range(formants.shape[1]):
        re, im, dc = _resonator(formants[:, k], bandwidths[:, k], unit, sample_rate)
        denominator = _multiply(denominator, (re, im))
        gain = gain * dc
    b_highpass, a_highpass = signal.butter(2, _HIGHPASS_HZ, "highpass", fs=sample_rate)
    highpass = signal.freqz(b_highpass, a_highpass, worN=omega.astype(np.float64))[1]
    fixed = (highpass * _upper_tract(singer, omega, sample_rate)).astype(np.complex64)
    response = _divide(gain.astype(np.float32), denominator) * fixed

    # The noise band filter ((1 − z⁻²)/(1 − c z⁻¹ + r² z⁻²))², scaled to unit mean power gain.
    re, im, _ = _resonator(
        control["noise_centre"][at], control["noise_width"][at], unit, sample_rate
    )
    re, im = _multiply((re, im), (re, im))
    zeros = ((1.0 - unit[2]) + 1j * unit[3]) ** 2
    power = np.abs(zeros) ** 2 / (re * re + im * im)
    scale = 1.0 / np.sqrt(np.mean(power, axis=-1, keepdims=True))
    noise_response = (_divide(scale, (re, im)) * (zeros * highpass)).astype(np.complex64)

    # The noise stream carries levels relative to the voiced signal: scale it by the voiced
    # stream's RMS over its louder frames (Parseval on the filtered frames).
    filtered_voiced = spectra[0] * response
    energy = np.sum(np.abs(filtered_voiced) ** 2, axis=-1)
    loud = energy > 0.1 * energy.max() if energy.max() > 0 else energy >= 0
    window_energy = np.sum(window.astype(np.float64) ** 2) * _NFFT / 2
    voiced_rms = np.sqrt(np.mean(energy[loud]) / window_energy)
    total = filtered_voiced + voiced_rms * spectra[1] * noise_response
    blocks_out = scipy.fft.irfft(total.astype(np.complex64), n=_NFFT, axis=-1)  # [M, NFFT]

    chunks = _NFFT // _FRAME_HOP
    out = np.zeros((frames + chunks, _FRAME_HOP), np.float32)
    for j in range(chunks):
        out[j : j + frames] += blocks_out[:, j * _FRAME_HOP : (j + 1) * _FRAME_HOP]
    return out.reshape(-1)[_FRAME : _FRAME + size] / 2.0


def _formant_tracks(
    control: dict, singer: Singer, at: np.ndarray, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Returns formant frequencies and bandwidths per frame, [M, 5] each, gliding between vowels."""
    vowel = control["vowel"][at]
    sonorant = control["sonorant"][at]
    formants = _FORMANTS[singer.voice][vowel].copy()
    bandwidths = _BANDWIDTHS[singer.voice][vowel].copy()
    scale = 1.0 if singer.voice == "male" else 1.15
    for k, (_, f, b) in enumerate(_SONORANTS.values()):
        formants[sonorant == k] = np.array(f) * scale
        bandwidths[sonorant == k] = b
    formants *= singer.formant_scale
    # About 50 ms glides between targets (log-frequency for the formants).
    length = int(0.05 * sample_rate / _FRAME_HOP)
    log_formants = np.stack([_smooth(np.log(formants[:, k]), length) for k in range(5)], axis=1)
    bandwidths = np.stack([_smooth(bandwidths[:, k], length) for k in range(5)], axis=1)
    formants = np.exp(log_formants)
    # Singers raise F1 above a high f0 (formant tuning), so the fundamental is not lost.
    f0 = np.exp(control["log_f0"][at])
    formants[:, 0] = np.maximum(formants[:, 0], 1.1 * f0)
    formants[:, 1] = np.maximum(formants[:, 1], formants[:, 0] + 150.0)
    formants = np.minimum(formants, 0.45 * sample_rate)
    # Losses through the open glottis widen the resonances, more so at high pitch; this also
    # keeps the level from swinging by 20 dB as harmonics cross a narrow formant.
    bandwidths = np.maximum(bandwidths, np.maximum(60.0, 0.1 * f0)[:, None])
    return formants, bandwidths


def _upper_tract(singer: Singer, omega: np.ndarray, sample_rate: int) -> np.ndarray:
    """Returns the response [F] of the vocal tract's resonances above F5.

    Without them a DC-normalised five-pole cascade falls by 60 dB per octave above F5, where a
    real tract keeps resonating every Δ ≈ c/(2L) (1 kHz for a 17.5 cm male tract, 1.15 kHz for a
    female one, times `formant_scale`). Two-pole resonators continue the series from the voice's
    highest F5 plus Δ up to 0.9·Nyquist, with bandwidths of 250 Hz + 5 % (Klatt's higher-pole
    correction, made of poles).
    """
    spacing = (1000.0 if singer.voice == "male" else 1150.0) * singer.formant_scale
    first = (_FORMANTS[singer.voice][:, 4].max()) * singer.formant_scale + spacing
    z1 = np.exp(-1j * omega.astype(np.float64))
    response = np.ones(omega.size, np.complex128)
    for centre in np.arange(first, 0.45 * sample_rate, spacing):
        r = np.exp(-np.pi * (250.0 + 0.05 * centre) / sample_rate)
        c = 2 * r * np.cos(2 * np.pi * centre / sample_rate)
        response *= (1 - c + r * r) / (1 - c * z1 + r * r * z1 * z1)
    return response


def _resonator(
    centre: np.ndarray, width: np.ndarray, unit: tuple, sample_rate: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns Re and Im of `1 − c z⁻¹ + r² z⁻²` [M, F] and its value at DC `1 − c + r²` [M, 1].

    `r = exp(−π·B/f_s)` and `c = 2r·cos(2π·F/f_s)` place the pole pair at F with bandwidth B.
    """
    r = np.exp(-np.pi * width / sample_rate)[:, None].astype(np.float32)
    c = (2 * r * np.cos(2 * np.pi * centre / sample_rate)[:, None]).astype(np.float32)
    cos1, sin1, cos2, sin2 = unit
    return 1.0 - c * cos1 + r * r * cos2, c * sin1 - r * r * sin2, 1.0 - c + r * r


def _multiply(a: tuple, b: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Multiplies complex numbers held as (Re, Im) pairs of float32 arrays."""
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def _divide(numerator: np.ndarray, denominator: tuple) -> np.ndarray:
    """Returns the complex64 `numerator / (Re + i·Im)` for a real numerator."""
    re, im = denominator
    scale = numerator / (re * re + im * im)
    return (scale * re - 1j * (scale * im)).astype(np.complex64)
