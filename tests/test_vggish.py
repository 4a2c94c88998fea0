"""Tests for jaxrestore.vggish: front end, network, post-processing and weight importers.

The weight files are written here, byte by byte, from the formats' published facts (neither
TensorFlow nor PyTorch is installed): a torch zip archive and a legacy torch stream with
hand-written pickle opcodes, and TensorFlow V1 and V2 checkpoints with a small leveldb-table
writer. Their values are random, and the imported Flax model is checked against a direct NumPy
forward pass in each framework's own layout.
"""

import math
import pickle
import struct
import zipfile

import jax
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from jaxrestore import vggish

TINY = {"conv_widths": ((4,), (8,), (8, 8), (16, 16)), "fc_widths": (32, 32), "embedding_size": 8}
TINY_FLAT = 6 * 4 * 16  # the last feature map, [6, 4, 16], flattened
# torchvggish's `features`: Conv2d+ReLU per convolution, MaxPool after each group.
TORCH_FEATURES = "C R M C R M C R C R M C R C R M".split()


# ----------------------------------------------------------------------------- front end


def reference_log_mel(audio: np.ndarray) -> np.ndarray:
    """The published definition, written out term by term in float64."""
    count = 1 + (len(audio) - 400) // 160
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / 400) for n in range(400)])
    k, n = np.arange(257)[:, None], np.arange(400)[None, :]
    dft = np.exp(-2j * np.pi * k * n / 512)  # the 112 zero-padded samples add nothing

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    edges = [mel(125) + i * (mel(7500) - mel(125)) / 65 for i in range(66)]
    weights = np.zeros((257, 64))
    for b in range(1, 257):  # bin 0 (DC) keeps no weight
        m = mel(b * 8000 / 256)
        for j in range(64):
            lo, centre, hi = edges[j : j + 3]
            weights[b, j] = max(0.0, min((m - lo) / (centre - lo), (hi - m) / (hi - centre)))
    out = np.empty((count, 64))
    for t in range(count):
        frame = audio[160 * t : 160 * t + 400] * window
        out[t] = np.log(np.abs(dft @ frame) @ weights + 0.01)
    return out


def test_front_end_matches_the_published_definition():
    rng = np.random.default_rng(0)
    t = np.arange(20_000) / 16_000  # 1.25 s: 123 frames, one patch
    audio = 0.3 * np.sin(2 * np.pi * (200 + 2000 * t) * t) + 0.05 * rng.standard_normal(t.size)
    expected = reference_log_mel(audio)
    assert expected.shape == (123, 64)
    np.testing.assert_allclose(vggish.log_mel_spectrogram(audio), expected, atol=1e-5, rtol=0)
    patches = vggish.log_mel_patches(audio, 16_000)
    assert patches.shape == (1, 96, 64)
    np.testing.assert_allclose(patches[0], expected[:96], atol=1e-5, rtol=0)


def test_patch_counts_follow_the_published_framing():
    # 1 + (T − 400) // 160 frames; patches of 96 frames, no padding: 15,600 samples is the
    # shortest clip with a patch.
    for samples, patches in [(15_600, 1), (15_599, 0), (32_000, 2), (300, 0)]:
        assert vggish.log_mel_patches(np.zeros(samples), 16_000).shape == (patches, 96, 64)


def test_resampling_keeps_the_passband_and_rejects_aliases():
    n_in = np.arange(22_050)
    for f in (1_000.0, 5_000.0, 7_400.0):
        y = vggish.resample(np.sin(2 * np.pi * f * n_in / 22_050), 22_050)
        assert y.shape == (16_000,)
        expected = np.sin(2 * np.pi * f * np.arange(16_000) / 16_000)
        np.testing.assert_allclose(y[2000:-2000], expected[2000:-2000], atol=1e-4)
    alias = vggish.resample(np.sin(2 * np.pi * 9_000.0 * n_in / 22_050), 22_050)
    assert np.max(np.abs(alias[2000:-2000])) < 1e-4  # 9 kHz is above the new Nyquist


# ----------------------------------------------------------------------------- network

PUBLISHED = {  # vggish_slim.py, TF layouts: HWIO kernels, Dense [in, out]
    "conv1": (3, 3, 1, 64),
    "conv2": (3, 3, 64, 128),
    "conv3_1": (3, 3, 128, 256),
    "conv3_2": (3, 3, 256, 256),
    "conv4_1": (3, 3, 256, 512),
    "conv4_2": (3, 3, 512, 512),
    "fc1_1": (6 * 4 * 512, 4096),  # 96 × 64 halved four times
    "fc1_2": (4096, 4096),
    "fc2": (4096, 128),
}


def test_published_architecture_shapes_and_parameter_count():
    model = vggish.VGGish()
    shapes = vggish.parameter_shapes(model)
    assert shapes == {name: {"kernel": k, "bias": k[-1:]} for name, k in PUBLISHED.items()}
    count = sum(math.prod(k) + k[-1] for k in PUBLISHED.values())
    abstract = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((2, 96, 64), np.float32)
    )
    assert sum(math.prod(v.shape) for v in jax.tree.leaves(abstract)) == count
    assert round(count / 1e6, 1) == 72.1
    out = jax.eval_shape(model.apply, abstract, jax.ShapeDtypeStruct((2, 96, 64), np.float32))
    assert out.shape == (2, 128)


def test_postprocess_is_the_published_pca_and_quantisation():
    # Identity PCA: q = round((clip(e, −2, 2) + 2)·255/4), rounding half to even like np.round.
    e = np.array([[-3.0, -2.0, 0.0, 0.5, 2.0, 5.0]])
    q = vggish.postprocess(e, np.eye(6), np.zeros(6))
    np.testing.assert_array_equal(np.asarray(q), [[0, 0, 128, 159, 255, 255]])
    assert q.dtype == np.uint8
    rng = np.random.default_rng(1)
    e, vectors, means = rng.normal(size=(5, 8)), rng.normal(size=(8, 8)) / 3, rng.normal(size=8)
    expected = np.round((np.clip(vectors @ (e.T - means[:, None]), -2, 2).T + 2) * 63.75)
    got = np.asarray(vggish.postprocess(e, vectors, means[:, None])).astype(float)
    assert np.max(np.abs(got - expected)) <= 1  # float32 rounding may move a half step


# ----------------------------------------------------------------------------- NumPy references


def np_conv_nhwc(x, kernel, bias):
    """3×3 SAME cross-correlation, NHWC input, HWIO kernel (TensorFlow)."""
    h, w = x.shape[1:3]
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = sum(
        np.einsum("bhwc,co->bhwo", xp[:, i : i + h, j : j + w], kernel[i, j])
        for i in range(3)
        for j in range(3)
    )
    return out + bias


def np_conv_nchw(x, weight, bias):
    """3×3 cross-correlation with padding 1, NCHW input, OIHW weight (PyTorch)."""
    h, w = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = sum(
        np.einsum("bchw,oc->bohw", xp[:, :, i : i + h, j : j + w], weight[:, :, i, j])
        for i in range(3)
        for j in range(3)
    )
    return out + bias[None, :, None, None]


def relu(x):
    return np.maximum(x, 0.0)


def np_forward_tf(tensors, patches):
    """VGGish as vggish_slim.py computes it, from TF variable names and layouts."""
    x = patches[..., None].astype(np.float64)
    for group in (
        "conv1",
        "conv2",
        "conv3/conv3_1",
        "conv3/conv3_2",
        "conv4/conv4_1",
        "conv4/conv4_2",
    ):
        x = relu(
            np_conv_nhwc(x, tensors[f"vggish/{group}/weights"], tensors[f"vggish/{group}/biases"])
        )
        if not group.endswith("_1"):
            b, h, w, c = x.shape
            x = x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    x = x.reshape(x.shape[0], -1)  # slim.flatten of NHWC
    for layer in ("fc1/fc1_1", "fc1/fc1_2"):
        x = relu(x @ tensors[f"vggish/{layer}/weights"] + tensors[f"vggish/{layer}/biases"])
    return x @ tensors["vggish/fc2/weights"] + tensors["vggish/fc2/biases"]


def np_forward_torch(state, patches, flatten="nhwc", final_relu=False):
    """VGGish as torchvggish computes it: NCHW features, then `embeddings` on the flat map."""
    x = patches[:, None].astype(np.float64)  # [B, 1, 96, 64]
    for index, kind in enumerate(TORCH_FEATURES):
        if kind == "C":
            x = np_conv_nchw(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"])
        elif kind == "R":
            x = relu(x)
        else:
            b, c, h, w = x.shape
            x = x.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    if flatten == "nhwc":
        x = np.transpose(x, (0, 2, 3, 1))  # torchvggish: transpose(1, 3), then (1, 2)
    x = x.reshape(x.shape[0], -1)
    for index in (0, 2):
        x = relu(x @ state[f"embeddings.{index}.weight"].T + state[f"embeddings.{index}.bias"])
    x = x @ state["embeddings.4.weight"].T + state["embeddings.4.bias"]
    return relu(x) if final_relu else x


def tiny_torch_state(seed=0):
    rng = np.random.default_rng(seed)
    state, c_in = {}, 1
    widths = iter([4, 8, 8, 8, 16, 16])
    for index, kind in enumerate(TORCH_FEATURES):
        if kind == "C":
            c_out = next(widths)
            w = rng.normal(size=(c_out, c_in, 3, 3)) * math.sqrt(2 / (9 * c_in))
            state[f"features.{index}.weight"] = w.astype(np.float32)
            state[f"features.{index}.bias"] = rng.normal(0, 0.1, c_out).astype(np.float32)
            c_in = c_out
    for index, (n_in, n_out) in zip((0, 2, 4), [(TINY_FLAT, 32), (32, 32), (32, 8)], strict=True):
        w = rng.normal(size=(n_out, n_in)) * math.sqrt(2 / n_in)
        state[f"embeddings.{index}.weight"] = w.astype(np.float32)
        state[f"embeddings.{index}.bias"] = rng.normal(0, 0.1, n_out).astype(np.float32)
    return state


def tiny_tf_tensors(seed=0):
    rng = np.random.default_rng(seed)
    tensors, c_in = {}, 1
    for scope, c_out in [("conv1", 4), ("conv2", 8), ("conv3/conv3_1", 8), ("conv3/conv3_2", 8),
                         ("conv4/conv4_1", 16), ("conv4/conv4_2", 16)]:  # fmt: skip
        w = rng.normal(size=(3, 3, c_in, c_out)) * math.sqrt(2 / (9 * c_in))
        tensors[f"vggish/{scope}/weights"] = w.astype(np.float32)
        tensors[f"vggish/{scope}/biases"] = rng.normal(0, 0.1, c_out).astype(np.float32)
        c_in = c_out
    for scope, (n_in, n_out) in [
        ("fc1/fc1_1", (TINY_FLAT, 32)),
        ("fc1/fc1_2", (32, 32)),
        ("fc2", (32, 8)),
    ]:
        w = rng.normal(size=(n_in, n_out)) * math.sqrt(2 / n_in)
        tensors[f"vggish/{scope}/weights"] = w.astype(np.float32)
        tensors[f"vggish/{scope}/biases"] = rng.normal(0, 0.1, n_out).astype(np.float32)
    return tensors


def log_mel_like_patches(count=3, seed=5):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(count, 96, 64)) - 2.0).astype(np.float32)


def apply_with_intermediates(weights, patches, final_relu=False):
    model = weights.model(final_relu)
    out, state = model.apply(
        {"params": weights.params}, patches, capture_intermediates=True, mutable=["intermediates"]
    )
    inter = state["intermediates"]
    return (
        np.asarray(out),
        np.asarray(inter["conv1"]["__call__"][0]),
        np.asarray(inter["fc1_2"]["__call__"][0]),
        np.asarray(inter["fc2"]["__call__"][0]),
    )


# ----------------------------------------------------------------------------- torch writers


class TorchPickle:
    """Emits the protocol-2 opcodes Python's pickler writes for `torch.save(state_dict)`."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = {}

    def _memoized(self, key, emit):
        if key in self.memo:
            self.out += b"h" + bytes([self.memo[key]])  # BINGET
        else:
            emit()
            self.memo[key] = len(self.memo)
            self.out += b"q" + bytes([self.memo[key]])  # BINPUT

    def global_(self, module, name):
        self._memoized(
            ("g", module, name), lambda: self.out.extend(f"c{module}\n{name}\n".encode())
        )

    def string(self, s):
        raw = s.encode()
        self._memoized(("s", s), lambda: self.out.extend(b"X" + struct.pack("<I", len(raw)) + raw))

    def int_(self, v):
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)
        else:
            self.out += b"J" + struct.pack("<i", v)

    def int_tuple(self, values):
        if len(values) > 3:
            self.out += b"("
        for v in values:
            self.int_(v)
        self.out += b"t" if len(values) > 3 else b")\x85\x86\x87"[len(values) : len(values) + 1]

    def ordered_dict(self):
        self.global_("collections", "OrderedDict")
        self.out += b")R"  # EMPTY_TUPLE, REDUCE

    def tensor(self, storage_key, numel, offset, size, stride, legacy):
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += b"(("  # the args tuple, then the persistent id tuple
        self.string("storage")
        self.global_("torch", "FloatStorage")
        self.string(storage_key)
        self.string("cpu")
        self.int_(numel)
        self.out += b"Nt" if legacy else b"t"  # legacy ids carry view metadata (None)
        self.out += b"Q"  # BINPERSID
        self.int_(offset)
        self.int_tuple(size)
        self.int_tuple(stride)
        self.out += b"\x89"  # requires_grad = False
        self.ordered_dict()  # backward hooks
        self.out += b"tR"

    def state_dict(self, layout, legacy=False):
        """`layout`: [(name, storage key, numel, offset, size, stride)]."""
        self.ordered_dict()
        self.out += b"("
        for name, key, numel, offset, size, stride in layout:
            self.string(name)
            self.tensor(key, numel, offset, size, stride, legacy)
        self.out += b"u"  # SETITEMS
        self.out += b"}("  # state: {"_metadata": OrderedDict([("", {"version": 1})])}
        self.string("_metadata")
        self.ordered_dict()
        self.out += b"("
        self.string("")
        self.out += b"}("
        self.string("version")
        self.int_(1)
        self.out += b"uuub."  # SETITEMS ×3, BUILD, STOP
        return bytes(self.out)


def torch_layout(state):
    """Storages and views for `state`, with two shared storages and one transposed view."""
    names = list(state)
    storages, layout = {}, []
    shared = ["features.0.bias", "features.3.bias"]  # one storage, the second at an offset
    storages["100"] = np.concatenate([state[n] for n in shared])
    layout.append((shared[0], "100", storages["100"].size, 0, (4,), (1,)))
    layout.append((shared[1], "100", storages["100"].size, 4, (8,), (1,)))
    transposed = "embeddings.4.weight"  # [8, 32] stored as its contiguous transpose
    storages["101"] = np.ascontiguousarray(state[transposed].T).reshape(-1)
    layout.append((transposed, "101", 256, 0, (8, 32), (1, 8)))
    for i, name in enumerate(n for n in names if n not in shared and n != transposed):
        value = state[name]
        key = str(200 + i)
        storages[key] = value.reshape(-1)
        strides = tuple(int(s) // 4 for s in value.strides)
        layout.append((name, key, value.size, 0, value.shape, strides))
    order = {name: i for i, name in enumerate(names)}
    layout.sort(key=lambda entry: order[entry[0]])
    return layout, storages


def write_torch_zip(path, state):
    layout, storages = torch_layout(state)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", TorchPickle().state_dict(layout))
        archive.writestr("archive/byteorder", "little")
        for key, values in storages.items():
            archive.writestr(f"archive/data/{key}", values.astype("<f4").tobytes())
        archive.writestr("archive/version", "3\n")


def write_torch_legacy(path, state):
    layout, storages = torch_layout(state)
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8}}  # fmt: skip
    parts = [pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, sys_info)]
    parts.append(TorchPickle().state_dict(layout, legacy=True))
    keys = sorted(storages)
    parts.append(pickle.dumps(keys, protocol=2))
    for key in keys:
        parts.append(struct.pack("<q", storages[key].size) + storages[key].astype("<f4").tobytes())
    path.write_bytes(b"".join(parts))


# ----------------------------------------------------------------------------- torch tests


@pytest.mark.parametrize("writer", [write_torch_zip, write_torch_legacy])
def test_torch_state_dict_is_read_exactly(tmp_path, writer):
    state = tiny_torch_state()
    path = tmp_path / "vggish.pth"
    writer(path, state)
    read = vggish.read_torch_state_dict(path)
    assert list(read) == list(state)
    for name, value in state.items():
        np.testing.assert_array_equal(read[name], value, err_msg=name)


def test_torch_import_reproduces_torchvggish(tmp_path):
    state = tiny_torch_state()
    write_torch_zip(tmp_path / "vggish.pth", state)
    weights = vggish.import_weights(tmp_path / "vggish.pth")
    assert weights.model() == vggish.VGGish(**TINY)
    x = log_mel_like_patches()
    out, conv1, hidden, fc2 = apply_with_intermediates(weights, x)
    # First convolution: the OIHW weights as PyTorch applies them, compared in NHWC.
    expected_conv1 = np_conv_nchw(x[:, None], state["features.0.weight"], state["features.0.bias"])
    np.testing.assert_allclose(conv1, expected_conv1.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
    # Last dense layer: Linear(x) = x·Wᵀ + b on the ReLU of the layer before.
    expected_fc2 = relu(hidden) @ state["embeddings.4.weight"].T + state["embeddings.4.bias"]
    np.testing.assert_allclose(fc2, expected_fc2, rtol=1e-4, atol=1e-5)
    # The whole network, including the NCHW → NHWC flatten order before the first Linear.
    np.testing.assert_allclose(out, np_forward_torch(state, x), rtol=1e-4, atol=1e-4)
    out_relu = apply_with_intermediates(weights, x, final_relu=True)[0]
    np.testing.assert_allclose(out_relu, np_forward_torch(state, x, final_relu=True), atol=1e-4)


def test_torch_import_of_an_nchw_flattening_port(tmp_path):
    state = tiny_torch_state(seed=3)
    x = log_mel_like_patches()
    params = vggish.params_from_torch(state, flatten="nchw")
    out = vggish.VGGish(**TINY).apply({"params": params}, x)
    expected = np_forward_torch(state, x, flatten="nchw")
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert np.max(np.abs(expected - np_forward_torch(state, x))) > 1e-2  # the order matters


@pytest.mark.parametrize(
    "module, name", [("os", "system"), ("builtins", "eval"), ("subprocess", "check_call")]
)
def test_pickle_asking_for_code_is_refused(tmp_path, module, name):
    marker = tmp_path / "executed"
    p = TorchPickle()
    p.global_(module, name)
    p.string(f"open({str(marker)!r}, 'w')" if name == "eval" else f"touch {marker}")
    p.out += b"\x85R."  # TUPLE1, REDUCE, STOP
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as archive:
        archive.writestr("archive/data.pkl", bytes(p.out))
    with pytest.raises(vggish.UnsafePickleError, match=f"{module}.{name}"):
        vggish.read_torch_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


# ----------------------------------------------------------------------------- TF writers


def varint(v):
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def pb_int(number, v):
    return varint(number << 3) + varint(v & (2**64 - 1))


def pb_bytes(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def pb_fixed32(number, v):
    return varint(number << 3 | 5) + struct.pack("<I", v)


def pb_shape(shape):
    return b"".join(pb_bytes(2, pb_int(1, d)) for d in shape)  # TensorShapeProto.dim


def reference_crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def write_table(records, per_block=3):
    """A leveldb table: data blocks, an empty metaindex block, the index block, the footer."""
    out = bytearray()

    def block(entries, restart_interval):
        body, restarts, previous = bytearray(), [], b""
        for i, (key, value) in enumerate(entries):
            shared = 0
            if i % restart_interval == 0:
                restarts.append(len(body))
            else:
                while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                    shared += 1
            body += varint(shared) + varint(len(key) - shared) + varint(len(value))
            body += key[shared:] + value
            previous = key
        restarts = restarts or [0]
        return bytes(body) + struct.pack(f"<{len(restarts) + 1}I", *restarts, len(restarts))

    def emit(contents):
        handle = varint(len(out)) + varint(len(contents))
        crc = masked(reference_crc32c(contents + b"\x00"))
        out.extend(contents + b"\x00" + struct.pack("<I", crc))  # type 0: no compression
        return handle

    index = []
    for i in range(0, len(records), per_block):
        chunk = records[i : i + per_block]
        index.append((chunk[-1][0], emit(block(chunk, 16))))
    handles = emit(block([], 16)) + emit(block(index, 1))
    return bytes(out) + handles.ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)


def write_tf_v2(prefix, tensors):
    """A tensor bundle: `<prefix>.index` (BundleEntryProto table) + one data shard."""
    data, entries = bytearray(), []
    for name in sorted(tensors):
        value = tensors[name]
        raw = value.astype(value.dtype.newbyteorder("<")).tobytes()
        dtype = {np.dtype(np.float32): 1, np.dtype(np.int64): 9}[value.dtype]
        entry = pb_int(1, dtype) + pb_bytes(2, pb_shape(value.shape))
        entry += (
            pb_int(4, len(data))
            + pb_int(5, len(raw))
            + pb_fixed32(6, masked(reference_crc32c(raw)))
        )
        entries.append((name.encode(), entry))
        data += raw
    header = pb_int(1, 1) + pb_bytes(3, pb_int(1, 1))  # num_shards 1, little-endian, version
    (prefix.parent / f"{prefix.name}.index").write_bytes(write_table([(b"", header), *entries]))
    (prefix.parent / f"{prefix.name}.data-00000-of-00001").write_bytes(bytes(data))


def ordered_code_key(name, extents):
    """EncodeTensorNameSlice: 0, the escaped name, the rank, then (start, length) per dim."""
    escaped = b"".join({0: b"\x00\xff", 255: b"\xff\x00"}.get(c, bytes([c])) for c in name.encode())
    key = b"\x00" + escaped + b"\x00\x01" + bytes([1, len(extents)])
    for start, length in extents:  # WriteSignedNumIncreasing: one byte 0x80 ^ v for |v| < 64
        key += bytes([(0x80 ^ start) & 0xFF, (0x80 ^ length) & 0xFF])
    return key


def slice_proto(extents):
    """TensorSliceProto: one Extent per dim, empty when full, else start (if not 0), length."""
    parts = []
    for start, length in extents:
        extent = b"" if length == -1 else (pb_int(1, start) if start else b"") + pb_int(2, length)
        parts.append(pb_bytes(1, extent))
    return b"".join(parts)


def write_tf_v1(path, tensors, split):
    """A V1 checkpoint (SavedTensorSlices table); tensors in `split` are saved as two slices,
    cut along their last dimension, as a partitioned variable would be."""
    metas, records = b"", []
    for name in sorted(tensors):
        value = tensors[name]
        full = [(0, -1)] * value.ndim
        if name in split:
            cut, end = split[name], value.shape[-1]
            slices = [full[:-1] + [(0, cut)], full[:-1] + [(cut, end - cut)]]
        else:
            slices = [full]
        meta = pb_bytes(1, name.encode()) + pb_bytes(2, pb_shape(value.shape)) + pb_int(3, 1)
        metas += pb_bytes(1, meta + b"".join(pb_bytes(4, slice_proto(e)) for e in slices))
        for extents in slices:
            start, length = extents[-1]
            part = value if length == -1 else value[..., start : start + length]
            floats = pb_bytes(5, np.ascontiguousarray(part).astype("<f4").tobytes())
            saved = pb_bytes(1, name.encode()) + pb_bytes(2, slice_proto(extents))
            records.append(
                (ordered_code_key(name, extents), pb_bytes(2, saved + pb_bytes(3, floats)))
            )
    meta = pb_bytes(1, metas + pb_bytes(2, pb_int(1, 1)))  # SavedTensorSliceMeta, versions
    path.write_bytes(write_table([(b"", meta), *sorted(records)]))


# ----------------------------------------------------------------------------- TF tests


def test_crc32c_matches_the_bitwise_definition():
    assert vggish.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = np.random.default_rng(2).integers(0, 256, 40_000, dtype=np.uint8).tobytes()
    assert vggish.crc32c(data) == reference_crc32c(data)  # many lanes, joined
    assert vggish.crc32c(data[25_000:], vggish.crc32c(data[:25_000])) == reference_crc32c(data)


def test_tf_v1_checkpoint_is_read_exactly(tmp_path):
    tensors = tiny_tf_tensors()
    write_tf_v1(
        tmp_path / "vggish_model.ckpt", tensors, {"vggish/fc2/biases": 3, "vggish/fc2/weights": 5}
    )
    read = vggish.read_tf_checkpoint(tmp_path / "vggish_model.ckpt")
    assert sorted(read) == sorted(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(read[name], value, err_msg=name)


def test_tf_v2_import_reproduces_vggish_slim(tmp_path):
    tensors = tiny_tf_tensors(seed=1)
    write_tf_v2(tmp_path / "model.ckpt", {**tensors, "global_step": np.array(1234, np.int64)})
    read = vggish.read_tf_checkpoint(tmp_path / "model.ckpt.index")
    assert read["global_step"] == 1234
    weights = vggish.import_weights(tmp_path / "model.ckpt")
    x = log_mel_like_patches()
    out, conv1, hidden, fc2 = apply_with_intermediates(weights, x)
    expected_conv1 = np_conv_nhwc(
        x[..., None], tensors["vggish/conv1/weights"], tensors["vggish/conv1/biases"]
    )
    np.testing.assert_allclose(conv1, expected_conv1, rtol=1e-4, atol=1e-5)
    expected_fc2 = relu(hidden) @ tensors["vggish/fc2/weights"] + tensors["vggish/fc2/biases"]
    np.testing.assert_allclose(fc2, expected_fc2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out, np_forward_tf(tensors, x), rtol=1e-4, atol=1e-4)


def test_tf_v2_corrupted_data_is_caught(tmp_path):
    write_tf_v2(tmp_path / "model.ckpt", tiny_tf_tensors())
    shard = tmp_path / "model.ckpt.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(vggish.CheckpointFormatError, match="checksum"):
        vggish.read_tf_checkpoint(tmp_path / "model.ckpt")


# ----------------------------------------------------------------------------- conversion


def test_convert_app_writes_a_loadable_msgpack(tmp_path):
    from experiments import convert_vggish

    state = tiny_torch_state()
    write_torch_zip(tmp_path / "vggish.pth", state)
    rng = np.random.default_rng(4)
    vectors, means = rng.normal(size=(8, 8)), rng.normal(size=(8, 1))
    np.savez(tmp_path / "pca.npz", pca_eigen_vectors=vectors, pca_means=means)
    output = tmp_path / "vggish.msgpack"
    if not flags.FLAGS.is_parsed():  # other apps' flags may be defined in this process too
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(
        vggish_source=str(tmp_path / "vggish.pth"),
        vggish_output=str(output),
        vggish_pca=str(tmp_path / "pca.npz"),
    ):
        convert_vggish.main(["convert_vggish"])
    loaded = vggish.load_weights(output)
    np.testing.assert_array_equal(
        loaded.params["conv1"]["kernel"], state["features.0.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(loaded.params["fc2"]["kernel"], state["embeddings.4.weight"].T)
    np.testing.assert_allclose(loaded.pca_eigen_vectors, vectors, rtol=1e-6)
    np.testing.assert_allclose(loaded.pca_means, means[:, 0], rtol=1e-6)
    assert loaded.model() == vggish.VGGish(**TINY)


def test_wrong_shapes_are_refused():
    tensors = tiny_tf_tensors()
    tensors["vggish/fc1/fc1_1/weights"] = tensors["vggish/fc1/fc1_1/weights"][:-1]
    with pytest.raises(vggish.CheckpointFormatError, match="fc1_1"):
        vggish.params_from_tf(tensors)
