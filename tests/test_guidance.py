"""Guidance transforms: closed-form updates, ξ schedules and their composition."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrestore import degradations, guidance


@dataclasses.dataclass(frozen=True)
class _Matrix:
    """A dense linear operator, for closed-form checks (duck-types the operator API)."""

    M: np.ndarray

    def apply(self, x):
        return jnp.asarray(self.M, jnp.float32) @ x

    def pinv(self, y):
        return jnp.asarray(np.linalg.pinv(self.M), jnp.float32) @ y

    def project(self, x, y):
        return x + self.pinv(y - self.apply(x))


def _context(y, op, step=0, steps=5, sigma_data=0.1, sigma_max=1.0):
    return guidance.Context(y, op, sigma_data, jnp.int32(step), steps, sigma_max)


def test_guidance_updates_equal_their_closed_forms():
    rng = np.random.default_rng(0)
    n, m = 16, 8
    W = rng.normal(size=(n, n)) / 4
    A = rng.normal(size=(m, n))
    x, y = rng.normal(size=n), rng.normal(size=m)
    sigma, xi, sigma_d = 0.3, 0.25, 0.1
    op = _Matrix(A)

    def denoiser(z, s):
        return jnp.asarray(W, jnp.float32) @ z

    x0 = W @ x
    r = y - A @ x0
    g = -W.T @ A.T @ r / np.linalg.norm(r)  # ∇_x ‖y − A W x‖
    rms = np.sqrt(np.mean(g**2))
    expected_rg = x0 - xi * sigma * g / (rms + 1e-6)
    got_rg = guidance.reconstruction_guidance(
        denoiser, jnp.asarray(x, jnp.float32), sigma, jnp.asarray(y, jnp.float32), op, xi
    )
    np.testing.assert_allclose(got_rg, expected_rg, rtol=1e-4, atol=1e-5)

    Ap = np.linalg.pinv(A)
    gain = (sigma**2 + sigma_d**2) / sigma_d**2
    expected_pigdm = x0 + gain * W.T @ (Ap @ y - Ap @ A @ x0)
    got_pigdm = guidance.pseudoinverse_guidance(
        denoiser, jnp.asarray(x, jnp.float32), sigma, jnp.asarray(y, jnp.float32), op, sigma_d
    )
    np.testing.assert_allclose(got_pigdm, expected_pigdm, rtol=1e-4, atol=1e-4)


def test_transforms_are_the_closed_forms_and_compose_in_order():
    rng = np.random.default_rng(1)
    n, m = 16, 8
    W = rng.normal(size=(n, n)) / 4
    op = _Matrix(rng.normal(size=(m, n)))
    x = jnp.asarray(rng.normal(size=n), jnp.float32)
    y = jnp.asarray(rng.normal(size=m), jnp.float32)

    def denoiser(z, s):
        return jnp.asarray(W, jnp.float32) @ z

    context = _context(y, op)
    rg = guidance.ReconstructionGuidance(guidance.ConstantXi(0.25))
    want = guidance.reconstruction_guidance(denoiser, x, 0.3, y, op, 0.25)
    np.testing.assert_array_equal(rg(denoiser, context)(x, 0.3), want)
    pigdm = guidance.PseudoinverseGuidance(scale=0.5)
    want = guidance.pseudoinverse_guidance(denoiser, x, 0.3, y, op, 0.1, 0.5)
    np.testing.assert_array_equal(pigdm(denoiser, context)(x, 0.3), want)
    # RG then DC: the projection of the guided estimate, consistent with y.
    guided = guidance.guide((rg, guidance.DataConsistency()), denoiser, context)(x, 0.3)
    np.testing.assert_allclose(guided, op.project(rg(denoiser, context)(x, 0.3), y), atol=1e-6)
    np.testing.assert_allclose(op.apply(guided), y, atol=1e-4)
    np.testing.assert_array_equal(guidance.guide((), denoiser, context)(x, 0.3), denoiser(x, 0.3))


def test_xi_schedules():
    op = degradations.Clip(jnp.float32(0.5))
    y = jnp.zeros(4)
    linear = guidance.LinearXi(1.0, 2.0)
    assert float(linear(jnp.float32(0.3), _context(y, op, step=0, steps=5))) == 1.0
    assert float(linear(jnp.float32(0.3), _context(y, op, step=2, steps=5))) == 1.5
    assert float(linear(jnp.float32(0.3), _context(y, op, step=4, steps=5))) == 2.0
    assert float(guidance.ConstantXi(0.2)(jnp.float32(0.3), _context(y, op))) == pytest.approx(0.2)
    power = guidance.SigmaPowerXi(0.4, 2.0)
    got = float(power(jnp.float32(0.5), _context(y, op, sigma_max=2.0)))
    assert got == pytest.approx(0.4 * 0.25**2)
