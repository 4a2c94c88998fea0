"""The shipped model: it loads after `pip install .`, is a `Prior` the sampler takes as it is,
and the README's Python example restores with it."""

import dataclasses
import os
import shutil
import subprocess
import sys

import jax
import numpy as np

from jaxrestore import degradations, metrics, pretrained, priors, sample

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


def test_presets_with_the_shipped_prior_equal_the_explicit_sigma_data():
    prior = pretrained.load()
    assert isinstance(prior, priors.Prior) and prior.info.step > 0
    x0 = 0.1 * jax.random.normal(jax.random.key(0), (1024,))
    op = degradations.Clip(degradations.clip_threshold_for_sdr(x0, 5.0))
    y, gain = prior.normalize(op.apply(x0))
    op_prior = degradations.Clip(gain * op.threshold)
    config = dataclasses.replace(sample.PRESETS["pigdm+dc"], steps=3)
    key = jax.random.key(1)
    with_prior = sample.restore(prior, y, op_prior, key, config)
    # What callers had to write before: the bare denoiser and σ_d put into the config.
    explicit = dataclasses.replace(config, sigma_data=prior.sigma_data)
    np.testing.assert_array_equal(
        with_prior, sample.restore(prior.denoiser, y, op_prior, key, explicit)
    )


def test_the_readme_python_example_restores_the_clipped_vocal(monkeypatch):
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("## Using it from Python") :]
    code = section[section.index("```python\n") + len("```python\n") :]
    code = code[: code.index("```")]
    read = 'audio.read_audio("examples/clean_vocal.wav", prior.sample_rate)[0])'
    assert read in code
    code = code.replace(read, read + "[:16384]")  # the first 0.74 s: a quicker test
    monkeypatch.chdir(ROOT)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    x, x_hat, op = namespace["x"], namespace["x_hat"], namespace["op"]
    assert x_hat.shape == x.shape
    assert float(metrics.si_sdr(x_hat, x)) > float(metrics.si_sdr(op.apply(x), x)) + 1.0
