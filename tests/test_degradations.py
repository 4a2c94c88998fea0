"""Tests for the degradation operators against closed forms and direct NumPy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrestore import degradations

SAMPLE_RATE = 22050
T = 4096


def vocal_like(seed: int, num_samples: int = T) -> np.ndarray:
    """A sum of decaying harmonics of a vibrato tone plus a little noise, peak about 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SAMPLE_RATE
    f0 = rng.uniform(150, 300) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k**1.2 for k in range(1, 30))
    x = x * np.exp(-t / 0.1) + 0.01 * rng.standard_normal(num_samples)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def laplacian_like(seed: int, num_samples: int = T) -> np.ndarray:
    """Heavy-tailed samples, lightly smoothed: a speech-like amplitude distribution."""
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.laplace(size=num_samples), [0.25, 0.5, 0.25], mode="same")
    return (0.1 * x).astype(np.float32)


def db(amplitude: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.maximum(np.abs(amplitude), 1e-30))


def relative_residual(operator, x: jax.Array, y: jax.Array) -> float:
    return float(jnp.linalg.norm(operator.apply(x) - y) / jnp.linalg.norm(y))


# --- Clip ------------------------------------------------------------------------------------


def test_clip_apply_is_the_formula_exactly():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(T) * 0.5).astype(np.float32)
    c = np.float32(0.3)
    expected = (np.abs(x + c) - np.abs(x - c)) / np.float32(2)  # float32 throughout
    out = np.asarray(jax.jit(lambda op, x: op.apply(x))(degradations.Clip(c), x))
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(out, np.clip(x, -c, c), atol=1e-7)


@pytest.mark.parametrize("signal", [vocal_like, laplacian_like])
@pytest.mark.parametrize("sdr_db", [5.0, 10.0])
def test_clip_threshold_hits_the_target_sdr(signal, sdr_db):
    x = signal(1)
    c = float(jax.jit(degradations.clip_threshold_for_sdr)(x, sdr_db))
    x64 = x.astype(np.float64)
    clipped = np.clip(x64, -c, c)
    measured = 20 * np.log10(np.linalg.norm(x64) / np.linalg.norm(x64 - clipped))
    assert abs(measured - sdr_db) <= 0.01
    assert 0 < c < np.abs(x).max()


def test_clip_threshold_vmaps_over_clips_and_targets():
    xs = np.stack([vocal_like(2), laplacian_like(3)])
    targets = np.array([5.0, 10.0], np.float32)
    batched = jax.vmap(degradations.clip_threshold_for_sdr)(xs, targets)
    for x, target, c in zip(xs, targets, batched, strict=True):
        x64 = x.astype(np.float64)
        error = np.linalg.norm(x64 - np.clip(x64, -float(c), float(c)))
        assert abs(20 * np.log10(np.linalg.norm(x64) / error) - target) <= 0.01


def test_clip_project_lands_on_the_consistent_set():
    x0 = vocal_like(4)
    c = 0.2
    clip = degradations.Clip(c)
    y = np.asarray(clip.apply(x0))
    x = np.random.default_rng(5).standard_normal(T).astype(np.float32) * 0.3
    p = np.asarray(jax.jit(lambda op, x, y: op.project(x, y))(clip, x, y))
    reliable = np.abs(x0) < c
    high, low = x0 >= c, x0 <= -c
    assert reliable.any() and high.any() and low.any()
    np.testing.assert_array_equal(p[reliable], y[reliable])
    assert np.all(p[high] >= np.float32(c)) and np.all(p[low] <= -np.float32(c))
    # The nearest such point: x is kept where it already lies beyond the threshold.
    np.testing.assert_array_equal(p[high], np.maximum(x[high], np.float32(c)))
    np.testing.assert_array_equal(p[low], np.minimum(x[low], -np.float32(c)))
    np.testing.assert_allclose(np.asarray(clip.apply(p)), y, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(clip.pinv(y)), y)


def test_clip_vmap_over_thresholds_equals_the_loop():
    xs = np.stack([vocal_like(6), laplacian_like(7)])
    thresholds = np.array([0.1, 0.25], np.float32)
    guesses = np.random.default_rng(8).standard_normal(xs.shape).astype(np.float32)
    batched = degradations.Clip(jnp.asarray(thresholds))

    def run(op, x, guess):
        y = op.apply(x)
        return y, op.project(guess, y), op.pinv(y)

    outputs = jax.vmap(run)(batched, xs, guesses)
    for b in range(2):
        single = run(degradations.Clip(thresholds[b]), xs[b], guesses[b])
        np.testing.assert_allclose(
            np.asarray(single[0]), np.clip(xs[b], -thresholds[b], thresholds[b]), atol=1e-7
        )
        for out, ref in zip(outputs, single, strict=True):
            np.testing.assert_array_equal(np.asarray(out[b]), np.asarray(ref))


def test_clip_rejects_a_negative_threshold_and_a_non_positive_sdr():
    with pytest.raises(ValueError, match="threshold"):
        degradations.Clip(-0.1)
    with pytest.raises(ValueError, match="sdr_db"):
        degradations.clip_threshold_for_sdr(jnp.ones(8), 0.0)
    assert jax.tree.leaves(degradations.Clip(0.3)) == [0.3]


# --- Lowpass ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cutoff", [3000.0, 5000.0])
def test_lowpass_band_edges(cutoff):
    operator = degradations.lowpass(cutoff, SAMPLE_RATE)
    response = np.asarray(operator.response(2**16))
    f = np.arange(response.size) * SAMPLE_RATE / 2**16
    assert np.max(np.abs(db(response[f <= 0.8 * cutoff]))) <= 0.1
    assert np.max(db(response[f >= 1.25 * cutoff])) <= -60.0
    assert operator.taps.shape[0] % 2 == 1


@pytest.mark.parametrize("num_samples", [64, 1000, 4097])
def test_lowpass_response_is_the_cosine_sum(num_samples):
    # 67 taps: T = 64 is shorter than the filter, so the DTFT samples come from folded taps.
    for operator in (degradations.lowpass(3000.0, SAMPLE_RATE), _cqtdiff(5000.0)):
        h = np.asarray(operator.taps, np.float64)
        n = np.arange(h.size) - (h.size - 1) / 2
        omega = 2 * np.pi * np.arange(num_samples // 2 + 1) / num_samples
        expected = np.cos(omega[:, None] * n[None, :]) @ h
        np.testing.assert_allclose(np.asarray(operator.response(num_samples)), expected, atol=1e-6)


def _cqtdiff(cutoff):
    return degradations.lowpass(cutoff, SAMPLE_RATE, design="cqtdiff")


def test_lowpass_apply_is_zero_phase_circular_convolution():
    # With a negligible floor, A is the circular convolution with the taps centred at 0.
    operator = degradations.lowpass(3000.0, SAMPLE_RATE, floor=1e-12)
    h = np.asarray(operator.taps, np.float64)
    half = (h.size - 1) // 2
    x = vocal_like(9, 512).astype(np.float64)
    expected = sum(h[n] * np.roll(x, n - half) for n in range(h.size))
    np.testing.assert_allclose(
        np.asarray(operator.apply(x.astype(np.float32))), expected, atol=1e-6
    )


def test_lowpass_keeps_passband_tones_in_phase_and_removes_stopband_tones():
    operator = degradations.lowpass(3000.0, SAMPLE_RATE)
    t = np.arange(T)
    tone = lambda k: np.cos(2 * np.pi * k * t / T + 0.7).astype(np.float32)  # noqa: E731
    low, high = tone(round(2000 * T / SAMPLE_RATE)), tone(round(4000 * T / SAMPLE_RATE))
    np.testing.assert_allclose(np.asarray(operator.apply(low)), low, atol=2e-3)
    assert np.max(np.abs(np.asarray(operator.apply(high)))) <= 1e-3


@pytest.mark.parametrize("design", ["kaiser", "cqtdiff"])
@pytest.mark.parametrize("cutoff", [3000.0, 5000.0])
def test_lowpass_project_lands_on_the_consistent_set(design, cutoff):
    operator = degradations.lowpass(cutoff, SAMPLE_RATE, design=design)
    x0 = jnp.asarray(vocal_like(10))
    y = operator.apply(x0)
    x = jnp.asarray(np.random.default_rng(11).standard_normal(T).astype(np.float32))
    assert relative_residual(operator, x, y) > 0.5
    assert relative_residual(operator, operator.project(x, y), y) <= 1e-4
    assert relative_residual(operator, operator.pinv(y), y) <= 1e-4
    # A consistent signal is its own projection.
    np.testing.assert_allclose(np.asarray(operator.project(x0, y)), np.asarray(x0), atol=1e-5)


def test_cqtdiff_design_is_a_truncated_sinc_with_weak_attenuation():
    cutoff = 3000.0
    operator = _cqtdiff(cutoff)
    # firwin(500, fc, width=1) picks β = 0: a boxcar-windowed sinc with unit DC gain.
    n = np.arange(500) - 249.5
    sinc = np.sinc(2 * cutoff / SAMPLE_RATE * n)
    np.testing.assert_allclose(np.asarray(operator.taps), sinc / sinc.sum(), atol=1e-7)
    response = np.asarray(operator.response(2**16))
    f = np.arange(response.size) * SAMPLE_RATE / 2**16
    # About 45 dB at 1.25·fc, well short of the default design's 60 dB ...
    assert np.max(db(response[f >= 1.25 * cutoff])) > -50.0
    # ... and the rectangular window's ≈ −21 dB first side lobe just above fc.
    assert np.max(db(response[(f > 1.01 * cutoff) & (f < 1.25 * cutoff)])) > -25.0


def test_lowpass_vmap_over_filters_equals_the_loop():
    operators = [_cqtdiff(3000.0), _cqtdiff(5000.0)]
    batched = degradations.Lowpass(jnp.stack([op.taps for op in operators]))
    xs = np.stack([vocal_like(12, 1024), laplacian_like(13, 1024)])
    ys = jax.vmap(lambda op, x: op.apply(x))(batched, xs)
    projected = jax.vmap(lambda op, x, y: op.project(x, y))(batched, xs[::-1], ys)
    for b, op in enumerate(operators):
        np.testing.assert_allclose(np.asarray(ys[b]), np.asarray(op.apply(xs[b])), atol=1e-6)
        np.testing.assert_allclose(
            np.asarray(projected[b]), np.asarray(op.project(xs[1 - b], ys[b])), atol=1e-5
        )


def test_lowpass_rejects_bad_parameters():
    for cutoff in (0.0, -100.0, SAMPLE_RATE / 2, 20000.0):
        with pytest.raises(ValueError, match="cutoff_hz"):
            degradations.lowpass(cutoff, SAMPLE_RATE)
    with pytest.raises(ValueError, match="design"):
        degradations.lowpass(3000.0, SAMPLE_RATE, design="butter")
    with pytest.raises(ValueError, match="floor"):
        degradations.lowpass(3000.0, SAMPLE_RATE, floor=0.01)


# --- Mask ------------------------------------------------------------------------------------


def test_gap_mask_has_zero_gaps_and_hann_edges():
    smooth = 5
    m = np.asarray(degradations.gap_mask(100, [20, 60], 10, smooth=smooth))
    gap = np.zeros(100, bool)
    gap[20:30] = gap[60:70] = True
    assert np.all(m[gap] == 0)
    ramp = np.sin(np.pi / 2 * np.arange(1, smooth + 1) / (smooth + 1)) ** 2  # rising
    np.testing.assert_allclose(m[20 - smooth : 20], ramp[::-1], atol=1e-7)
    np.testing.assert_allclose(m[30 : 30 + smooth], ramp, atol=1e-7)
    assert np.all((m[~gap] > 0) & (m[~gap] <= 1))
    np.testing.assert_array_equal(m[:14], 1.0)
    hard = np.asarray(degradations.gap_mask(100, [20, 60], 10))
    np.testing.assert_array_equal(hard, (~gap).astype(np.float32))
    with pytest.raises(ValueError, match="gap"):
        degradations.gap_mask(100, [95], 10)


@pytest.mark.parametrize("smooth", [0, 64])
def test_mask_project_lands_on_the_consistent_set(smooth):
    mask = degradations.Mask(degradations.gap_mask(T, [500, 2500], 400, smooth=smooth))
    x0 = jnp.asarray(vocal_like(14))
    y = mask.apply(x0)
    x = jnp.asarray(np.random.default_rng(15).standard_normal(T).astype(np.float32))
    p = mask.project(x, y)
    assert relative_residual(mask, p, y) <= 1e-4
    missing = np.asarray(mask.mask) == 0
    np.testing.assert_array_equal(np.asarray(p)[missing], np.asarray(x)[missing])
    if smooth == 0:
        np.testing.assert_array_equal(np.asarray(p)[~missing], np.asarray(x0)[~missing])


def test_mask_rejects_bad_values_and_shapes():
    with pytest.raises(ValueError, match="mask"):
        degradations.Mask(jnp.full(8, 1.5))
    with pytest.raises(ValueError, match="shape"):
        degradations.Mask(jnp.ones(8)).apply(jnp.ones(9))


def test_mask_vmap_over_masks_equals_the_loop():
    masks = jnp.stack([degradations.gap_mask(256, [10], 50), degradations.gap_mask(256, [100], 80)])
    xs = np.stack([vocal_like(16, 256), laplacian_like(17, 256)])
    ys = jax.vmap(lambda op, x: op.apply(x))(degradations.Mask(masks), xs)
    np.testing.assert_array_equal(np.asarray(ys), np.asarray(masks) * xs)


# --- Compose ---------------------------------------------------------------------------------


def test_compose_applies_first_to_last_and_inverts_in_reverse():
    m1 = degradations.gap_mask(256, [10], 20)
    m2 = 0.5 * degradations.gap_mask(256, [100], 30) + 0.5 * jnp.ones(256)  # gains 0.5 and 1
    lp = degradations.lowpass(5000.0, SAMPLE_RATE)
    composed = degradations.Compose((degradations.Mask(m1), lp, degradations.Clip(0.05)))
    x = vocal_like(18, 256)
    expected = np.clip(np.asarray(lp.apply(np.asarray(m1) * x)), -0.05, 0.05)
    np.testing.assert_allclose(np.asarray(composed.apply(x)), expected, atol=1e-7)
    two_masks = degradations.Compose((degradations.Mask(m1), degradations.Mask(m2)))
    y = np.asarray(two_masks.apply(x))
    observed = np.asarray(m1) > 0
    pinv = np.asarray(two_masks.pinv(y))
    np.testing.assert_allclose(pinv[observed], x[observed], rtol=1e-6)
    np.testing.assert_array_equal(pinv[~observed], 0.0)


def test_compose_project_is_exact_for_mask_then_clip():
    composed = degradations.Compose(
        (degradations.Mask(degradations.gap_mask(T, [1000], 500)), degradations.Clip(0.15))
    )
    y = composed.apply(jnp.asarray(vocal_like(19)))
    x = jnp.asarray(np.random.default_rng(20).standard_normal(T).astype(np.float32))
    np.testing.assert_allclose(np.asarray(composed.apply(composed.project(x, y))), y, atol=1e-6)


def test_compose_project_converges_for_lowpass_then_clip():
    lp, clip = degradations.lowpass(5000.0, SAMPLE_RATE), degradations.Clip(0.1)
    x0 = jnp.asarray(vocal_like(21, 1024))
    y = clip.apply(lp.apply(x0))
    x = jnp.asarray(np.random.default_rng(22).standard_normal(1024).astype(np.float32))
    residuals = [
        relative_residual(
            degradations.Compose((lp, clip)), degradations.Compose((lp, clip), k).project(x, y), y
        )
        for k in (1, 10, 30)
    ]
    # Alternating projections between two convex sets that meet: the residual keeps falling.
    assert residuals[0] > residuals[1] > residuals[2]
    assert residuals[2] < 0.25 * residuals[0]


def test_apply_is_differentiable_with_the_expected_adjoints():
    # A zero-phase filter and a mask are symmetric maps: their VJP is the operator itself;
    # clipping's derivative is 1 on reliable samples and 0 on clipped ones.
    x = jnp.asarray(vocal_like(23, 512))
    v = jnp.asarray(laplacian_like(24, 512))
    for operator in (
        degradations.lowpass(3000.0, SAMPLE_RATE),
        degradations.Mask(degradations.gap_mask(512, [100], 50, smooth=8)),
    ):
        _, vjp = jax.vjp(operator.apply, x)
        np.testing.assert_allclose(np.asarray(vjp(v)[0]), np.asarray(operator.apply(v)), atol=1e-6)
    _, vjp = jax.vjp(degradations.Clip(0.2).apply, x)
    expected = np.where(np.abs(np.asarray(x)) < 0.2, np.asarray(v), 0.0)
    np.testing.assert_allclose(np.asarray(vjp(v)[0]), expected, atol=1e-7)
