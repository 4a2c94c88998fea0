"""The shipped model: it loads after `pip install .`, from outside the repository."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_model_loads_after_install_from_another_directory(tmp_path):
    # Build from a copy: an in-tree build would leave build/ in the checkout.
    source = tmp_path / "source"
    shutil.copytree(
        os.path.join(ROOT, "jaxrestore"),
        source / "jaxrestore",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(os.path.join(ROOT, "setup.py"), source)
    site = tmp_path / "site"
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site)]
    subprocess.run([*command, str(source)], check=True, capture_output=True, timeout=600)
    probe = (
        "import jax, jax.numpy as jnp, jaxrestore\n"
        "from jaxrestore import pretrained\n"
        f"assert jaxrestore.__file__.startswith({str(site)!r}), jaxrestore.__file__\n"
        "m = pretrained.load()\n"
        "x = 0.1 * jax.random.normal(jax.random.key(0), (768,))\n"  # any multiple of 256
        "d = m.denoiser(x, 0.5)\n"
        "assert d.shape == x.shape and bool(jnp.all(jnp.isfinite(d)))\n"
        "assert not bool(jnp.allclose(d, x))\n"
        "print(m.sample_rate, m.sigma_data, m.info.step)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rate, sigma_data, step = result.stdout.split()
    assert int(rate) == 22050 and 0 < float(sigma_data) < 1 and int(step) > 0
