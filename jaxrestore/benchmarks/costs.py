"""What a computation costs: wall-clock time, FLOPs, parameters, the machine's matmul rate."""

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
from flax import linen as nn


def timed(fn: Callable[..., Any], *args, repeats: int) -> tuple[float, Any]:
    """Returns (median seconds, last output) over `repeats` calls, blocking on results."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def matmul_rate(repeats: int, n: int = 2048) -> float:
    """Returns the machine's float32 matrix-product rate in GFLOP/s (n² · n products)."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    seconds, _ = timed(f, a, repeats=max(repeats, 5))
    return 2 * n**3 / seconds / 1e9


def count_params(model: nn.Module, clip_length: int) -> int:
    """Returns the number of parameters of a denoiser network `model(x [1, T], c_noise [1])`."""
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jnp.zeros((1, clip_length)), jnp.zeros((1,))
    )
    return sum(int(x.size) for x in jax.tree.leaves(shapes["params"]))


def count_flops(fn: Callable[..., Any], *args) -> float:
    """Counts the floating-point operations of `fn(*args)` from its jaxpr.

    XLA's `cost_analysis` counts a loop body once, whatever its trip count, which undercounts
    networks built from `scan`ned layers several-fold. Here matrix products and convolutions
    count 2 per multiply-add, FFTs 2.5·N·log2 N per real transform (5 for complex), and
    elementwise arithmetic one per output element; `scan` bodies count `length` times.
    """

    def size(aval) -> int:
        return int(np.prod(aval.shape)) if hasattr(aval, "shape") else 1

    def walk(jaxpr) -> float:
        total = 0.0
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            subs = [v for v in eqn.params.values() if isinstance(v, jex.ClosedJaxpr)]
            subs += [v for v in eqn.params.values() if isinstance(v, jex.Jaxpr)]
            if name == "scan":
                total += eqn.params["length"] * walk(eqn.params["jaxpr"].jaxpr)
            elif name in ("cond", "switch"):
                total += max(walk(b.jaxpr) for b in eqn.params["branches"])
            elif name == "while":
                total += walk(eqn.params["body_jaxpr"].jaxpr)  # trip count unknown: once
            elif subs:
                total += sum(walk(getattr(j, "jaxpr", j)) for j in subs)
            elif name == "dot_general":
                (contract, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval
                k = int(np.prod([lhs.shape[d] for d in contract]))
                total += 2.0 * size(eqn.outvars[0].aval) * k
            elif name == "conv_general_dilated":
                rhs = eqn.invars[1].aval
                out_features = rhs.shape[eqn.params["dimension_numbers"].rhs_spec[0]]
                total += 2.0 * size(eqn.outvars[0].aval) * size(rhs) / out_features
            elif name == "fft":
                kind, n = eqn.params["fft_type"], int(np.prod(eqn.params["fft_lengths"]))
                # Along the transformed axes the input holds n values, n//2 + 1 for IRFFT.
                per_batch = n // 2 + 1 if kind == jax.lax.FftType.IRFFT else n
                batch = size(eqn.invars[0].aval) / per_batch
                real = kind in (jax.lax.FftType.RFFT, jax.lax.FftType.IRFFT)
                total += (2.5 if real else 5.0) * batch * n * math.log2(max(n, 2))
            else:
                total += sum(size(v.aval) for v in eqn.outvars)
        return total

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)
