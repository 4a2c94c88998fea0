"""Installs jaxrestore: vocal restoration with an unsupervised diffusion prior.

  pip install -e .             # CPU
  pip install -e .[cuda12]     # NVIDIA GPUs, CUDA 12 wheels from PyPI (also [cuda13])
  pip install -e .[tpu]        # Cloud TPU VMs (libtpu)

The accelerator extras pin JAX to the version the project is tested with (requirements.txt),
through JAX's own extras, which bring the matching jaxlib and plugin.
"""

import setuptools

JAX_VERSION = "0.10.2"  # as pinned in requirements.txt

setuptools.setup(
    name="jaxrestore",
    version="0.1.0",
    description="Declipping and bandwidth extension of vocals by diffusion posterior sampling.",
    packages=setuptools.find_packages(include=["jaxrestore", "jaxrestore.*"]),
    package_data={"jaxrestore.pretrained": ["*.msgpack", "*.json"]},
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "chex>=0.1.92",
        "numpy>=2.0",
        "scipy>=1.14",
        "soundfile>=0.13",
        "absl-py>=2.0",
        "ml_collections>=1.0",
        "tqdm>=4.66",
        "matplotlib>=3.9",
    ],
    extras_require={
        accelerator: [f"jax[{accelerator}]=={JAX_VERSION}"]
        for accelerator in ("cuda12", "cuda13", "cuda12-local", "tpu")
    },
)
