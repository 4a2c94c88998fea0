"""Tests for jaxrestore.vggish: front end, network, post-processing and weight importers.

The weight files are written byte by byte by `weight_files` (neither TensorFlow nor PyTorch is
installed); the imported Flax model is checked against a direct NumPy forward pass in each
framework's own layout.
"""

import math

import jax
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from weight_files import (
    TINY,
    TORCH_FEATURES,
    tiny_tf_tensors,
    tiny_torch_state,
    write_tf_v2,
    write_torch_zip,
)

from jaxrestore import vggish, weight_formats


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


def test_tf_v2_import_reproduces_vggish_slim(tmp_path):
    tensors = tiny_tf_tensors(seed=1)
    write_tf_v2(tmp_path / "model.ckpt", {**tensors, "global_step": np.array(1234, np.int64)})
    read = weight_formats.read_tf_checkpoint(tmp_path / "model.ckpt.index")
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
    with pytest.raises(weight_formats.CheckpointFormatError, match="fc1_1"):
        vggish.params_from_tf(tensors)
