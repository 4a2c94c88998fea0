"""VGGish (Hershey et al., ICASSP 2017): the published front end, the network, weight importers.

VGGish is the embedding of the Fréchet Audio Distance (DESIGN §7). This module holds:

- the front end of the published `vggish_input.py` / `mel_features.py`: mono audio resampled to
  16 kHz, periodic-Hann frames of 25 ms (400 samples) every 10 ms (160), |FFT| of 512 points,
  64 HTK-mel bands over 125–7,500 Hz, `log(mel + 0.01)`, non-overlapping patches of 96 frames
  (0.96 s). It runs in float64 NumPy on the host as the published code does: the log of small
  mel energies is sensitive to float32 FFT round-off (off by up to 3e-4 for a quiet band).
- the network, a Flax linen port of `vggish_slim.py` (VGG configuration A with four conv groups
  and a 128-d embedding, 72,141,184 parameters);
- the published post-processing (PCA with whitening, then 8-bit quantisation), as an option;
- importers for the two public weight files, with neither TensorFlow nor PyTorch installed:
  TensorFlow-slim checkpoints (the published `vggish_model.ckpt` is one V1 "tensor slices" file;
  V2 tensor bundles `.index` + `.data-*` are read too) and torchvggish state dicts
  (`vggish-10086976.pth`; zip and legacy torch formats, through a restricted unpickler);
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
import contextlib
import dataclasses
import functools
import importlib.util
import io
import math
import pickle
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal
from flax import serialization
from jax.typing import ArrayLike

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

PathLike = str | Path


class CheckpointFormatError(ValueError):
    """A weight file is malformed, or uses a feature this reader does not implement."""


class UnsafePickleError(CheckpointFormatError):
    """A .pth pickle asked for something a weights-only load must never run."""


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


# ----------------------------------------------------------------------------- CRC-32C

_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
_CRC_MASK_DELTA = 0xA282EAD8  # leveldb's checksum masking


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CRC32C_POLY), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc_table()
_CRC_TABLE_LIST = [int(v) for v in _CRC_TABLE]


def _gf2_apply(matrix: np.ndarray, v: np.ndarray) -> np.ndarray:
    # A 32×32 matrix over GF(2) stored as its 32 columns, applied to each uint32 in v.
    out = np.zeros_like(v)
    for bit in range(32):
        out ^= np.where((v >> np.uint32(bit)) & np.uint32(1), matrix[bit], np.uint32(0))
    return out


def _zeros_operator(n: int) -> np.ndarray:
    # The linear map on the CRC register of feeding n zero bytes, by repeated squaring.
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
    step = _CRC_TABLE[basis & np.uint32(0xFF)] ^ (basis >> np.uint32(8))
    result = basis
    while n:
        if n & 1:
            result = _gf2_apply(step, result)
        step = _gf2_apply(step, step)
        n >>= 1
    return result


def crc32c(data: bytes | memoryview, crc: int = 0) -> int:
    """Returns the CRC-32C of `data`, continuing from the CRC `crc` of what came before.

    The register update is linear, so large inputs are split into up to 65,536 lanes that
    NumPy advances together, then joined with the operator of "feed L zero bytes".
    """
    data = np.frombuffer(data, np.uint8)
    n = data.size
    register = crc ^ 0xFFFFFFFF
    if n < 16_384:
        for byte in data.tolist():
            register = _CRC_TABLE_LIST[(register ^ byte) & 0xFF] ^ (register >> 8)
        return register ^ 0xFFFFFFFF
    lanes = 1 << min(16, int(math.log2(n // 256)))
    length = -(-n // lanes)
    padded = np.zeros(lanes * length, np.uint8)
    padded[lanes * length - n :] = data  # leading zeros leave a zero register at zero
    columns = padded.reshape(lanes, length).T.copy()  # [length, lanes]
    state = np.zeros(lanes, np.uint32)
    index = np.empty(lanes, np.uint32)
    for column in columns:
        np.bitwise_xor(state, column, out=index)
        np.bitwise_and(index, 0xFF, out=index)
        state >>= np.uint32(8)
        state ^= _CRC_TABLE[index]
    while state.size > 1:  # join neighbouring lanes: r = Z_L·r_left ⊕ r_right
        state = _gf2_apply(_zeros_operator(length), state[0::2]) ^ state[1::2]
        length *= 2
    start = _gf2_apply(_zeros_operator(n), np.array([register], np.uint32))
    return int(state[0] ^ start[0]) ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """Returns leveldb's masked form of a CRC, as stored in tables and tensor bundles."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- protobuf


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CheckpointFormatError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _proto_fields(buf: memoryview) -> dict[int, list[Any]]:
    """Splits a protobuf message into {field number: [values]} (ints, or bytes views)."""
    fields: dict[int, list[Any]] = collections.defaultdict(list)
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value = buf[pos : pos + size]
            pos += size
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise CheckpointFormatError("truncated protobuf message")
        fields[number].append(value)
    return fields


def _packed_varints(values: list[Any]) -> list[int]:
    out: list[int] = []
    for value in values:
        if isinstance(value, int):
            out.append(value)
            continue
        pos = 0
        while pos < len(value):
            item, pos = _varint(value, pos)
            out.append(item)
    return out


def _shape(message: memoryview) -> tuple[int, ...]:
    # TensorShapeProto: repeated Dim dim = 2 { int64 size = 1 }.
    dims = _proto_fields(message)[2]
    return tuple(_signed64(_proto_fields(dim).get(1, [0])[0]) for dim in dims)


# TensorFlow DataType enum → NumPy dtype.
_TF_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    19: np.float16,
}


def _tf_dtype(enum: int) -> np.dtype:
    if enum not in _TF_DTYPES:
        raise CheckpointFormatError(f"TensorFlow dtype enum {enum} is not supported here")
    return np.dtype(_TF_DTYPES[enum])


def _tensor_proto_values(message: memoryview, dtype: np.dtype) -> np.ndarray:
    # TensorProto: tensor_content = 4, float_val = 5, double_val = 6, int_val = 7,
    # int64_val = 10, bool_val = 11, half_val = 13 (little-endian, packed or not).
    fields = _proto_fields(message)
    if fields.get(4):
        return np.frombuffer(fields[4][0], dtype.newbyteorder("<")).astype(dtype)
    if dtype == np.float32 or dtype == np.float64:
        number, width = (5, 4) if dtype == np.float32 else (6, 8)
        chunks = [
            np.frombuffer(v, f"<f{width}")
            if not isinstance(v, int)
            else np.array([v], f"<u{width}").view(f"<f{width}")
            for v in fields.get(number, [])
        ]
        return np.concatenate(chunks).astype(dtype) if chunks else np.zeros(0, dtype)
    if dtype == np.float16:
        return np.array(_packed_varints(fields.get(13, [])), np.uint16).view(np.float16)
    number = {np.dtype(np.int64): 10, np.dtype(np.bool_): 11}.get(dtype, 7)
    values = [_signed64(v) for v in _packed_varints(fields.get(number, []))]
    return np.array(values, np.int64).astype(dtype)


# ----------------------------------------------------------------------------- SSTable

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LENGTH = 48  # two block handles padded to 40 bytes, then the magic number


def _read_block(buf: memoryview, handle: memoryview, verify: bool) -> memoryview:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    end = offset + size
    if end + 5 > len(buf):
        raise CheckpointFormatError("a table block runs past the end of the file")
    contents, kind = buf[offset:end], buf[end]
    if verify:
        stored = int.from_bytes(buf[end + 1 : end + 5], "little")
        if mask_crc(crc32c(bytes([kind]), crc32c(contents))) != stored:
            raise CheckpointFormatError(f"checksum mismatch in the table block at byte {offset}")
    if kind != 0:
        raise CheckpointFormatError(
            f"table block compressed with type {kind} (1 is snappy), which this reader does not "
            "implement; convert with TensorFlow installed"
        )
    return contents


def _block_entries(block: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    # Entries: varint shared, varint unshared, varint value length, key suffix, value;
    # then uint32 restart offsets and their count, which a full scan does not need.
    if len(block) < 4:
        raise CheckpointFormatError("table block shorter than its restart count")
    restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 * (restarts + 1)
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + bytes(block[pos : pos + unshared])
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def sstable_entries(data: bytes, verify: bool = True) -> Iterator[tuple[bytes, memoryview]]:
    """Yields the (key, value) records of a leveldb-format table, as TensorFlow writes them.

    Args:
      data: the whole table file.
      verify: check each block's masked CRC-32C.
    """
    buf = memoryview(data)
    if len(buf) < _FOOTER_LENGTH or (int.from_bytes(buf[-8:], "little") != _TABLE_MAGIC):
        raise CheckpointFormatError("not a TensorFlow table file (no table magic number)")
    footer = buf[-_FOOTER_LENGTH:]
    _, pos = _varint(footer, 0)  # metaindex handle: offset
    _, pos = _varint(footer, pos)  # and size; no meta blocks are needed
    index = _read_block(buf, footer[pos:], verify)
    for _, handle in _block_entries(index):
        yield from _block_entries(_read_block(buf, handle, verify))


# ----------------------------------------------------------------------------- TF checkpoints


def _read_tensor_bundle(prefix: str, verify: bool) -> dict[str, np.ndarray]:
    # V2 checkpoint: `<prefix>.index` maps names to BundleEntryProto {dtype = 1, shape = 2,
    # shard_id = 3, offset = 4, size = 5, crc32c = 6 (masked), slices = 7}; the "" key holds
    # BundleHeaderProto {num_shards = 1, endianness = 2 (0 little, 1 big)}.
    num_shards, big_endian, entries = 1, False, {}
    for key, value in sstable_entries(Path(prefix + ".index").read_bytes(), verify):
        fields = _proto_fields(value)
        if key == b"":
            num_shards = fields.get(1, [1])[0]
            big_endian = fields.get(2, [0])[0] == 1
        else:
            entries[key.decode()] = fields
    tensors, shards = {}, {}
    with contextlib.ExitStack() as stack:
        for name, fields in entries.items():
            if fields.get(7):
                raise CheckpointFormatError(f"{name} is saved in slices, not supported here")
            dtype = _tf_dtype(fields.get(1, [0])[0])
            shape = _shape(fields[2][0]) if fields.get(2) else ()
            shard, offset, size = (fields.get(n, [0])[0] for n in (3, 4, 5))
            if size != math.prod(shape) * dtype.itemsize:
                raise CheckpointFormatError(f"{name}: {size} bytes for shape {shape} of {dtype}")
            if shard not in shards:
                data_path = f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"
                shards[shard] = stack.enter_context(open(data_path, "rb"))
            shards[shard].seek(offset)
            raw = shards[shard].read(size)
            if len(raw) != size:
                raise CheckpointFormatError(f"{name}: the data file ends inside the tensor")
            if verify and fields.get(6) and mask_crc(crc32c(raw)) != fields[6][0]:
                raise CheckpointFormatError(f"{name}: checksum mismatch in the data file")
            order = ">" if big_endian else "<"
            values = np.frombuffer(raw, dtype.newbyteorder(order)).astype(dtype)
            tensors[name] = values.reshape(shape)
    return tensors


def _read_tensor_slices(path: Path, verify: bool) -> dict[str, np.ndarray]:
    # V1 checkpoint: one table of SavedTensorSlices {meta = 1, data = 2}. The "" record's
    # meta lists SavedSliceMeta {name = 1, shape = 2, type = 3}; every other record holds a
    # SavedSlice {name = 1, slice = 2 (TensorSliceProto: extent = 1 {start = 1, length = 2}),
    # data = 3 (TensorProto)}.
    meta: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    slices: dict[str, list[tuple[list[memoryview], memoryview]]] = collections.defaultdict(list)
    for key, value in sstable_entries(path.read_bytes(), verify):
        fields = _proto_fields(value)
        if key == b"":
            for tensor in _proto_fields(fields[1][0]).get(1, []):
                t = _proto_fields(tensor)
                name = bytes(t[1][0]).decode()
                meta[name] = (_shape(t[2][0]) if t.get(2) else (), _tf_dtype(t.get(3, [0])[0]))
        elif fields.get(2):
            saved = _proto_fields(fields[2][0])
            extents = _proto_fields(saved[2][0]).get(1, []) if saved.get(2) else []
            slices[bytes(saved[1][0]).decode()].append((extents, saved[3][0]))
    tensors = {}
    for name, (shape, dtype) in meta.items():
        full = np.zeros(shape, dtype)
        for extents, data in slices.get(name, []):
            region = []
            for extent, size in zip(extents, shape, strict=False):
                e = _proto_fields(extent)
                start = _signed64(e.get(1, [0])[0])
                length = _signed64(e[2][0]) if e.get(2) else size - start
                region.append(slice(start, start + length))
            values = _tensor_proto_values(data, dtype)
            target = full[tuple(region)]
            if values.size != target.size:
                raise CheckpointFormatError(
                    f"{name}: {values.size} values for a slice of {target.shape}"
                )
            full[tuple(region)] = values.reshape(target.shape)
        tensors[name] = full
    return tensors


def read_tf_checkpoint(path: PathLike, verify: bool = True) -> dict[str, np.ndarray]:
    """Reads every tensor of a TensorFlow checkpoint without TensorFlow: {name: array}.

    Args:
      path: a V1 checkpoint file (the published `vggish_model.ckpt`), or a V2 prefix (or its
        `.index` file) with `.data-*-of-*` shards beside it.
      verify: check the CRC-32C checksums (table blocks; V2 tensor data).

    If this reader meets a feature it does not implement and TensorFlow is importable, the
    checkpoint is read with `tf.train.load_checkpoint` instead.
    """
    path_str = str(path)
    prefix = path_str[: -len(".index")] if path_str.endswith(".index") else path_str
    try:
        if Path(prefix + ".index").is_file():
            return _read_tensor_bundle(prefix, verify)
        if Path(path_str).is_file():
            return _read_tensor_slices(Path(path_str), verify)
    except CheckpointFormatError:
        if importlib.util.find_spec("tensorflow") is None:
            raise
        import tensorflow as tf  # optional: only for what this reader does not implement

        reader = tf.train.load_checkpoint(prefix)
        return {n: np.asarray(reader.get_tensor(n)) for n in reader.get_variable_to_shape_map()}
    raise FileNotFoundError(f"no TensorFlow checkpoint at {path} (nor {prefix}.index)")


# ----------------------------------------------------------------------------- torch files

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # legacy (pre-zip) torch.save
_TORCH_STORAGES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype
    numel: int


@dataclasses.dataclass(frozen=True)
class _LazyTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> _LazyTensor:
    # torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
    # backward_hooks[, metadata]); the data arrives after the pickle in the legacy format.
    del unused
    if not isinstance(storage, _Storage):
        raise UnsafePickleError("a tensor was rebuilt from something that is not a storage")
    if not (
        isinstance(storage_offset, int)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(isinstance(v, int) and v >= 0 for v in (storage_offset, *size, *stride))
    ):
        raise CheckpointFormatError(f"bad tensor layout: offset {storage_offset}, {size}, {stride}")
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if 0 not in size and last >= storage.numel:
        raise CheckpointFormatError(f"tensor {size} reaches past its storage of {storage.numel}")
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused) -> _LazyTensor:
    del requires_grad, backward_hooks, unused
    if not isinstance(data, _LazyTensor):
        raise UnsafePickleError("a parameter was rebuilt from something that is not a tensor")
    return data


class _WeightsOnlyUnpickler(pickle.Unpickler):
    """Admits only what `torch.load(weights_only=True)` needs for a state dict of tensors."""

    def __init__(self, file: io.BytesIO, source: str):
        super().__init__(file, encoding="utf-8")
        self._source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch._utils", "_rebuild_tensor"),
        ):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(name, np.dtype(_TORCH_STORAGES[name]))
        raise UnsafePickleError(
            f"refusing to load {self._source}: its pickle asks for {module}.{name}, which a "
            "weights-only load never needs (only tensors, storages and OrderedDict are admitted)"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage type, key, location, numel[, view metadata (legacy)]).
        if not (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
            and (len(pid) == 5 or pid[5] is None)
        ):
            raise UnsafePickleError(
                f"refusing to load {self._source}: unexpected persistent id {pid!r}"
            )
        storage = _Storage(pid[2], pid[1].dtype, pid[4])
        return self.storages.setdefault(storage.key, storage)


def _unpickle(stream: io.BytesIO, source: str) -> tuple[Any, dict[str, _Storage]]:
    unpickler = _WeightsOnlyUnpickler(stream, source)
    try:
        return unpickler.load(), unpickler.storages
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError) as error:
        raise CheckpointFormatError(f"{source} is not a readable torch file: {error}") from error


def _materialize(obj: Any, storage_bytes: Callable[[_Storage], bytes]) -> Any:
    if isinstance(obj, _LazyTensor):
        raw = storage_bytes(obj.storage)
        dtype = obj.storage.dtype
        if len(raw) < obj.storage.numel * dtype.itemsize:
            raise CheckpointFormatError(f"storage {obj.storage.key} is shorter than its numel")
        flat = np.frombuffer(raw, dtype.newbyteorder("<"), count=obj.storage.numel)
        strides = tuple(s * dtype.itemsize for s in obj.stride)
        view = np.lib.stride_tricks.as_strided(
            flat[obj.offset :], obj.size, strides, writeable=False
        )
        return np.array(view, dtype)
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v, storage_bytes)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(v, storage_bytes) for v in obj)
    return obj


def read_torch_state_dict(path: PathLike) -> dict[str, np.ndarray]:
    """Reads a `torch.save`d state dict without PyTorch, refusing any pickle that runs code.

    Both torch formats are read: the zip archive (`<name>/data.pkl` with storages in
    `<name>/data/<key>`, torch ≥ 1.6) and the legacy stream (magic number, protocol 1001,
    system info, the pickle, the storage keys, then each storage as int64 numel + raw data).

    Raises:
      UnsafePickleError: the pickle asks for anything but tensors, storages and OrderedDict.
      CheckpointFormatError: the file is neither torch format.
    """
    data = Path(path).read_bytes()
    source = str(path)
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            pickles = [
                n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1
            ]
            if len(pickles) != 1:
                raise CheckpointFormatError(f"{path}: expected one <name>/data.pkl, got {pickles}")
            root = pickles[0][: -len("data.pkl")]
            byteorder = root + "byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
                raise CheckpointFormatError(f"{path}: big-endian torch files are not supported")
            obj, _ = _unpickle(io.BytesIO(archive.read(pickles[0])), source)
            return _materialize(obj, lambda s: archive.read(f"{root}data/{s.key}"))
    stream = io.BytesIO(data)
    header = [_unpickle(stream, source)[0] for _ in range(3)]
    if header[0] != _TORCH_MAGIC or header[1] != 1001:
        raise CheckpointFormatError(f"{path} is neither a zip nor a legacy torch file")
    if not isinstance(header[2], dict) or not header[2].get("little_endian", False):
        raise CheckpointFormatError(f"{path}: big-endian torch files are not supported")
    obj, storages = _unpickle(stream, source)
    keys, _ = _unpickle(stream, source)
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise CheckpointFormatError(f"{path}: the storage keys do not match the pickle's")
    storage_data = {}
    for key in keys:  # each: int64 numel, then the raw little-endian data
        numel = int.from_bytes(stream.read(8), "little")
        storage_data[key] = stream.read(numel * storages[key].dtype.itemsize)
    return _materialize(obj, lambda s: storage_data[s.key])


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
      state_dict: {name: array}, as `read_torch_state_dict` returns.
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
        tensors = read_torch_state_dict(path)
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
        weights = VGGishWeights(params_from_torch(read_torch_state_dict(path), torch_flatten))
    else:
        weights = VGGishWeights(params_from_tf(read_tf_checkpoint(path)))
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
