"""Fréchet Audio Distance with VGGish (Kilgour et al. 2019; DESIGN §7), and a weight-free stand-in.

FAD fits a Gaussian to the VGGish embeddings of every 0.96 s patch of a reference set and of a
test set, and reports the Fréchet distance between the two Gaussians,
`‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^{½})`. As in the common FAD packages the raw 128-d
embeddings are used: no final ReLU, no PCA or quantisation.

The VGGish weights cannot be downloaded here: `load_vggish` finds them from an argument (the
apps' flag) or the `VGGISH_WEIGHTS` environment variable and raises `NoVGGishWeights` when there
are none. `frechet_mel_distance` is the weight-free alternative: the same Fréchet distance on
per-frame log-mel vectors of the VGGish front end. It is reported as "FMD (log-mel)", never as
FAD: numbers under another embedding are not comparable with published FAD values.
"""

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from jax.typing import ArrayLike

from jaxrestore import metrics, vggish

VGGISH_WEIGHTS_ENV = "VGGISH_WEIGHTS"
FAD_NAME = "FAD (VGGish)"
FMD_NAME = "FMD (log-mel)"

# A set of clips: one array [N, T], or a sequence of mono clips [T_i] of any lengths.
Clips = ArrayLike | Sequence[ArrayLike]


class NoVGGishWeights(RuntimeError):
    """No VGGish weights were given: FAD cannot be computed (the evaluation shows "FAD: no
    VGGish weights" and may report `frechet_mel_distance` under its own name instead)."""


def load_vggish(path: str | os.PathLike | None = None) -> vggish.VGGishWeights:
    """Loads VGGish weights from `path`, else from the `VGGISH_WEIGHTS` environment variable.

    The file may be the msgpack written by `experiments/convert_vggish.py` or, converted on the
    fly, the published `vggish_model.ckpt` or `vggish-10086976.pth`.

    Raises:
      NoVGGishWeights: no path was given and `VGGISH_WEIGHTS` is unset or empty, or the path
        does not exist.
    """
    if path is None or str(path) == "":
        path = os.environ.get(VGGISH_WEIGHTS_ENV) or None
    if path is None:
        raise NoVGGishWeights(
            f"FAD: no VGGish weights (pass a path or set {VGGISH_WEIGHTS_ENV}; convert the "
            "published vggish_model.ckpt or vggish-10086976.pth with experiments/convert_vggish.py)"
        )
    path = Path(path)
    if not (path.exists() or Path(f"{path}.index").exists()):
        raise NoVGGishWeights(f"FAD: no VGGish weights at {path}")
    return vggish.import_weights(path)


def _clip_list(clips: Clips) -> list[np.ndarray]:
    if isinstance(clips, np.ndarray | jax.Array) and np.ndim(clips) == 2:
        clips = list(np.asarray(clips))
    elif isinstance(clips, np.ndarray | jax.Array):
        raise ValueError(f"need clips as [N, T] or a list of [T] arrays, got shape {clips.shape}")
    out = [np.asarray(c, np.float64) for c in clips]
    if not out or any(c.ndim != 1 for c in out):
        raise ValueError(
            f"need a non-empty set of mono clips [T], got shapes {[c.shape for c in out]}"
        )
    if not all(np.all(np.isfinite(c)) for c in out):
        raise ValueError("the clips contain NaN or infinite samples")
    return out


def log_mel_patches(clips: Clips, sample_rate: int) -> np.ndarray:
    """Returns the VGGish input patches of every clip, concatenated: [P, 96, 64], float64."""
    patches = [vggish.log_mel_patches(c, sample_rate) for c in _clip_list(clips)]
    return np.concatenate(patches, axis=0)


@functools.cache
def _embed_fn(model: vggish.VGGish):
    # One jitted function per architecture; padding keeps its batch shapes to a few.
    return jax.jit(lambda params, patches: model.apply({"params": params}, patches))


def embed_patches(
    weights: vggish.VGGishWeights, patches: ArrayLike, batch_size: int = 64
) -> np.ndarray:
    """Returns the raw VGGish embeddings of patches [P, 96, 64]: [P, D] float32.

    Patches go through one jitted network in batches of `batch_size`; a shorter last batch is
    zero-padded to 1 or a power of two from 16, so a few shapes compile once and serve every
    call. (On the CPU, full-size batches of 2 to 8 patches took about 3× longer than 16
    through XLA's choice of kernels.)
    """
    patches = np.asarray(patches, np.float32)
    if patches.ndim != 3 or patches.shape[1:] != (vggish.PATCH_FRAMES, vggish.NUM_BANDS):
        raise ValueError(f"need patches [P, 96, 64], got {patches.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model = weights.model()
    apply = _embed_fn(model)
    out = [np.zeros((0, model.embedding_size), np.float32)]
    for start in range(0, patches.shape[0], batch_size):
        batch = patches[start : start + batch_size]
        size = (
            1 if len(batch) == 1 else min(batch_size, max(16, 1 << (len(batch) - 1).bit_length()))
        )
        padded = np.zeros((size, *batch.shape[1:]), np.float32)
        padded[: len(batch)] = batch
        out.append(np.asarray(apply(weights.device_params, padded))[: len(batch)])
    return np.concatenate(out, axis=0)


@dataclasses.dataclass(frozen=True)
class EmbeddingSet:
    """Embeddings of a set of clips and their Gaussian fit (compute a reference set once).

    Attributes:
      embeddings: [N, D], one row per patch (VGGish) or frame (log-mel).
      mu: mean [D], float64.
      sigma: covariance [D, D], float64, with N − 1 in the denominator.
    """

    embeddings: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    @classmethod
    def fit(cls, embeddings: ArrayLike) -> "EmbeddingSet":
        """Fits the Gaussian of embeddings [N, D], N ≥ 2, in float64."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] < 2:
            raise ValueError(
                f"need embeddings [N, D] with N >= 2 to fit a covariance, got {embeddings.shape} "
                "(each clip gives one VGGish patch per 0.96 s; clips under 0.975 s give none)"
            )
        x = embeddings.astype(np.float64)
        return cls(embeddings, x.mean(axis=0), np.cov(x, rowvar=False))


def vggish_embedding_set(
    clips: Clips, sample_rate: int, weights: vggish.VGGishWeights, batch_size: int = 64
) -> EmbeddingSet:
    """Returns the VGGish embeddings of every 0.96 s patch of the clips, with their fit."""
    return EmbeddingSet.fit(embed_patches(weights, log_mel_patches(clips, sample_rate), batch_size))


def _frechet(a: EmbeddingSet, b: EmbeddingSet) -> float:
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"embedding sizes differ: {a.mu.shape} and {b.mu.shape}")
    return metrics.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def fad(
    reference_audio: Clips | EmbeddingSet,
    restored_audio: Clips | EmbeddingSet,
    sample_rate: int,
    weights: vggish.VGGishWeights | str | os.PathLike | None = None,
    batch_size: int = 64,
) -> float:
    """Returns the Fréchet Audio Distance between two sets of clips, with VGGish embeddings.

    Args:
      reference_audio: the clean set, [N, T] or a list of mono clips, or its `EmbeddingSet`.
      restored_audio: the set to judge, likewise.
      sample_rate: of the clips, in Hz (they are resampled to 16 kHz).
      weights: VGGish weights, or a path to them; None reads `VGGISH_WEIGHTS`.
      batch_size: patches per network call.

    Raises:
      NoVGGishWeights: no weights were given or found.
    """
    needs_network = not all(isinstance(s, EmbeddingSet) for s in (reference_audio, restored_audio))
    if needs_network and not isinstance(weights, vggish.VGGishWeights):
        weights = load_vggish(weights)
    sets = [
        s
        if isinstance(s, EmbeddingSet)
        else vggish_embedding_set(s, sample_rate, weights, batch_size)
        for s in (reference_audio, restored_audio)
    ]
    return _frechet(*sets)


def log_mel_embedding_set(clips: Clips, sample_rate: int) -> EmbeddingSet:
    """Returns the 64-d log-mel vectors of every 10 ms frame of the clips, with their fit.

    Frames, not 0.96 s patches: a few seconds of audio give hundreds of frames, enough for a
    full-rank 64 × 64 covariance, where they would give only a few patches.
    """
    frames = [
        vggish.log_mel_spectrogram(vggish.resample(c, sample_rate)) for c in _clip_list(clips)
    ]
    return EmbeddingSet.fit(np.concatenate(frames, axis=0))


def frechet_mel_distance(
    reference_audio: Clips | EmbeddingSet, restored_audio: Clips | EmbeddingSet, sample_rate: int
) -> float:
    """Returns "FMD (log-mel)": the Fréchet distance between Gaussians of log-mel frames.

    The weight-free stand-in for FAD: VGGish's front end (16 kHz, 64 mel bands 125–7,500 Hz,
    `log(mel + 0.01)`) without the network. Report it under `FMD_NAME`, never as FAD.
    """
    sets = [
        s if isinstance(s, EmbeddingSet) else log_mel_embedding_set(s, sample_rate)
        for s in (reference_audio, restored_audio)
    ]
    return _frechet(*sets)
