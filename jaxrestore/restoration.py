"""Restoring whole recordings: any rate, channel count and length, in model-sized segments.

A recording is resampled to the model's rate, scaled to the level the prior was trained at,
cut into overlapping segments (every channel and posterior sample a clip of the batch),
restored in fixed-size batches spread over every local device (`sample.ShardedRestorer`), and
joined again with complementary raised-cosine cross-fades.

Everything streams (`restore_blocks`, `declip_blocks`): the recording is read from a `Source`
(an array, or a sound file read piece by piece) a group of segments at a time, resampled
piecewise with enough context that each piece equals the same samples of the whole signal
resampled at once, restored, cross-faded into the previous group's tail, resampled back and
handed on; the estimates (threshold, cutoff, level, gaps) take a first pass. Host memory is a
few batches of segments whatever the length, and the result is the one-shot restoration's
(to float32 round-off) for any grouping. A-SPADE streams the same way, in pieces of a few
seconds with a margin of its own window, every piece run at the recording's level.
"""

import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from typing import Protocol

import jax
import numpy as np
import scipy.ndimage
import scipy.signal
import soundfile as sf

from jaxrestore import audio as audio_io
from jaxrestore import degradations, priors, sample, sharding, spade

TASKS = ("declip", "bwe", "inpaint")


class RestorationError(ValueError):
    """A recording or a setting that cannot be restored as asked."""


# ---------------------------------------------------------------------------------------------
# Reading the degradation off the recording.


def estimate_clip_threshold(x: np.ndarray) -> float:
    """Returns the clipping level c: the amplitude where samples pile up at the top.

    An unclipped recording reaches its peak in a few isolated samples; a clipped one has many
    samples within 0.1 % of it. Looks at |x| over all channels.

    Raises:
      RestorationError: the recording is silent or shows no pile-up (not clipped).
    """
    a = np.abs(np.asarray(x, np.float64)).ravel()
    peak = a.max(initial=0.0)
    if peak <= 0:
        raise RestorationError("the recording is silent: nothing to declip")
    return _threshold_from_counts(peak, *_top_counts(a, peak), a.size)


def _top_counts(a: np.ndarray, peak: float) -> tuple[int, int]:
    """Counts |x| at the top (within 0.1 % of the peak) and in the 1 % of the range below it."""
    at_top = np.count_nonzero(a >= peak * (1 - 1e-3))
    return at_top, np.count_nonzero((a >= peak * 0.99) & (a < peak * (1 - 1e-3)))


def _threshold_from_counts(peak: float, at_top: int, below_top: int, size: int) -> float:
    """The test of `estimate_clip_threshold` on counts, which a pass over blocks can sum."""
    below = below_top / 9.0  # per 0.1 % of the range: what an unclipped tail looks like
    if at_top < max(8, 1e-4 * size) or at_top < 4 * max(below, 1.0):
        raise RestorationError(
            f"no clipping found (only {at_top} samples at the peak {peak:.4g}); "
            "pass --clip_threshold to declip anyway"
        )
    return float(peak)  # A hard clipper's plateau is the peak itself.


def estimate_cutoff(x: np.ndarray, sample_rate: int) -> float:
    """Returns the band limit of a low-passed recording, read off its long-term spectrum.

    Finds the stopband edge `f_s`, where the median-smoothed Welch spectrum falls fastest, and
    accepts it only if the level above it is at least 30 dB below the level under it. Returns
    `f_s / 1.25`, the cutoff whose `degradations.lowpass` operator starts its stopband at the
    observed edge: for a softer filter that errs low, which leaves the model a little more
    band to fill rather than forcing attenuated content to stay.

    Raises:
      RestorationError: no such edge below 0.95 · Nyquist (the recording is not band-limited).
    """
    mono = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1]).mean(axis=0)
    nperseg = min(2048, 2 ** int(np.floor(np.log2(max(mono.size, 256)))))
    f, power = scipy.signal.welch(mono, sample_rate, nperseg=nperseg)
    level = 10 * np.log10(power + 1e-20)
    # A median over ~300 Hz flattens the harmonic comb of a voice but keeps a filter's edge.
    width = max(3, int(round(300 / (f[1] - f[0]))))
    smooth = scipy.ndimage.median_filter(level, size=width, mode="nearest")
    valid = (f > 200) & (f < 0.95 * sample_rate / 2)
    if valid.any():
        k = int(np.argmin(np.where(valid, np.gradient(smooth), np.inf)))
        edge = f[k]
        under = np.median(level[(f > 0.5 * edge) & (f < 0.75 * edge)])
        above_band = (f > 1.3 * edge) & (f < min(2 * edge, f[-1]))
        if above_band.any() and under - np.median(level[above_band]) >= 30:
            return float(edge / 1.25)
    raise RestorationError(
        "no band limit found in the spectrum; pass --cutoff_hz for bandwidth extension"
    )


def detect_gaps(x: np.ndarray, min_length: int = 32) -> np.ndarray:
    """Returns a mask [T]: 0 in runs of ≥ `min_length` exactly-zero samples (dropouts), else 1."""
    silent = np.asarray(x) == 0
    mask = np.ones(silent.shape, np.float32)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start >= min_length:
            mask[start:stop] = 0.0
    return mask


# ---------------------------------------------------------------------------------------------
# Segments and cross-fades.


def split_segments(x: np.ndarray, length: int, overlap: int) -> np.ndarray:
    """Cuts [T] into segments [N, length] that start every `length − overlap` samples.

    The end is zero-padded so that the last segment is full.
    """
    if not 0 <= overlap < length:
        raise ValueError(f"need 0 <= overlap < length, got {overlap}, {length}")
    hop = length - overlap
    count = max(1, int(np.ceil(max(x.shape[-1] - overlap, 1) / hop)))
    padded = np.zeros(overlap + count * hop, np.float32)
    padded[: x.shape[-1]] = x
    return np.stack([padded[k * hop : k * hop + length] for k in range(count)])


def crossfade_weights(count: int, length: int, overlap: int) -> np.ndarray:
    """Returns per-segment weights [N, length] that sum to one over the joined signal.

    Rising sin² and falling cos² ramps over each overlap, flat elsewhere; the first
    segment does not fade in and the last does not fade out.
    """
    w = np.ones((count, length), np.float32)
    if overlap:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        w[1:, :overlap] = ramp
        w[:-1, length - overlap :] = ramp[::-1]
    return w


def join_segments(segments: np.ndarray, num_samples: int, overlap: int) -> np.ndarray:
    """Overlap-adds segments [N, length] with cross-fades and crops to `num_samples`."""
    count, length = segments.shape
    hop = length - overlap
    out = np.zeros(overlap + count * hop, np.float32)
    weighted = segments * crossfade_weights(count, length, overlap)
    for k in range(count):
        out[k * hop : k * hop + length] += weighted[k]
    return out[:num_samples]


# ---------------------------------------------------------------------------------------------
# The whole recording.


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to restore: the task, its parameters (None: estimate) and the sampler.

    Attributes:
      task: "declip", "bwe" or "inpaint".
      config: the sampler configuration.
      clip_threshold: c at the recording's own level and rate (declip).
      cutoff_hz: the band limit (bwe).
      num_draws: posterior draws (samples of p(x0 | y)) per recording.
      seed: the random seed; segment k, sample s uses fold_in(fold_in(key(seed), k), s).
      segment_length: model-rate samples per segment (a multiple of the prior's).
      overlap: model-rate samples shared by neighbouring segments; None: 1/16 of a segment.
      batch_size: clips per compiled call.
    """

    task: str
    config: sample.SamplerConfig
    clip_threshold: float | None = None
    cutoff_hz: float | None = None
    num_draws: int = 1
    seed: int = 0
    segment_length: int = 65536
    overlap: int | None = None
    batch_size: int = 4


@dataclasses.dataclass(frozen=True)
class Result:
    """Restorations at the input's rate: the posterior `draws` [S, C, T]; their mean [C, T]."""

    draws: np.ndarray
    mean: np.ndarray
    clip_threshold: float | None
    cutoff_hz: float | None
    nfe: int


def check_recording(x: np.ndarray, name: str = "the recording") -> None:
    """Raises RestorationError if `x` [C, T] is empty, not finite or silent."""
    if x.size == 0 or x.shape[-1] == 0:
        raise RestorationError(f"{name} holds no samples")
    if not np.all(np.isfinite(x)):
        raise RestorationError(f"{name} holds NaN or Inf samples")
    if not np.any(x):
        raise RestorationError(f"{name} is silent (all samples are zero)")


def resolve_settings(x: np.ndarray, sample_rate: int, settings: Settings) -> Settings:
    """Fills in (or checks) the clipping threshold and cutoff from the recording [C, T]."""
    if settings.task not in TASKS:
        raise RestorationError(f"task must be one of {TASKS}, got {settings.task!r}")
    if settings.num_draws < 1:
        raise RestorationError(f"num_draws must be at least 1, got {settings.num_draws}")
    if settings.overlap is None:
        settings = dataclasses.replace(settings, overlap=settings.segment_length // 16)
    if not 0 <= settings.overlap <= settings.segment_length // 2:
        raise RestorationError(
            f"overlap {settings.overlap} must be between 0 and half a segment "
            f"({settings.segment_length // 2})"
        )
    if settings.task == "declip":
        c = settings.clip_threshold
        if c is None:
            c = estimate_clip_threshold(x)
        peak = float(np.max(np.abs(x)))
        if not 0 < c <= peak * (1 + 1e-6):
            raise RestorationError(
                f"clip threshold {c:g} is out of range: it must be in (0, {peak:g}], the peak"
            )
        return dataclasses.replace(settings, clip_threshold=float(c))
    if settings.task == "bwe":
        fc = settings.cutoff_hz
        if fc is None:
            fc = estimate_cutoff(x, sample_rate)
        if not 0 < fc < sample_rate / 2:
            raise RestorationError(
                f"cutoff {fc:g} Hz is out of range: it must be in (0, {sample_rate / 2:g}) Hz"
            )
        return dataclasses.replace(settings, cutoff_hz=float(fc))
    return settings


# ---------------------------------------------------------------------------------------------
# Sources: a recording read piece by piece.


class Source(Protocol):
    """A recording read piece by piece: `read(start, stop)` → float32 [C, stop − start], with
    zeros outside `[0, frames)`."""

    frames: int
    channels: int
    sample_rate: int

    def read(self, start: int, stop: int) -> np.ndarray: ...


class ArraySource:
    """A recording held in memory, `x` [C, T], as a `Source`."""

    def __init__(self, x: np.ndarray, sample_rate: int):
        self.x = np.asarray(x, np.float32)
        self.channels, self.frames = self.x.shape
        self.sample_rate = int(sample_rate)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros((self.channels, stop - start), np.float32)
        a, b = max(start, 0), min(stop, self.frames)
        if a < b:
            out[:, a - start : b - start] = self.x[:, a:b]
        return out


class FileSource:
    """A sound file as a `Source`: only the frames asked for are read (soundfile seeks)."""

    def __init__(self, path: str | os.PathLike):
        path = os.fspath(path)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            audio_io.read_audio(path)  # raises the AudioError that says what is wrong
        try:
            info = sf.info(path)
        except (sf.LibsndfileError, RuntimeError) as error:
            reason = " ".join(str(error).split())
            raise audio_io.AudioError(f"{path}: not a readable audio file ({reason})") from None
        if info.frames <= 0:
            raise audio_io.AudioError(f"{path}: the file holds no samples")
        self.path, self.frames = path, int(info.frames)
        self.channels, self.sample_rate = int(info.channels), int(info.samplerate)
        self._file = sf.SoundFile(path)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros((self.channels, stop - start), np.float32)
        a, b = max(start, 0), min(stop, self.frames)
        if a < b:
            self._file.seek(a)
            frames = self._file.read(b - a, dtype="float32", always_2d=True)  # [n, C]
            out[:, a - start : a - start + frames.shape[0]] = frames.T
        return out

    def close(self) -> None:
        self._file.close()


def _blocks(frames: int, block: int) -> Iterator[tuple[int, int]]:
    """Yields `(start, stop)` of consecutive blocks of at most `block` frames."""
    for start in range(0, frames, block):
        yield start, min(start + block, frames)


@dataclasses.dataclass(frozen=True)
class Survey:
    """What a first pass over a recording found: its length, peak and whether it has gaps."""

    frames: int
    peak: float
    has_gaps: bool


def survey(source: Source, block: int = 1 << 20, min_gap: int = 32) -> Survey:
    """Reads the recording once in blocks: checks it (`check_recording`), finds its peak and
    whether it has dropouts (runs of ≥ `min_gap` zeros, found across block borders too)."""
    peak, has_gaps = 0.0, False
    for start, stop in _blocks(source.frames, block):
        # min_gap frames of context either side: a run crossing a border is seen whole.
        lo, hi = max(start - min_gap, 0), min(stop + min_gap, source.frames)
        x = source.read(lo, hi)
        core = x[:, start - lo : stop - lo]
        if not np.all(np.isfinite(core)):
            raise RestorationError("the recording holds NaN or Inf samples")
        peak = max(peak, float(np.max(np.abs(core))))
        if not has_gaps:
            has_gaps = any(detect_gaps(ch, min_gap)[start - lo : stop - lo].min() == 0 for ch in x)
    if peak == 0:
        raise RestorationError("the recording is silent (all samples are zero)")
    return Survey(source.frames, peak, has_gaps)


def resolve_stream_settings(
    source: Source, settings: Settings, found: Survey, block: int = 1 << 20
) -> Settings:
    """`resolve_settings` for a `Source`: the estimates from counts summed over blocks (the
    threshold) or from excerpts spread over the recording (the cutoff) when it is long."""
    threshold, cutoff = settings.clip_threshold, settings.cutoff_hz
    if settings.task == "declip" and threshold is None:
        at_top = below = 0
        for start, stop in _blocks(source.frames, block):
            a = np.abs(source.read(start, stop).astype(np.float64)).ravel()
            top, under = _top_counts(a, found.peak)
            at_top, below = at_top + top, below + under
        threshold = _threshold_from_counts(
            found.peak, at_top, below, source.frames * source.channels
        )
    if settings.task == "bwe" and cutoff is None:
        if source.frames <= block:
            excerpt = source.read(0, source.frames)
        else:  # eight excerpts spread over the recording: a long-term spectrum's sample
            size = block // 8
            starts = np.linspace(0, source.frames - size, 8).astype(int)
            excerpt = np.concatenate([source.read(a, a + size) for a in starts], axis=-1)
        cutoff = estimate_cutoff(excerpt, source.sample_rate)
    # Only the peak of the recording matters to the checks that follow.
    stand_in = np.array([[found.peak]], np.float32)
    settings = dataclasses.replace(settings, clip_threshold=threshold, cutoff_hz=cutoff)
    return resolve_settings(stand_in, source.sample_rate, settings)


# ---------------------------------------------------------------------------------------------
# Resampling a piece as the whole would be.


def _ratio(rate_in: int, rate_out: int) -> tuple[int, int]:
    divisor = math.gcd(rate_in, rate_out)
    return rate_out // divisor, rate_in // divisor  # (up, down)


def resampled_range(
    read: Callable[[int, int], np.ndarray], rate_in: int, rate_out: int, start: int, stop: int
) -> np.ndarray:
    """Returns samples [start, stop) of `audio.resample(x, rate_in, rate_out)` [C, …], reading
    only the part of `x` they depend on (`read(a, b)`: samples [a, b), zero outside `x`).

    `resample_poly`'s output sample j sits at input time j·down/up and its filter reaches
    10·max(up, down) up-sampled samples either side: resampling an excerpt that starts at a
    multiple of `down` (so that its outputs fall on the whole's) with that reach of context
    gives the whole's samples, the same sums of the same products.
    """
    if rate_in == rate_out:
        return read(start, stop)
    up, down = _ratio(rate_in, rate_out)
    context = down * (-(-(10 * max(up, down) // up + 2) // down))  # input samples, × down
    first = (start // up) * down - context  # a multiple of down
    last = -(-stop // up) * down + context
    y = audio_io.resample(read(first, last), rate_in, rate_out)
    offset = start - first * up // down
    return y[..., offset : offset + stop - start]


def _model_gaps(source: Source, model_rate: int, start: int, stop: int) -> np.ndarray:
    """Returns the gap masks [C, stop − start] of model-rate samples [start, stop).

    Gaps are found at the recording's own rate (resampling smears a run of zeros) and carried
    over: a model-rate sample counts as missing when any of it comes from a gap.
    """
    rate = source.sample_rate
    # Input samples around the range, with room for a whole run of zeros at either end.
    lo = max(int(np.floor(start * rate / model_rate)) - 40, 0)
    hi = min(int(np.ceil(stop * rate / model_rate)) + 40, source.frames)
    masks = np.stack([detect_gaps(ch) for ch in source.read(lo, hi)])
    t_model = np.arange(start, stop) / model_rate
    t_input = np.arange(lo, hi) / rate
    carried = np.stack([np.interp(t_model, t_input, m) for m in masks])
    return (carried >= 1.0 - 1e-6).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Restoring a recording in groups of segments.


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resolved restoration: the settings, the prior's level `gain`, the recording's length
    at the model's rate and the segments per channel."""

    settings: Settings
    gain: float
    model_frames: int
    per_channel: int


def plan(
    source: Source, prior: priors.Prior, settings: Settings, block: int = 1 << 20
) -> tuple[Plan, Survey]:
    """Surveys the recording, fills in the estimates and measures its level at the model's rate."""
    if settings.segment_length <= 0 or settings.segment_length % prior.length_multiple:
        raise RestorationError(
            f"segment_length {settings.segment_length} must be a positive multiple of "
            f"{prior.length_multiple}"
        )
    found = survey(source, block)
    settings = resolve_stream_settings(source, settings, found, block)
    if settings.task == "inpaint" and not found.has_gaps:
        raise RestorationError("no gaps (runs of zero samples) found to inpaint")
    frames = -(-source.frames * prior.sample_rate // source.sample_rate)  # resample's length
    # The prior knows one loudness: bring the recording's RMS to σ_d and back afterwards.
    if frames <= block:  # one block: the level as NumPy takes it of a whole array
        y = _observation(source, prior, settings, 0, frames, frames)
        rms = float(np.sqrt(np.mean(y**2)))
    else:
        squares = 0.0
        for start, stop in _blocks(frames, block):
            y = _observation(source, prior, settings, start, stop, frames)
            squares += float(np.sum(np.square(y, dtype=np.float64)))
        rms = math.sqrt(squares / (frames * source.channels))
    gain = prior.sigma_data / max(rms, 1e-8)
    hop = settings.segment_length - settings.overlap
    per_channel = max(1, int(np.ceil(max(frames - settings.overlap, 1) / hop)))
    return Plan(settings, gain, frames, per_channel), found


def _observation(
    source: Source, prior: priors.Prior, settings: Settings, start: int, stop: int, frames: int
) -> np.ndarray:
    """Returns y at the model's rate, samples [start, stop) [C, …]; zero past the end."""
    y = resampled_range(source.read, source.sample_rate, prior.sample_rate, start, stop)
    y[:, max(frames - start, 0) :] = 0.0  # the segments' zero padding
    if settings.task == "declip":
        # Resampling smears a clipped plateau; clip again so that y = A(x) holds exactly.
        y = np.clip(y, -settings.clip_threshold, settings.clip_threshold)
    return y


def group_size(settings: Settings, channels: int, num_devices: int) -> int:
    """Returns segments per group: the fewest whose clips fill whole batches, at least 4."""
    batch = -(-settings.batch_size // num_devices) * num_devices
    clips = channels * settings.num_draws
    base = batch // math.gcd(batch, clips)  # base·clips is a multiple of the batch
    return base * max(1, -(-4 * batch // (base * clips)))


def restore_blocks(
    source: Source,
    prior: priors.Prior,
    plan: Plan,
    *,
    mesh: jax.sharding.Mesh | None = None,
    group: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Restores a recording group by group; yields its restorations in consecutive blocks.

    Args:
      source: the degraded recording.
      prior: the denoiser and its training rate and scale.
      plan: from `plan(source, prior, settings)`.
      mesh: the devices to restore on; by default every local device.
      group: segments per channel restored at a time (default `group_size`): host memory is
        this many segments of every channel and posterior sample, whatever the length.
      progress: called as `progress(done, total)` in denoiser evaluations.

    Yields:
      float32 [S, C, n] blocks at the input's rate that join into the whole [S, C, T].
    """
    settings, gain, frames, per_channel = (
        plan.settings,
        plan.gain,
        plan.model_frames,
        plan.per_channel,
    )
    L, overlap, S, C = (
        settings.segment_length,
        settings.overlap,
        settings.num_draws,
        source.channels,
    )
    hop = L - overlap
    mesh = sharding.local_mesh() if mesh is None else mesh
    group = group_size(settings, C, mesh.size) if group is None else group
    restorer, params_of = _restorer(prior, settings, gain, mesh)
    key = jax.random.key(settings.seed)
    # One compiled shape for every batch; a short recording needs no padding it cannot fill.
    total_clips = C * per_channel * S
    batch = -(-min(settings.batch_size, total_clips) // mesh.size) * mesh.size
    num_batches = sum(
        -(-C * min(group, per_channel - k0) * S // batch) for k0 in range(0, per_channel, group)
    )
    done = 0
    # The first, middle and last segments' fades of `crossfade_weights`, and no fade at all.
    weights = np.concatenate([crossfade_weights(3, L, overlap), np.ones((1, L), np.float32)])
    restored = _ModelRateBuffer(S, C, frames)
    output = _BackResampler(restored, prior.sample_rate, source.sample_rate, source.frames)
    carry = np.zeros((S, C, overlap), np.float32)
    for k0 in range(0, per_channel, group):
        count = min(group, per_channel - k0)
        start = k0 * hop
        y = gain * _observation(
            source, prior, settings, start, start + count * hop + overlap, frames
        )
        segments = np.stack(
            [y[:, k * hop : k * hop + L] for k in range(count)], axis=1
        )  # [C, G, L]
        masks = None
        if settings.task == "inpaint":
            gaps = _model_gaps(source, prior.sample_rate, start, start + count * hop + overlap)
            gaps[:, max(frames - start, 0) :] = 1.0  # the end padding counts as observed silence
            masks = np.stack([gaps[:, k * hop : k * hop + L] for k in range(count)], axis=1)
            segments = segments * masks
        clips = [(c, k, s) for c in range(C) for k in range(count) for s in range(S)]
        out = np.zeros((C, count, S, L), np.float32)
        for b0 in range(0, len(clips), batch):
            chunk = clips[b0 : b0 + batch]
            padded = chunk + [chunk[-1]] * (batch - len(chunk))
            rows = np.array([c * per_channel + k0 + k for c, k, _ in padded])
            keys = np.stack(
                [
                    jax.random.key_data(jax.random.fold_in(jax.random.fold_in(key, row), s))
                    for row, (_, _, s) in zip(rows, padded, strict=True)
                ]
            )
            y_batch = np.stack([segments[c, k] for c, k, _ in padded])
            params = params_of([None if masks is None else masks[c, k] for c, k, _ in padded])

            def report(n, _, done=done):
                if progress is not None:
                    progress(done + n, restorer.nfe * num_batches)

            x_hat = np.asarray(restorer(y_batch, params, keys, progress=report))
            done += restorer.nfe
            for row, (c, k, s) in enumerate(chunk):
                out[c, k, s] = x_hat[row]
        # Overlap-add with the cross-fades of the whole: the carry is the last group's tail.
        joined = np.zeros((S, C, count * hop + overlap), np.float32)
        joined[..., :overlap] = carry
        for k in range(count):
            fade = weights[_fade_row(k0 + k, per_channel)]
            joined[..., k * hop : k * hop + L] += out[:, k].transpose(1, 0, 2) * fade
        final = count * hop if k0 + count < per_channel else count * hop + overlap
        carry = joined[..., count * hop :]
        restored.append(joined[..., :final] / gain)
        yield from output.ready()
    yield from output.ready(finished=True)


def _fade_row(index: int, count: int) -> int:
    """Returns the row of segment `index` of `count` in `restore_blocks`' weights."""
    if count == 1:
        return 3
    return 0 if index == 0 else 2 if index == count - 1 else 1


def _restorer(prior: priors.Prior, settings: Settings, gain: float, mesh: jax.sharding.Mesh):
    """Returns the sharded restorer of the task and the per-clip parameters of a batch."""
    if settings.task == "declip":
        c = np.float32(gain * settings.clip_threshold)
        restorer = sample.ShardedRestorer(prior, settings.config, mesh, degradations.Clip)
        return restorer, lambda masks: np.full(len(masks), c, np.float32)
    if settings.task == "bwe":
        nyquist = prior.sample_rate / 2
        if settings.cutoff_hz >= 0.8 * nyquist:
            raise RestorationError(
                f"cutoff {settings.cutoff_hz:g} Hz leaves nothing for the model to extend: it "
                f"must be below {0.8 * nyquist:g} Hz (the model's rate is {prior.sample_rate} Hz)"
            )
        lowpass = degradations.lowpass(settings.cutoff_hz, prior.sample_rate)
        restorer = sample.ShardedRestorer(prior, settings.config, mesh, lambda _: lowpass)
        return restorer, lambda masks: np.zeros(len(masks), np.float32)
    restorer = sample.ShardedRestorer(prior, settings.config, mesh, degradations.Mask)
    return restorer, lambda masks: np.stack(masks).astype(np.float32)


class _ModelRateBuffer:
    """The restorations at the model's rate [S, C, …], kept only as far back as still needed."""

    def __init__(self, num_draws: int, channels: int, frames: int):
        self.data = np.zeros((num_draws, channels, 0), np.float32)
        self.start, self.frames = 0, frames  # absolute index of data[..., 0]; total length

    @property
    def stop(self) -> int:
        return self.start + self.data.shape[-1]

    def append(self, x: np.ndarray) -> None:
        self.data = np.concatenate([self.data, x[..., : self.frames - self.stop]], axis=-1)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) [S·C, …], zero outside the recording (as resampling pads)."""
        S, C = self.data.shape[:2]
        out = np.zeros((S * C, stop - start), np.float32)
        a, b = max(start, 0), min(stop, self.stop)
        if a < b:
            if a < self.start:
                raise RuntimeError(f"sample {a} was dropped already (kept from {self.start})")
            out[:, a - start : b - start] = self.data[..., a - self.start : b - self.start].reshape(
                S * C, -1
            )
        return out

    def drop_before(self, index: int) -> None:
        index = min(max(index, self.start), self.stop)
        self.data = self.data[..., index - self.start :]
        self.start = index


class _BackResampler:
    """Resamples the model-rate restorations back to the input's rate as they become final."""

    def __init__(self, buffer: _ModelRateBuffer, model_rate: int, rate: int, frames: int):
        self.buffer, self.model_rate, self.rate, self.frames = buffer, model_rate, rate, frames
        self.done = 0  # input-rate samples handed on
        up, down = _ratio(model_rate, rate)
        # Model-rate samples past the last output sample that its resampling reads.
        self.reach = down * (-(-(10 * max(up, down) // up + 2) // down)) + 2 * down

    def ready(self, finished: bool = False) -> Iterator[np.ndarray]:
        b = self.buffer
        S, C = b.data.shape[:2]
        if finished:
            stop = self.frames
        else:  # output j reads model-rate samples up to about j·model_rate/rate + reach
            stop = min(int((b.stop - self.reach) * self.rate // self.model_rate), self.frames)
        if stop <= self.done:
            return
        out = resampled_range(b.read, self.model_rate, self.rate, self.done, stop)
        yield out.reshape(S, C, -1)
        self.done = stop
        b.drop_before(int(self.done * self.model_rate // self.rate) - self.reach)


def restore_recording(
    x: np.ndarray,
    sample_rate: int,
    prior: priors.Prior,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Result:
    """Restores a recording `x` [C, T] at `sample_rate` with a diffusion prior.

    Args:
      x: the degraded recording, [C, T] float32.
      sample_rate: its rate.
      prior: the denoiser, its rate, level and the lengths it accepts.
      settings: task and sampler settings (estimates are filled in here).
      progress: called as `progress(done, total)` in denoiser evaluations.
      mesh: the devices to restore on; by default every local device.

    Returns:
      The restorations at the input's rate, length and channel count.
    """
    x = np.asarray(x, np.float32)
    check_recording(x)
    source = ArraySource(x, sample_rate)
    resolved, _ = plan(source, prior, settings)
    blocks = list(restore_blocks(source, prior, resolved, mesh=mesh, progress=progress))
    samples = np.concatenate(blocks, axis=-1)
    return Result(
        draws=samples,
        mean=samples.mean(axis=0),
        clip_threshold=resolved.settings.clip_threshold,
        cutoff_hz=resolved.settings.cutoff_hz,
        nfe=sample.nfe(settings.config),
    )


def declip_classical(x: np.ndarray, threshold: float, method: str = "aspade") -> np.ndarray:
    """Declips every channel of `x` [C, T] with SPADE (DESIGN §4.7), no prior needed."""
    check_recording(x)
    source = ArraySource(x, 1)
    peak = float(np.max(np.abs(x)))
    return np.concatenate(list(declip_blocks(source, threshold, peak, method)), axis=-1)


def declip_blocks(
    source: Source,
    threshold: float,
    peak: float,
    method: str = "aspade",
    *,
    piece: int = 1 << 16,
    batch: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Iterator[np.ndarray]:
    """Declips a recording with SPADE in pieces; yields [C, n] blocks that join into [C, T].

    SPADE works on windowed blocks (window 1024, hop 256) that see nothing beyond their own
    window: a piece of `piece` samples read with one window less one hop of margin either side
    and starting on the hop grid has the blocks of the whole recording over its core, and each
    piece runs at the recording's `peak` (SPADE's ε is relative to it), so the joined cores are
    the whole recording declipped at once (to float32 round-off), in bounded memory and time
    per second of audio. Pieces of every channel run `batch` at a time over the mesh's devices.
    """

    mesh = sharding.local_mesh() if mesh is None else mesh
    window, hop = 1024, 256
    margin = window - hop
    piece = max(hop, piece // hop * hop)
    batch = 2 * mesh.size if batch is None else -(-batch // mesh.size) * mesh.size
    rows = jax.sharding.PartitionSpec(sharding.AXIS)
    declip = sharding.per_device(
        jax.vmap(lambda y, c, p: spade.declip(y, c, method=method, window=window, hop=hop, peak=p)),
        mesh,
        (rows, rows, rows),
        rows,
    )
    starts = list(range(0, source.frames, piece))
    C = source.channels
    for g0 in range(0, len(starts), max(1, batch // C)):
        group = starts[g0 : g0 + max(1, batch // C)]
        # [n·C, piece + 2·margin]; zeros past either end, as SPADE pads the whole.
        clips = np.concatenate([source.read(a - margin, a + piece + margin) for a in group])
        padded = -(-clips.shape[0] // batch) * batch
        clips = np.concatenate(
            [clips, np.zeros((padded - clips.shape[0], clips.shape[1]), np.float32)]
        )
        c = np.full(padded, threshold, np.float32)
        p = np.full(padded, peak, np.float32)
        out = np.asarray(declip(clips, c, p))
        for n, a in enumerate(group):
            yield out[n * C : (n + 1) * C, margin : margin + min(piece, source.frames - a)]
