"""Tests for the closed-form priors' helpers."""

import numpy as np
import pytest

from jaxrestore import priors


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
