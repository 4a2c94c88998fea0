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

The wide mix (`clip(..., mix="wide")`, the default) widens this toward real recordings. Each
clip's `Take` (`random_take`) picks a kind (`KINDS`: sung phrases, spoken sentences with gliding
pitch, syllable-rate voicing and fry, or a detuned choir section), a voice type
(`VOICE_TYPES`, bass to soprano: formant scale and range), a vocal effort (breathiness, open
quotient and tilt together), a room size (`ROOMS`), a microphone colouring and a peak level.
Its singers carry the tract's resonances above the sampled band (`Singer.tract_tail`), so
harmonics and aspiration reach Nyquist. `mix="classic"` is the first generator, sample for
sample.

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
# Fricatives and plosives: (duration s, band centre Hz, bandwidth Hz, level dB relative to the
# vowel, burst?, voicing). Plosives are a short closure followed by a burst. Voicing is the
# glottal source's level under the noise: 0 for the unvoiced ones; z and v buzz under their
# frication, b, d and g carry a faint voice bar through the closure.
_OBSTRUENTS = {
    "s": (0.09, 6500.0, 3000.0, -18.0, False, 0.0),
    "sh": (0.09, 3000.0, 1800.0, -18.0, False, 0.0),
    "f": (0.08, 5000.0, 6000.0, -26.0, False, 0.0),
    "h": (0.06, 1500.0, 2500.0, -24.0, False, 0.0),
    "t": (0.05, 4000.0, 3500.0, -18.0, True, 0.0),
    "k": (0.06, 2200.0, 1500.0, -18.0, True, 0.0),
    "p": (0.05, 1200.0, 2500.0, -22.0, True, 0.0),
    "z": (0.08, 6000.0, 3000.0, -22.0, False, 0.35),
    "v": (0.07, 4500.0, 6000.0, -28.0, False, 0.4),
    "b": (0.05, 1200.0, 2500.0, -26.0, True, 0.12),
    "d": (0.05, 3800.0, 3500.0, -24.0, True, 0.12),
    "g": (0.06, 2200.0, 1500.0, -24.0, True, 0.12),
}
CONSONANTS = tuple(_SONORANTS) + tuple(_OBSTRUENTS)
# The first generator drew from these ten; its scores are reproduced with them.
_CLASSIC_CONSONANTS = CONSONANTS[:10]
ONSETS = ("soft", "hard", "breathy")
# Attack time of a phrase's first note per onset (s): a soft onset swells, a hard (glottal)
# one starts at full strength within a few cycles, a breathy one swells slowly out of an h.
_ATTACK_S = {None: (0.04, 0.12), "soft": (0.04, 0.12), "hard": (0.003, 0.01), "breathy": (0.1, 0.2)}

# Score ranges (MIDI note numbers) and tessitura centres per voice.
_RANGE = {"male": (43, 65), "female": (53, 79)}
_CENTRE = {"male": (48, 58), "female": (62, 72)}

VOICE_TYPES = ("bass", "baritone", "tenor", "alto", "mezzo", "soprano")
# Per voice type: the formant table it scales, the range of its `formant_scale` (a longer tract
# is darker), its sung range and tessitura centres (MIDI), and its speaking f0 range (Hz).
_VOICE_TYPES = {
    "bass": ("male", (0.88, 0.96), (40, 62), (45, 53), (75.0, 110.0)),
    "baritone": ("male", (0.93, 1.0), (43, 66), (48, 57), (90.0, 130.0)),
    "tenor": ("male", (0.98, 1.06), (48, 69), (53, 62), (105.0, 150.0)),
    "alto": ("female", (0.9, 0.98), (53, 74), (58, 67), (160.0, 210.0)),
    "mezzo": ("female", (0.95, 1.02), (57, 77), (62, 70), (180.0, 230.0)),
    "soprano": ("female", (1.0, 1.08), (60, 79), (65, 74), (200.0, 260.0)),
}

# What a clip of the wide mix holds, and how often: sung phrases, spoken sentences, or a
# section of a choir singing the same phrases in unison.
KINDS = ("sung", "spoken", "choir")
KIND_ODDS = (0.6, 0.25, 0.15)
ROOMS = ("booth", "room", "hall", "church")
ROOM_ODDS = (0.2, 0.35, 0.3, 0.15)
# Per room size: RT60 (s), pre-delay (s), the span of the early reflections (s), the tail's
# build-up (s) and the wet share of the mix; bigger rooms answer later and longer.
_ROOMS = {
    "booth": ((0.12, 0.3), (0.001, 0.004), 0.015, (0.005, 0.015), (0.1, 0.3)),
    "room": ((0.3, 0.8), (0.003, 0.01), 0.04, (0.01, 0.04), (0.2, 0.5)),
    "hall": ((0.8, 2.5), (0.01, 0.03), 0.08, (0.03, 0.08), (0.25, 0.6)),
    "church": ((2.5, 5.0), (0.02, 0.05), 0.12, (0.05, 0.12), (0.35, 0.7)),
}
# "wide" draws every kind of take below; "classic" is the first generator, clip for clip.
MIXES = ("wide", "classic")
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
      f0_hz: fundamental frequency (at the start, for a glide), or None for a rest.
      duration_s: length in seconds (onset consonants take their time from the previous note).
      vowel: one of `VOWELS`.
      consonant: one of `CONSONANTS` sung before the vowel, or None.
      level_db: loudness relative to the phrase.
      glide_to_hz: the f0 at the note's end, reached along a straight line in log-frequency
        (spoken intonation); None holds `f0_hz`.
      fry: sung in vocal fry: irregular periods, alternately strong and weak pulses.
      onset: how a phrase's first note starts, one of `ONSETS`; None draws the attack of the
        first generator (a soft onset).
    """

    f0_hz: float | None
    duration_s: float
    vowel: str = "a"
    consonant: str | None = None
    level_db: float = 0.0
    glide_to_hz: float | None = None
    fry: bool = False
    onset: str | None = None

    def __post_init__(self):
        for name in ("f0_hz", "glide_to_hz"):
            value = getattr(self, name)
            if value is not None and not 20.0 <= value <= 2000.0:
                raise ValueError(f"{name} must lie in [20, 2000] Hz or be None, got {value}")
        if self.glide_to_hz is not None and self.f0_hz is None:
            raise ValueError("a rest (f0_hz=None) cannot glide: glide_to_hz must be None")
        if self.onset is not None and self.onset not in ONSETS:
            raise ValueError(f"onset must be one of {ONSETS} or None, got {self.onset!r}")
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
      tract_tail: model the tract's resonances above the sampled band (the higher-pole
        correction), which keeps harmonics and aspiration up to Nyquist; False is the first
        generator's tract, whose voiced sounds fade out above about 7 kHz.
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
    tract_tail: bool = True

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
    """Draws a singer of the first generator (of `voice`, or either with equal odds)."""
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
        tract_tail=False,
    )


def voice_singer(
    rng: np.random.Generator, voice_type: str, speaking: bool = False, effort: float | None = None
) -> Singer:
    """Draws a singer (or, `speaking`, a speaker) of `voice_type` from `rng`.

    Vocal effort (0 soft, 1 loud; drawn when None) moves the source together, as it does in a
    real voice: louder is pressed (shorter open phase, sharper closure, a brighter tilt) and
    less breathy, softer is breathy and dark. Speakers have no vibrato and glide faster.
    """
    if voice_type not in VOICE_TYPES:
        raise ValueError(f"voice_type must be one of {VOICE_TYPES}, got {voice_type!r}")
    voice, scale, _, _, _ = _VOICE_TYPES[voice_type]
    effort = rng.uniform() if effort is None else effort
    if not 0.0 <= effort <= 1.0:
        raise ValueError(f"effort must lie in [0, 1], got {effort}")
    return Singer(
        voice=voice,
        formant_scale=rng.uniform(*scale),
        open_quotient=0.8 - 0.3 * effort + rng.uniform(-0.05, 0.05),
        speed_quotient=rng.uniform(1.8, 2.6) + 1.2 * effort,
        jitter=rng.uniform(0.002, 0.01),
        shimmer=rng.uniform(0.02, 0.08),
        breathiness_db=-12.0 - 22.0 * effort + rng.uniform(-5.0, 5.0),
        vibrato_rate_hz=rng.uniform(4.5, 7.0),
        vibrato_cents=0.0 if speaking else rng.uniform(0.0, 80.0),
        vibrato_delay_s=rng.uniform(0.1, 0.5),
        drift_cents=rng.uniform(1.0, 8.0),
        portamento_s=rng.uniform(0.03, 0.06) if speaking else rng.uniform(0.03, 0.2),
        tilt_hz=1500.0 * 2.0 ** (2.5 * effort + rng.uniform(-0.5, 0.5)),  # 1.1–8.5 kHz
    )


def random_score(
    rng: np.random.Generator,
    voice: str,
    duration_s: float,
    voice_type: str | None = None,
    consonants: Sequence[str] = _CLASSIC_CONSONANTS,
) -> list[Note]:
    """Draws phrases of notes (with rests between) that last at least `duration_s` seconds.

    The range is the voice's (male, female), or the voice type's when one is given; onset
    consonants come from `consonants` (the first generator's ten by default).
    """
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {VOICES}, got {voice!r}")
    low, high = _RANGE[voice]
    centres = _CENTRE[voice]
    if voice_type is not None:
        _, _, (low, high), centres, _ = _VOICE_TYPES[voice_type]
    centre = int(rng.integers(centres[0], centres[1] + 1))
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
                consonants[int(rng.integers(len(consonants)))] if rng.random() < 0.6 else None
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


def random_speech(rng: np.random.Generator, voice_type: str, duration_s: float) -> list[Note]:
    """Draws spoken sentences (with pauses between) that last at least `duration_s` seconds.

    One note per syllable at 4–7 syllables/s, 80 % of them opened by a consonant (voiceless
    ones twice as often as voiced ones), so voiced and unvoiced stretches alternate at the
    syllable rate. The pitch glides within each
    syllable: an intonation phrase starts 1–4 semitones above the speaker's middle pitch and
    declines by 2–6 semitones to its end, syllables rise, fall or stay level, accented ones
    jump up, and the last one falls (a statement) or rises (a question). A third of the
    statements end in vocal fry. Onsets after pauses are soft, hard or breathy.
    """
    if voice_type not in VOICE_TYPES:
        raise ValueError(f"voice_type must be one of {VOICE_TYPES}, got {voice_type!r}")
    _, _, _, _, (low_hz, high_hz) = _VOICE_TYPES[voice_type]
    middle_hz = rng.uniform(low_hz, high_hz)
    syllable_s = 1.0 / rng.uniform(4.0, 7.0)
    # Voiceless consonants twice as likely as voiced ones, so most syllables break the voicing.
    consonant_odds = np.array([1.0 if _is_voiced(name) else 2.0 for name in CONSONANTS])
    consonant_odds /= consonant_odds.sum()

    def hz(semitones):  # relative to the speaker's middle, clipped to what a `Note` takes
        return float(np.clip(middle_hz * 2.0 ** (semitones / 12), 25.0, 1500.0))

    notes = [Note(None, rng.uniform(0.05, 0.5))]
    total = notes[0].duration_s
    while total < duration_s:
        count = int(rng.integers(4, 15))
        top, declination = rng.uniform(1.0, 4.0), rng.uniform(2.0, 6.0)
        phrase_level = rng.uniform(-4.0, 2.0)
        question = rng.random() < 0.2
        onset = ONSETS[int(rng.integers(len(ONSETS)))]
        for j in range(count):
            start = top - declination * j / (count - 1)
            accented = rng.random() < 0.25
            if j == count - 1:
                move = rng.uniform(3.0, 8.0) if question else rng.uniform(-6.0, -2.0)
            else:
                move = rng.choice([rng.uniform(1.0, 4.0), rng.uniform(-4.0, -1.0), 0.0])
                move += rng.uniform(-0.5, 0.5)
            start += rng.uniform(2.0, 5.0) if accented else rng.uniform(-0.5, 0.5)
            duration = max(0.12, syllable_s * rng.uniform(0.7, 1.3) * (1.3 if accented else 1))
            notes.append(
                Note(
                    f0_hz=hz(start),
                    duration_s=duration,
                    vowel=VOWELS[int(rng.integers(len(VOWELS)))],
                    consonant=CONSONANTS[int(rng.choice(len(CONSONANTS), p=consonant_odds))]
                    if rng.random() < 0.8
                    else None,
                    level_db=phrase_level + (3.0 if accented else rng.uniform(-3.0, 1.0)),
                    glide_to_hz=hz(start + move),
                    onset=onset if j == 0 else None,
                )
            )
            total += duration
        if not question and rng.random() < 0.33:
            # The voice runs out of air: it creaks down into fry at the end of the sentence.
            fry_hz = rng.uniform(30.0, 60.0) * (1.0 if middle_hz < 160.0 else 1.4)
            duration = rng.uniform(0.1, 0.25)
            notes.append(
                Note(
                    notes[-1].glide_to_hz,
                    duration,
                    notes[-1].vowel,
                    fry=True,
                    level_db=phrase_level - 3.0,
                    glide_to_hz=fry_hz,
                )
            )
            total += duration
        pause = rng.uniform(0.15, 0.8)
        notes.append(Note(None, pause))
        total += pause
    return notes


def _is_voiced(consonant: str) -> bool:
    return consonant in _SONORANTS or _OBSTRUENTS[consonant][-1] > 0


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


def sing_choir(
    notes: Sequence[Note],
    singers: Sequence[Singer],
    detune_cents: Sequence[float],
    delays_s: Sequence[float] | None = None,
    sample_rate: int = 22050,
    seed: int = 0,
    num_samples: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Sings the notes with a section of voices in unison, each detuned and a little late.

    Args:
      notes: the score every voice sings.
      singers: one `Singer` per voice (each keeps its own vibrato, jitter and timbre).
      detune_cents: per voice, its pitch offset from the score in cents.
      delays_s: per voice, how late it comes in (s, ≥ 0); no delay when None.
      sample_rate: output rate in Hz.
      seed: seeds each voice's own noises.
      num_samples: length of the result; by default the score's duration plus the last delay.

    Returns:
      `(audio, info)`: float32 audio [T] peaking at 0.8, and a dict with "stems" (float32
      [V, T], each voice as it sits in the mix, which is their sum), "voices" (each voice's
      `sing_notes` info) and "detune_cents".
    """
    seed = _check_seed(seed)
    count = len(singers)
    delays_s = [0.0] * count if delays_s is None else list(delays_s)
    if count < 1 or len(detune_cents) != count or len(delays_s) != count:
        raise ValueError(
            f"need one detune and one delay per singer, got {count} singers, "
            f"{len(detune_cents)} detunes and {len(delays_s)} delays"
        )
    if min(delays_s) < 0:
        raise ValueError(f"delays_s must be >= 0, got {delays_s}")
    if num_samples is None:
        duration_s = sum(note.duration_s for note in notes) + max(delays_s)
        num_samples = int(round(duration_s * sample_rate))
    stems, voices = [], []
    gains_db = np.random.default_rng([seed, 7]).uniform(-4.0, 0.0, count)
    for v, (singer, cents, delay_s) in enumerate(zip(singers, detune_cents, delays_s, strict=True)):
        ratio = 2.0 ** (cents / 1200)
        shifted = [
            dataclasses.replace(
                note,
                f0_hz=None if note.f0_hz is None else note.f0_hz * ratio,
                glide_to_hz=None if note.glide_to_hz is None else note.glide_to_hz * ratio,
            )
            for note in notes
        ]
        if delay_s > 0:
            shifted = [Note(None, delay_s), *shifted]
        voice_seed = int(np.random.SeedSequence([seed, v]).generate_state(1)[0])
        audio, info = sing_notes(shifted, singer, sample_rate, voice_seed, num_samples)
        stems.append(audio * np.float32(10 ** (gains_db[v] / 20)))
        voices.append(info)
    stems = np.stack(stems)
    mix = stems.sum(axis=0)
    scale = 0.8 / max(float(np.max(np.abs(mix))), 1e-12)
    info = {"stems": stems * np.float32(scale), "voices": voices, "detune_cents": detune_cents}
    return (mix * scale).astype(np.float32), info


def reverb_ir(
    seed: int, rt60: float, sample_rate: int = 22050, room: str | None = None
) -> np.ndarray:
    """Draws a room impulse response (reverberant part only, no direct sound), unit energy.

    A pre-delay, 6–14 early reflections spread over the next tens of milliseconds, and a
    Gaussian-noise tail that builds up and decays exponentially: the 500 Hz–4 kHz band at
    `rt60` (60 dB of energy in `rt60` seconds), below 500 Hz 10 % slower, above 4 kHz at
    0.45–0.8 of `rt60`. The response lasts 1.1·rt60 + 0.1 s. Pre-delay, the early reflections'
    span and the build-up follow the room's size (`ROOMS`: from a vocal booth, 1–4 ms and
    15 ms, to a church, 20–50 ms and 120 ms); with no room they are the first generator's
    (4–20 ms, 70 ms, a 20–80 ms build-up).

    Args:
      seed: a non-negative integer.
      rt60: mid-band reverberation time in seconds, in (0, 10].
      sample_rate: rate in Hz.
      room: one of `ROOMS`, or None.

    Returns:
      float32 impulse response of shape [L].
    """
    seed = _check_seed(seed)
    if not 0.0 < rt60 <= 10.0:
        raise ValueError(f"rt60 must lie in (0, 10] seconds, got {rt60}")
    if room is not None and room not in ROOMS:
        raise ValueError(f"room must be one of {ROOMS} or None, got {room!r}")
    rng = np.random.default_rng([seed, 2])
    length = int(math.ceil((1.1 * rt60 + 0.1) * sample_rate))
    t = np.arange(length) / sample_rate
    if room is None:
        predelays, early_s, buildups, fft_length = (0.004, 0.02), 0.07, (0.02, 0.08), length
    else:
        _, predelays, early_s, buildups, _ = _ROOMS[room]
        fft_length = scipy.fft.next_fast_len(length, real=True)  # long tails, fast FFTs
    predelay = rng.uniform(*predelays)
    buildup = rng.uniform(*buildups)
    # Amplitude decay 10^(−3t/RT60): the energy falls 60 dB in RT60 seconds.
    rt60_bands = (1.1 * rt60, rt60, rng.uniform(0.45, 0.8) * rt60)
    edges_hz = (500.0, 4000.0)
    noise = scipy.fft.rfft(rng.standard_normal(fft_length))
    frequencies = scipy.fft.rfftfreq(fft_length, 1.0 / sample_rate)
    masks = _crossover(frequencies, edges_hz)
    delayed = np.maximum(t - predelay, 0.0)
    tail = np.zeros(length)
    for mask, band_rt60 in zip(masks, rt60_bands, strict=True):
        band = scipy.fft.irfft(noise * mask, n=fft_length)[:length]
        tail += band * 10.0 ** (-3.0 * delayed / band_rt60)
    onset = np.clip((t - predelay) / buildup, 0.0, 1.0)
    tail *= 0.5 - 0.5 * np.cos(np.pi * onset)
    # Early reflections: sparse taps on the same decay, a little stronger than the tail there.
    count = int(rng.integers(6, 15))
    times = predelay + np.sort(rng.uniform(0.0, early_s, count))
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


@dataclasses.dataclass(frozen=True)
class Microphone:
    """A microphone's (and preamp's) colouration: a high-pass and three gentle equaliser bands.

    Attributes:
      highpass_hz: corner of the second-order Butterworth high-pass (a low-cut switch).
      low_shelf_db, low_shelf_hz: bass shelf (the proximity effect of a close cardioid).
      presence_db, presence_hz, presence_q: presence peak (a capsule's resonance).
      high_shelf_db, high_shelf_hz: treble shelf (air, or a darker dynamic capsule).
    """

    highpass_hz: float = 30.0
    low_shelf_db: float = 0.0
    low_shelf_hz: float = 200.0
    presence_db: float = 0.0
    presence_hz: float = 4000.0
    presence_q: float = 1.0
    high_shelf_db: float = 0.0
    high_shelf_hz: float = 8000.0

    def sos(self, sample_rate: int) -> np.ndarray:
        """Returns the second-order sections [4, 6] (RBJ cookbook shelves and peak, S = 1)."""
        for name in ("highpass_hz", "low_shelf_hz", "presence_hz", "high_shelf_hz"):
            if not 0.0 < getattr(self, name) < sample_rate / 2:
                raise ValueError(f"{name} must lie in (0, Nyquist), got {getattr(self, name)}")
        highpass = signal.butter(2, self.highpass_hz, "highpass", fs=sample_rate, output="sos")
        return np.concatenate(
            [
                highpass,
                _biquad("low_shelf", self.low_shelf_db, self.low_shelf_hz, 0.7071, sample_rate),
                _biquad("peak", self.presence_db, self.presence_hz, self.presence_q, sample_rate),
                _biquad("high_shelf", self.high_shelf_db, self.high_shelf_hz, 0.7071, sample_rate),
            ]
        )


def _biquad(kind: str, gain_db: float, frequency: float, q: float, sample_rate: int) -> np.ndarray:
    """Returns one RBJ-cookbook section [1, 6] (b0, b1, b2, 1, a1, a2)."""
    a = 10.0 ** (gain_db / 40)
    w0 = 2 * np.pi * frequency / sample_rate
    cos_w0, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cos_w0, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cos_w0, 1 - alpha / a]
    else:
        root = 2 * np.sqrt(a) * alpha
        sign = 1.0 if kind == "low_shelf" else -1.0  # the high shelf mirrors cos ω0
        b = [
            a * ((a + 1) - sign * (a - 1) * cos_w0 + root),
            sign * 2 * a * ((a - 1) - sign * (a + 1) * cos_w0),
            a * ((a + 1) - sign * (a - 1) * cos_w0 - root),
        ]
        den = [
            (a + 1) + sign * (a - 1) * cos_w0 + root,
            -sign * 2 * ((a - 1) + sign * (a + 1) * cos_w0),
            (a + 1) + sign * (a - 1) * cos_w0 - root,
        ]
    return np.array([[*b, *den]]) / den[0]


def random_microphone(rng: np.random.Generator) -> Microphone:
    """Draws a microphone: mild colourings, none of which takes a band away."""
    return Microphone(
        highpass_hz=float(np.exp(rng.uniform(np.log(20.0), np.log(100.0)))),
        low_shelf_db=rng.uniform(-2.0, 6.0),
        low_shelf_hz=rng.uniform(120.0, 300.0),
        presence_db=rng.uniform(-1.0, 6.0),
        presence_hz=rng.uniform(2500.0, 7000.0),
        presence_q=rng.uniform(0.7, 2.0),
        high_shelf_db=rng.uniform(-6.0, 3.0),
        high_shelf_hz=rng.uniform(6000.0, 10000.0),
    )


@dataclasses.dataclass(frozen=True)
class Take:
    """What one clip of the wide mix holds, besides the details of its performance.

    Attributes:
      kind: one of `KINDS`: sung phrases, spoken sentences, or a choir section in unison.
      voice_type: one of `VOICE_TYPES` (every voice of a choir).
      choir_size: voices in the choir (1 for the other kinds).
      detune_cents: the spread (standard deviation) of the choir voices' detuning.
      effort: vocal effort from 0 (soft, breathy, dark) to 1 (loud, pressed, bright); None
        draws one per voice.
      room: one of `ROOMS`, the wet version's room.
      rt60: the room's reverberation time in seconds.
      wet_mix: the reverberant share of the wet version.
      microphone: the colouration, or None for a flat response.
      level_db: the peak level of the whole take, dB re full scale.
    """

    kind: str = "sung"
    voice_type: str = "tenor"
    choir_size: int = 1
    detune_cents: float = 0.0
    effort: float | None = None
    room: str = "room"
    rt60: float = 0.5
    wet_mix: float = 0.3
    microphone: Microphone | None = None
    level_db: float = -3.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.voice_type not in VOICE_TYPES:
            raise ValueError(f"voice_type must be one of {VOICE_TYPES}, got {self.voice_type!r}")
        if self.room not in ROOMS:
            raise ValueError(f"room must be one of {ROOMS}, got {self.room!r}")
        if self.choir_size < 1 or (self.kind != "choir" and self.choir_size != 1):
            raise ValueError(f"choir_size must be 1, or ≥ 1 for a choir, got {self.choir_size}")
        if not 0.0 <= self.wet_mix <= 1.0 or self.level_db > 0.0:
            raise ValueError(
                f"need wet_mix in [0, 1] and level_db <= 0, got {self.wet_mix}, {self.level_db}"
            )


def random_take(seed: int, voice: str | None = None) -> Take:
    """Draws the take of clip `seed` in the wide mix (of a `voice`'s types, or any).

    Kinds by `KIND_ODDS` (60 % sung, 25 % spoken, 15 % choir), voice types uniformly, choirs of
    2–5 voices spread by 4–20 cents, rooms by `ROOM_ODDS` with their RT60 and wet share drawn
    in the room's range, a random microphone on 80 % of takes, and a peak level of −18 to −1 dB.
    """
    seed = _check_seed(seed)
    if voice is not None and voice not in VOICES:
        raise ValueError(f"voice must be one of {VOICES} or None, got {voice!r}")
    rng = np.random.default_rng([seed, 5])
    kind = KINDS[int(rng.choice(len(KINDS), p=KIND_ODDS))]
    types = [name for name in VOICE_TYPES if voice in (None, _VOICE_TYPES[name][0])]
    room = ROOMS[int(rng.choice(len(ROOMS), p=ROOM_ODDS))]
    rt60s, _, _, _, mixes = _ROOMS[room]
    return Take(
        kind=kind,
        voice_type=types[int(rng.integers(len(types)))],
        choir_size=int(rng.integers(2, 6)) if kind == "choir" else 1,
        detune_cents=rng.uniform(4.0, 20.0) if kind == "choir" else 0.0,
        room=room,
        rt60=rng.uniform(*rt60s),
        wet_mix=rng.uniform(*mixes),
        microphone=random_microphone(rng) if rng.random() < 0.8 else None,
        level_db=rng.uniform(-18.0, -1.0),
    )


def perform(take: Take, seed: int, num_samples: int, sample_rate: int = 22050) -> tuple:
    """Renders the dry performance of a take: `(audio [T] peaking at 0.8, info)`.

    Its singers, score and noises are drawn from `seed`; info is `sing_notes`'s (or
    `sing_choir`'s) with "notes" and "singers" added.
    """
    seed = _check_seed(seed)
    rng = np.random.default_rng([seed, 6])
    duration_s = num_samples / sample_rate
    speaking = take.kind == "spoken"
    singers = [
        voice_singer(rng, take.voice_type, speaking, take.effort) for _ in range(take.choir_size)
    ]
    if speaking:
        notes = random_speech(rng, take.voice_type, duration_s)
    else:
        notes = random_score(rng, singers[0].voice, duration_s, take.voice_type, CONSONANTS)
    if take.kind == "choir":
        detune = rng.normal(0.0, take.detune_cents, take.choir_size)
        delays = rng.uniform(0.0, 0.04, take.choir_size)
        audio, info = sing_choir(
            notes, singers, detune - detune.mean(), delays, sample_rate, seed, num_samples
        )
    else:
        audio, info = sing_notes(notes, singers[0], sample_rate, seed, num_samples)
    return audio, {**info, "notes": tuple(notes), "singers": tuple(singers)}


def render(
    take: Take, seed: int, num_samples: int, wet: bool = False, sample_rate: int = 22050
) -> np.ndarray:
    """Renders a take as recorded [T]: performed, through its room (wet), its microphone,
    and scaled to peak at its level."""
    audio, _ = perform(take, seed, num_samples, sample_rate)
    if wet:
        ir = reverb_ir(seed, take.rt60, sample_rate, take.room)
        audio = apply_reverb(audio, ir, take.wet_mix)
    if take.microphone is not None:
        audio = signal.sosfilt(take.microphone.sos(sample_rate), audio)
    level = 10.0 ** (take.level_db / 20)
    return (audio * (level / max(float(np.max(np.abs(audio))), 1e-12))).astype(np.float32)


def clip(
    seed: int,
    num_samples: int,
    wet: bool = False,
    sample_rate: int = 22050,
    voice: str | None = None,
    mix: str = "wide",
) -> np.ndarray:
    """Returns one training clip [T]: a random performance, dry or through a random room.

    The performance is sung for one second more than asked and the first second is cut off, so
    the clip starts anywhere in a phrase and a wet clip carries the reverb of what came before.
    The dry and the wet clip of one seed hold the same performance. The whole rendered take
    (before the cut) is scaled to its peak level, so a clip that falls in a rest stays quiet.

    "wide": the take of `random_take(seed)`, rendered by `render`. "classic": the first
    generator, sample for sample: a sung phrase of a male or female singer, wet through a room
    of RT60 ~ U(0.3, 2.5) s at a wet mix ~ U(0.25, 0.6), peaking at U(0.5, 0.9).
    """
    seed = _check_seed(seed)
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {MIXES}, got {mix!r}")
    preroll = sample_rate
    if mix == "wide":
        take = random_take(seed, voice)
        return render(take, seed, num_samples + preroll, wet, sample_rate)[preroll:]
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
      mix: "wide" (every kind of take) or "classic" (the first generator's clips).
    """

    files: tuple = ()

    def __init__(
        self,
        wet: bool | None = False,
        sample_rate: int = 22050,
        voice: str | None = None,
        split_name: str = "train",
        mix: str = "wide",
    ):
        if split_name not in readers.SPLITS:
            raise ValueError(f"split must be one of {readers.SPLITS}, got {split_name!r}")
        if voice is not None and voice not in VOICES:
            raise ValueError(f"voice must be one of {VOICES} or None, got {voice!r}")
        if mix not in MIXES:
            raise ValueError(f"mix must be one of {MIXES}, got {mix!r}")
        self.wet = wet
        self.sample_rate = sample_rate
        self.voice = voice
        self.split_name = split_name
        self.mix = mix

    def __repr__(self) -> str:
        return (
            f"SyntheticVocals(wet={self.wet}, split={self.split_name!r}, voice={self.voice!r}, "
            f"mix={self.mix!r})"
        )

    def split(self, name: str) -> "SyntheticVocals":
        """Returns the same generator restricted to the seeds of split `name`."""
        return SyntheticVocals(self.wet, self.sample_rate, self.voice, name, self.mix)

    def segment(self, key_or_seed, num_samples: int) -> np.ndarray:
        """Returns the clip [num_samples] picked by `key_or_seed` (int, Generator or JAX key)."""
        seed = readers.as_seed(key_or_seed)
        clip_seed = 3 * (seed % 2**60) + readers.SPLITS.index(self.split_name)
        wet = self.wet
        if wet is None:
            wet = bool(np.random.default_rng([clip_seed, 4]).integers(2))
        return clip(clip_seed, num_samples, wet, self.sample_rate, self.voice, self.mix)


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

    fry = np.interp(positions, control_positions, control["fry"]) if control["fry"].any() else None
    flow_derivative, flow, f0 = _glottal_source(np.exp(log_f0), singer, sample_rate, rng, fry)
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
    log_f0 = log_f0_notes[index]
    for k, note in enumerate(notes):
        if note.glide_to_hz is not None:  # a straight line in log-f0 across the note
            inside = index == k
            progress = np.clip((t[inside] - starts[k]) / note.duration_s, 0.0, 1.0)
            log_f0[inside] += (np.log(note.glide_to_hz) - log_f0_notes[k]) * progress
    glide = max(2, int(round(singer.portamento_s * rate)))
    log_f0 = _smooth(log_f0, glide)

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
            attack_s = rng.uniform(*_ATTACK_S[note.onset])
            attack = np.clip((t[inside] - starts[k]) / attack_s, 0.0, 1.0)
            gate[inside] *= np.sin(0.5 * np.pi * attack) ** 2
        if k == len(notes) - 1 or notes[k + 1].f0_hz is None:
            # Fry is where the breath runs out: it stops rather than fades.
            release_s = rng.uniform(0.02, 0.05) if note.fry else rng.uniform(0.06, 0.2)
            release = np.clip((ends[k] - t[inside]) / release_s, 0.0, 1.0)
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
        duration, centre, width, level_db_rel, burst, voicing = _OBSTRUENTS[note.consonant]
        span = (t >= starts[k] - duration) & (t < starts[k])
        gate[span] = voicing
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

    # Breathy onsets: the breath is heard before the voice, an h under the note's attack.
    for k, note in enumerate(notes):
        if note.onset == "breathy" and (k == 0 or notes[k - 1].f0_hz is None):
            span = (t >= starts[k] - 0.08) & (t < starts[k] + 0.12)
            envelope = np.sin(np.pi * (t[span] - (starts[k] - 0.08)) / 0.2)
            noise[span] = np.maximum(noise[span], 10 ** (-22.0 / 20) * envelope)
            noise_centre[span] = 1500.0
            noise_width[span] = 3000.0

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
    fry = np.array([note.fry for note in notes])[index] & sounding
    return {
        "fry": _smooth(fry.astype(np.float64), int(0.03 * rate)),
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
    f0: np.ndarray,
    singer: Singer,
    sample_rate: int,
    rng: np.random.Generator,
    fry: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders the glottal flow derivative, the flow and the jittered f0, each [T].

    Where `fry` [T] (0 to 1) is on, the periods wander by 10 % from cycle to cycle and every
    other pulse is weaker (the subharmonic of vocal fry).

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
    jitter = rng.standard_normal(cycle[-1] + 2)[cycle]
    if fry is not None:
        fry = np.interp(np.arange(size * _OVERSAMPLE) / _OVERSAMPLE, np.arange(size), fry)
        fine = fine * (1.0 + (singer.jitter + 0.1 * fry) * jitter)
    else:
        fine = fine * (1.0 + singer.jitter * jitter)
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
    if fry is not None:
        amplitude = amplitude * (1.0 - 0.6 * fry * (cycle % 2))
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

    With `singer.tract_tail`, the poles beyond (up to Nyquist and above it) are accounted for
    too: a truncated cascade of DC-normalised resonators falls ever faster above its last pole
    (each pole left out costs (f/F)² at f < F), which starved the first generator's voice above
    7 kHz. The correction lifts the cascade's smoothed envelope (a neutral vowel's, averaged
    over an octave) back to its 0 dB low-frequency level above F5, as a uniform tube's infinite
    series of resonances would be; the peaks and dips around the envelope stay.
    """
    spacing = (1000.0 if singer.voice == "male" else 1150.0) * singer.formant_scale
    highest_f5 = _FORMANTS[singer.voice][:, 4].max() * singer.formant_scale
    z1 = np.exp(-1j * omega.astype(np.float64))
    response = np.ones(omega.size, np.complex128)
    for centre in np.arange(highest_f5 + spacing, 0.45 * sample_rate, spacing):
        r = np.exp(-np.pi * (250.0 + 0.05 * centre) / sample_rate)
        c = 2 * r * np.cos(2 * np.pi * centre / sample_rate)
        response *= (1 - c + r * r) / (1 - c * z1 + r * r * z1 * z1)
    if not singer.tract_tail:
        return response
    neutral = response.copy()
    formants = _FORMANTS[singer.voice].mean(axis=0) * singer.formant_scale
    for centre, width in zip(formants, _BANDWIDTHS[singer.voice].mean(axis=0), strict=True):
        r = np.exp(-np.pi * width / sample_rate)
        c = 2 * r * np.cos(2 * np.pi * centre / sample_rate)
        neutral *= (1 - c + r * r) / (1 - c * z1 + r * r * z1 * z1)
    envelope_db = 10 * np.log10(_octave_average(np.abs(neutral) ** 2) + 1e-30)
    frequency = omega / np.pi * (sample_rate / 2)
    above_f5 = np.clip(np.log2(np.maximum(frequency, 1.0) / formants[4]) / 0.5, 0.0, 1.0)
    above_f5 = 0.5 - 0.5 * np.cos(np.pi * above_f5)  # a half-octave crossfade above F5
    return response * 10.0 ** (-np.minimum(envelope_db, 0.0) * above_f5 / 20)


def _octave_average(power: np.ndarray) -> np.ndarray:
    """Averages a spectrum [F] (bins from 0 to Nyquist) over an octave around each bin."""
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    bins = np.arange(power.size)
    low = np.floor(bins * 2**-0.5).astype(int)
    high = np.minimum(np.ceil(bins * 2**0.5).astype(int) + 1, power.size)
    return (cumulative[high] - cumulative[low]) / (high - low)


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
