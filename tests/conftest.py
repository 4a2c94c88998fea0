"""Test set-up: several CPU devices and strict rank promotion, before JAX starts; fixtures
shared by the command-line tests."""

import os

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Catches sigma-broadcasting bugs: a [B] sigma against a [B, T] signal must be explicit.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained tiny SaShiMi-Diff exported like the shipped model (no training needed)."""
    import jax.numpy as jnp

    from jaxrestore import checkpoints

    folder = tmp_path_factory.mktemp("model")
    config = checkpoints.model_config("sashimi", "tiny")
    model = checkpoints.build_model("sashimi", config)
    params = model.init(jax.random.key(0), jnp.zeros((1, 1024)), jnp.zeros((1,)))["params"]
    info = checkpoints.CheckpointInfo("sashimi", config, sigma_data=0.2, sample_rate=22050, step=0)
    return str(checkpoints.write_msgpack(folder / "tiny.msgpack", params, info, clip_length=1024))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One compilation cache per test module: runs of the same program reuse it."""
    return str(tmp_path_factory.mktemp("cache"))
