r"""Draws unconditional samples from a diffusion prior: what the model believes a voice is.

  python -m experiments.generate --output_dir=samples --num_clips=4 --plot
  python -m experiments.generate --output_dir=held --sigma_start=0.3 --plot   # from data

Writes `sample{i}.wav` (float WAV at the model's rate) and, with --plot, `samples.png`: the
spectrograms of the samples above those of as many clips of the synthetic training data
(dry and wet alternately), on one colour scale, to judge by eye whether they look alike.
The sampler is the deterministic-churn EDM sampler of the restorations with no observation
(a mask of zeros: A = 0, so the posterior is the prior), started at σ_max = 10 ≫ σ_d.
It prints the harmonics-to-noise ratio (`metrics.harmonicity`) of the samples and of as many
training clips: the synthetic voice reads well above 10 dB, shaped noise below 0.

With --sigma_start the sampler starts instead from held-out clips of the synthetic data
(validation seeds) noised to that level, and runs the remaining steps with no observation
(SDEdit, Meng et al. 2022): from how high a σ the prior still brings back a voice, and the
comparison clips are those starting clips.
Bad input gets one line on stderr and exit status 2; no file is replaced without --overwrite.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments import cli
from jaxrestore import audio, degradations, metrics, plots, sample
from jaxrestore.data import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Folder for the samples (created if missing).")
flags.DEFINE_integer("num_clips", 4, "How many samples to draw.")
flags.DEFINE_integer("clip_length", 65536, "Samples per clip (a multiple of 256).")
flags.DEFINE_integer("steps", 35, "Sampler steps T (Heun: 2T − 1 denoiser evaluations).")
flags.DEFINE_float("sigma_max", 10.0, "Starting noise level σ_max (well above σ_d).")
flags.DEFINE_float("sigma_start", None, "Start from held-out clips noised to this σ.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("checkpoint", None, "A training work dir or exported model; default: shipped.")
flags.DEFINE_bool("plot", False, "Also write samples.png next to training clips.")
flags.DEFINE_bool("overwrite", False, "Replace existing output files.")


def main(argv):
    del argv
    cli.enable_compilation_cache()

    if not FLAGS.output_dir:
        raise cli.UsageError("--output_dir is required")
    if FLAGS.num_clips < 1 or FLAGS.steps < 1:
        raise cli.UsageError("--num_clips and --steps must be at least 1")
    if FLAGS.clip_length < 256 or FLAGS.clip_length % 256:
        raise cli.UsageError(f"--clip_length must be a multiple of 256, got {FLAGS.clip_length}")
    if FLAGS.sigma_start is not None and not 0 < FLAGS.sigma_start <= FLAGS.sigma_max:
        raise cli.UsageError(f"--sigma_start must be in (0, σ_max], got {FLAGS.sigma_start}")
    outputs = [os.path.join(FLAGS.output_dir, f"sample{i}.wav") for i in range(FLAGS.num_clips)]
    if FLAGS.plot:
        outputs.append(os.path.join(FLAGS.output_dir, "samples.png"))
    if not FLAGS.overwrite:
        for path in outputs:
            if os.path.exists(path):
                raise cli.UsageError(f"{path} exists; pass --overwrite to replace it")
    prior = cli.load_prior(FLAGS.checkpoint)
    os.makedirs(FLAGS.output_dir, exist_ok=True)

    config = sample.SamplerConfig(
        steps=FLAGS.steps,
        sigma_max=FLAGS.sigma_max,
        guidance=(),  # no guidance: the posterior of A = 0 is the prior
        init=sample.ColdStart() if FLAGS.sigma_start is None else sample.FromObservation(),
        sigma_start=FLAGS.sigma_start,
    )
    B, T = FLAGS.num_clips, FLAGS.clip_length
    restorer = sample.Restorer(prior, config, operator_in_axes=None)
    keys = jax.random.split(jax.random.key(FLAGS.seed), B)
    if FLAGS.sigma_start is None:
        reference = _data_clips(B, T, "train")
        y = np.zeros((B, T), np.float32)
        operator = degradations.Mask(jnp.zeros((T,), jnp.float32))  # A = 0: nothing observed
    else:
        # A = I only to hand the clips to the warm start (x_init = A†y = y); with no guidance
        # and no data consistency the sampler never looks at them again.
        reference = _data_clips(B, T, "validation")
        y = reference
        operator = degradations.Mask(jnp.ones((T,), jnp.float32))
    with cli.progress_bar("unconditional") as progress:
        x = restorer(jnp.asarray(y, jnp.float32), operator, keys, progress)
    x = jax.device_get(x)  # [B, T]
    for path, clip in zip(outputs, x, strict=False):
        audio.write_audio(
            path, clip[None], prior.sample_rate, subtype="FLOAT", overwrite=FLAGS.overwrite
        )
    if FLAGS.plot:
        _plot(outputs[-1], x, reference, prior.sample_rate)
    rms = ", ".join(f"{float((clip**2).mean() ** 0.5):.3f}" for clip in x)
    print(
        f"{FLAGS.output_dir}: {B} samples of {T / prior.sample_rate:.2f} s "
        f"(RMS {rms}; σ_d of the prior {prior.sigma_data:.3f})"
    )
    if T >= 2048:  # one HNR frame
        compared = "training clips" if FLAGS.sigma_start is None else "starting clips"
        for name, clips in (("samples", x), (compared, reference)):
            hnr = metrics.harmonicity(clips, prior.sample_rate)
            print(
                f"  {name}: HNR {', '.join(f'{v:.1f}' for v in hnr['hnr_db'])} dB, "
                f"voiced {', '.join(f'{v:.0%}' for v in hnr['voiced'])} of frames"
            )
    if FLAGS.sigma_start is not None:
        si_sdr = ", ".join(f"{v:.1f}" for v in np.asarray(metrics.si_sdr(x, reference)))
        print(f"  SI-SDR of the samples to their starting clips: {si_sdr} dB")


def _data_clips(count: int, num_samples: int, split: str) -> np.ndarray:
    """Clips of the synthetic voice the shipped prior was trained on (split "train") or held
    out from it ("validation"), dry and wet in turn, [count, num_samples]."""
    data = [synthetic.SyntheticVocals(wet=wet).split(split) for wet in (False, True)]
    return np.stack([np.asarray(data[i % 2].segment(i, num_samples)) for i in range(count)])


def _plot(path: str, x: np.ndarray, reference: np.ndarray, sample_rate: int) -> None:

    titles = [f"sample {i}" for i in range(len(x))]
    for i in range(len(x)):
        kind = "wet" if i % 2 else "dry"
        if FLAGS.sigma_start is None:
            titles.append(f"training clip {i} ({kind})")
        else:
            noise = f"σ = {FLAGS.sigma_start:g}"
            titles.append(f"held-out clip {i} ({kind}): sample {i} started from it + {noise}")
    plots.save_spectrograms(path, [*x, *reference], titles, sample_rate)


if __name__ == "__main__":
    cli.run(main)
