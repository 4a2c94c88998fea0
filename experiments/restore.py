r"""Restores a damaged vocal recording with the diffusion prior.

  python -m experiments.restore --input clipped.wav --output restored.wav --task=declip

Any rate, channel count and length: the recording is read, restored and written in blocks, on
every local device, so memory does not grow with its length. The threshold (declip) and the
cutoff (bwe) are read off the recording unless given. Bad input gets one line on stderr and
exit status 2, and nothing is written; outputs are written atomically and never replace a
file without --overwrite.

This file is intentionally kept short: the logic is in `jaxrestore.restoration`.
"""

import contextlib
import dataclasses
import os
import sys
import time

import numpy as np
import soundfile as sf
from absl import flags, logging

from experiments import cli
from jaxrestore import audio, restoration, sample, spade
from jaxrestore.evaluation import tasks

# Declipping: the mean of 8 draws of A-SPADE → DC, ahead of A-SPADE with 95 % confidence on
# validation clips of the shipped prior and within 0.06 dB of the best methods measured, which
# take 2–5× its time (`benchmark --sections=warmstart`; README, "Declipping: the default
# chosen on validation clips"). BWE and inpainting: RG + DC, the cheapest of the rows that tied
# on the evaluation's bandwidth extension (README, "Restoration quality").
DEFAULT_METHOD = {"declip": "aspade_dc+mean8", "bwe": "rg+dc", "inpaint": "rg+dc"}
DEFAULT_METHOD_HELP = ", ".join(f"{task}: {method}" for task, method in DEFAULT_METHOD.items())

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "The recording to restore (WAV, FLAC, OGG, MP3).")
flags.DEFINE_string("output", None, "Where to write the restoration (.wav, .flac, .ogg).")
flags.DEFINE_enum("task", "declip", ["declip", "bwe", "inpaint"], "The degradation to undo.")
flags.DEFINE_string(
    "method",
    None,
    f"One of {', '.join((*sample.PRESETS, *tasks.CLASSICAL))}, or a preset followed by "
    "+mean<N> (the mean of N posterior draws, e.g. aspade_dc+mean8); default: the best "
    f"measured on validation clips for the task ({DEFAULT_METHOD_HELP}).",
)
flags.DEFINE_float("clip_threshold", None, "Clipping level c (declip); estimated if omitted.")
flags.DEFINE_float("cutoff_hz", None, "Band limit of the recording (bwe); estimated if omitted.")
flags.DEFINE_integer("steps", None, "Sampler steps T (default: the preset's).")
flags.DEFINE_enum(
    "init",
    None,
    ["noise", "observation", "aspade"],
    "Warm start: where the sampler starts (default: the preset's; 'aspade' for declip only).",
)
flags.DEFINE_float(
    "sigma_start", None, "Warm start level: run only the steps below it (needs --init)."
)
flags.DEFINE_integer("num_draws", 1, "Posterior draws; >1 writes their mean, each, and a spread.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("checkpoint", None, "A training work dir or exported model; default: shipped.")
flags.DEFINE_integer(
    "batch_size", 4, "Segments (SPADE: pieces) per compiled call, rounded up to the devices."
)
flags.DEFINE_integer("segment_length", 65536, "Model-rate samples per segment.")
flags.DEFINE_bool("plot", False, "Also write a PNG of input, output and difference spectrograms.")
flags.DEFINE_bool("overwrite", False, "Replace existing output files.")


# The figures show the first minute: a whole hour would not fit a plot, nor memory.
_PLOT_SECONDS = 60


def _excerpt(path: str) -> np.ndarray:
    """Returns the first `_PLOT_SECONDS` of a sound file, [C, n]."""
    info = sf.info(path)
    frames, _ = sf.read(
        path, frames=_PLOT_SECONDS * info.samplerate, dtype="float32", always_2d=True
    )
    return frames.T


def main(argv):
    del argv
    cli.enable_compilation_cache()

    if not FLAGS.input or not FLAGS.output:
        raise cli.UsageError("--input and --output are required")
    source, target = os.path.abspath(FLAGS.input), os.path.abspath(FLAGS.output)
    if source == target:
        raise cli.UsageError("--output is the same file as --input; refusing to overwrite it")
    method = FLAGS.method or DEFAULT_METHOD[FLAGS.task]
    try:
        base, mean_of = tasks.parse_method(method)
    except ValueError as error:
        raise cli.UsageError(f"--method: {error}") from None
    if base == tasks.DEGRADED:
        raise cli.UsageError(f"--method={method} is no restoration")
    if tasks.declip_only(method) and FLAGS.task != "declip":
        raise cli.UsageError(f"--method={method} declips only; use it with --task=declip")
    if mean_of > 1 and FLAGS.num_draws > 1:
        raise cli.UsageError(f"--method={method} averages {mean_of} draws; drop --num_draws")
    stem, extension = os.path.splitext(target)
    outputs = [target]
    if FLAGS.num_draws > 1:
        outputs += [f"{stem}.sample{s}{extension}" for s in range(FLAGS.num_draws)]
        outputs += [f"{stem}.spread.png"]
    if FLAGS.plot:
        outputs.append(f"{stem}.png")
    if not FLAGS.overwrite:
        for path in outputs:
            if os.path.exists(path):
                raise cli.UsageError(f"{path} exists; pass --overwrite to replace it")
    if not os.path.isdir(os.path.dirname(target)):
        raise cli.UsageError(f"the output folder {os.path.dirname(target)} does not exist")
    if extension.lower() not in (".wav", ".flac", ".ogg"):
        raise cli.UsageError(f"--output must end in .wav, .flac or .ogg, got {extension!r}")

    recording = restoration.FileSource(source)
    rate, channels = recording.sample_rate, recording.channels
    logging.info("%s: %d channel(s), %d samples at %d Hz", source, channels, recording.frames, rate)
    # A declipped peak may exceed full scale: WAV keeps it in float; FLAC/OGG must clip.
    subtype = {".wav": "FLOAT", ".flac": "PCM_24", ".ogg": "VORBIS"}[extension.lower()]

    def writer(path):
        return audio.AudioWriter(path, rate, channels, subtype, overwrite=FLAGS.overwrite)

    start = time.perf_counter()
    if base in tasks.CLASSICAL:
        found = restoration.survey(recording)
        settings = restoration.resolve_stream_settings(
            recording,
            restoration.Settings(
                task="declip", config=sample.SamplerConfig(), clip_threshold=FLAGS.clip_threshold
            ),
            found,
        )
        with writer(target) as out:
            blocks = restoration.declip_blocks(
                recording, settings.clip_threshold, found.peak, method, batch=FLAGS.batch_size
            )
            for block in blocks:
                out.write(block)
        peak = out.peak
    else:
        prior = cli.load_prior(FLAGS.checkpoint)
        config = sample.PRESETS[base]  # σ_d comes with the prior
        if FLAGS.steps is not None:
            config = dataclasses.replace(config, steps=FLAGS.steps)
        if FLAGS.sigma_start is not None and FLAGS.init is None:
            raise cli.UsageError("--sigma_start needs --init (observation or aspade)")
        if FLAGS.init == "aspade" and FLAGS.task != "declip":
            raise cli.UsageError("--init=aspade is a declipper's output; use it with --task=declip")
        if FLAGS.init is not None:
            init = {
                "noise": sample.ColdStart(),
                "observation": sample.FromObservation(),
                "aspade": spade.ASpadeStart(),
            }[FLAGS.init]
            config = dataclasses.replace(config, init=init, sigma_start=FLAGS.sigma_start)
        settings = restoration.Settings(
            task=FLAGS.task,
            config=config,
            clip_threshold=FLAGS.clip_threshold,
            cutoff_hz=FLAGS.cutoff_hz,
            num_draws=max(mean_of, FLAGS.num_draws),
            seed=FLAGS.seed,
            segment_length=FLAGS.segment_length,
            batch_size=FLAGS.batch_size,
        )
        plan, _ = restoration.plan(recording, prior, settings)
        settings = plan.settings
        several = FLAGS.num_draws > 1
        sample_paths = outputs[1 : 1 + FLAGS.num_draws] if several else []
        with contextlib.ExitStack() as stack, cli.progress_bar(f"{FLAGS.task} ({method})") as bar:
            out = stack.enter_context(writer(target))
            each = [stack.enter_context(writer(path)) for path in sample_paths]
            for block in restoration.restore_blocks(recording, prior, plan, progress=bar):
                out.write(block.mean(axis=0))  # [S, C, n] → the posterior mean
                for s, sample_out in enumerate(each):
                    sample_out.write(block[s])
        peak = max([out.peak] + [w.peak for w in each])
        if several:
            samples = np.stack([_excerpt(path) for path in sample_paths])
            cli.plot_spread(f"{stem}.spread.png", samples, rate)
    elapsed = time.perf_counter() - start
    recording.close()

    if subtype != "FLOAT" and peak > 1.0:
        logging.warning("the restoration peaks above full scale; %s clips it (use .wav)", target)
    if FLAGS.plot:
        cli.plot_spectrograms(f"{stem}.png", _excerpt(source), _excerpt(target), rate)
    detail = (
        f"threshold {settings.clip_threshold:.4g}"
        if FLAGS.task == "declip"
        else f"cutoff {settings.cutoff_hz:.0f} Hz"
        if FLAGS.task == "bwe"
        else "gaps"
    )
    print(
        f"{target}: {FLAGS.task} with {method} ({detail}), {recording.frames / rate:.2f} s of "
        f"audio in {elapsed:.1f} s (real-time factor {elapsed * rate / recording.frames:.2f})"
    )


if __name__ == "__main__":
    sys.exit(cli.run(main))
