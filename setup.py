"""Installs jaxrestore: vocal restoration with an unsupervised diffusion prior."""

import setuptools

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
)
