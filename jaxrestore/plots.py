"""Spectrogram figures: inputs against restorations, and the spread of posterior samples."""

import os
import uuid

import matplotlib

matplotlib.use("Agg")  # No screen: render to files only.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402


def spectrogram_db(x: np.ndarray, sample_rate: int, n_fft: int = 1024):
    """Returns `(f, t, S_dB)`: the magnitude STFT in dB (Hann, hop n_fft/4)."""
    f, t, z = scipy.signal.stft(x, sample_rate, nperseg=n_fft, noverlap=3 * n_fft // 4)
    return f, t, 20 * np.log10(np.abs(z) + 1e-8)


def _save(fig, path: str) -> None:
    # Atomic, like every output of the tools: a temporary name in the same folder, then rename.
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp.png")
    try:
        fig.savefig(temporary, dpi=110)
        os.replace(temporary, path)
    finally:
        plt.close(fig)
        if os.path.exists(temporary):
            os.remove(temporary)


def _panel(ax, f, t, s, title, vmin, vmax, cmap="magma"):
    mesh = ax.pcolormesh(t, f / 1000, s, shading="auto", vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_title(title)
    ax.set_ylabel("kHz")
    return mesh


def save_comparison(path: str, degraded, restored, sample_rate: int) -> None:
    """Writes input, output and (output − input) spectrograms, one above the other."""
    f, t, s_in = spectrogram_db(np.asarray(degraded), sample_rate)
    _, _, s_out = spectrogram_db(np.asarray(restored), sample_rate)
    _, _, s_diff = spectrogram_db(np.asarray(restored) - np.asarray(degraded), sample_rate)
    top = max(s_in.max(), s_out.max())
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True, constrained_layout=True)
    for ax, s, title in zip(
        axes,
        (s_in, s_out, s_diff),
        ("input", "restored", "difference (restored − input)"),
        strict=True,
    ):
        mesh = _panel(ax, f, t, s, title, top - 90, top)
    axes[-1].set_xlabel("s")
    fig.colorbar(mesh, ax=axes, label="dB")
    _save(fig, path)


def save_spread(path: str, samples, sample_rate: int) -> None:
    """Writes the mean spectrogram and the per-bin std (dB) across posterior samples [S, T]."""
    specs = np.stack([spectrogram_db(np.asarray(s), sample_rate)[2] for s in samples])
    f, t, _ = spectrogram_db(np.asarray(samples[0]), sample_rate)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True, constrained_layout=True)
    mean = specs.mean(axis=0)
    m = _panel(axes[0], f, t, mean, "mean over samples (dB)", mean.max() - 90, mean.max())
    fig.colorbar(m, ax=axes[0])
    spread = specs.std(axis=0)
    m = _panel(axes[1], f, t, spread, "spread across samples (std, dB)", 0, 20, "viridis")
    fig.colorbar(m, ax=axes[1])
    axes[-1].set_xlabel("s")
    _save(fig, path)


def save_spectrograms(path: str, clips, titles, sample_rate: int) -> None:
    """Writes one spectrogram panel per clip, stacked, on a common colour scale."""
    specs = [spectrogram_db(np.asarray(c), sample_rate) for c in clips]
    top = max(s.max() for _, _, s in specs)
    fig, axes = plt.subplots(
        len(clips), 1, figsize=(10, 2.6 * len(clips)), squeeze=False, constrained_layout=True
    )
    for ax, (f, t, s), title in zip(axes[:, 0], specs, titles, strict=True):
        mesh = _panel(ax, f, t, s, title, top - 90, top)
    axes[-1, 0].set_xlabel("s")
    fig.colorbar(mesh, ax=axes[:, 0], label="dB")
    _save(fig, path)
