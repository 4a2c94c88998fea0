"""Tests for the CQT-Diff U-Net: size, shapes, the zero-initialised output, and training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrestore import edm
from jaxrestore.networks import as_denoiser, cqtdiff
from jaxrestore.networks.cqtdiff import CONFIGS, CQTDiff, CQTDiffConfig

T_TINY = 4096
CQTDIFF_PARAMETERS = 15_458_368  # trainable parameters of CQT-Diff's Unet_CQT


@pytest.fixture(scope="module")
def tiny():
    model = CQTDiff(CONFIGS["tiny"])
    key = jax.random.key(0, impl="rbg")  # compiles twice as fast as threefry on the CPU
    params = jax.jit(model.init)(key, jnp.zeros((1, T_TINY)), jnp.zeros((1,)))
    return model, params["params"]


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_reference_parameter_count_is_cqtdiffs():
    model = CQTDiff(CONFIGS["reference"])
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 65536)), jnp.zeros((1,)))
    assert set(shapes) == {"params"}  # the random Fourier features are constants, not state
    count = _count(shapes["params"])
    assert abs(count - CQTDIFF_PARAMETERS) <= 0.1 * CQTDIFF_PARAMETERS
    assert count == CQTDIFF_PARAMETERS + 2 * 32  # the last output combiner is not shared


@pytest.mark.parametrize("name, batch, length", [("reference", 1, 65536), ("tiny", 2, T_TINY)])
def test_output_shape(name, batch, length):
    model = CQTDiff(CONFIGS[name])
    x, c_noise = jnp.zeros((batch, length)), jnp.zeros((batch,))
    params = jax.eval_shape(model.init, jax.random.key(0), x, c_noise)
    y = jax.eval_shape(model.apply, params, x, c_noise)
    assert y.shape == (batch, length) and y.dtype == jnp.float32


def test_untrained_denoiser_returns_c_skip_x(tiny):
    model, params = tiny
    sigma_data = 0.057
    denoiser = jax.jit(as_denoiser(model, params, sigma_data))
    x = np.random.default_rng(0).standard_normal(T_TINY).astype(np.float32)
    for sigma in (0.01, 0.5):
        c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
        np.testing.assert_allclose(denoiser(x, sigma), c_skip * x, rtol=1e-6, atol=0)


def test_adam_steps_lower_the_edm_loss(tiny):
    model, params = tiny
    sigma_data = 0.1
    t = np.arange(T_TINY) / 22050
    x0 = np.stack(
        [
            0.1 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 1320 * t),
            0.1 * np.sin(2 * np.pi * 2000 * t + 1.0),
        ]
    ).astype(np.float32)
    sigma = np.array([0.05, 0.3], np.float32)
    noise = np.random.default_rng(2).standard_normal(x0.shape).astype(np.float32)

    def loss_fn(params):
        def network(x, c_noise):  # [T], scalar -> [T]
            return model.apply({"params": params}, x[None], c_noise[None])[0]

        losses = jax.vmap(lambda *a: edm.denoising_loss(network, *a, sigma_data))(x0, sigma, noise)
        return jnp.mean(losses)

    optimizer = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    losses = []
    for _ in range(8):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    # The untrained output is 0, so the first loss is the mean square of the EDM target.
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / np.sqrt(sigma**2 + sigma_data**2)
    target = (x0 - c_skip[:, None] * (x0 + sigma[:, None] * noise)) / c_out[:, None]
    np.testing.assert_allclose(losses[0], np.mean(target**2), rtol=1e-5)
    assert losses[-1] < 0.95 * losses[0], losses


def test_dilated_conv_matches_direct_convolution():
    rng = np.random.default_rng(3)
    h = rng.standard_normal((2, 19, 8, 3)).astype(np.float32)  # [B, F, M, C]
    kernel = rng.standard_normal((5, 3, 3, 4)).astype(np.float32)
    for dilation in (1, 2, 4, 9):  # 9: the widest reach, 2·9 = F − 1
        expected = np.zeros((2, 19, 8, 4))
        for a in range(5):
            rows = np.arange(19) + (a - 2) * dilation
            rows = np.where(rows < 0, -rows, np.where(rows > 18, 36 - rows, rows))  # reflect
            for b in range(3):
                frames = (np.arange(8) + b - 1) % 8  # circular in time
                expected += np.einsum("bfmc,co->bfmo", h[:, rows][:, :, frames], kernel[a, b])
        got = cqtdiff._dilated_conv(jnp.asarray(h), jnp.asarray(kernel), dilation)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_dilated_conv_gradients_match_lax_conv():
    # The hand-written adjoint of the reflected shift-sum against autodiff of lax.conv.
    rng = np.random.default_rng(5)
    h = jnp.asarray(rng.standard_normal((1, 19, 8, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((5, 3, 3, 4)), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal((1, 19, 8, 4)), jnp.float32)
    for dilation in (1, 4, 9):

        def direct(h, kernel, dilation=dilation):
            p = 2 * dilation
            padded = jnp.pad(h, ((0, 0), (p, p), (0, 0), (0, 0)), mode="reflect")
            padded = jnp.pad(padded, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="wrap")
            return jax.lax.conv_general_dilated(
                padded,
                kernel,
                (1, 1),
                "VALID",
                rhs_dilation=(dilation, 1),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )

        ours = jax.vjp(functools.partial(cqtdiff._dilated_conv, dilation=dilation), h, kernel)[1]
        truth = jax.vjp(direct, h, kernel)[1]
        for got, expected in zip(ours(cotangent), truth(cotangent), strict=True):
            np.testing.assert_allclose(got, expected, atol=1e-4)


def test_half_band_resampling():
    down, up = jax.jit(cqtdiff._downsample_time), jax.jit(cqtdiff._upsample_time)
    frames = np.arange(64)
    slow = np.cos(2 * np.pi * 3 * frames / 64 + 0.4)[None, None, :, None]  # [1, 1, 64, 1]
    np.testing.assert_allclose(down(slow), slow[:, :, ::2], atol=2e-3)
    np.testing.assert_allclose(up(slow[:, :, ::2]), slow, atol=3e-3)
    # Unit gain at DC; the Nyquist frequency (−1)^n is removed.
    ones = np.ones((1, 1, 64, 1))
    np.testing.assert_allclose(down(ones), ones[:, :, ::2], atol=1e-6)
    np.testing.assert_allclose(up(ones[:, :, ::2]), ones, atol=1e-6)
    np.testing.assert_allclose(down((-1.0) ** frames[None, None, :, None]), 0, atol=1e-6)
    # Their gradients are each other: <down(x), y> = <x, ∇_x>, <up(y), x> = <y, ∇_y>.
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2, 3, 16, 4)), rng.standard_normal((2, 3, 8, 4))
    grad_x = jax.grad(lambda v: jnp.sum(cqtdiff._downsample_time(v) * y))(x)
    grad_y = jax.grad(lambda v: jnp.sum(cqtdiff._upsample_time(v) * x))(y)
    np.testing.assert_allclose(np.sum(down(x) * y), np.sum(x * grad_x), rtol=1e-5)
    np.testing.assert_allclose(np.sum(up(y) * x), np.sum(y * grad_y), rtol=1e-5)


def test_bad_inputs_raise(tiny):
    model, params = tiny
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        model.apply({"params": params}, jnp.zeros((T_TINY,)), jnp.zeros((1,)))
    too_deep = CQTDiff(CQTDiffConfig(num_octaves=3, bins_per_octave=8, channels=(8,)))
    with pytest.raises(ValueError, match="layers per block"):
        too_deep.init(jax.random.key(0), jnp.zeros((1, T_TINY)), jnp.zeros((1,)))
    with pytest.raises(ValueError, match="kernel_size"):
        CQTDiffConfig(kernel_size=(4, 3))
