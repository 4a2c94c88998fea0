"""Evaluation metrics: SI-SDR, SDR, log-spectral distance, Fréchet distance, HNR, real-time factor.

DESIGN.md §7; FAD, the Fréchet distance of VGGish embeddings, is in `jaxrestore.fad`. The
signal metrics are `jnp` functions over [..., T] (batch axes first) and are `jit`/`vmap`-safe;
the Fréchet distance and the harmonicity are float64 NumPy, run once per evaluation.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def _check_pair(estimate: jax.Array, reference: jax.Array) -> None:
    if estimate.shape != reference.shape or estimate.ndim < 1:
        raise ValueError(
            "estimate and reference must have the same shape [..., T], got "
            f"{estimate.shape} and {reference.shape}"
        )


def si_sdr(estimate: ArrayLike, reference: ArrayLike) -> jax.Array:
    """Returns the scale-invariant SDR in dB over the last axis (no mean removal).

    `α = ⟨x̂, x⟩/‖x‖²`, `SI-SDR = 10·log10(‖αx‖² / ‖αx − x̂‖²)` with x the reference and x̂ the
    estimate (Le Roux et al. 2019).

    Args:
      estimate: x̂, [..., T].
      reference: x, [..., T].

    Returns:
      SI-SDR in dB, [...].
    """
    estimate, reference = jnp.asarray(estimate), jnp.asarray(reference)
    _check_pair(estimate, reference)
    alpha = jnp.sum(estimate * reference, axis=-1, keepdims=True) / jnp.sum(
        reference**2, axis=-1, keepdims=True
    )
    target = alpha * reference  # [..., T]
    return 10 * jnp.log10(jnp.sum(target**2, axis=-1) / jnp.sum((target - estimate) ** 2, axis=-1))


def sdr(estimate: ArrayLike, reference: ArrayLike) -> jax.Array:
    """Returns the plain SDR `10·log10(‖x‖² / ‖x − x̂‖²)` in dB over the last axis, [...]."""
    estimate, reference = jnp.asarray(estimate), jnp.asarray(reference)
    _check_pair(estimate, reference)
    return 10 * jnp.log10(
        jnp.sum(reference**2, axis=-1) / jnp.sum((reference - estimate) ** 2, axis=-1)
    )


def lsd_frame_parameters(sample_rate: int) -> tuple[int, int]:
    """Returns the LSD's `(n_fft, hop)`: `round(2048·sr/44100)` and `round(sr/100)` samples."""
    return int(round(2048 * sample_rate / 44100)), int(round(sample_rate / 100))


def _power_spectrogram(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """Returns `|STFT|²` [..., frames, n_fft//2 + 1]: periodic Hann, centred frames, reflect pad."""
    padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)], mode="reflect")
    num_frames = 1 + x.shape[-1] // hop
    index = hop * np.arange(num_frames)[:, None] + np.arange(n_fft)[None, :]  # [frames, n_fft]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = padded[..., index]  # [..., frames, n_fft]
    frames = frames * jnp.asarray(window, x.dtype).reshape((1,) * (frames.ndim - 1) + (n_fft,))
    return jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2


def lsd(
    estimate: ArrayLike, reference: ArrayLike, sample_rate: int = 22050, eps: float = 1e-8
) -> jax.Array:
    """Returns the log-spectral distance (the speech super-resolution convention), [...].

    Per STFT frame `√(mean_f (log10((S_ref + ε) / (S_est + ε)))²)` with S the power spectrum,
    averaged over frames. `n_fft = 2048·sr/44100` and hop `sr/100` (1024 and 220 at 22.05 kHz),
    periodic Hann window, frames centred with reflect padding. Lower is better.

    Args:
      estimate: x̂, [..., T], with T > n_fft/2.
      reference: x, [..., T].
      sample_rate: sampling rate in Hz (static).
      eps: added to every power value before the logarithm.
    """
    estimate, reference = jnp.asarray(estimate), jnp.asarray(reference)
    _check_pair(estimate, reference)
    n_fft, hop = lsd_frame_parameters(sample_rate)
    if reference.shape[-1] <= n_fft // 2:
        raise ValueError(
            f"signals must be longer than n_fft/2 = {n_fft // 2} samples at {sample_rate} Hz, "
            f"got {reference.shape[-1]}"
        )
    log_ref = jnp.log10(_power_spectrogram(reference, n_fft, hop) + eps)
    log_est = jnp.log10(_power_spectrogram(estimate, n_fft, hop) + eps)
    per_frame = jnp.sqrt(jnp.mean((log_ref - log_est) ** 2, axis=-1))  # [..., frames]
    return jnp.mean(per_frame, axis=-1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Returns the symmetric square root of a symmetric positive semi-definite matrix."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.maximum(eigenvalues, 0.0))) @ eigenvectors.T


def frechet_distance(mu1: ArrayLike, cov1: ArrayLike, mu2: ArrayLike, cov2: ArrayLike) -> float:
    """Returns the Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2), in float64 (DESIGN §7).

    `‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^{½})`. `tr (Σ1Σ2)^{½}` is computed as the sum of the
    square roots of the eigenvalues of the symmetric matrix `Σ1^{½}·Σ2·Σ1^{½}`, which has the
    eigenvalues of Σ1Σ2: no non-symmetric matrix square root, no complex round-off.

    Args:
      mu1, mu2: means, [D].
      cov1, cov2: covariances, [D, D], symmetric positive semi-definite.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if d < 1 or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(
            "need means [D] and covariances [D, D] of one dimension D, got "
            f"{mu1.shape}, {cov1.shape}, {mu2.shape}, {cov2.shape}"
        )
    root1 = _psd_sqrt(cov1)
    product = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    trace_sqrt = np.sum(np.sqrt(np.maximum(eigenvalues, 0.0)))
    distance = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt
    return float(max(distance, 0.0))


def harmonicity(
    x: ArrayLike,
    sample_rate: int,
    f_min: float = 75.0,
    f_max: float = 1000.0,
    frame: int = 2048,
    hop: int = 512,
    floor_db: float = 30.0,
) -> dict[str, np.ndarray]:
    """Returns the harmonics-to-noise ratio of audio, the voice quality measure of Praat.

    Boersma (1993): in each Hann-windowed frame the autocorrelation of the signal, normalised
    to 1 at lag 0, is divided by that of the window (which undoes the window's taper); its
    largest value r in the pitch-lag range `[sr/f_max, sr/f_min]` is the periodic part's share
    of the power, so `HNR = 10·log10(r / (1 − r))`. A periodic signal plus white noise at a
    power ratio of h dB reads h (within 0.6 dB from 0 to 20 dB), white noise about −10 dB.
    Frames more than `floor_db` below the clip's loudest frame (rests) are left out. Lags are
    whole samples, so a period between two lags caps the reading near 30 dB: the measure is for
    comparing clips (generated samples against the data), not for very clean voices.

    Args:
      x: audio, [..., T], T ≥ `frame`.
      sample_rate: in Hz.
      f_min, f_max: the pitch range searched, in Hz.
      frame, hop: frame length and hop in samples; the frame should hold three periods of f_min.
      floor_db: frames this far below the loudest of their clip are not counted.

    Returns:
      "hnr_db": the mean over the counted frames of each clip, [...];
      "voiced": the share of counted frames with r ≥ 0.45 (Praat's voicing threshold), [...].
    """
    x = np.asarray(x, np.float64)
    min_lag, max_lag = int(np.floor(sample_rate / f_max)), int(np.ceil(sample_rate / f_min))
    if x.ndim < 1 or x.shape[-1] < frame or not 0 < min_lag < max_lag < frame // 2:
        raise ValueError(
            f"need audio [..., T] with T >= frame = {frame} and lags "
            f"{min_lag}..{max_lag} (from f_min, f_max) inside half a frame, got {x.shape}"
        )
    starts = np.arange(0, x.shape[-1] - frame + 1, hop)
    frames = x[..., starts[:, None] + np.arange(frame)]  # [..., F, frame]
    window = np.hanning(frame)

    def autocorrelation(v):  # over the last axis, zero-padded: no circular wrap
        spectrum = np.fft.rfft(v, 2 * frame, axis=-1)
        return np.fft.irfft(np.abs(spectrum) ** 2, axis=-1)[..., : max_lag + 1]

    frames = frames - frames.mean(axis=-1, keepdims=True)
    r_signal = autocorrelation(frames * window)
    r_window = autocorrelation(window)
    energy = r_signal[..., 0]  # [..., F]
    r = (r_signal / np.maximum(energy[..., None], 1e-300)) / (r_window / r_window[0])
    r = np.clip(r[..., min_lag:].max(axis=-1), 1e-6, 1 - 1e-6)  # [..., F]
    counted = energy >= energy.max(axis=-1, keepdims=True) * 10 ** (-floor_db / 10)
    hnr = 10 * np.log10(r / (1 - r))
    count = counted.sum(axis=-1)
    return {
        "hnr_db": (hnr * counted).sum(axis=-1) / count,
        "voiced": ((r >= 0.45) & counted).sum(axis=-1) / count,
    }


def real_time_factor(seconds: float, num_samples: int, sample_rate: float) -> float:
    """Returns seconds of compute per second of audio restored (lower is better)."""
    if seconds < 0 or num_samples <= 0 or sample_rate <= 0:
        raise ValueError(
            "need seconds >= 0, num_samples > 0 and sample_rate > 0, got "
            f"{seconds}, {num_samples}, {sample_rate}"
        )
    return seconds * sample_rate / num_samples
