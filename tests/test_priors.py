"""Tests for jaxrestore.priors: the Prior object, its level, and the closed-form baselines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrestore import priors
from jaxrestore.data import synthetic

T = 2048


def test_welch_power_of_white_noise_is_its_variance_in_every_bin():
    clips = 0.3 * np.random.default_rng(0).standard_normal((64, 8192))
    power = priors.welch_power(clips, 256)
    assert power.shape == (129,)
    # ~4,000 frames per bin: each interior bin within a few percent of 0.09.
    np.testing.assert_allclose(power[1:-1], 0.09, rtol=0.1)
    assert np.mean(power[1:-1]) == pytest.approx(0.09, rel=0.01)


def test_welch_power_puts_a_sinusoid_at_its_bin_with_its_power():
    t = np.arange(4096)
    clips = np.sqrt(2) * np.cos(2 * np.pi * 32 / 256 * t)[None]  # variance 1, bin 32 of 256
    power = priors.welch_power(clips, 256)
    assert int(np.argmax(power)) == 32
    # Parseval over the full DFT: the mean of the two-sided density is the variance.
    full_mean = (power[0] + power[-1] + 2 * power[1:-1].sum()) / 256
    assert full_mean == pytest.approx(1.0, rel=1e-6)


def test_welch_power_rejects_clips_shorter_than_a_frame():
    with pytest.raises(ValueError, match="frame"):
        priors.welch_power(np.zeros((2, 100)), 256)


def test_wiener_prior_has_the_data_spectrum_and_beats_the_pink_one():
    wiener = priors.wiener_prior(T, sigma_data=0.2)
    # Each fitting clip has RMS σ_d, so the prior's per-sample variance is σ_d² (Parseval).
    # For σ ≫ the spectrum, D(δ; σ)[0] = mean_k S_k/(S_k + σ²) ≈ mean_k S_k / σ² = σ_d²/σ².
    sigma = 1e3
    impulse = jnp.zeros(T).at[0].set(1.0)
    variance = float(wiener.denoiser(impulse, sigma)[0]) * sigma**2
    assert variance == pytest.approx(0.2**2, rel=0.1), variance
    # On held-out clips it denoises better than the pink prior that knows nothing of voices.
    pink = priors.gaussian_prior(T, sigma_data=0.2)
    x0 = np.stack([synthetic.SyntheticVocals().split("test").segment(i, T) for i in range(8)])
    x0 = jnp.asarray(0.2 * x0 / np.sqrt(np.mean(x0**2, axis=-1, keepdims=True)), jnp.float32)
    noisy = x0 + 0.05 * jax.random.normal(jax.random.key(0), x0.shape)
    errors = [
        float(jnp.mean((jax.vmap(p.denoiser, in_axes=(0, None))(noisy, 0.05) - x0) ** 2))
        for p in (wiener, pink)
    ]
    assert errors[0] < 0.8 * errors[1], errors
    assert errors[0] < 0.05**2  # and it does denoise


def test_prior_is_a_denoiser_and_brings_observations_to_its_level_and_back():
    gaussian = priors.pink(T, 0.2**2)
    prior = priors.Prior(gaussian.denoiser, 22050, 0.2)
    x = jax.random.normal(jax.random.key(0), (T,))
    np.testing.assert_array_equal(prior(x, 0.3), gaussian.denoiser(x, 0.3))
    y = 0.05 * np.random.default_rng(1).standard_normal((2, T)).astype(np.float32)
    scaled, gain = prior.normalize(y)
    assert gain == pytest.approx(0.2 / np.sqrt(np.mean(y.astype(np.float64) ** 2)), rel=1e-12)
    assert np.sqrt(np.mean(scaled.astype(np.float64) ** 2)) == pytest.approx(0.2, rel=1e-6)
    np.testing.assert_allclose(prior.denormalize(scaled, gain), y, rtol=1e-6)
    assert priors.level_gain(np.zeros(8), 0.2) == pytest.approx(0.2 / 1e-8)  # silence: no NaN
