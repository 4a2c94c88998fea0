"""What an evaluation runs: the tasks, methods and sets of the tables, and its frozen config."""

import dataclasses
import json
import re
from typing import Any

from jaxrestore import metrics, sample, spade

SETS = ("dry", "wet")


DEGRADED = "degraded"


CLASSICAL = ("aspade", "sspade")


METHOD_LABELS = {
    "rg": "RG",
    "rg+dc": "RG + DC",
    "rg_drho+dc": "RG δρ + DC",
    "pigdm+dc": "PIGDM + DC",
    "rg_drho+dc+rp": "RG δρ + DC + RP",
    "pigdm+sdc": "PIGDM + sparse DC",
    "aspade_warm": "A-SPADE → RG + DC",
    "aspade_dc": "A-SPADE → DC, 6 steps",
    "aspade": "A-SPADE",
    "sspade": "S-SPADE",
}


DATA_SOURCES = ("synthetic", "files")
HELD_OUT_SPLITS = ("validation", "test")  # never "train": the prior has seen it


CLIP_METRICS = ("si_sdr", "lsd")


SET_METRICS = ("fad", "fmd")


@dataclasses.dataclass(frozen=True)
class Task:
    """A degradation of the tables: declipping to an input SDR or a low-pass at a cutoff.

    Attributes:
      name: its key in `TASKS`.
      kind: "declip" or "bwe".
      value: the input SDR in dB (declip) or the cutoff in Hz (bwe).
      label: the table's column-group heading.
    """

    name: str
    kind: str
    value: float
    label: str


TASKS = {
    "declip5": Task("declip5", "declip", 5.0, "SDR = 5 dB"),
    "declip10": Task("declip10", "declip", 10.0, "SDR = 10 dB"),
    "bwe3k": Task("bwe3k", "bwe", 3000.0, "fc = 3 kHz"),
    "bwe5k": Task("bwe5k", "bwe", 5000.0, "fc = 5 kHz"),
}


# A posterior mean is a method of its own: "<preset>+mean<N>" averages N draws of the preset
# (`sample.posterior_mean`), the restoration of least squared error.
_MEAN = re.compile(r"(?P<preset>.+)\+mean(?P<draws>[0-9]+)")


def parse_method(method: str) -> tuple[str, int]:
    """Returns (base method, number of posterior draws averaged) of a method name.

    "aspade_warm+mean4" → ("aspade_warm", 4); a plain name → (name, 1).

    Raises:
      ValueError: not "degraded", a preset, a classical declipper or "<preset>+mean<N ≥ 2>".
    """
    match = _MEAN.fullmatch(method)
    if match and match["preset"] in sample.PRESETS and int(match["draws"]) >= 2:
        return match["preset"], int(match["draws"])
    if method in (DEGRADED, *sample.PRESETS, *CLASSICAL):
        return method, 1
    raise ValueError(
        f"unknown method {method!r}: expected {DEGRADED!r}, one of {(*sample.PRESETS, *CLASSICAL)}"
        ", or a preset followed by +mean<N> with N ≥ 2 (the mean of N posterior draws)"
    )


def declip_only(method: str) -> bool:
    """Whether a method needs a clipping operator: SPADE, and presets that start from A-SPADE."""
    base, _ = parse_method(method)
    return base in CLASSICAL or (
        base in sample.PRESETS and isinstance(sample.PRESETS[base].init, spade.ASpadeStart)
    )


DEFAULT_METHODS = (DEGRADED, *sample.PRESETS, "aspade_warm+mean4", "aspade_dc+mean8", *CLASSICAL)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    Attributes:
      tasks: names from `TASKS`.
      methods: "degraded" (the observation itself: the Clipped / LPF rows), names from
        `sample.PRESETS`, "aspade", "sspade" (declipping only; skipped for BWE).
      sets: "dry" and/or "wet".
      clips_per_set: held-out clips per set.
      clip_length: T, the length of a clip in samples.
      steps: overrides the presets' number of sampler steps (None keeps theirs).
      batch_size: clips per compiled call over all devices (rounded up to a multiple of the
        device count).
      seed: the root of every clip's random key.
      sample_rate: the prior's rate, which the data is read at.
      data: "synthetic" (the procedural singer, held-out seeds) or "files" (`data_dirs`).
      data_dirs: dataset folders; each one's layout (`readers.open_dataset`) says whether it
        is dry (NUS-48E, NHSS) or wet (MUSDB18); their `split` is used.
      split: the held-out split, "test" (to report) or "validation" (to choose a default, a
        setting or a prior without looking at the test clips).
      reverb: what a plain folder of audio holds, "dry" or "wet" ("" when none is given).
      lowpass_design: the BWE filter, "kaiser" or "cqtdiff" (`degradations.lowpass`).
      fad: compute FAD when VGGish weights are found (`vggish_weights` or $VGGISH_WEIGHTS).
      fmd: compute the weight-free FMD (log-mel).
      vggish_weights: path to VGGish weights; None reads $VGGISH_WEIGHTS.
      min_rms: a clip quieter than this (it fell in a rest) is drawn again from the next seed.
      prior: the prior's name, recorded with the results (the caller loads the prior).
    """

    tasks: tuple[str, ...] = tuple(TASKS)
    methods: tuple[str, ...] = DEFAULT_METHODS
    sets: tuple[str, ...] = SETS
    clips_per_set: int = 50
    clip_length: int = 65536
    steps: int | None = None
    batch_size: int = 8
    seed: int = 0
    sample_rate: int = 22050
    data: str = "synthetic"
    data_dirs: tuple[str, ...] = ()
    split: str = "test"
    reverb: str = ""
    lowpass_design: str = "kaiser"
    fad: bool = True
    fmd: bool = True
    vggish_weights: str | None = None
    min_rms: float = 0.01
    prior: str = "pretrained"

    def __post_init__(self):
        for name in ("tasks", "methods", "sets", "data_dirs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(
                f"tasks must be a non-empty subset of {tuple(TASKS)}, got {self.tasks}"
            )
        if not self.methods:
            raise ValueError("methods must not be empty")
        for method in self.methods:
            parse_method(method)
        if not self.sets or any(s not in SETS for s in self.sets):
            raise ValueError(f"sets must be a non-empty subset of {SETS}, got {self.sets}")
        if self.clips_per_set < 1:
            raise ValueError(f"clips_per_set must be at least 1, got {self.clips_per_set}")
        n_fft, _ = metrics.lsd_frame_parameters(self.sample_rate)
        if self.clip_length <= n_fft // 2:
            raise ValueError(
                f"clip_length must exceed {n_fft // 2} (half the LSD's FFT at "
                f"{self.sample_rate} Hz), got {self.clip_length}"
            )
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be a positive integer or None, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.data not in DATA_SOURCES:
            raise ValueError(f"data must be one of {DATA_SOURCES}, got {self.data!r}")
        if self.split not in HELD_OUT_SPLITS:
            raise ValueError(f"split must be one of {HELD_OUT_SPLITS}, got {self.split!r}")
        if self.data == "files" and not self.data_dirs:
            raise ValueError("data 'files' needs at least one dataset folder (--data_dir)")
        if self.reverb not in ("", "dry", "wet"):
            raise ValueError(f"reverb must be '', 'dry' or 'wet', got {self.reverb!r}")
        for task in self.tasks:
            if TASKS[task].kind == "bwe" and not TASKS[task].value < self.sample_rate / 2:
                raise ValueError(
                    f"task {task} needs a sample rate above {2 * TASKS[task].value} Hz"
                )

    def methods_for(self, task: str) -> tuple[str, ...]:
        """Returns the methods run on `task`: SPADE and its warm starts only declip."""
        return methods_for(self.methods, TASKS[task].kind)

    def sampler_config(self, method: str) -> sample.SamplerConfig:
        """Returns the preset of `method` with the steps override (σ_d comes with the prior)."""
        preset = sample.PRESETS[parse_method(method)[0]]
        return dataclasses.replace(preset, steps=self.steps or preset.steps)

    def identity(self) -> dict[str, Any]:
        """Returns the fields that decide the results (not batch size, devices or VGGish)."""
        fields = dataclasses.asdict(self)
        for name in ("batch_size", "fad", "fmd", "vggish_weights"):
            fields.pop(name)
        return json.loads(json.dumps(fields))  # tuples as lists, as read back from JSON


def methods_for(methods: tuple[str, ...], kind: str) -> tuple[str, ...]:
    """Returns the methods that run on a task of `kind` ("declip" or "bwe")."""
    return tuple(m for m in methods if kind == "declip" or not declip_only(m))


def method_label(method: str, task: str) -> str:
    """Returns the table's row name of `method` ("Clipped" / "LPF" for the degraded input)."""
    if method == DEGRADED:
        return "Clipped" if TASKS[task].kind == "declip" else "LPF"
    base, draws = parse_method(method)
    label = METHOD_LABELS.get(base, base)
    return label if draws == 1 else f"{label}, mean of {draws}"
