"""Tests for the SaShiMi-Diff network."""

import dataclasses
import math
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrestore import edm, networks
from jaxrestore.networks import s4, sashimi

TINY = sashimi.CONFIGS["tiny"]
MODEL = sashimi.SaShiMi(TINY)
# One compilation per input shape, shared by the tests (compiling dominates their run time).
APPLY = jax.jit(MODEL.apply)


def _compile_unoptimised(fn, *args):
    """Compiles `fn` for `args` without LLVM optimisation (half the compile time, same speed)."""
    return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})


@pytest.fixture(scope="module")
def params():
    args = (jax.random.PRNGKey(0), jnp.zeros((1, 64)), jnp.zeros(1))
    return _compile_unoptimised(MODEL.init, *args)(*args)["params"]


def test_named_configs_exist():
    assert {"reference", "cpu", "tiny"} <= set(sashimi.CONFIGS)


def test_reference_has_the_published_parameter_count():
    # SaShiMi-DiffWave "small" (d_model 64, 6 layers per level, N = 64): 7.5 M parameters.
    model = sashimi.SaShiMi(sashimi.CONFIGS["reference"])
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64)), jnp.zeros(1))
    count = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
    assert abs(count - 7.5e6) < 0.1 * 7.5e6


@pytest.mark.parametrize("length", [16, 64])
def test_output_shape_equals_input_shape(params, length):
    x = jax.random.normal(jax.random.PRNGKey(1), (3, length))
    assert APPLY({"params": params}, x, jnp.zeros(3)).shape == (3, length)


@pytest.mark.parametrize("length", [8, 40, 65])
def test_length_not_multiple_of_pooling_raises(params, length):
    with pytest.raises(ValueError, match="multiple of 16"):
        MODEL.apply({"params": params}, jnp.zeros((1, length)), jnp.zeros(1))


def test_bad_shapes_and_configs_raise(params):
    with pytest.raises(ValueError, match="c_noise"):
        MODEL.apply({"params": params}, jnp.zeros((2, 64)), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        MODEL.apply({"params": params}, jnp.zeros(64), jnp.zeros(1))
    with pytest.raises(ValueError, match="d_state"):
        sashimi.SaShiMiConfig(d_state=3)


def test_untrained_denoiser_is_exactly_c_skip_times_x(params):
    sigma_data = 0.2
    denoiser = jax.jit(networks.as_denoiser(MODEL, params, sigma_data))
    x = jax.random.normal(jax.random.PRNGKey(2), (64,))
    for sigma in (0.01, 0.5, 3.0):
        c_skip = edm.preconditioning(sigma, sigma_data)[0]
        np.testing.assert_array_equal(denoiser(x, sigma), c_skip * x)
        np.testing.assert_allclose(c_skip, sigma_data**2 / (sigma**2 + sigma_data**2), rtol=1e-6)


def test_output_depends_on_past_and_future(params):
    # Give the zero-initialised output layer weights, so that the input reaches the output.
    params = dict(params, output=jax.tree.map(lambda leaf: leaf + 1.0, params["output"]))
    x = jax.random.normal(jax.random.PRNGKey(3), (64,))
    batch = jnp.stack([x, x.at[10].add(1.0), x.at[50].add(1.0)])  # [3, 64]
    y = APPLY({"params": params}, batch, jnp.full(3, -0.5, jnp.float32))
    assert abs(y[1, 32] - y[0, 32]) > 1e-4  # a past sample reaches t = 32
    assert abs(y[2, 32] - y[0, 32]) > 1e-4  # and so does a future one: the net is bidirectional


def test_unet_wiring_matches_the_reference_loop(params):
    # albertfgu/diffwave-sashimi `Sashimi.forward`: push x before every down layer (blocks and
    # pools) and before the centre; add a pop after the centre, after each UpPool, and after
    # every up block. Here written layer by layer, against the scanned stages.
    params = dict(params, output=jax.tree.map(lambda leaf: leaf + 1.0, params["output"]))
    x = jax.random.normal(jax.random.PRNGKey(3), (3, 64))
    c_noise = jnp.array([-1.0, 0.0, 0.4])
    expected_output = APPLY({"params": params}, x, c_noise)

    def dense(p, v):
        return v @ p["kernel"] + jnp.expand_dims(p["bias"], tuple(range(v.ndim - 1)))

    block = jax.jit(sashimi.ResidualBlock(TINY).apply)
    embedding = sashimi.fourier_features(c_noise, TINY.embed_dims[0])
    embedding = jax.nn.silu(dense(params["embed_mid"], embedding))
    embedding = jax.nn.silu(dense(params["embed_out"], embedding))
    n = TINY.n_layers

    def run_block(stage, i, h):
        stacked = params[stage]["block"]
        return block({"params": jax.tree.map(lambda leaf: leaf[i], stacked)}, h, embedding)

    h = jax.nn.relu(dense(params["input"], x[..., None]))
    outputs = []
    for level, p in enumerate(TINY.pool):
        for i in range(n):
            outputs.append(h)
            h = run_block(f"down{level}", i, h)
        outputs.append(h)
        B, L, H = h.shape
        h = dense(params[f"down{level}_pool"]["Dense_0"], h.reshape(B, L // p, p * H))
    outputs.append(h)
    for i in range(n):
        h = run_block("centre", i, h)
    h = h + outputs.pop()
    for level in reversed(range(len(TINY.pool))):
        B, L, _ = h.shape
        h = dense(params[f"up{level}_pool"]["Dense_0"], h)
        h = h.reshape(B, L * TINY.pool[level], -1) + outputs.pop()
        for i in range(n):
            h = run_block(f"up{level}", i, h) + outputs.pop()
    assert not outputs
    mean = h.mean(-1, keepdims=True)
    h = (h - mean) / jnp.sqrt(((h - mean) ** 2).mean(-1, keepdims=True) + 1e-6)
    h = h * params["output_norm"]["scale"][None, None] + params["output_norm"]["bias"][None, None]
    h = jax.nn.relu(dense(params["output_hidden"], h))
    np.testing.assert_allclose(dense(params["output"], h)[..., 0], expected_output, atol=1e-4)


def test_film_scales_and_shifts_every_channel_by_the_noise_level():
    film = sashimi.FiLM()
    y = jax.random.normal(jax.random.key(4), (2, 8, 3))  # [B, L, H]
    embedding = jax.random.normal(jax.random.key(5), (2, 5))  # [B, E]
    variables = film.init(jax.random.key(6), y, embedding)
    # Zero-initialised: the identity, whatever the noise level.
    np.testing.assert_array_equal(film.apply(variables, y, embedding), y)
    kernel = jax.random.normal(jax.random.key(7), (5, 6))
    bias = jnp.arange(6.0)
    got = film.apply({"params": {"film": {"kernel": kernel, "bias": bias}}}, y, embedding)
    scale, shift = np.split(np.asarray(embedding) @ np.asarray(kernel) + np.arange(6.0), 2, -1)
    np.testing.assert_allclose(got, y * (1 + scale[:, None]) + shift[:, None], rtol=1e-5)


def test_film_network_starts_at_c_skip_and_learns_a_gain_per_noise_level():
    config = dataclasses.replace(TINY, film=True)
    model = sashimi.SaShiMi(config)
    x = jax.random.normal(jax.random.key(8), (2, 64))
    params = model.init(jax.random.key(9), x, jnp.zeros(2))["params"]
    assert {"film_s4", "film_ff"} <= set(params["down0"]["block"]) and "output_film" in params
    assert "embed" not in params["down0"]["block"]  # FiLM replaces the additive bias
    np.testing.assert_array_equal(model.apply({"params": params}, x, jnp.zeros(2)), 0.0)
    # With the output layer and the output FiLM trained, the noise level scales the output.
    params = dict(params, output=jax.tree.map(lambda leaf: leaf + 1.0, params["output"]))
    film = params["output_film"]["film"]
    params["output_film"] = {"film": dict(film, kernel=film["kernel"] + 0.1)}
    y = model.apply({"params": params}, jnp.stack([x[0], x[0]]), jnp.array([-2.0, 0.5]))
    assert not np.allclose(y[0], y[1], rtol=1e-2)


def test_fourier_features_are_cos_and_sin():
    features = sashimi.fourier_features(jnp.array([0.0, 0.5]), 8)
    np.testing.assert_allclose(features[0], [1, 1, 1, 1, 0, 0, 0, 0], atol=1e-7)
    omega = np.geomspace(0.1, 100.0, 4)
    np.testing.assert_allclose(
        features[1], np.concatenate([np.cos(0.5 * omega), np.sin(0.5 * omega)]), rtol=1e-5
    )


def test_adam_steps_lower_the_edm_loss(params):
    sigma_data = 0.5
    t = jnp.arange(64)
    x0 = sigma_data * jnp.sin(2 * jnp.pi * jnp.stack([t / 16, t / 8]))  # [2, 64]
    sigma = jnp.array([[1.0], [3.0]])  # large σ: the target is mostly x0/σ_d, learnable
    noise = jax.random.normal(jax.random.PRNGKey(5), (2, 64))

    def loss(params):
        # `denoising_loss` broadcasts over the batch with σ of shape [B, 1]; the mean over
        # [B, T] is the mean of the per-clip losses.
        def network(x, c_noise):  # [B, T], [B, 1]
            return MODEL.apply({"params": params}, x, c_noise[:, 0])

        return edm.denoising_loss(network, x0, sigma, noise, sigma_data)

    optimizer = optax.adam(2e-2)

    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    state = optimizer.init(params)
    step = _compile_unoptimised(step, params, state)
    losses = []
    for _ in range(10):  # the loss returned is the one before each update
        params, state, value = step(params, state)
        losses.append(float(value))
    assert losses[-1] < 0.8 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))


def test_prepared_denoiser_equals_the_network_built_per_call(params):
    # The denoiser prepares the S4D chunk operators once (networks.prepare); with
    # trained-looking output weights the network's full path is exercised.
    params = dict(params, output=jax.tree.map(lambda leaf: leaf + 0.1, params["output"]))
    x = jax.random.normal(jax.random.PRNGKey(4), (64,))
    sigma = jnp.float32(0.3)
    prepared = networks.prepare(MODEL, params, 64)
    assert prepared, "SaShiMi has chunk operators to prepare"
    denoiser = jax.jit(networks.as_denoiser(MODEL, params, 0.2))
    c_skip, c_out, c_in, c_noise = edm.preconditioning(sigma, 0.2)
    F = MODEL.apply({"params": params}, (c_in * x)[None], jnp.reshape(c_noise, (1,)))[0]
    np.testing.assert_allclose(denoiser(x, sigma), c_skip * x + c_out * F, rtol=1e-6, atol=1e-7)
    # Traced weights (a training step) cannot be prepared: the network builds its kernels.
    assert jax.jit(lambda p: len(networks.prepare(MODEL, p, 64)))(params) == 0
    # Nor on an accelerator, where the FFT path is the faster (networks.prepare).
    with mock.patch.object(jax, "default_backend", return_value="gpu"):
        assert networks.prepare(MODEL, params, 64) == {}


def _relative_error(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.mark.parametrize("prepared", [False, True])
@pytest.mark.parametrize("preset", ["shipped", "reference", "cpu"])
def test_network_equals_its_earlier_implementation(preset, prepared):
    # tests/data/sashimi_before.npz holds F and an input VJP computed by the implementation
    # before issue #14 (commit 186be61: kernels built in every call), for the shipped weights
    # and for both presets' layer shapes on seeded random weights. Any faster implementation
    # must keep the parameters and the function, to float32 round-off: the network as trained
    # (S4D by FFT) and as prepared for restoring (S4D by chunks) alike.
    from jaxrestore import checkpoints, pretrained

    before = np.load(os.path.join(os.path.dirname(__file__), "data", "sashimi_before.npz"))
    if preset == "shipped":
        model, params, _ = checkpoints.load_msgpack_params(pretrained.WEIGHTS)
    else:
        model = sashimi.SaShiMi(sashimi.CONFIGS[preset])
        init = jax.jit(model.init)
        params = init(jax.random.key(0), jnp.zeros((1, 1024)), jnp.zeros((1,)))["params"]
        kernel = 0.1 * jax.random.normal(jax.random.key(1), params["output"]["kernel"].shape)
        params = dict(params, output={"kernel": kernel, "bias": jnp.full((1,), 0.05)})
        if "output_film" in params:
            film = params["output_film"]["film"]
            film_kernel = 0.01 * jax.random.normal(jax.random.key(2), film["kernel"].shape)
            params["output_film"] = {"film": dict(film, kernel=film_kernel)}
    x, c = jnp.asarray(before[f"{preset}_x"]), jnp.asarray(before[f"{preset}_c"])
    variables = {"params": params}
    if prepared:
        variables.update(networks.prepare(model, params, x.shape[-1]))
        assert variables.keys() == {"params", s4.CACHE}
    F, vjp = jax.vjp(lambda z: model.apply(variables, z, c), x)
    assert _relative_error(F, before[f"{preset}_F"]) <= 1e-5
    cotangent = jnp.cos(jnp.asarray(before[f"{preset}_F"]))  # the one the fixture used
    # The shipped weights' input VJP at this x is ill-conditioned (ReLU kinks): perturbing the
    # weights by a relative 1e-6 moves it by 0.4–0.8 %, and the fixture's own row at σ = e^−4.8
    # differs by 0.8 % from a float64 evaluation of the same implementation on another CPU.
    # The random-weight presets pin the VJP to round-off; the shipped one to 2 %.
    tolerance = 2e-2 if preset == "shipped" else 1e-5
    assert _relative_error(vjp(cotangent)[0], before[f"{preset}_vjp"]) <= tolerance
