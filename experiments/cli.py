"""What the command-line tools share: clean errors, the compile cache, progress, the prior.

Every tool runs its `main` through `run`, so that bad input (a `ValueError`: a missing or
unreadable file, a value out of range) ends in one line on stderr and exit status 2, never a
traceback.
"""

import contextlib
import logging as std_logging
import os
import sys

import jax
from absl import app, flags
from tqdm import tqdm

from jaxrestore import checkpoints, plots, pretrained


class UsageError(ValueError):
    """A command line that cannot be carried out as given."""


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def run(main) -> None:
    """Runs an absl `main`, turning bad input into one line on stderr and exit status 2."""

    def guarded(argv):
        # JAX logs, at INFO, every accelerator it did not find; that is noise for a tool's user.
        std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)
        try:
            return main(argv)
        except ValueError as error:  # AudioError, RestorationError, UsageError, …
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    app.run(guarded, flags_parser=_parse_flags)


def enable_compilation_cache() -> None:
    """Turns on JAX's persistent compilation cache, so a second run does not compile again."""
    directory = os.environ.get(
        "JAXRESTORE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxrestore", "jax")
    )
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:  # a file in the way, no permission: say which variable to change
        raise UsageError(
            f"the compile cache {directory} (JAXRESTORE_CACHE) is not a usable folder: "
            f"{error.strerror}"
        ) from None
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def load_prior(checkpoint: str | None):
    """Returns a `priors.Prior` from a checkpoint (a training work dir, an exported
    `.msgpack`) or, with None, the model shipped in the package."""
    if checkpoint is None:
        return pretrained.load()
    if not os.path.exists(checkpoint):
        raise UsageError(f"--checkpoint {checkpoint}: no such file or folder")
    return checkpoints.load_prior(checkpoint)


@contextlib.contextmanager
def progress_bar(description: str):
    """Yields a `progress(done, total)` callback drawing a tqdm bar with the expected time."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit="NFE", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def plot_spectrograms(path: str, degraded, restored, sample_rate: int) -> None:
    """Writes a PNG of the input, output and difference spectrograms (first channel)."""
    plots.save_comparison(path, degraded[0], restored[0], sample_rate)


def plot_spread(path: str, samples, sample_rate: int) -> None:
    """Writes a PNG of the per-time-frequency spread of posterior samples (first channel)."""
    plots.save_spread(path, samples[:, 0], sample_rate)
