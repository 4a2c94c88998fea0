"""Tests for jaxrestore.weight_formats: TF checkpoints and torch files read exactly, safely."""

import zipfile

import numpy as np
import pytest
from weight_files import (
    TorchPickle,
    reference_crc32c,
    tiny_tf_tensors,
    tiny_torch_state,
    write_tf_v1,
    write_tf_v2,
    write_torch_legacy,
    write_torch_zip,
)

from jaxrestore import weight_formats


@pytest.mark.parametrize("writer", [write_torch_zip, write_torch_legacy])
def test_torch_state_dict_is_read_exactly(tmp_path, writer):
    state = tiny_torch_state()
    path = tmp_path / "weight_formats.pth"
    writer(path, state)
    read = weight_formats.read_torch_state_dict(path)
    assert list(read) == list(state)
    for name, value in state.items():
        np.testing.assert_array_equal(read[name], value, err_msg=name)


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
    with pytest.raises(weight_formats.UnsafePickleError, match=f"{module}.{name}"):
        weight_formats.read_torch_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_crc32c_matches_the_bitwise_definition():
    assert weight_formats.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = np.random.default_rng(2).integers(0, 256, 40_000, dtype=np.uint8).tobytes()
    assert weight_formats.crc32c(data) == reference_crc32c(data)  # many lanes, joined
    head = weight_formats.crc32c(data[:25_000])
    assert weight_formats.crc32c(data[25_000:], head) == reference_crc32c(data)


def test_tf_v1_checkpoint_is_read_exactly(tmp_path):
    tensors = tiny_tf_tensors()
    write_tf_v1(
        tmp_path / "vggish_model.ckpt", tensors, {"vggish/fc2/biases": 3, "vggish/fc2/weights": 5}
    )
    read = weight_formats.read_tf_checkpoint(tmp_path / "vggish_model.ckpt")
    assert sorted(read) == sorted(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(read[name], value, err_msg=name)


def test_tf_v2_corrupted_data_is_caught(tmp_path):
    write_tf_v2(tmp_path / "model.ckpt", tiny_tf_tensors())
    shard = tmp_path / "model.ckpt.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(weight_formats.CheckpointFormatError, match="checksum"):
        weight_formats.read_tf_checkpoint(tmp_path / "model.ckpt")
