r"""Speed and size figures, printed as one JSON object per line.

  python -m experiments.benchmark --sections=sampler            # sampler overhead, loop forms
  python -m experiments.benchmark --sections=networks --models=sashimi:reference,cqtdiff:reference
  python -m experiments.benchmark --params_only                 # parameter counts only
  python -m experiments.benchmark --sections=prior              # the prior against Wiener
  python -m experiments.benchmark --sections=sweep,warmstart    # sampler settings, warm starts
  python -m experiments.benchmark --platform=cuda ...           # the same on an NVIDIA GPU

Timings are wall-clock medians after compilation; this machine is shared, so compare only
figures printed by the same run. Nothing here is a test: targets are read off the output.
The sections are functions of `jaxrestore.benchmarks`; this app parses flags and prints.
"""

import json
import os

import jax
from absl import flags

from experiments import cli
from jaxrestore import checkpoints, priors, report_card
from jaxrestore.benchmarks import costs, networks, samplers

FLAGS = flags.FLAGS
flags.DEFINE_list("sections", ["sampler", "networks"], "Which sections to run.")
flags.DEFINE_list(
    "models",
    ["sashimi:cpu", "sashimi:reference", "cqtdiff:reference"],
    "model:config pairs for the networks section.",
)
flags.DEFINE_bool("params_only", False, "Print only the parameter count of every model config.")
flags.DEFINE_integer("num_samples", 65536, "Clip length in samples.")
flags.DEFINE_integer("batch", 1, "Clips per call.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (median reported).")
flags.DEFINE_integer(
    "restore_steps", 2, "Heun steps timed to extrapolate a 35-step restore (0: no restore)."
)
flags.DEFINE_bool(
    "prepared", True, "networks: prepare the networks as restoration does (SaShiMi's chunked S4D)."
)
flags.DEFINE_string(
    "platform", None, "JAX platform: cpu, cuda, rocm or tpu (default: JAX's choice)."
)
flags.DEFINE_enum(
    "matmul_precision",
    "default",
    ["default", "float32", "tensorfloat32", "bfloat16"],
    "Precision of float32 matrix products and convolutions (JAX's jax_default_matmul_precision; "
    "FFTs stay float32): bfloat16 for bf16 products on a GPU or TPU.",
)
flags.DEFINE_string("sampler_model", "sashimi:cpu", "The small network of the sampler section.")
flags.DEFINE_integer("sampler_length", 16384, "Clip length of the sampler section.")
flags.DEFINE_integer("sampler_steps", 8, "Steps of the sampler section's full restores.")
flags.DEFINE_list("sigma_starts", ["0.3", "0.1", "0.03", "0.01"], "Warm-start levels.")
flags.DEFINE_integer("warm_clips", 4, "Validation clips per set (warmstart, sweep).")
flags.DEFINE_string("warm_plot", None, "Where the warmstart section writes its PNG.")
flags.DEFINE_list(
    "warm_presets", ["rg+dc", "rg_drho+dc+rp", "pigdm+dc", "pigdm+sdc"], "Cold presets (warmstart)."
)
flags.DEFINE_list("warm_draws", ["4"], "Posterior draws averaged per warm start (warmstart).")
flags.DEFINE_list("warm_sdrs", ["5", "10"], "Input SDRs in dB (warmstart).")
flags.DEFINE_list("warm_steps", ["35"], "Schedule lengths T of the warm starts (warmstart).")
flags.DEFINE_list("warm_guidance", ["rg+dc"], "Warm-start guidance: rg+dc and/or dc (warmstart).")
flags.DEFINE_list("sweep_xi", ["0.2:0.2", "0.2:0.5", "0.2:1.0", "0.5:0.5"], "ξ:ξ_end pairs.")
flags.DEFINE_list("sweep_cycles", ["0", "2"], "RePaint u values of the sweep section.")
flags.DEFINE_list("sweep_sets", ["dry", "wet"], "Held-out sets of the sweep section.")
flags.DEFINE_string(
    "checkpoint", None, "Prior of the prior/sweep/warmstart sections; default: shipped."
)
flags.DEFINE_string(
    "baseline",
    None,
    "networks: also time an older checkout (a folder with its jaxrestore/) side by side, "
    "alternating whole processes of experiments/network_timing.py with this tree's.",
)
flags.DEFINE_integer("pairs", 2, "networks --baseline: alternating process pairs per model.")
flags.DEFINE_list(
    "baseline_train",
    [],
    "networks --baseline: also time a training step side by side, on LENGTH,BATCH clips "
    "(the shipped recipe: 4096,16).",
)
flags.DEFINE_integer("prior_clips", 8, "Held-out clips per set in the prior section.")
flags.DEFINE_enum(
    "prior_split",
    "test",
    ["validation", "test"],
    "Held-out split of the prior section: validation to choose between priors, test to report.",
)
flags.DEFINE_list(
    "sigmas", ["0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1"], "Noise levels (prior section)."
)
flags.DEFINE_list("sdedit_sigmas", ["0.1", "0.3"], "SDEdit starting levels (prior section).")
flags.DEFINE_integer("unconditional_clips", 4, "Unconditional samples (prior section).")
flags.DEFINE_integer("report_steps", 35, "Sampler steps of SDEdit and unconditional samples.")

SAMPLE_RATE = 22050


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def networks_section() -> None:
    machine = costs.matmul_rate(FLAGS.repeats)
    records = []
    for spec in FLAGS.models:
        records.append(
            networks.record(
                spec,
                machine,
                clip_length=FLAGS.num_samples,
                batch=FLAGS.batch,
                repeats=FLAGS.repeats,
                restore_steps=FLAGS.restore_steps,
                sample_rate=SAMPLE_RATE,
                prepared=FLAGS.prepared,
            )
        )
        emit(records[-1])
    for comparison in networks.comparisons(records):
        emit(comparison)
    if FLAGS.baseline:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        script = os.path.join(here, "experiments", "network_timing.py")
        # (length, batch, train): the networks at the section's shape, then a training step.
        shapes = [(FLAGS.num_samples, FLAGS.batch, False)]
        if FLAGS.baseline_train:
            shapes.append((*map(int, FLAGS.baseline_train), True))
        for spec in FLAGS.models:
            for length, batch, train in shapes:
                for record in networks.side_by_side(
                    spec,
                    {"baseline": FLAGS.baseline, "this": here},
                    script,
                    clip_length=length,
                    batch=batch,
                    repeats=FLAGS.repeats,
                    pairs=FLAGS.pairs,
                    train=train,
                ):
                    emit(record)


def sampler_section() -> None:
    for record in samplers.overhead(
        FLAGS.sampler_model,
        clip_length=FLAGS.sampler_length,
        batch=FLAGS.batch,
        steps=FLAGS.sampler_steps,
        repeats=FLAGS.repeats,
    ):
        emit(record)


def prior_section() -> None:
    """The prior's report card (`jaxrestore.report_card`) on held-out clips, dry and wet."""
    prior = cli.load_prior(FLAGS.checkpoint)
    T, n = FLAGS.sampler_length, FLAGS.prior_clips
    clips = {
        split: {
            s: samplers.synthetic_clips(prior.sigma_data, split, s == "wet", n, T)
            for s in ("dry", "wet")
        }
        for split in (FLAGS.prior_split, "train")
    }
    rows = report_card.report(
        prior,
        clips[FLAGS.prior_split],
        clips["train"],
        jax.random.key(0),
        sigmas=[float(s) for s in FLAGS.sigmas],
        sdedit_sigmas=[float(s) for s in FLAGS.sdedit_sigmas],
        num_unconditional=FLAGS.unconditional_clips,
        steps=FLAGS.report_steps,
        baseline=priors.wiener_prior(T, prior.sigma_data, SAMPLE_RATE).denoiser,
    )
    for row in rows:
        emit({"section": "prior", "split": FLAGS.prior_split, "clips": n, "num_samples": T, **row})
    print(report_card.summary(rows))


def sweep_section() -> None:
    pairs = [tuple(float(v) for v in pair.split(":")) for pair in FLAGS.sweep_xi]
    for record in samplers.sweep(
        cli.load_prior(FLAGS.checkpoint),
        xi_pairs=pairs,
        repaint_cycles=[int(u) for u in FLAGS.sweep_cycles],
        sets=FLAGS.sweep_sets,
        num_clips=FLAGS.warm_clips,
        clip_length=FLAGS.sampler_length,
    ):
        emit(record)


def warmstart_section() -> None:
    """Declipping quality against NFE: A-SPADE, cold presets, warm starts, posterior means."""
    methods = samplers.declipping_methods(
        [float(s) for s in FLAGS.sigma_starts],
        FLAGS.warm_presets,
        [int(n) for n in FLAGS.warm_draws],
        [int(t) for t in FLAGS.warm_steps],
        FLAGS.warm_guidance,
    )
    points = []
    for record in samplers.declipping_curve(
        cli.load_prior(FLAGS.checkpoint),
        methods,
        sets=FLAGS.sweep_sets,
        input_sdrs=[float(s) for s in FLAGS.warm_sdrs],
        num_clips=FLAGS.warm_clips,
        clip_length=FLAGS.sampler_length,
    ):
        points.append(record)
        emit(record)
    if FLAGS.warm_plot:
        samplers.plot_declipping_curve(FLAGS.warm_plot, points)


SECTIONS = {
    "sampler": sampler_section,
    "networks": networks_section,
    "warmstart": warmstart_section,
    "prior": prior_section,
    "sweep": sweep_section,
}


def main(argv):
    del argv
    unknown = [s for s in FLAGS.sections if s not in SECTIONS]
    if unknown:
        raise cli.UsageError(f"unknown section {unknown[0]!r}; use {sorted(SECTIONS)}")
    if FLAGS.baseline_train and (
        len(FLAGS.baseline_train) != 2
        or not all(v.isdigit() and int(v) > 0 for v in FLAGS.baseline_train)
    ):
        raise cli.UsageError(
            f"--baseline_train must be LENGTH,BATCH (positive integers), got {FLAGS.baseline_train}"
        )
    if FLAGS.restore_steps < 0:
        raise cli.UsageError(f"--restore_steps must be ≥ 0, got {FLAGS.restore_steps}")
    if FLAGS.platform:
        jax.config.update("jax_platforms", FLAGS.platform)
    if FLAGS.matmul_precision != "default":
        jax.config.update("jax_default_matmul_precision", FLAGS.matmul_precision)
    emit(
        {
            "devices": [str(d) for d in jax.devices()],
            "process_count": jax.process_count(),
            "jax": jax.__version__,
            "matmul_precision": jax.config.jax_default_matmul_precision or "default",
        }
    )
    if FLAGS.params_only:
        for name in checkpoints.MODEL_NAMES:
            module, _, _ = checkpoints.network_module(name)
            for preset in module.CONFIGS:
                _, _, model = networks.build(f"{name}:{preset}")
                emit({"model": name, "config": preset, "params": costs.count_params(model, 65536)})
        return
    for section in FLAGS.sections:
        SECTIONS[section]()


if __name__ == "__main__":
    cli.run(main)
