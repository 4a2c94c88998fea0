"""Tests for the EDM schedule, preconditioning, training σ and loss against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrestore import edm, priors

SIGMA_DATA = 0.057


def schedule_numpy(steps, sigma_min, sigma_max, rho):
    i = np.arange(steps)
    inv = 1 / rho
    return (sigma_max**inv + i / (steps - 1) * (sigma_min**inv - sigma_max**inv)) ** rho


# --- Sampling schedule -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "sigma_min", "sigma_max", "rho"), [(35, 1e-4, 1.0, 13.0), (8, 0.002, 80.0, 7.0)]
)
def test_sigma_schedule_endpoints_and_monotone(steps, sigma_min, sigma_max, rho):
    sigma = np.asarray(edm.sigma_schedule(steps, sigma_min, sigma_max, rho), np.float64)
    assert sigma.shape == (steps + 1,)
    assert sigma[0] == pytest.approx(sigma_max, rel=1e-5)
    assert sigma[steps - 1] == pytest.approx(sigma_min, rel=1e-4)
    assert sigma[steps] == 0.0
    assert np.all(np.diff(sigma) < 0)
    np.testing.assert_allclose(
        sigma[:-1], schedule_numpy(steps, sigma_min, sigma_max, rho), rtol=1e-4
    )


def test_sigma_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        edm.sigma_schedule(0)
    with pytest.raises(ValueError, match="sigma_min"):
        edm.sigma_schedule(10, sigma_min=2.0, sigma_max=1.0)


# --- Preconditioning -------------------------------------------------------------------------


def test_preconditioning_coefficients_match_the_formulas():
    sigma = np.array([1e-4, 0.05, 1.0, 10.0])
    c_skip, c_out, c_in, c_noise = (np.asarray(c) for c in edm.preconditioning(sigma, SIGMA_DATA))
    total = sigma**2 + SIGMA_DATA**2
    np.testing.assert_allclose(c_skip, SIGMA_DATA**2 / total, rtol=1e-5)
    np.testing.assert_allclose(c_out, sigma * SIGMA_DATA / np.sqrt(total), rtol=1e-5)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(total), rtol=1e-5)
    np.testing.assert_allclose(c_noise, np.log(sigma) / 4, rtol=1e-5)


def gaussian_prior_network(prior_variance: float):
    """Returns the raw F whose preconditioned D is the exact denoiser of N(0, s²·I).

    D(x; σ) = s²/(σ² + s²)·x; solving D = c_skip·x + c_out·F(c_in·x, c_noise) for F, with σ
    recovered from c_noise = ¼·ln σ and x from c_in·x. Any slip in c_skip, c_out, c_in or
    c_noise inside `precondition` breaks the identity.
    """

    def network(u, c_noise):
        sigma = jnp.exp(4 * c_noise)
        total = sigma**2 + SIGMA_DATA**2
        x = u * jnp.sqrt(total)
        gain = prior_variance / (sigma**2 + prior_variance) - SIGMA_DATA**2 / total
        return gain * x / (sigma * SIGMA_DATA / jnp.sqrt(total))

    return network


@pytest.mark.parametrize("prior_std", [SIGMA_DATA, 0.2])
@pytest.mark.parametrize("sigma", [1e-3, 0.05, 2.0])
def test_precondition_recovers_the_gaussian_denoiser(prior_std, sigma):
    x = np.random.default_rng(0).standard_normal(256).astype(np.float32) * 0.3
    denoiser = edm.precondition(gaussian_prior_network(prior_std**2), SIGMA_DATA)
    expected = prior_std**2 / (sigma**2 + prior_std**2) * x
    np.testing.assert_allclose(np.asarray(denoiser(x, sigma)), expected, rtol=1e-4, atol=1e-7)


def test_zero_network_is_the_denoiser_of_the_data_scale_prior():
    # For a white prior of variance σ_d², the exact D is c_skip·x, i.e. F ≡ 0.
    x = np.linspace(-1, 1, 64, dtype=np.float32)
    denoiser = edm.precondition(lambda u, c_noise: jnp.zeros_like(u), SIGMA_DATA)
    sigma = 0.3
    np.testing.assert_allclose(
        np.asarray(denoiser(x, sigma)), SIGMA_DATA**2 / (sigma**2 + SIGMA_DATA**2) * x, rtol=1e-6
    )


# --- Loss ------------------------------------------------------------------------------------


def test_denoising_loss_matches_the_numpy_formula():
    rng = np.random.default_rng(1)
    x0, noise = rng.standard_normal((2, 512)).astype(np.float32)
    x0 *= SIGMA_DATA
    sigma = 0.37

    def network(u, c_noise):
        return jnp.tanh(3 * u) * (1 + c_noise)

    total = sigma**2 + SIGMA_DATA**2
    c_skip, c_out, c_in = (
        SIGMA_DATA**2 / total,
        sigma * SIGMA_DATA / np.sqrt(total),
        1 / np.sqrt(total),
    )
    x_sigma = x0.astype(np.float64) + sigma * noise
    prediction = np.tanh(3 * c_in * x_sigma) * (1 + np.log(sigma) / 4)
    expected = np.mean((prediction - (x0 - c_skip * x_sigma) / c_out) ** 2)
    loss = jax.jit(edm.denoising_loss, static_argnums=(0, 4))(network, x0, sigma, noise, SIGMA_DATA)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("prior_std", [SIGMA_DATA, 0.2])
@pytest.mark.parametrize("sigma", [0.01, 0.3])
def test_loss_of_the_exact_network_is_the_posterior_variance(prior_std, sigma):
    # For x0 ~ N(0, s²) the exact denoiser's error has variance r² = σ²s²/(σ² + s²) per sample,
    # so E[loss] = r²/c_out²: exactly 1 when s = σ_d (the target has unit variance).
    num_samples = 32768
    key_x, key_n = jax.random.split(jax.random.key(2))
    x0 = prior_std * jax.random.normal(key_x, (num_samples,))
    noise = jax.random.normal(key_n, (num_samples,))
    loss = edm.denoising_loss(gaussian_prior_network(prior_std**2), x0, sigma, noise, SIGMA_DATA)
    r2 = sigma**2 * prior_std**2 / (sigma**2 + prior_std**2)
    c_out2 = sigma**2 * SIGMA_DATA**2 / (sigma**2 + SIGMA_DATA**2)
    # The mean of 32768 scaled χ²₁ values: relative standard error √(2/32768) ≈ 0.8 %.
    assert float(loss) == pytest.approx(r2 / c_out2, rel=0.04)


# --- The Wiener skip ------------------------------------------------------------------------


def _toy_network(u, c_noise):
    return 0.7 * jnp.tanh(1.3 * u + c_noise)


@pytest.mark.parametrize("sigma", [1e-4, 0.01, 0.5, 5.0])
def test_wiener_skip_of_a_white_spectrum_is_edm(sigma):
    flat = jnp.full(257, SIGMA_DATA**2)  # white data of variance σ_d², on a 512-sample frame
    keys = jax.random.split(jax.random.key(5))
    x0 = SIGMA_DATA * jax.random.normal(keys[0], (2048,))
    noise = jax.random.normal(keys[1], (2048,))
    x = x0 + sigma * noise
    wiener = edm.precondition_wiener(_toy_network, SIGMA_DATA, flat)(x, sigma)
    plain = edm.precondition(_toy_network, SIGMA_DATA)(x, sigma)
    np.testing.assert_allclose(wiener, plain, atol=1e-6 * SIGMA_DATA)
    loss = edm.wiener_denoising_loss(_toy_network, x0, sigma, noise, SIGMA_DATA, flat)
    expected = edm.denoising_loss(_toy_network, x0, sigma, noise, SIGMA_DATA)
    assert float(loss) == pytest.approx(float(expected), rel=1e-4)


def _pink_on_a_frame(num_samples: int, frame: int):
    """A pink prior on clips, and its spectrum sampled at a frame's bins and back."""
    prior = priors.pink(num_samples, SIGMA_DATA**2, corner=0.005, slope=2.0)
    spectrum = jnp.interp(jnp.fft.rfftfreq(frame), jnp.fft.rfftfreq(num_samples), prior.power)
    on_clip = jnp.interp(jnp.fft.rfftfreq(num_samples), jnp.fft.rfftfreq(frame), spectrum)
    return priors.StationaryGaussian(on_clip), spectrum


def test_untrained_wiener_skip_denoiser_is_the_wiener_filter_of_its_spectrum():
    # F ≡ 0 leaves c_skip∗x: the exact denoiser of the stationary Gaussian with that spectrum,
    # applied as a linear (not circular) convolution, so compare away from the clip's ends.
    T, frame, sigma = 4096, 512, 0.1
    prior, spectrum = _pink_on_a_frame(T, frame)
    x = prior.sample(jax.random.key(6), 1)[0] + sigma * jax.random.normal(jax.random.key(7), (T,))
    zero = edm.precondition_wiener(lambda u, c: jnp.zeros_like(u), SIGMA_DATA, spectrum)
    exact = prior.denoiser(x, sigma)
    error = jnp.abs(zero(x, sigma) - exact)[frame : T - frame]
    assert float(jnp.max(error)) < 1e-3 * float(jnp.std(exact))


def test_wiener_skip_loss_of_the_exact_network_is_one_at_every_sigma():
    # For data from the spectrum's Gaussian, F = 0 is the exact posterior mean and c_out² is
    # its error variance (the mean over the DFT of Sσ²/(S + σ²)), so E[loss] = 1, as in EDM.
    T, frame = 32768, 512
    prior, spectrum = _pink_on_a_frame(T, frame)
    x0 = prior.sample(jax.random.key(8), 1)[0]
    noise = jax.random.normal(jax.random.key(9), (T,))
    zero = lambda u, c: jnp.zeros_like(u)  # noqa: E731
    S = np.asarray(prior.power, np.float64)
    counts = np.r_[1.0, np.full(S.size - 2, 2.0), 1.0]  # rfft bins in the full DFT
    for sigma in (1e-3, 0.05, 1.0):
        posterior_variance = np.sum(counts * S * sigma**2 / (S + sigma**2)) / T
        c_out = float(edm.wiener_c_out(sigma, spectrum))
        assert c_out**2 == pytest.approx(posterior_variance, rel=0.02), sigma
        # Less than EDM's c_out: the Wiener filter leaves less error than c_skip·x.
        assert c_out < float(edm.preconditioning(sigma, SIGMA_DATA)[1])
        loss = edm.wiener_denoising_loss(zero, x0, sigma, noise, SIGMA_DATA, spectrum)
        # A mean of T weighted χ² terms: a few percent is several standard errors.
        assert float(loss) == pytest.approx(1.0, rel=0.06), sigma


# --- Training σ ------------------------------------------------------------------------------


def test_cqtdiff_training_sigma_range_and_quantiles():
    sigma_min, sigma_max, rho = 1e-6, 10.0, 10.0
    sigma = np.asarray(
        edm.sample_training_sigma_cqtdiff(jax.random.key(3), (20000,), sigma_min, sigma_max, rho),
        np.float64,
    )
    assert sigma.min() >= sigma_min * (1 - 1e-5) and sigma.max() <= sigma_max * (1 + 1e-5)

    def quantile(u):  # σ(u) is decreasing in u, so the q-quantile of σ is σ(1 − q).
        inv = 1 / rho
        return (sigma_max**inv + (1 - u) * (sigma_min**inv - sigma_max**inv)) ** rho

    for q in (0.1, 0.5, 0.9):  # 20000 draws: the empirical quantile's u is within ±0.012.
        assert quantile(q - 0.012) <= np.quantile(sigma, q) <= quantile(q + 0.012)
    assert np.median(sigma) == pytest.approx(quantile(0.5), rel=0.15)


def test_lognormal_training_sigma_moments():
    sigma = edm.sample_training_sigma_lognormal(jax.random.key(4), (20000,), -1.2, 1.2)
    log_sigma = np.log(np.asarray(sigma, np.float64))
    # Standard errors: 1.2/√20000 ≈ 0.0085 for the mean, ≈ 0.006 for the std.
    assert log_sigma.mean() == pytest.approx(-1.2, abs=0.035)
    assert log_sigma.std() == pytest.approx(1.2, abs=0.03)
