"""Test set-up: several CPU devices and strict rank promotion, before JAX starts."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Catches sigma-broadcasting bugs: a [B] sigma against a [B, T] signal must be explicit.
jax.config.update("jax_numpy_rank_promotion", "raise")
