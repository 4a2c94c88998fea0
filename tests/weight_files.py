"""Writers of tiny TensorFlow checkpoints and torch files, byte by byte, for the tests.

Neither TensorFlow nor PyTorch is installed: the files are written from the formats' published
facts (a torch zip archive and a legacy torch stream with hand-written pickle opcodes,
TensorFlow V1 and V2 checkpoints with a small leveldb-table writer). Their tensors are those of
a tiny VGGish network with random values (`TINY`).
"""

import math
import pickle
import struct
import zipfile

import numpy as np

TINY = {"conv_widths": ((4,), (8,), (8, 8), (16, 16)), "fc_widths": (32, 32), "embedding_size": 8}


TINY_FLAT = 6 * 4 * 16  # the last feature map, [6, 4, 16], flattened


# torchvggish's `features`: Conv2d+ReLU per convolution, MaxPool after each group.
TORCH_FEATURES = "C R M C R M C R C R M C R C R M".split()


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
