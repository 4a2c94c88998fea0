"""The posterior sampler against exact Gaussian posteriors and closed-form updates."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrestore import degradations, guidance, priors, sample, spade

T = 1024


def _octave_bands(num_samples):
    # rfft bins [2^k, 2^(k+1)), k ≥ 1: every band has at least two bins.
    top = num_samples // 2
    return [(lo, min(2 * lo, top)) for lo in 2 ** np.arange(1, int(np.log2(top)))]


def _band_power(x, lo, hi):
    spec = jnp.abs(jnp.fft.rfft(x)) ** 2 / x.shape[-1]
    return float(jnp.mean(spec[..., lo:hi]))


def _run_batch(denoiser, config, y, operator, keys, operator_in_axes=None):
    restorer = sample.Restorer(denoiser, config, operator_in_axes=operator_in_axes)
    return restorer(y, operator, keys)


def _keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


UNCONDITIONAL = sample.SamplerConfig(guidance=(), s_churn=0.0, sigma_max=10.0, steps=35)


def test_schedule_and_nfe():
    assert sample.nfe(sample.SamplerConfig()) == 69  # CQT-Diff: 35 steps with Heun.
    assert sample.nfe(sample.SamplerConfig(heun=False)) == 35
    # Middle third of T = 36: t ∈ [12, 24] is 13 steps, each with u = 2 extra passes of 2 NFE.
    config = sample.SamplerConfig(steps=36, repaint_cycles=2, repaint_window=(1, 2))
    sched = sample.schedule(config)
    t = 36 - np.arange(36)
    assert set(t[sched.cycles > 0]) == set(range(12, 25))
    assert sample.nfe(config) == 71 + 13 * 2 * 2
    # Warm start: fewer steps, and σ_start = σ_max is the cold start.
    warm = sample.SamplerConfig(sigma_start=0.1)
    assert sample.schedule(warm).sigmas[sample.schedule(warm).start] <= 0.1
    assert sample.nfe(warm) < sample.nfe(sample.SamplerConfig())
    assert sample.schedule(sample.SamplerConfig(sigma_start=1.0)).start == 0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="guidance"):
        sample.SamplerConfig(guidance="dps")
    with pytest.raises(ValueError, match="init"):
        sample.SamplerConfig(init="aspade")
    with pytest.raises(ValueError, match="steps"):
        sample.SamplerConfig(steps=0)
    # Frozen, so dataclasses.replace is the way to vary it; and hashable, for jit.
    hash(dataclasses.replace(sample.PRESETS["rg"], steps=4))
    with pytest.raises(TypeError):  # the table rows cannot be changed under other users
        sample.PRESETS["rg"] = sample.SamplerConfig()


def test_unconditional_sampling_reproduces_the_prior_spectrum():
    prior = priors.pink(T, variance=0.01)
    n = 1024
    y = jnp.zeros((n, T))
    x = _run_batch(prior.denoiser, UNCONDITIONAL, y, priors.ideal_lowpass(T, 0.5), _keys(n))
    power = np.asarray(prior.power)
    for lo, hi in _octave_bands(T):
        ratio = _band_power(x, lo, hi) / power[lo:hi].mean()
        assert abs(ratio - 1) < 0.1, (lo, hi, ratio)


def test_repaint_cycles_keep_the_unconditional_spectrum():
    prior = priors.pink(T, variance=0.01)
    config = dataclasses.replace(UNCONDITIONAL, repaint_cycles=3, repaint_window=(0.5, 2.5))
    n = 1024
    x = _run_batch(
        prior.denoiser, config, jnp.zeros((n, T)), priors.ideal_lowpass(T, 0.5), _keys(n)
    )
    power = np.asarray(prior.power)
    for lo, hi in _octave_bands(T):
        ratio = _band_power(x, lo, hi) / power[lo:hi].mean()
        assert abs(ratio - 1) < 0.1, (lo, hi, ratio)


def test_pigdm_bandwidth_extension_matches_the_exact_posterior():
    # White prior + ideal low-pass: ΠGDM's Gaussian approximation is exact. The posterior is
    # y on the kept bins and the prior on the others, so the MMSE is the prior's power there.
    variance = 0.01
    prior = priors.white(T, variance)
    op = priors.ideal_lowpass(T, 0.25)
    config = dataclasses.replace(sample.PRESETS["pigdm+dc"], sigma_data=variance**0.5)
    clips, draws = 8, 16
    x0 = prior.sample(jax.random.key(1), clips)
    y = jax.vmap(op.apply)(x0)
    ys = jnp.repeat(y, draws, axis=0)
    x = _run_batch(prior.denoiser, config, ys, op, _keys(clips * draws)).reshape(clips, draws, T)

    low = jax.vmap(jax.vmap(op.apply))(x)
    assert float(jnp.max(jnp.abs(low - y[:, None]))) < 1e-4 * float(jnp.max(jnp.abs(y)))
    high = x - low
    keep = np.asarray(op.keep)
    high_bins = np.flatnonzero(keep == 0)
    high_power = _band_power(high.reshape(-1, T), high_bins[0], high_bins[-1] + 1)
    assert abs(high_power / variance - 1) < 0.1

    mmse = variance * (T - np.sum(keep[1:-1]) * 2 - keep[0] - keep[-1]) / T
    mse_mean = float(jnp.mean((x.mean(axis=1) - x0) ** 2))
    # With 16 draws the mean's excess over the MMSE is about 1/16 of it.
    assert mmse * 0.95 < mse_mean < mmse * 1.1, (mse_mean, mmse)


def test_declipping_beats_the_clipped_input():
    prior = priors.pink(T, variance=0.01)
    clips, draws = 8, 8
    x0 = prior.sample(jax.random.key(2), clips)
    c = jax.vmap(degradations.clip_threshold_for_sdr, in_axes=(0, None))(x0, 5.0)
    y = jax.vmap(lambda x, c: degradations.Clip(c).apply(x))(x0, c)
    ys, cs = jnp.repeat(y, draws, axis=0), jnp.repeat(c, draws)
    config = dataclasses.replace(sample.PRESETS["rg_drho+dc+rp"], sigma_data=0.1, steps=20)
    x = _run_batch(prior.denoiser, config, ys, degradations.Clip(cs), _keys(clips * draws), 0)
    x = x.reshape(clips, draws, T)

    mse_clipped = float(jnp.mean((y - x0) ** 2))
    mse_sample = float(jnp.mean((x - x0[:, None]) ** 2))
    mse_mean = float(jnp.mean((x.mean(axis=1) - x0) ** 2))
    dc_only = dataclasses.replace(config, guidance=(guidance.DataConsistency(),), repaint_cycles=0)
    x_dc = _run_batch(prior.denoiser, dc_only, ys, degradations.Clip(cs), _keys(clips * draws), 0)
    mse_dc = float(jnp.mean((x_dc.reshape(clips, draws, T) - x0[:, None]) ** 2))
    print(
        f"declip 5 dB, MSE gain over clipped: sample {10 * np.log10(mse_clipped / mse_sample):.2f}"
        f" dB, mean {10 * np.log10(mse_clipped / mse_mean):.2f} dB,"
        f" DC alone {10 * np.log10(mse_clipped / mse_dc):.2f} dB"
    )
    assert mse_sample < mse_clipped
    assert mse_mean < mse_sample
    # Consistency is exact: reliable samples equal y, clipped ones lie beyond ±c.
    xs = x.reshape(clips * draws, T)
    reliable = jnp.abs(ys) < cs[:, None] * (1 - degradations.Clip(cs).rtol)
    assert bool(jnp.all(jnp.where(reliable, xs == ys, True)))
    beyond = jnp.where(ys > 0, xs >= cs[:, None], xs <= -cs[:, None])
    assert bool(jnp.all(jnp.where(reliable, True, beyond)))


def test_bandwidth_extension_rg_dc_against_the_mmse():
    prior = priors.pink(T, variance=0.01)
    op = priors.ideal_lowpass(T, 0.1)
    clips, draws = 8, 8
    x0 = prior.sample(jax.random.key(3), clips)
    y = jax.vmap(op.apply)(x0)
    config = dataclasses.replace(sample.PRESETS["rg+dc"], sigma_data=0.1, steps=20)
    x = _run_batch(prior.denoiser, config, jnp.repeat(y, draws, 0), op, _keys(clips * draws))
    x = x.reshape(clips, draws, T)
    power = np.asarray(prior.power)
    keep = np.asarray(op.keep)
    weights = np.full_like(power, 2.0)
    weights[[0, -1]] = 1.0
    mmse = float(np.sum(weights * power * (1 - keep)) / T)
    mse_mean = float(jnp.mean((x.mean(axis=1) - x0) ** 2))
    print(f"BWE rg+dc: posterior-mean MSE / MMSE = {mse_mean / mmse:.3f}")
    assert mse_mean > 0.9 * mmse  # nothing beats the posterior mean ...
    assert mse_mean < 1.5 * mmse  # ... and the mean of 8 samples comes close to it.


def test_rg_alone_reduces_the_measurement_residual():
    prior = priors.pink(T, variance=0.01)
    x0 = prior.sample(jax.random.key(4), 4)
    op = degradations.lowpass(3000.0, 22050.0)
    y = jax.vmap(op.apply)(x0)
    keys = _keys(4, seed=5)
    base = dataclasses.replace(sample.PRESETS["rg"], sigma_data=0.1, steps=20)
    guided = _run_batch(prior.denoiser, base, y, op, keys)
    free = _run_batch(prior.denoiser, dataclasses.replace(base, guidance=()), y, op, keys)

    def residual(x):
        return float(jnp.linalg.norm(jax.vmap(op.apply)(x) - y) / jnp.linalg.norm(y))

    assert residual(guided) < 0.5 * residual(free), (residual(guided), residual(free))


def test_dc_lowpass_restore_is_consistent():
    prior = priors.pink(T, variance=0.01)
    x0 = prior.sample(jax.random.key(6), 2)
    op = degradations.lowpass(5000.0, 22050.0)
    y = jax.vmap(op.apply)(x0)
    config = dataclasses.replace(sample.PRESETS["rg+dc"], sigma_data=0.1, steps=8)
    x = _run_batch(prior.denoiser, config, y, op, _keys(2))
    rel = jnp.linalg.norm(jax.vmap(op.apply)(x) - y, axis=-1) / jnp.linalg.norm(y, axis=-1)
    assert float(jnp.max(rel)) < 1e-3


def test_batch_invariance_and_stepwise_equals_single_program():
    prior = priors.pink(256, variance=0.01)
    x0 = prior.sample(jax.random.key(7), 4)
    c = jnp.array([0.05, 0.08, 0.1, 0.12])
    y = jax.vmap(lambda x, c: degradations.Clip(c).apply(x))(x0, c)
    keys = _keys(4, seed=8)
    config = dataclasses.replace(
        sample.PRESETS["rg_drho+dc+rp"], sigma_data=0.1, steps=6, repaint_window=(0, 3)
    )
    single = jax.jit(functools.partial(sample.restore, prior.denoiser, config=config))
    one_by_one = jnp.stack([single(y[b], degradations.Clip(c[b]), keys[b]) for b in range(4)])
    batched = jax.jit(jax.vmap(functools.partial(sample.restore, prior.denoiser, config=config)))
    # Equal up to float32 reassociation between the programs (a few ulps, grown by guidance).
    tol = dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched(y, degradations.Clip(c), keys), one_by_one, **tol)
    stepwise = sample.Restorer(prior.denoiser, config, stepwise=True)(y, degradations.Clip(c), keys)
    np.testing.assert_allclose(stepwise, one_by_one, **tol)
    # A clip's result does not depend on its batch: the first two alone give the same.
    pair = sample.Restorer(prior.denoiser, config)(y[:2], degradations.Clip(c[:2]), keys[:2])
    np.testing.assert_allclose(pair, one_by_one[:2], **tol)


def test_warm_start_at_sigma_max_equals_cold_start_and_observation_start_runs():
    prior = priors.pink(256, variance=0.01)
    x0 = prior.sample(jax.random.key(9), 2)
    op = degradations.Clip(jnp.array([0.05, 0.08]))
    y = jax.vmap(lambda x, c: degradations.Clip(c).apply(x))(x0, op.threshold)
    keys = _keys(2)
    cold = dataclasses.replace(sample.PRESETS["rg+dc"], sigma_data=0.1, steps=6)
    warm = dataclasses.replace(cold, init=sample.ColdStart(), sigma_start=cold.sigma_max)
    np.testing.assert_array_equal(
        sample.Restorer(prior.denoiser, cold)(y, op, keys),
        sample.Restorer(prior.denoiser, warm)(y, op, keys),
    )
    late = dataclasses.replace(cold, init=sample.FromObservation(), sigma_start=0.01)
    assert sample.nfe(late) < sample.nfe(cold)
    out = sample.Restorer(prior.denoiser, late)(y, op, keys)
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("name", sorted(sample.PRESETS))
def test_every_preset_runs_on_both_tasks(name):
    prior = priors.pink(256, variance=0.01)
    x0 = prior.sample(jax.random.key(10), 1)[0]
    config = dataclasses.replace(sample.PRESETS[name], sigma_data=0.1, steps=4)
    run = jax.jit(functools.partial(sample.restore, prior.denoiser, config=config))
    clip = degradations.Clip(degradations.clip_threshold_for_sdr(x0, 5.0))
    bwe = degradations.lowpass(3000.0, 22050.0)
    declip_only = isinstance(config.init, spade.ASpadeStart)  # A-SPADE needs a Clip
    for op in (clip, bwe):
        if declip_only and op is bwe:
            with pytest.raises(ValueError, match="Clip"):
                run(op.apply(x0), op, jax.random.key(11))
            continue
        out = run(op.apply(x0), op, jax.random.key(11))
        assert out.shape == x0.shape and bool(jnp.all(jnp.isfinite(out)))


def _clipped_pink_pair(seed):
    """Two pink Gaussian clips of 2,048 samples, each clipped to 5 dB input SDR."""
    prior = priors.pink(2048, variance=0.01)
    x0 = prior.sample(jax.random.key(seed), 2)
    c = jax.vmap(degradations.clip_threshold_for_sdr, in_axes=(0, None))(x0, 5.0)
    y = jax.vmap(lambda x, c: degradations.Clip(c).apply(x))(x0, c)
    return prior, c, degradations.Clip(c), y


def test_aspade_warm_start_starts_near_the_spade_restoration():
    prior, c, op, y = _clipped_pink_pair(12)
    config = dataclasses.replace(
        sample.PRESETS["rg+dc"], sigma_data=0.1, steps=8, init=spade.ASpadeStart(), sigma_start=1e-3
    )
    assert sample.nfe(config) < sample.nfe(dataclasses.replace(config, sigma_start=None))
    start = jax.vmap(functools.partial(sample.initial_state, config))(y, op, _keys(2))
    spade_x = jax.vmap(spade.aspade)(y, c)
    level = sample.schedule(config).sigmas[sample.schedule(config).start]
    # x_init + σ_start·ε: the start differs from A-SPADE's output by noise of that level only.
    assert abs(float(jnp.std(start - spade_x)) / level - 1) < 0.2
    out = sample.Restorer(prior.denoiser, config)(y, op, _keys(2))
    assert bool(jnp.all(jnp.isfinite(out)))
    with pytest.raises(ValueError, match="Clip"):
        sample.initial_state(config, y[0], priors.ideal_lowpass(2048, 0.2), _keys(1)[0])


def test_aspade_dc_is_clipping_consistent_and_never_differentiates_the_denoiser():
    prior, c, op, y = _clipped_pink_pair(16)

    # DC alone needs a forward pass per evaluation only: a denoiser without a VJP must do.
    @jax.custom_vjp
    def forward_only(x, sigma):
        return prior.denoiser(x, sigma)

    def refuse(*_):
        raise AssertionError("the sampler differentiated the denoiser")

    forward_only.defvjp(lambda x, sigma: (forward_only(x, sigma), None), refuse)
    config = dataclasses.replace(sample.PRESETS["aspade_dc"], sigma_data=0.1)
    assert sample.nfe(config) == 5  # the levels of 6 steps at or below σ_start = 0.01
    out = sample.Restorer(forward_only, config)(y, op, _keys(2))
    # The last DC projection leaves the restoration in the clipping-consistent set: reliable
    # samples equal y exactly, clipped ones lie beyond ±c on their side.
    reliable = jnp.abs(y) < c[:, None] * (1 - op.rtol)
    np.testing.assert_array_equal(jnp.where(reliable, out, 0.0), jnp.where(reliable, y, 0.0))
    assert bool(jnp.all(jnp.where(y >= c[:, None] * (1 - op.rtol), out >= c[:, None], True)))
    assert bool(jnp.all(jnp.where(y <= -c[:, None] * (1 - op.rtol), out <= -c[:, None], True)))
    # The prior moved A-SPADE's answer (within that set).
    spade_x = jax.vmap(spade.aspade)(y, c)
    assert not np.array_equal(out, spade_x)


def test_a_prior_brings_its_sigma_data_to_the_sampler():
    gaussian = priors.pink(256, variance=0.04)
    prior = priors.Prior(gaussian.denoiser, 22050, sigma_data=0.2)
    x0 = gaussian.sample(jax.random.key(13), 1)[0]
    op = degradations.Clip(degradations.clip_threshold_for_sdr(x0, 5.0))
    config = dataclasses.replace(sample.PRESETS["pigdm+dc"], steps=4)  # σ_d 0.057 of its own
    key = jax.random.key(14)
    with_prior = sample.restore(prior, op.apply(x0), op, key, config)
    explicit = sample.restore(
        gaussian.denoiser, op.apply(x0), op, key, dataclasses.replace(config, sigma_data=0.2)
    )
    np.testing.assert_array_equal(with_prior, explicit)
    bare = sample.restore(gaussian.denoiser, op.apply(x0), op, key, config)
    assert float(jnp.max(jnp.abs(bare - explicit))) > 1e-4  # ΠGDM's gain does depend on σ_d


def test_posterior_mean_of_more_draws_approaches_the_exact_posterior_mean():
    # Ideal low-pass of a Gaussian prior: the observed bins are known, the others keep the
    # prior's zero mean, so E[x0 | y] = y exactly, and each draw's error is a prior sample.
    gaussian = priors.pink(256, variance=0.01)
    op = priors.ideal_lowpass(256, 0.1)
    x0 = gaussian.sample(jax.random.key(15), 1)[0]
    y = op.apply(x0)
    config = dataclasses.replace(sample.PRESETS["rg+dc"], sigma_data=0.1, steps=10)
    key = jax.random.key(16)
    errors = {}
    for n in (1, 16):
        mean, spread = jax.jit(
            functools.partial(sample.posterior_mean, gaussian.denoiser, config=config, num_draws=n)
        )(y, op, key)
        errors[n] = float(jnp.mean((mean - y) ** 2))
        assert spread.shape == y.shape and (n > 1) == bool(jnp.any(spread > 0))
    assert errors[16] < 0.25 * errors[1], errors
    # A draw of the mean is the plain restore with its own key.
    one, _ = sample.posterior_mean(gaussian.denoiser, y, op, key, config, num_draws=1)
    want = sample.restore(gaussian.denoiser, y, op, jax.random.fold_in(key, 0), config)
    np.testing.assert_allclose(one, want, rtol=1e-6, atol=1e-7)
