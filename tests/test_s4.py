"""Tests for the S4D layer against direct state-space computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrestore.networks import s4


def _continuous(params):
    """Returns the continuous (A, C, Δ) of an S4D layer's parameters in float64."""
    A = -np.exp(np.float64(params["log_A_real"])) + 1j * np.float64(params["A_imag"])
    C = np.float64(params["C"][..., 0]) + 1j * np.float64(params["C"][..., 1])
    return A, C, np.exp(np.float64(params["log_dt"]))


@jax.jit
def _recurrence(u, A_bar, B_bar, C, D):
    """Runs `x_k = Ā x_{k−1} + B̄ u_k`, `y_k = 2·Re(C x_k) + D u_k` by lax.scan: [L, H] → [L, H]."""

    def step(x, u_k):  # x [H, N/2]
        x = A_bar * x + B_bar * u_k[:, None]
        return x, 2.0 * jnp.real(jnp.sum(C * x, axis=-1)) + D * u_k

    x0 = jnp.zeros(A_bar.shape, jnp.complex64)
    return jax.lax.scan(step, x0, u)[1]


@pytest.mark.parametrize("prepared", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_equals_recurrence_in_both_directions(bidirectional, prepared):
    # Unprepared, the layer convolves by FFT; prepared, by chunks (c = 16 for N = 8, so 50
    # samples are three full chunks and a partial one).
    B, L, H, N = 2, 50, 3, 8
    u = jax.random.normal(jax.random.PRNGKey(1), (B, L, H))
    layer = s4.S4D(d_state=N, bidirectional=bidirectional)
    params = jax.jit(layer.init)(jax.random.PRNGKey(0), u)["params"]
    variables = {"params": params}
    if prepared:
        variables.update(layer.apply(variables, u, mutable=[s4.CACHE])[1])
        assert s4.chunk_length(N) == 16
    y = np.asarray(jax.jit(layer.apply)(variables, u))
    S = 2 if bidirectional else 1
    assert y.shape == (B, L, S * H)

    A, C, dt = _continuous(params)
    A_bar = np.exp(dt[..., None] * A)  # ZOH
    B_bar = (A_bar - 1.0) / A
    D = params["D"]
    for b in range(B):
        forward = _recurrence(u[b], A_bar[0], B_bar[0], C[0], D)
        np.testing.assert_allclose(y[b, :, :H], forward, rtol=1e-4, atol=1e-5)
        if bidirectional:  # the second kernel runs over the flipped sequence
            backward = _recurrence(u[b, ::-1], A_bar[1], B_bar[1], C[1], D)[::-1]
            np.testing.assert_allclose(y[b, :, H:], backward, rtol=1e-4, atol=1e-5)


def test_init_is_s4d_lin():
    H, N = 5, 16
    init = jax.jit(s4.S4D(d_state=N).init)
    params = init(jax.random.PRNGKey(0), jnp.zeros((1, 32, H)))["params"]
    np.testing.assert_allclose(params["log_A_real"], np.full((2, H, N // 2), math.log(0.5)))
    np.testing.assert_allclose(params["A_imag"][1, 3], np.pi * np.arange(N // 2), rtol=1e-6)
    log_dt = np.asarray(params["log_dt"])
    assert log_dt.shape == (2, H)
    assert np.all(log_dt >= math.log(1e-3)) and np.all(log_dt <= math.log(1e-1))
    assert not np.allclose(log_dt[0], log_dt[1])  # the two directions have separate Δ


def test_zoh_input_matrix_is_the_integral_of_exp_A():
    # ZOH: B̄ = ∫_0^Δ exp(A s) ds · B, with B = 1.
    A = jnp.array([[-0.5 + 3.0j, -2.0 + 40.0j]], jnp.complex64)
    dt = jnp.array([0.07], jnp.float32)
    dtA, CB = s4.zoh_discretize(A, jnp.ones_like(A), dt)
    s = np.linspace(0.0, 0.07, 20001)
    integral = np.trapezoid(np.exp(np.asarray(A, np.complex128)[..., None] * s), s, axis=-1)
    np.testing.assert_allclose(CB, integral, rtol=1e-5)
    np.testing.assert_allclose(dtA, 0.07 * np.asarray(A), rtol=1e-6)


@pytest.mark.parametrize("length", [1, 16, 17, 4096])
def test_chunked_kernel_equals_vandermonde(length):
    rng = np.random.default_rng(length)
    H, modes = 3, 6
    A = -np.exp(rng.uniform(-1.0, 0.5, (H, modes))) + 1j * np.pi * np.arange(modes)
    C = rng.normal(size=(H, modes)) + 1j * rng.normal(size=(H, modes))
    dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), H))
    dtA = dt[:, None] * A
    CB = C * (np.exp(dtA) - 1.0) / A
    expected = 2.0 * np.real(
        np.einsum("hn,hnl->hl", CB, np.exp(dtA[..., None] * np.arange(length)))
    )
    args = (jnp.asarray(dtA, jnp.complex64), jnp.asarray(CB, jnp.complex64), length)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(s4.s4d_kernel(*args), expected, atol=2e-6 * scale)
    np.testing.assert_allclose(s4.s4d_kernel_vandermonde(*args), expected, atol=2e-6 * scale)


def test_fft_length_is_the_smallest_5_smooth_number_above():
    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n_min in range(1, 300):
        expected = next(n for n in range(n_min, 2 * n_min + 2) if smooth(n))
        assert s4._fft_length(n_min) == expected


def test_convolve_rejects_mismatched_kernel():
    with pytest.raises(ValueError, match="kernel spectra must have shape"):
        s4.fft_convolve(jnp.zeros((1, 8, 2)), jnp.zeros((1, 2, 7)), jnp.zeros(2))


def _direct_convolution(u, dtA, CB, D):
    """Returns both directions' outputs by direct sums over float64 Vandermonde kernels."""
    B, L, H = u.shape
    K = 2.0 * np.real(np.einsum("shn,shnl->shl", CB, np.exp(dtA[..., None] * np.arange(L))))
    u = np.float64(u)
    causal = np.zeros((B, L, H))
    anticausal = np.zeros((B, L, H))
    for t in range(L):
        causal[:, t] = np.einsum("lh,blh->bh", K[0, :, : t + 1][:, ::-1].T, u[:, : t + 1])
        anticausal[:, t] = np.einsum("lh,blh->bh", K[1, :, : L - t].T, u[:, t:])
    return np.concatenate([causal + D * u, anticausal + D * u], axis=-1)


def _random_modes(seed, H, modes):
    """Returns (dtA, CB) of random stable modes in both directions, complex64."""
    rng = np.random.default_rng(seed)
    A = -np.exp(rng.uniform(-1.0, 1.0, (2, H, modes))) + 1j * np.pi * np.arange(modes)
    C = rng.normal(size=(2, H, modes)) + 1j * rng.normal(size=(2, H, modes))
    dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), (2, H)))
    dtA = dt[..., None] * A
    return np.complex64(dtA), np.complex64(C * (np.exp(dtA) - 1.0) / A)


@pytest.mark.parametrize("length", [1, 16, 37, 96])
def test_chunked_convolution_equals_direct_convolution_and_fft(length):
    B, H, modes, c = 2, 3, 4, 16
    dtA, CB = _random_modes(length, H, modes)
    D = np.float32([0.5, -1.0, 2.0])
    u = jax.random.normal(jax.random.PRNGKey(length), (B, length, H))
    ops = s4.chunk_operators(jnp.asarray(dtA), jnp.asarray(CB), c)
    assert ops["w_in"].shape == (H, 2 * (c + 2 * modes), c)
    y = s4.chunked_convolve(u, ops, jnp.asarray(D))
    expected = _direct_convolution(np.asarray(u), np.complex128(dtA), np.complex128(CB), D)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())

    # The same function as the FFT path, VJP included.
    kernels = s4.s4d_kernel(jnp.asarray(dtA), jnp.asarray(CB), length)
    K_f = s4.kernel_spectrum(kernels, anticausal=jnp.arange(2) == 1)
    cotangent = jax.random.normal(jax.random.PRNGKey(7), (B, length, 2 * H))
    by_chunks = jax.vjp(lambda v: s4.chunked_convolve(v, ops, jnp.asarray(D)), u)[1](cotangent)
    by_fft = jax.vjp(lambda v: s4.fft_convolve(v, K_f, jnp.asarray(D)), u)[1](cotangent)
    np.testing.assert_allclose(by_chunks[0], by_fft[0], rtol=1e-4, atol=1e-5)


def test_chunked_convolve_rejects_mismatched_operators():
    ops = s4.chunk_operators(*map(jnp.asarray, _random_modes(0, 3, 4)), 16)
    with pytest.raises(ValueError, match="chunk operators must have"):
        s4.chunked_convolve(jnp.zeros((1, 8, 2)), ops, jnp.zeros(2))


def test_prepared_layer_uses_its_chunk_operators_at_every_length():
    u = jax.random.normal(jax.random.PRNGKey(3), (2, 40, 3))
    layer = s4.S4D(d_state=8)
    params = layer.init(jax.random.PRNGKey(0), u)["params"]
    _, cache = layer.apply({"params": params}, u, mutable=[s4.CACHE])
    assert set(cache[s4.CACHE]) == {"chunk_operators"}
    # The operators depend on the weights only: prepared at one length, right at any.
    for length in (40, 24, 100):
        v = jax.random.normal(jax.random.PRNGKey(length), (2, length, 3))
        np.testing.assert_allclose(
            layer.apply({"params": params, **cache}, v),
            layer.apply({"params": params}, v),
            rtol=1e-5,
            atol=1e-5,
        )
    # The output comes from the cache: zeroed operators leave only the D skip.
    zeroed = jax.tree.map(jnp.zeros_like, cache)
    D = params["D"][None, None, :]
    np.testing.assert_allclose(
        layer.apply({"params": params, **zeroed}, u), jnp.concatenate([D * u, D * u], -1), atol=1e-6
    )


def test_layer_rejects_odd_state_size():
    with pytest.raises(ValueError, match="d_state"):
        s4.S4D(d_state=7).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 2)))
