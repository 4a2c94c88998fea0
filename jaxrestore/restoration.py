"""Restoring whole recordings: any rate, channel count and length, in model-sized segments.

A recording is resampled to the model's rate, scaled to the level the prior was trained at,
cut into overlapping segments (every channel and posterior sample a clip of the batch),
restored in fixed-size batches by one compiled `sample.Restorer`, and joined again with
complementary raised-cosine cross-fades. Working memory is one batch, whatever the length.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
import scipy.signal

from jaxrestore import audio as audio_io
from jaxrestore import degradations, priors, sample, spade

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
    at_top = np.count_nonzero(a >= peak * (1 - 1e-3))
    # The next 1 % of the range below the top, per 0.1 %: what an unclipped tail looks like.
    below = np.count_nonzero((a >= peak * 0.99) & (a < peak * (1 - 1e-3))) / 9.0
    if at_top < max(8, 1e-4 * a.size) or at_top < 4 * max(below, 1.0):
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


def restore_recording(
    x: np.ndarray,
    sample_rate: int,
    prior: priors.Prior,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """Restores a recording `x` [C, T] at `sample_rate` with a diffusion prior.

    Args:
      x: the degraded recording, [C, T] float32.
      sample_rate: its rate.
      prior: the denoiser, its rate, level and the lengths it accepts.
      settings: task and sampler settings (estimates are filled in here).
      progress: called as `progress(done, total)` in denoiser evaluations.

    Returns:
      The restorations at the input's rate, length and channel count.
    """
    x = np.asarray(x, np.float32)
    check_recording(x)
    settings = resolve_settings(x, sample_rate, settings)
    if settings.segment_length <= 0 or settings.segment_length % prior.length_multiple:
        raise RestorationError(
            f"segment_length {settings.segment_length} must be a positive multiple of "
            f"{prior.length_multiple}"
        )
    channels, length = x.shape
    y = audio_io.resample(x, sample_rate, prior.sample_rate)
    if settings.task == "declip":
        # Resampling smears a clipped plateau; clip again so that y = A(x) holds exactly.
        y = np.clip(y, -settings.clip_threshold, settings.clip_threshold)
    # The prior knows one loudness: bring the recording to its level and back afterwards.
    y_prior, gain = prior.normalize(y)

    def split(signal):  # [C, T'] → [C·N, L]
        return np.concatenate(
            [split_segments(ch, settings.segment_length, settings.overlap) for ch in signal]
        )

    segments = split(y_prior)
    per_channel = segments.shape[0] // channels
    masks = None
    if settings.task == "inpaint":
        gaps = _model_rate_gaps(x, sample_rate, prior.sample_rate, y.shape[-1])
        if gaps.min() == 1.0:
            raise RestorationError("no gaps (runs of zero samples) found to inpaint")
        masks = 1.0 - split(1.0 - gaps)  # the end padding counts as observed silence
        segments = segments * masks
    operator, in_axes = _operator(settings, masks, gain, prior.sample_rate)
    restorer = sample.Restorer(prior, settings.config, operator_in_axes=in_axes)

    clips = [(k, s) for k in range(segments.shape[0]) for s in range(settings.num_draws)]
    key = jax.random.key(settings.seed)
    out = np.zeros((segments.shape[0], settings.num_draws, settings.segment_length), np.float32)
    # A short recording needs no padding up to a batch it cannot fill.
    batch_size = min(settings.batch_size, len(clips))
    total = restorer.nfe * int(np.ceil(len(clips) / batch_size))
    for b0 in range(0, len(clips), batch_size):
        batch = clips[b0 : b0 + batch_size]
        padded = batch + [batch[-1]] * (batch_size - len(batch))  # one compiled shape
        index = np.array([k for k, _ in padded])
        keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(key, k), s) for k, s in padded])
        op = operator if in_axes is None else jax.tree.map(lambda v, i=index: v[i], operator)
        done = b0 // batch_size * restorer.nfe

        def report(n, _, done=done):
            if progress is not None:
                progress(done + n, total)

        x_hat = np.asarray(restorer(jnp.asarray(segments[index]), op, keys, progress=report))
        for row, (k, s) in enumerate(batch):
            out[k, s] = x_hat[row]

    samples = np.zeros((settings.num_draws, channels, length), np.float32)
    for ch in range(channels):
        rows = out[ch * per_channel : (ch + 1) * per_channel]
        for s in range(settings.num_draws):
            joined = prior.denormalize(
                join_segments(rows[:, s], y.shape[-1], settings.overlap), gain
            )
            back = audio_io.resample(joined, prior.sample_rate, sample_rate)[:length]
            samples[s, ch, : back.shape[-1]] = back
    return Result(
        draws=samples,
        mean=samples.mean(axis=0),
        clip_threshold=settings.clip_threshold,
        cutoff_hz=settings.cutoff_hz,
        nfe=restorer.nfe,
    )


def declip_classical(x: np.ndarray, threshold: float, method: str = "aspade") -> np.ndarray:
    """Declips every channel of `x` [C, T] with SPADE (DESIGN §4.7), no prior needed."""
    check_recording(x)
    return np.stack([np.asarray(spade.declip(ch, threshold, method=method)) for ch in x])


def _model_rate_gaps(x: np.ndarray, rate: int, model_rate: int, length: int) -> np.ndarray:
    """Returns the gap masks [C, length] of `x` [C, T], found at its own rate.

    Resampling smears a run of zeros, so gaps are found first and their mask is carried over:
    a model-rate sample counts as missing when any of it comes from a gap.
    """
    masks = np.stack([detect_gaps(ch) for ch in x])
    t_model = np.arange(length) / model_rate
    t_input = np.arange(x.shape[-1]) / rate
    carried = np.stack([np.interp(t_model, t_input, m) for m in masks])
    return (carried >= 1.0 - 1e-6).astype(np.float32)


def _operator(settings: Settings, masks: np.ndarray | None, gain: float, sample_rate: int):
    """Returns the degradation operator for the segments and its vmap in_axes."""
    if settings.task == "declip":
        return degradations.Clip(jnp.float32(gain * settings.clip_threshold)), None
    if settings.task == "bwe":
        nyquist = sample_rate / 2
        if settings.cutoff_hz >= 0.8 * nyquist:
            raise RestorationError(
                f"cutoff {settings.cutoff_hz:g} Hz leaves nothing for the model to extend: it "
                f"must be below {0.8 * nyquist:g} Hz (the model's rate is {sample_rate} Hz)"
            )
        return degradations.lowpass(settings.cutoff_hz, sample_rate), None
    return degradations.Mask(jnp.asarray(masks)), 0
