"""Foreign weight files read without their frameworks: TensorFlow checkpoints and torch pickles.

- CRC-32C (Castagnoli) with leveldb's masking, a protobuf wire-format decoder and a reader of
  leveldb-format tables (SSTables), the pieces TensorFlow checkpoints are made of;
- `read_tf_checkpoint`: V1 "tensor slices" files (the published `vggish_model.ckpt`) and V2
  tensor bundles (`.index` + `.data-*`), with TensorFlow only as a fallback when installed;
- `read_torch_state_dict`: `torch.save`d state dicts (zip archive and legacy stream) through a
  restricted unpickler that admits tensors, storages and OrderedDict and nothing that runs code.
"""

import collections
import contextlib
import dataclasses
import importlib.util
import io
import math
import pickle
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | Path


class CheckpointFormatError(ValueError):
    """A weight file is malformed, or uses a feature this reader does not implement."""


class UnsafePickleError(CheckpointFormatError):
    """A .pth pickle asked for something a weights-only load must never run."""


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
