"""Tests for jaxrestore.spade: the Parseval frame, H_k, the consistent set, and the declippers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrestore import spade

SAMPLE_RATE = 22_050
# A small block geometry shared by the quick tests, so that each declipper compiles once.
SMALL = {"window": 256, "hop": 64}
T_SMALL = 2048


def _dft_frame_matrix(window: int, redundancy: int) -> np.ndarray:
    """Builds the frame's analysis matrix in float64 from its definition: [N//2 + 1, w] complex."""
    n_fft = redundancy * window
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(window)[None, :]
    pair = (k > 0) & (2 * k < n_fft)  # bins that stand for a conjugate pair of the full DFT
    weight = np.where(pair, np.sqrt(2.0 / n_fft), np.sqrt(1.0 / n_fft))
    return weight * np.exp(-2j * np.pi * k * n / n_fft)


def _sines(length: int) -> np.ndarray:
    """Returns a peak-normalised sum of four sinusoids at 22,050 Hz."""
    t = np.arange(length) / SAMPLE_RATE
    x = (
        np.sin(2 * np.pi * 220.0 * t + 0.3)
        + 0.6 * np.sin(2 * np.pi * 445.7 * t + 1.1)
        + 0.4 * np.sin(2 * np.pi * 654.1 * t + 2.0)
        + 0.25 * np.sin(2 * np.pi * 1250.0 * t + 0.7)
    )
    return (x / np.abs(x).max()).astype(np.float32)


def _threshold_for_sdr(x: np.ndarray, sdr_db: float) -> np.float32:
    """Bisects for the clipping threshold c with SDR(x, clip(x, ±c)) = sdr_db (DESIGN §5)."""
    x = x.astype(np.float64)
    lo, hi = 1e-6, np.abs(x).max()
    for _ in range(60):
        c = 0.5 * (lo + hi)
        sdr = 20 * np.log10(np.linalg.norm(x) / np.linalg.norm(x - np.clip(x, -c, c)))
        lo, hi = (c, hi) if sdr < sdr_db else (lo, c)
    return np.float32(0.5 * (lo + hi))


def _si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Returns SI-SDR in dB (DESIGN §7), in float64."""
    estimate, reference = estimate.astype(np.float64), reference.astype(np.float64)
    target = (estimate @ reference / (reference @ reference)) * reference
    return float(10 * np.log10(np.sum(target**2) / np.sum((target - estimate) ** 2)))


def _assert_consistent(x: np.ndarray, y: np.ndarray, c: np.float32) -> None:
    """Asserts that x is in Γ(y): equal on reliable samples, beyond ±c with y's sign on clipped."""
    reliable, high, low = np.abs(y) < c, y >= c, y <= -c
    assert high.any() and low.any() and reliable.any()
    np.testing.assert_array_equal(x[reliable], y[reliable])
    assert np.all(x[high] >= c) and np.all(x[low] <= -c)


@pytest.mark.parametrize("window, redundancy", [(1024, 2), (1000, 1), (15, 2), (15, 1)])
def test_analysis_matches_the_weighted_zero_padded_dft(window, redundancy):
    x = np.random.default_rng(0).standard_normal((3, window)).astype(np.float32)
    expected = x.astype(np.float64) @ _dft_frame_matrix(window, redundancy).T
    got = np.asarray(spade.analysis(x, redundancy))
    np.testing.assert_allclose(got, expected, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("window, redundancy", [(1024, 2), (15, 1)])
def test_frame_is_parseval(window, redundancy):
    # A*A = I column by column, and ‖Ax‖ = ‖x‖, to float32 precision.
    identity = np.eye(window, dtype=np.float32)
    gram = np.asarray(spade.synthesis(spade.analysis(identity, redundancy), window, redundancy))
    np.testing.assert_allclose(gram, identity, atol=1e-6)
    x = np.random.default_rng(1).standard_normal((4, window)).astype(np.float32)
    norms = np.linalg.norm(np.asarray(spade.analysis(x, redundancy)), axis=-1)
    np.testing.assert_allclose(norms, np.linalg.norm(x, axis=-1), rtol=1e-6)


@pytest.mark.parametrize("window, redundancy", [(1024, 2), (15, 1)])
def test_synthesis_is_the_adjoint(window, redundancy):
    # ⟨Ax, z⟩ = ⟨x, A*z⟩ for the real inner product, with z arbitrary (imaginary DC included).
    rng = np.random.default_rng(2)
    bins = redundancy * window // 2 + 1
    x = rng.standard_normal((5, window)).astype(np.float32)
    z = (rng.standard_normal((5, bins)) + 1j * rng.standard_normal((5, bins))).astype(np.complex64)
    lhs = np.sum((np.asarray(spade.analysis(x, redundancy)) * np.conj(z)).real, axis=-1)
    rhs = np.sum(x * np.asarray(spade.synthesis(z, window, redundancy)), axis=-1)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5, atol=1e-4)
    # And A* is the conjugate transpose of the float64 reference matrix (real part taken).
    expected = (z.astype(np.complex128) @ np.conj(_dft_frame_matrix(window, redundancy))).real
    np.testing.assert_allclose(
        np.asarray(spade.synthesis(z, window, redundancy)), expected, atol=1e-4
    )


@pytest.mark.parametrize("k", [1, 7, 100, 1025, 5000])
def test_hard_threshold_keeps_the_k_largest(k):
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((4, 1025)) + 1j * rng.standard_normal((4, 1025))).astype(np.complex64)
    z[0, :500] *= 1e-6  # a wide dynamic range
    got = np.asarray(jax.jit(spade.hard_threshold)(z, k))
    expected = np.zeros_like(z)
    top = np.argsort(-np.abs(z), axis=-1)[:, :k]
    np.put_along_axis(expected, top, np.take_along_axis(z, top, axis=-1), axis=-1)
    np.testing.assert_array_equal(got, expected)


def test_project_consistent_matches_its_definition():
    rng = np.random.default_rng(4)
    c = np.float32(0.5)
    y = np.clip(rng.standard_normal(256), -c, c).astype(np.float32)
    x = rng.standard_normal(256).astype(np.float32)
    expected = np.where(y >= c, np.maximum(x, c), np.where(y <= -c, np.minimum(x, -c), y))
    np.testing.assert_array_equal(np.asarray(spade.project_consistent(x, y, c)), expected)


def _reference_spade(method, yb, high, low, iterations):
    """Runs A-SPADE / S-SPADE on one block in float64 NumPy, straight from the papers' equations."""
    frame = _dft_frame_matrix(yb.shape[-1], 2)

    def analysis(x):
        return frame @ x

    def synthesis(z):
        return (np.conj(frame).T @ z).real

    def hard_threshold(z, k):
        keep = np.argsort(-np.abs(z))[:k]
        out = np.zeros_like(z)
        out[keep] = z[keep]
        return out

    def project(x):
        return np.where(high, np.maximum(x, yb), np.where(low, np.minimum(x, yb), yb))

    x_hat = yb.astype(np.float64)
    u = np.zeros(frame.shape[0], complex) if method == "aspade" else np.zeros_like(x_hat)
    for i in range(iterations):
        k = i + 1  # s = r = 1
        if method == "aspade":
            z_bar = hard_threshold(analysis(x_hat) + u, k)
            x_hat = project(synthesis(z_bar - u))
            u = u + analysis(x_hat) - z_bar
        else:
            Dz_bar = synthesis(hard_threshold(analysis(x_hat - u), k))
            x_hat = project(Dz_bar + u)
            u = u + Dz_bar - x_hat
    return x_hat


@pytest.mark.parametrize("method", ["aspade", "sspade"])
def test_iterations_match_a_float64_reference(method):
    rng = np.random.default_rng(6)
    window, c = 32, 0.8
    yb = np.clip(rng.standard_normal(window), -c, c).astype(np.float32)
    high, low = yb >= c, yb <= -c
    blocks = tuple(jnp.asarray(a[None]) for a in (yb, high, low))
    got, iterations = spade._run_blocks(method, blocks, redundancy=2, s=1, r=1, eps=0.0, max_iter=6)
    assert int(iterations[0]) == 6
    expected = _reference_spade(method, yb, high, low, 6)
    np.testing.assert_allclose(np.asarray(got[0]), expected, atol=1e-5)


def test_blocks_do_not_depend_on_their_batch():
    # Freezing converged blocks and regrouping the slow ones must leave each block's result as if
    # it had been declipped alone.
    rng = np.random.default_rng(7)
    t = np.arange(64)
    freqs = rng.uniform(0.02, 0.2, (12, 2))
    x = np.sin(2 * np.pi * freqs[:, :1] * t) + 0.5 * np.sin(2 * np.pi * freqs[:, 1:] * t)
    c = rng.uniform(0.5, 1.6, (12, 1))  # some blocks are not clipped at all
    yb = np.clip(x, -c, c).astype(np.float32) * spade.hann(64)
    high, low = x >= c, x <= -c
    solve = jax.jit(
        functools.partial(
            spade._run_blocks, "aspade", redundancy=2, s=1, r=1, eps=0.01, max_iter=200
        )
    )
    batched, iterations = solve((yb, high, low))
    assert len(set(np.asarray(iterations).tolist())) > 3  # the blocks stopped at different times
    for b in range(12):
        alone, _ = solve((yb[b : b + 1], high[b : b + 1], low[b : b + 1]))
        np.testing.assert_allclose(np.asarray(batched[b]), np.asarray(alone[0]), atol=1e-6)


@pytest.mark.parametrize("method", ["aspade", "sspade"])
def test_output_is_in_the_consistent_set(method):
    noise = np.random.default_rng(5).standard_normal(T_SMALL).astype(np.float32)
    x = _sines(T_SMALL) + 0.05 * noise
    c = _threshold_for_sdr(x, 5.0)
    y = np.clip(x, -c, c)
    x_hat = np.asarray(spade.declip(y, c, method, **SMALL))
    _assert_consistent(x_hat, y, c)
    # SPADE moved the clipped samples (the consistent set alone would leave them at ±c).
    assert np.mean(np.abs(x_hat[np.abs(y) >= c]) > c + 1e-3) > 0.5


def test_nothing_clipped_returns_the_input():
    y = _sines(T_SMALL)
    np.testing.assert_array_equal(np.asarray(spade.aspade(y, np.float32(2.0), **SMALL)), y)


def test_aspade_and_sspade_gain_over_20_db_on_sines():
    x = _sines(SAMPLE_RATE)  # one second
    c = _threshold_for_sdr(x, 5.0)
    y = np.clip(x, -c, c)
    sdr_in = 20 * np.log10(np.linalg.norm(x) / np.linalg.norm(x - y))
    assert abs(sdr_in - 5.0) < 1e-3
    for method in ("aspade", "sspade"):
        x_hat = np.asarray(spade.declip(y, c, method))
        assert _si_sdr(x_hat, x) - _si_sdr(y, x) > 20.0, method
        _assert_consistent(x_hat, y, c)


def test_a_quiet_clip_is_declipped_as_the_same_clip_at_full_scale():
    # ε is tuned for clips that peak near 1; SPADE runs every clip scaled to a peak near 1 by
    # a power of two, so a clip 30 dB down (2^-5) takes the same iterations to the same answer.
    x = _sines(T_SMALL)
    c = _threshold_for_sdr(x, 5.0)
    y = np.clip(x, -c, c)
    for method in ("aspade", "sspade"):
        loud = np.asarray(spade.declip(y, c, method, **SMALL))
        quiet = np.asarray(spade.declip(y / 32, c / 32, method, **SMALL))
        np.testing.assert_array_equal(quiet, loud / 32)
        _assert_consistent(quiet, y / 32, c / 32)
        assert _si_sdr(loud, x) - _si_sdr(y, x) > 3.0, method  # it did declip


def test_vmap_over_clips_matches_single_clips():
    x = np.stack([_sines(T_SMALL), -0.8 * _sines(T_SMALL)[::-1]])
    c = np.array([_threshold_for_sdr(x[0], 5.0), _threshold_for_sdr(x[1], 10.0)])
    y = np.clip(x, -c[:, None], c[:, None])
    aspade = functools.partial(spade.aspade, **SMALL)
    batched = np.asarray(jax.vmap(aspade)(jnp.asarray(y), jnp.asarray(c)))
    for b in range(2):
        single = np.asarray(aspade(y[b], c[b]))
        np.testing.assert_allclose(batched[b], single, atol=1e-5)
        _assert_consistent(batched[b], y[b], c[b])


def test_bad_arguments_raise():
    y = np.zeros(512, np.float32)
    with pytest.raises(ValueError, match="method"):
        spade.declip(y, 0.5, method="spade")
    with pytest.raises(ValueError, match="shape"):
        spade.aspade(np.zeros((2, 512), np.float32), 0.5)
    with pytest.raises(ValueError, match="hop"):
        spade.sspade(y, 0.5, window=256, hop=100)
    with pytest.raises(ValueError, match="redundancy"):
        spade.analysis(y, 0)


def test_sparse_projection_stays_consistent_and_beats_dc_on_clipped_sines():
    x0 = _sines(4096)
    c = _threshold_for_sdr(x0, 5.0)
    y = np.clip(x0, -c, c)
    # A poor estimate, noisy everywhere: DC alone keeps its noise on the clipped samples.
    noisy = x0 + 0.2 * np.random.default_rng(0).standard_normal(x0.shape).astype(np.float32)
    run = jax.jit(functools.partial(spade.sparse_projection, iterations=20))
    for estimate in (noisy, y):
        x = np.asarray(run(estimate, y, c))
        _assert_consistent(x, y, c)
        reliable = np.abs(y) < c
        np.testing.assert_array_equal(x[reliable], y[reliable])  # exactly, not nearly
        dc = np.asarray(spade.project_consistent(estimate, y, c))
        assert _si_sdr(x, x0) > _si_sdr(dc, x0) + 3.0, (_si_sdr(x, x0), _si_sdr(dc, x0))


def test_sparse_consistency_is_a_guidance_transform_and_dc_elsewhere():
    from jaxrestore import degradations, guidance

    x0 = jnp.asarray(_sines(2048))
    c = jnp.float32(_threshold_for_sdr(np.asarray(x0), 5.0))
    op = degradations.Clip(c)
    y = op.apply(x0)
    context = guidance.Context(y, op, 0.2, jnp.int32(0), 4, 1.0)
    transform = spade.SparseConsistency(iterations=5)

    def identity(x, s):
        return x

    got = transform(identity, context)(x0 + 0.1, 0.1)
    want = spade.sparse_projection(x0 + 0.1, y, c, iterations=5)
    np.testing.assert_array_equal(got, want)
    lowpass = degradations.lowpass(3000.0, SAMPLE_RATE)
    context = guidance.Context(lowpass.apply(x0), lowpass, 0.2, jnp.int32(0), 4, 1.0)
    got = transform(identity, context)(x0 + 0.1, 0.1)
    np.testing.assert_array_equal(got, lowpass.project(x0 + 0.1, lowpass.apply(x0)))
