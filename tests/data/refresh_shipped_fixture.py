"""Recomputes the shipped-weights rows of sashimi_before.npz when the shipped weights change.

The fixture pins SaShiMi-Diff to its implementation before issue #14 (commit 186be61: S4D
kernels built in every call). Its `shipped_*` rows hold that implementation's output and input
VJP for the shipped weights, so new weights need new rows, computed by the old code:

  git worktree add /tmp/before 186be61
  PYTHONPATH=/tmp/before python tests/data/refresh_shipped_fixture.py WEIGHTS.msgpack

The inputs (`shipped_x`, `shipped_c`) and the other presets' rows stay as they are; the
cotangent is cos(F), as the test expects.
"""

import json
import os
import shutil
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from jaxrestore import checkpoints

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sashimi_before.npz")


def main(weights: str) -> None:
    if not checkpoints.__file__.startswith(os.environ.get("PYTHONPATH", "\0")):
        sys.exit("run with PYTHONPATH set to a checkout of the implementation before issue #14")
    before = dict(np.load(FIXTURE))
    with tempfile.TemporaryDirectory() as folder:  # the old code reads `num_samples`
        copy = os.path.join(folder, "weights.msgpack")
        shutil.copy(weights, copy)
        with open(os.path.splitext(weights)[0] + ".json") as f:
            sidecar = json.load(f)
        sidecar.setdefault("num_samples", sidecar.get("clip_length"))
        with open(os.path.join(folder, "weights.json"), "w") as f:
            json.dump(sidecar, f)
        model, params, _ = checkpoints.load_msgpack_params(copy)
    x, c = jnp.asarray(before["shipped_x"]), jnp.asarray(before["shipped_c"])
    F, vjp = jax.vjp(lambda z: model.apply({"params": params}, z, c), x)
    before["shipped_F"] = np.asarray(F)
    before["shipped_vjp"] = np.asarray(vjp(jnp.cos(F))[0])
    np.savez(FIXTURE, **before)
    print(f"rewrote the shipped rows of {FIXTURE} with {checkpoints.__file__}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
