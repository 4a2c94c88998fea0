"""VGGish (Hershey et al., ICASSP 2017): the published front end, the network, its weights.

VGGish is the embedding of the Fréchet Audio Distance (DESIGN §7). This module holds:

- the front end of the published `vggish_input.py` / `mel_features.py`: mono audio resampled to
  16 kHz, periodic-Hann frames of 25 ms (400 samples) every 10 ms (160), |FFT| of 512 points,
  64 HTK-mel bands over 125–7,500 Hz, `log(mel + 0.01)`, non-overlapping patches of 96 frames
  (0.96 s). It runs in float64 NumPy on the host as the published code does: the log of small
  mel energies is sensitive to float32 FFT round-off (off by up to 3e-4 for a quiet band).
- the network, a Flax linen port of `vggish_slim.py` (VGG configuration A with four conv groups
  and a 128-d embedding, 72,141,184 parameters);
- the published post-processing (PCA with whitening, then 8-bit quantisation), as an option;
- the mapping of the two public weight files onto it: TensorFlow-slim checkpoints (the
  published `vggish_model.ckpt`) and torchvggish state dicts (`vggish-10086976.pth`), read with
  neither TensorFlow nor PyTorch installed by `jaxrestore.weight_formats`;
- one Flax msgpack file (`save_weights` / `load_weights`) to convert them into once.

Facts checked against the published code: the last dense layer (`fc2`) has no ReLU in today's
`vggish_slim.py` (the embedding is "pre-activation"), while the 2017 version and the torchvggish
port apply one; FAD packages drop it (frechet_audio_distance `use_activation=False`), so
`final_relu` defaults to False here. TensorFlow flattens the last NHWC feature map; torchvggish
transposes its NCHW map to NHWC before flattening, so both files flatten in the same order and
only the kernel layouts differ (TF: HWIO convolutions, Dense [in, out]; torch: OIHW, Linear
[out, in]). Resampling uses a polyphase Kaiser-window filter (scipy) where the published code
uses resampy; both are flat to within 1e-4 below 7.5 kHz.
"""

import collections
import dataclasses
import functools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal
from flax import serialization
from jax.typing import ArrayLike

from jaxrestore import weight_formats
from jaxrestore.weight_formats import CheckpointFormatError

SAMPLE_RATE = 16_000
WINDOW_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
FFT_LENGTH = 512  # the next power of two above the window
NUM_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7_500.0
LOG_OFFSET = 0.01
PATCH_FRAMES = 96  # 0.96 s of 10 ms frames, no overlap between patches
EMBEDDING_SIZE = 128
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0
_RESAMPLE_ROLLOFF = 0.95
_RESAMPLE_ATTENUATION_DB = 90.0

PathLike = weight_formats.PathLike


# ----------------------------------------------------------------------------- front end


def periodic_hann(length: int) -> np.ndarray:
    """Returns the periodic Hann window `0.5 − 0.5·cos(2πn/N)`, n = 0..N−1: shape [N]."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def hertz_to_mel(frequency: ArrayLike) -> np.ndarray:
    """Returns the HTK mel value `1127·ln(1 + f/700)` of frequencies in Hz."""
    return 1127.0 * np.log(1.0 + np.asarray(frequency, np.float64) / 700.0)


def mel_matrix(
    num_bands: int = NUM_BANDS,
    num_bins: int = FFT_LENGTH // 2 + 1,
    sample_rate: int = SAMPLE_RATE,
    lower_hz: float = MEL_MIN_HZ,
    upper_hz: float = MEL_MAX_HZ,
) -> np.ndarray:
    """Returns the triangular mel weights of `mel_features.py`: shape [num_bins, num_bands].

    Band edges are equally spaced in mel between `lower_hz` and `upper_hz` (num_bands + 2 of
    them); each band is a triangle in mel, peaking at 1 on its centre edge. The DC bin gets no
    weight, as in the published matrix.
    """
    nyquist = sample_rate / 2.0
    if not 0.0 <= lower_hz < upper_hz <= nyquist:
        raise ValueError(
            f"need 0 <= lower_hz < upper_hz <= Nyquist ({nyquist} Hz), got {lower_hz}, {upper_hz}"
        )
    bin_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_bins))[:, None]  # [bins, 1]
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_bands + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # [bands] each
    rising = (bin_mel - lower) / (centre - lower)
    falling = (upper - bin_mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


@functools.lru_cache(maxsize=16)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    # Kaiser-window low-pass at the upsampled rate: flat to 0.95 of the lower Nyquist frequency
    # (7.6 kHz at 16 kHz, above VGGish's top band edge), 90 dB down from it.
    factor = max(up, down)
    numtaps, beta = scipy.signal.kaiserord(
        _RESAMPLE_ATTENUATION_DB, (1 - _RESAMPLE_ROLLOFF) / factor
    )
    cutoff = (1 + _RESAMPLE_ROLLOFF) / 2 / factor
    return scipy.signal.firwin(numtaps | 1, cutoff, window=("kaiser", beta))


def resample(audio: ArrayLike, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resamples one mono clip [T] to `target_rate` (polyphase, Kaiser-window low-pass).

    The published front end uses resampy's `kaiser_best`; this filter is of the same kind
    (passband to 0.95 of the lower Nyquist frequency, 90 dB stopband).
    """
    audio = np.asarray(audio, np.float64)
    if sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate}")
    if sample_rate == target_rate:
        return audio
    g = math.gcd(int(sample_rate), int(target_rate))
    up, down = target_rate // g, int(sample_rate) // g
    return scipy.signal.resample_poly(audio, up, down, window=_resampling_filter(up, down))


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    # Whole frames only, none padded, as the published `frame()`: [num_frames, length, ...].
    if x.shape[0] < length:
        return np.zeros((0, length, *x.shape[1:]), x.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(x, length, axis=0)  # [T−L+1, ..., L]
    return np.moveaxis(windows[::hop], -1, 1)


def log_mel_spectrogram(audio_16k: ArrayLike) -> np.ndarray:
    """Returns the stabilised log-mel spectrogram of a 16 kHz mono clip: [frames, 64], float64.

    `log(M·|FFT_512(w·frame)| + 0.01)` with periodic-Hann frames w of 400 samples every 160.
    """
    audio = np.asarray(audio_16k, np.float64)
    if audio.ndim != 1:
        raise ValueError(f"need one mono clip of shape [T], got shape {audio.shape}")
    frames = _frames(audio, WINDOW_LENGTH, HOP_LENGTH) * periodic_hann(WINDOW_LENGTH)
    magnitude = np.abs(np.fft.rfft(frames, FFT_LENGTH, axis=-1))  # [frames, 257]
    return np.log(magnitude @ mel_matrix() + LOG_OFFSET)


def log_mel_patches(audio: ArrayLike, sample_rate: int) -> np.ndarray:
    """Returns the VGGish input patches of one mono clip: [N, 96, 64], float64.

    The clip is resampled to 16 kHz; a clip shorter than 0.975 s has no patch (N = 0), and
    frames after the last whole patch are dropped, as in the published `waveform_to_examples`.
    """
    audio = np.asarray(audio, np.float64)
    if audio.ndim != 1:
        raise ValueError(f"need one mono clip of shape [T] (mix to mono first), got {audio.shape}")
    log_mel = log_mel_spectrogram(resample(audio, sample_rate))
    return _frames(log_mel, PATCH_FRAMES, PATCH_FRAMES)


# ----------------------------------------------------------------------------- network


class VGGish(nn.Module):
    """The VGGish network of `vggish_slim.py`: log-mel patches [B, 96, 64] → embeddings [B, 128].

    Each conv group is 3×3 convolutions (SAME padding, ReLU) followed by a 2×2 max-pool of
    stride 2; the NHWC feature map is flattened and goes through ReLU dense layers, then the
    embedding layer `fc2`. Module names follow the TensorFlow scopes (`conv3_1`, `fc1_2`, …).
    The widths are fields so that tests can build a small model; the defaults are published.

    Attributes:
      conv_widths: output channels of the convolutions, one tuple per conv group.
      fc_widths: widths of the hidden dense layers (`fc1_1`, `fc1_2`).
      embedding_size: width of `fc2`, the embedding.
      final_relu: apply a ReLU to the embedding (2017 TF-slim and torchvggish) or not (today's
        TF-slim and the FAD packages).
    """

    conv_widths: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512))
    fc_widths: tuple[int, ...] = (4096, 4096)
    embedding_size: int = EMBEDDING_SIZE
    final_relu: bool = False

    @nn.compact
    def __call__(self, patches: jax.Array) -> jax.Array:
        x = patches[..., None]  # [B, 96, 64, 1], NHWC
        for group, widths in enumerate(self.conv_widths, start=1):
            for index, width in enumerate(widths, start=1):
                name = f"conv{group}" if len(widths) == 1 else f"conv{group}_{index}"
                x = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name=name)(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = x.reshape(x.shape[0], -1)  # NHWC order, as TF's slim.flatten
        for index, width in enumerate(self.fc_widths, start=1):
            x = nn.relu(nn.Dense(width, name=f"fc1_{index}")(x))
        x = nn.Dense(self.embedding_size, name="fc2")(x)
        return nn.relu(x) if self.final_relu else x


def postprocess(
    embeddings: ArrayLike, pca_eigen_vectors: ArrayLike, pca_means: ArrayLike
) -> jax.Array:
    """Applies the published post-processing: PCA (with whitening), then 8-bit quantisation.

    `q = round((clip(E·(e − μ), −2, 2) + 2)·255/4)` as in `vggish_postprocess.py`. Only for
    comparing with the released AudioSet features: FAD uses the raw embeddings.

    Args:
      embeddings: [B, D] raw embeddings.
      pca_eigen_vectors: E, [D, D].
      pca_means: μ, [D] (or [D, 1] as stored).

    Returns:
      [B, D] uint8.
    """
    embeddings = jnp.asarray(embeddings, jnp.float32)
    eigen_vectors = jnp.asarray(pca_eigen_vectors, jnp.float32)
    means = jnp.reshape(jnp.asarray(pca_means, jnp.float32), (-1,))
    d = embeddings.shape[-1]
    if embeddings.ndim != 2 or eigen_vectors.shape != (d, d) or means.shape != (d,):
        raise ValueError(
            "need embeddings [B, D], eigen vectors [D, D] and means [D], got "
            f"{embeddings.shape}, {eigen_vectors.shape}, {means.shape}"
        )
    projected = (embeddings - means[None]) @ eigen_vectors.T
    clipped = jnp.clip(projected, QUANTIZE_MIN, QUANTIZE_MAX)
    scale = 255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)
    return jnp.round((clipped - QUANTIZE_MIN) * scale).astype(jnp.uint8)


# ----------------------------------------------------------------------------- weights

Params = dict[str, dict[str, np.ndarray]]

_MODULE_NAME = re.compile(r"^(?:conv(\d+)(?:_(\d+))?|fc1_(\d+)|fc2)$")


@dataclasses.dataclass(frozen=True)
class VGGishWeights:
    """VGGish parameters (a Flax params tree of NumPy arrays) and the optional PCA parameters."""

    params: Params
    pca_eigen_vectors: np.ndarray | None = None  # [D, D]
    pca_means: np.ndarray | None = None  # [D]

    def model(self, final_relu: bool = False) -> VGGish:
        """Returns the VGGish module whose parameter shapes these are."""
        return self._architecture.clone(final_relu=final_relu)

    @functools.cached_property
    def _architecture(self) -> VGGish:
        return vggish_from_params(self.params)

    @functools.cached_property
    def device_params(self) -> Any:
        """The parameters as JAX arrays, put on the device once and kept."""
        return jax.tree.map(jnp.asarray, self.params)


def vggish_from_params(params: Mapping[str, Any], final_relu: bool = False) -> VGGish:
    """Returns the VGGish module that `params` fits, read off the kernel shapes.

    Raises:
      CheckpointFormatError: the names or shapes are not those of a VGGish network.
    """
    groups: dict[int, dict[int, int]] = collections.defaultdict(dict)
    hidden: dict[int, int] = {}
    for name, leaves in params.items():
        match = _MODULE_NAME.match(name)
        if match is None or set(leaves) != {"kernel", "bias"}:
            raise CheckpointFormatError(
                f"unexpected parameter {name!r} with leaves {sorted(leaves)}: a VGGish network "
                "has conv<i>[_<j>], fc1_<k> and fc2, each with a kernel and a bias"
            )
        width = int(np.shape(leaves["kernel"])[-1])
        if match.group(1):
            groups[int(match.group(1))][int(match.group(2) or 1)] = width
        elif match.group(3):
            hidden[int(match.group(3))] = width
    if "fc2" not in params or not groups:
        raise CheckpointFormatError(f"need conv layers and fc2, got {sorted(params)}")
    model = VGGish(
        conv_widths=tuple(tuple(groups[g][i] for i in sorted(groups[g])) for g in sorted(groups)),
        fc_widths=tuple(hidden[k] for k in sorted(hidden)),
        embedding_size=int(np.shape(params["fc2"]["kernel"])[-1]),
        final_relu=final_relu,
    )
    expected = parameter_shapes(model)
    got = {
        name: {leaf: tuple(np.shape(v)) for leaf, v in leaves.items()}
        for name, leaves in params.items()
    }
    if got != expected:
        wrong = sorted(
            f"{name}: {got.get(name)} (expected {expected.get(name)})"
            for name in set(got) | set(expected)
            if got.get(name) != expected.get(name)
        )
        raise CheckpointFormatError(
            "parameter shapes do not form a VGGish network: " + "; ".join(wrong)
        )
    return model


def parameter_shapes(model: VGGish) -> dict[str, dict[str, tuple[int, ...]]]:
    """Returns the shape of every parameter of `model`, computed with `jax.eval_shape`."""
    abstract = jax.eval_shape(
        model.init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, PATCH_FRAMES, NUM_BANDS), jnp.float32),
    )["params"]
    return {
        name: {leaf: tuple(v.shape) for leaf, v in leaves.items()}
        for name, leaves in abstract.items()
    }


def save_weights(weights: VGGishWeights, path: PathLike) -> None:
    """Writes `weights` as one Flax msgpack file."""
    tree: dict[str, Any] = {"params": weights.params}
    if weights.pca_eigen_vectors is not None and weights.pca_means is not None:
        tree["pca"] = {"eigen_vectors": weights.pca_eigen_vectors, "means": weights.pca_means}
    Path(path).write_bytes(serialization.msgpack_serialize(tree))


def load_weights(path: PathLike) -> VGGishWeights:
    """Reads a msgpack file written by `save_weights` and checks it is a VGGish network."""
    tree = serialization.msgpack_restore(Path(path).read_bytes())
    if not isinstance(tree, dict) or "params" not in tree:
        raise CheckpointFormatError(f"{path} is not a VGGish msgpack file (no 'params')")
    params = {
        name: {leaf: np.asarray(v, np.float32) for leaf, v in leaves.items()}
        for name, leaves in tree["params"].items()
    }
    vggish_from_params(params)
    pca = tree.get("pca") or {}
    return VGGishWeights(params, pca.get("eigen_vectors"), pca.get("means"))


# ----------------------------------------------------------------------------- name mapping


def params_from_tf(tensors: Mapping[str, np.ndarray]) -> Params:
    """Maps TF-slim variables (`vggish/conv3/conv3_1/weights`, …) to Flax parameters.

    TF kernels are already HWIO (convolutions) and [in, out] (dense), and TF flattens the NHWC
    feature map as this model does, so values are taken as they are. Other variables
    (`global_step`, optimiser slots) are ignored.
    """
    params: Params = {}
    for name, value in tensors.items():
        parts = name.split("/")
        if parts[0] != "vggish" or parts[-1] not in ("weights", "biases") or len(parts) < 3:
            continue
        leaf = "kernel" if parts[-1] == "weights" else "bias"
        params.setdefault(parts[-2], {})[leaf] = np.asarray(value, np.float32)
    vggish_from_params(params)
    return params


def params_from_torch(state_dict: Mapping[str, np.ndarray], flatten: str = "nhwc") -> Params:
    """Maps a torchvggish state dict (`features.<i>.*`, `embeddings.<i>.*`) to Flax parameters.

    `features` is torchvggish's `nn.Sequential` of [Conv2d, ReLU] per convolution and a MaxPool
    after each group, so two convolutions two indices apart share a group and a gap of three
    means a pool between them. Conv weights OIHW become HWIO; Linear weights [out, in] are
    transposed. The last Linear is `fc2`, the others `fc1_<k>`.

    Args:
      state_dict: {name: array}, as `weight_formats.read_torch_state_dict` returns.
      flatten: the order in which the port flattened its last feature map before the first
        Linear: "nhwc" for torchvggish (it transposes NCHW to NHWC first), "nchw" for a port
        that flattens its NCHW map directly; the rows of `fc1_1` are permuted to NHWC order.
    """
    if flatten not in ("nhwc", "nchw"):
        raise ValueError(f"flatten must be 'nhwc' or 'nchw', got {flatten!r}")
    convs, linears = {}, {}
    for name, value in state_dict.items():
        match = re.fullmatch(r"(features|embeddings)\.(\d+)\.(weight|bias)", name)
        if match is None:
            if name.startswith(("features.", "embeddings.")):
                raise CheckpointFormatError(f"unexpected torchvggish parameter {name!r}")
            continue
        layers = convs if match.group(1) == "features" else linears
        layers.setdefault(int(match.group(2)), {})[match.group(3)] = np.asarray(value, np.float32)
    if not convs or not linears:
        raise CheckpointFormatError("no features.* and embeddings.* parameters: not torchvggish")
    params: Params = {}
    groups: list[list[int]] = []
    for index in sorted(convs):
        if groups and index - groups[-1][-1] == 2:
            groups[-1].append(index)
        else:
            groups.append([index])
    for g, group in enumerate(groups, start=1):
        for j, index in enumerate(group, start=1):
            name = f"conv{g}" if len(group) == 1 else f"conv{g}_{j}"
            layer = convs[index]
            params[name] = {
                "kernel": np.ascontiguousarray(layer["weight"].transpose(2, 3, 1, 0)),
                "bias": layer["bias"],
            }
    order = sorted(linears)
    names = [f"fc1_{k}" for k in range(1, len(order))] + ["fc2"]
    for name, index in zip(names, order, strict=True):
        params[name] = {
            "kernel": np.ascontiguousarray(linears[index]["weight"].T),
            "bias": linears[index]["bias"],
        }
    if flatten == "nchw":
        channels = convs[groups[-1][-1]]["weight"].shape[0]
        height, width = PATCH_FRAMES >> len(groups), NUM_BANDS >> len(groups)
        kernel = params[names[0]]["kernel"]  # rows in (C, H, W) order
        kernel = kernel.reshape(channels, height, width, -1).transpose(1, 2, 0, 3)
        params[names[0]]["kernel"] = np.ascontiguousarray(
            kernel.reshape(height * width * channels, -1)
        )
    vggish_from_params(params)
    return params


def read_pca_params(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads the PCA parameters: `vggish_pca_params.npz` (TF) or the torchvggish .pth.

    Returns:
      (eigen vectors [D, D], means [D]), float32.
    """
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            tensors = {k: npz[k] for k in npz.files}
    else:
        tensors = weight_formats.read_torch_state_dict(path)
    if "pca_eigen_vectors" not in tensors or "pca_means" not in tensors:
        raise CheckpointFormatError(
            f"{path}: no pca_eigen_vectors / pca_means, got {sorted(tensors)}"
        )
    vectors = np.asarray(tensors["pca_eigen_vectors"], np.float32)
    means = np.asarray(tensors["pca_means"], np.float32).reshape(-1)
    if vectors.shape != (means.size, means.size):
        raise CheckpointFormatError(f"PCA shapes {vectors.shape} and {means.shape} do not match")
    return vectors, means


def _is_torch_file(path: Path) -> bool:
    if path.suffix in (".pth", ".pt"):
        return True
    if not path.is_file():
        return False
    with open(path, "rb") as file:
        head = file.read(4)
    # A zip archive, or a legacy stream: pickle protocol 2, then LONG1 of 10 bytes (the magic).
    return head[:2] == b"PK" or head == b"\x80\x02\x8a\x0a"


def import_weights(
    source: PathLike, pca: PathLike | None = None, torch_flatten: str = "nhwc"
) -> VGGishWeights:
    """Imports published VGGish weights: a TF checkpoint, a torchvggish .pth or our msgpack.

    Args:
      source: `vggish_model.ckpt` (or any TF-slim VGGish checkpoint), `vggish-10086976.pth`,
        or a `.msgpack` written by `save_weights`.
      pca: optional `vggish_pca_params.npz` or `vggish_pca_params-970ea276.pth`.
      torch_flatten: see `params_from_torch`.
    """
    path = Path(source)
    if path.suffix == ".msgpack":
        weights = load_weights(path)
    elif _is_torch_file(path):
        weights = VGGishWeights(
            params_from_torch(weight_formats.read_torch_state_dict(path), torch_flatten)
        )
    else:
        weights = VGGishWeights(params_from_tf(weight_formats.read_tf_checkpoint(path)))
    if pca is not None:
        vectors, means = read_pca_params(pca)
        d = weights.model().embedding_size
        if vectors.shape != (d, d):
            raise CheckpointFormatError(f"PCA of size {vectors.shape} for embeddings of {d}")
        weights = dataclasses.replace(weights, pca_eigen_vectors=vectors, pca_means=means)
    return weights


def convert_weights(
    source: PathLike, output: PathLike, pca: PathLike | None = None, torch_flatten: str = "nhwc"
) -> VGGishWeights:
    """Imports published VGGish weights (see `import_weights`) and saves them as msgpack."""
    weights = import_weights(source, pca, torch_flatten)
    save_weights(weights, output)
    return weights
