r"""Speed and size figures, printed as one JSON object per line.

  python -m experiments.benchmark --sections=sampler            # sampler overhead, loop forms
  python -m experiments.benchmark --sections=networks --models=sashimi:reference,cqtdiff:reference
  python -m experiments.benchmark --params_only                 # parameter counts only
  python -m experiments.benchmark --sections=prior              # the prior against Wiener
  python -m experiments.benchmark --sections=sweep,warmstart    # sampler settings, warm starts
  python -m experiments.benchmark --platform=gpu ...            # the same on a GPU

Timings are wall-clock medians after compilation; this machine is shared, so compare only
figures printed by the same run. Nothing here is a test: targets are read off the output.
"""

import functools
import json
import statistics
import time

from absl import flags

from experiments import cli

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
flags.DEFINE_integer("restore_steps", 2, "Heun steps timed to extrapolate a 35-step restore.")
flags.DEFINE_string("platform", None, "JAX platform: cpu, gpu or tpu (default: JAX's choice).")
flags.DEFINE_string("sampler_model", "sashimi:cpu", "The small network of the sampler section.")
flags.DEFINE_integer("sampler_length", 16384, "Clip length of the sampler section.")
flags.DEFINE_integer("sampler_steps", 8, "Steps of the sampler section's full restores.")
flags.DEFINE_list("sigma_starts", ["0.3", "0.1", "0.03", "0.01"], "Warm-start levels.")
flags.DEFINE_integer("warm_clips", 2, "Held-out clips per set (warmstart, sweep).")
flags.DEFINE_string("warm_plot", None, "Where the warmstart section writes its PNG.")
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
flags.DEFINE_integer("prior_clips", 8, "Held-out clips per set in the prior section.")
flags.DEFINE_list(
    "sigmas", ["0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1"], "Noise levels (prior section)."
)
flags.DEFINE_list("sdedit_sigmas", ["0.1", "0.3"], "SDEdit starting levels (prior section).")
flags.DEFINE_integer("unconditional_clips", 4, "Unconditional samples (prior section).")
flags.DEFINE_integer("report_steps", 35, "Sampler steps of SDEdit and unconditional samples.")

SAMPLE_RATE = 22050


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def timed(fn, *args, repeats: int):
    """Returns (median seconds, first output) over `repeats` calls, blocking on results."""
    import jax

    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def build(model_spec: str):
    """Returns (model, config name, params count, init function) for 'model:config'."""
    from jaxrestore import checkpoints

    name, _, preset = model_spec.partition(":")
    config = checkpoints.model_config(name, preset or "reference")
    return name, preset, checkpoints.build_model(name, config)


def count_params(model, num_samples: int) -> int:
    import jax
    import jax.numpy as jnp

    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jnp.zeros((1, num_samples)), jnp.zeros((1,))
    )
    return sum(int(x.size) for x in jax.tree.leaves(shapes["params"]))


def matmul_rate(repeats: int) -> float:
    """Returns the machine's float32 matrix-product rate in GFLOP/s (2048² · 2048)."""
    import jax

    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    seconds, _ = timed(f, a, repeats=max(repeats, 5))
    return 2 * n**3 / seconds / 1e9


def count_flops(fn, *args) -> float:
    """Counts the floating-point operations of `fn(*args)` from its jaxpr.

    XLA's `cost_analysis` counts a loop body once, whatever its trip count, which undercounts
    networks built from `scan`ned layers several-fold. Here matrix products and convolutions
    count 2 per multiply-add, FFTs 2.5·N·log2 N per real transform (5 for complex), and
    elementwise arithmetic one per output element; `scan` bodies count `length` times.
    """
    import math

    import jax
    import jax.extend.core as jex
    import numpy as np

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


def network_record(model_spec: str, machine_gflops: float) -> dict:
    """Times one network: forward, forward+VJP, guided Heun steps → a 35-step restore."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from jaxrestore import degradations, networks, sample

    name, preset, model = build(model_spec)
    T, B = FLAGS.num_samples, FLAGS.batch
    start = time.perf_counter()
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, T)), jnp.zeros((1,)))["params"]
    init_s = time.perf_counter() - start
    x = 0.1 * jax.random.normal(jax.random.key(1), (B, T))
    c_noise = jnp.full((B,), -0.5)
    forward = jax.jit(lambda p, x, c: model.apply({"params": p}, x, c))
    start = time.perf_counter()
    jax.block_until_ready(forward(params, x, c_noise))
    compile_s = time.perf_counter() - start
    forward_s, _ = timed(forward, params, x, c_noise, repeats=FLAGS.repeats)
    flops = count_flops(lambda p, x, c: model.apply({"params": p}, x, c), params, x, c_noise)

    def fwd_vjp(p, x, c):
        out, vjp = jax.vjp(lambda z: model.apply({"params": p}, z, c), x)
        return vjp(out)[0]

    vjp_fn = jax.jit(fwd_vjp)
    jax.block_until_ready(vjp_fn(params, x, c_noise))
    vjp_s, _ = timed(vjp_fn, params, x, c_noise, repeats=FLAGS.repeats)
    vjp_flops = count_flops(fwd_vjp, params, x, c_noise)
    vjp_memory = vjp_fn.lower(params, x, c_noise).compile().memory_analysis()

    # A guided Heun restore (RG + DC, declipping), timed over a few steps of the host loop.
    denoiser = networks.as_denoiser(model, params, 0.1)
    config = dataclasses.replace(sample.PRESETS["rg+dc"], sigma_data=0.1)
    restorer = sample.Restorer(denoiser, config, operator_in_axes=None)
    y = jnp.clip(x, -0.1, 0.1)
    op = degradations.Clip(jnp.float32(0.1))
    keys = jax.random.split(jax.random.key(2), B)
    state = restorer._init(y, op, keys)
    step = functools.partial(restorer._pass, y, op, keys)
    jax.block_until_ready(step(state, jnp.int32(0), jnp.int32(0)))
    step_s, _ = timed(
        lambda s: step(s, jnp.int32(1), jnp.int32(0)), state, repeats=FLAGS.restore_steps
    )
    restore_s = step_s * (config.steps - 1) + step_s / 2  # the last step has no Heun pass
    audio_s = B * T / SAMPLE_RATE
    return {
        "model": name,
        "config": preset,
        "params": count_params(model, T),
        "batch": B,
        "num_samples": T,
        "platform": jax.default_backend(),
        "init_s": round(init_s, 3),
        "compile_forward_s": round(compile_s, 3),
        "forward_s": round(forward_s, 4),
        "forward_vjp_s": round(vjp_s, 4),
        "forward_gflop": round(flops / 1e9, 1),
        "forward_gflops_rate": round(flops / forward_s / 1e9, 1),
        "machine_matmul_gflops": round(machine_gflops, 1),
        "fraction_of_matmul_rate": round(flops / forward_s / 1e9 / machine_gflops, 3),
        "forward_vjp_gflop": round(vjp_flops / 1e9, 1),
        "forward_vjp_fraction_of_matmul_rate": round(vjp_flops / vjp_s / 1e9 / machine_gflops, 3),
        "forward_vjp_temp_mib": round(vjp_memory.temp_size_in_bytes / 2**20, 1),
        "guided_heun_step_s": round(step_s, 3),
        "restore_35_steps_s": round(restore_s, 2),
        "restore_is_extrapolated": True,
        "nfe": sample.nfe(config),
        "real_time_factor": round(restore_s / audio_s, 3),
    }


def networks_section() -> None:
    machine = matmul_rate(FLAGS.repeats)
    records = []
    for spec in FLAGS.models:
        record = network_record(spec, machine)
        records.append(record)
        emit(record)
    by_model = {}
    for r in records:
        by_model.setdefault(r["config"], {})[r["model"]] = r
    for preset, pair in by_model.items():
        if "sashimi" in pair and "cqtdiff" in pair:
            s, c = pair["sashimi"], pair["cqtdiff"]
            emit(
                {
                    "comparison": "cqtdiff:sashimi",
                    "config": preset,
                    "forward_speed_ratio": round(c["forward_s"] / s["forward_s"], 2),
                    "forward_vjp_speed_ratio": round(c["forward_vjp_s"] / s["forward_vjp_s"], 2),
                    "restore_speed_ratio": round(
                        c["restore_35_steps_s"] / s["restore_35_steps_s"], 2
                    ),
                    "flop_ratio": None
                    if not (s["forward_gflop"] and c["forward_gflop"])
                    else round(c["forward_gflop"] / s["forward_gflop"], 2),
                }
            )
    if FLAGS.baseline:
        for spec in FLAGS.models:
            baseline_section(spec)


def baseline_section(spec: str) -> None:
    """Times `spec` in this checkout and in `--baseline`, alternating whole processes.

    Each process runs experiments/network_timing.py (best of `--repeats` after compiling);
    the ratio is baseline over this tree's time, the best of `--pairs` processes each.
    """
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(here, "experiments", "network_timing.py")
    args = [spec, str(FLAGS.num_samples), str(FLAGS.batch), str(FLAGS.repeats)]
    runs = {"baseline": [], "this": []}
    for _ in range(FLAGS.pairs):
        for tree, name in ((FLAGS.baseline, "baseline"), (here, "this")):
            env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
            out = subprocess.run(
                [sys.executable, script, *args], env=env, capture_output=True, text=True
            )
            if out.returncode:
                raise cli.UsageError(f"network_timing failed in {tree}: {out.stderr[-500:]}")
            record = json.loads(out.stdout.strip().splitlines()[-1])
            emit({"tree": name, **record})
            runs[name].append(record)
    keys = ("forward_s", "forward_vjp_s", "guided_evaluation_s")
    best = {n: {k: min(r[k] for r in rs) for k in keys} for n, rs in runs.items()}
    emit(
        {
            "comparison": "baseline:this",
            "model": spec,
            **{f"{k[:-2]}_speedup": round(best["baseline"][k] / best["this"][k], 2) for k in keys},
        }
    )


def sampler_section() -> None:
    """Sampler overhead: one restore against NFE × one guided evaluation; loop vs host loop."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from jaxrestore import degradations, guidance, networks, sample

    name, preset, model = build(FLAGS.sampler_model)
    T, B = FLAGS.sampler_length, FLAGS.batch
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, T)), jnp.zeros((1,)))["params"]
    denoiser = networks.as_denoiser(model, params, 0.1)
    x = 0.1 * jax.random.normal(jax.random.key(1), (B, T))
    op = degradations.Clip(jnp.float32(0.08))
    y = jax.vmap(op.apply)(x)
    keys = jax.random.split(jax.random.key(2), B)
    rg_dc = (guidance.ReconstructionGuidance(), guidance.DataConsistency())

    def guided_estimate(x, y, s):  # one RG + DC evaluation, as each guided pass makes
        context = guidance.Context(y, op, 0.1, jnp.int32(0), FLAGS.sampler_steps, 1.0)
        return guidance.guide(rg_dc, denoiser, context)(x, s)

    for method in ("rg+dc", "rg_drho+dc+rp"):
        config = dataclasses.replace(
            sample.PRESETS[method], sigma_data=0.1, steps=FLAGS.sampler_steps
        )
        estimate = jax.jit(jax.vmap(guided_estimate, in_axes=(0, 0, None)))
        jax.block_until_ready(estimate(x, y, 0.5))
        eval_s, _ = timed(estimate, x, y, 0.5, repeats=FLAGS.repeats)
        record = {
            "section": "sampler",
            "model": f"{name}:{preset}",
            "method": method,
            "steps": config.steps,
            "nfe": sample.nfe(config),
            "batch": B,
            "num_samples": T,
            "platform": jax.default_backend(),
            "guided_eval_s": round(eval_s, 4),
        }
        for stepwise in (True, False):
            restorer = sample.Restorer(denoiser, config, operator_in_axes=None, stepwise=stepwise)
            start = time.perf_counter()
            jax.block_until_ready(restorer(y, op, keys))
            first = time.perf_counter() - start
            seconds, _ = timed(restorer, y, op, keys, repeats=max(1, FLAGS.repeats - 1))
            form = "host_loop" if stepwise else "single_program"
            record[f"{form}_restore_s"] = round(seconds, 3)
            record[f"{form}_compile_s"] = round(first - seconds, 3)
            record[f"{form}_overhead"] = round(seconds / (record["nfe"] * eval_s) - 1, 3)
        emit(record)


def prior_section() -> None:
    """The prior's report card (`jaxrestore.report_card`), on held-out clips, dry and wet.

    Denoising gain per σ against the Wiener filter of the training data's average power
    spectrum (`priors.wiener_prior`, the best denoiser for a Gaussian with that spectrum:
    a prior that has learned voices must beat it); HNR and SI-SDR after SDEdit from each
    `--sdedit_sigmas`; HNR of `--unconditional_clips` unconditional samples; the clean
    held-out and training clips' HNR beside them. One JSON row each, then a summary table.
    """
    import jax

    from jaxrestore import priors, report_card

    prior = cli.load_prior(FLAGS.checkpoint)
    T, n = FLAGS.sampler_length, FLAGS.prior_clips
    wiener = priors.wiener_prior(T, prior.sigma_data, SAMPLE_RATE)
    held_out = {s: _clips(prior, "test", s == "wet", n, T) for s in ("dry", "wet")}
    training = {s: _clips(prior, "train", s == "wet", n, T) for s in ("dry", "wet")}
    rows = report_card.report(
        prior,
        held_out,
        training,
        jax.random.key(0),
        sigmas=[float(s) for s in FLAGS.sigmas],
        sdedit_sigmas=[float(s) for s in FLAGS.sdedit_sigmas],
        num_unconditional=FLAGS.unconditional_clips,
        steps=FLAGS.report_steps,
        baseline=wiener.denoiser,
    )
    for row in rows:
        emit({"section": "prior", "clips": n, "num_samples": T, **row})
    print(report_card.summary(rows))


def _clips(prior, split: str, wet: bool, count: int, length: int, offset: int = 0):
    """Returns `count` synthetic clips [count, length] of `split`, each scaled to RMS σ_d."""
    import jax.numpy as jnp

    from jaxrestore.data import synthetic

    data = synthetic.SyntheticVocals(wet=wet).split(split)
    x0 = jnp.stack([jnp.asarray(data.segment(offset + i, length)) for i in range(count)])
    return x0 * prior.sigma_data / jnp.sqrt(jnp.mean(x0**2, axis=-1, keepdims=True))


def sweep_section() -> None:
    """Picks RG δρ's ξ schedule and RePaint's u by measurement (the poster publishes neither).

    For every ξ:ξ_end pair (ξ rising linearly over the steps; equal values: constant ξ) and
    every u, with DC: the mean SI-SDR gain of declipping at 5 dB input SDR and the LSD of
    bandwidth extension from 3 kHz, on held-out clips (validation split), dry and wet.
    """
    import dataclasses

    import jax
    import jax.numpy as jnp

    from jaxrestore import degradations, guidance, metrics, sample

    prior = cli.load_prior(FLAGS.checkpoint)
    T = FLAGS.sampler_length
    lowpass = degradations.lowpass(3000.0, SAMPLE_RATE)
    for wet in [name == "wet" for name in FLAGS.sweep_sets]:
        x0 = _clips(prior, "validation", wet, FLAGS.warm_clips, T, offset=100)
        keys = jax.random.split(jax.random.key(0), x0.shape[0])
        c = jax.vmap(degradations.clip_threshold_for_sdr, in_axes=(0, None))(x0, 5.0)
        clipped = jax.vmap(lambda x, c: degradations.Clip(c).apply(x))(x0, c)
        lowpassed = jax.vmap(lowpass.apply)(x0)
        tasks = [
            ("declip5", clipped, degradations.Clip(c), 0, "si_sdr_gain_db"),
            ("bwe3k", lowpassed, lowpass, None, "lsd"),
        ]
        for pair in FLAGS.sweep_xi:
            xi, xi_end = (float(v) for v in pair.split(":"))
            for cycles in FLAGS.sweep_cycles:
                schedule = (
                    guidance.ConstantXi(xi) if xi == xi_end else guidance.LinearXi(xi, xi_end)
                )
                config = dataclasses.replace(
                    sample.PRESETS["rg_drho+dc+rp"],
                    guidance=(
                        guidance.ReconstructionGuidance(schedule),
                        guidance.DataConsistency(),
                    ),
                    repaint_cycles=int(cycles),
                )
                record = {
                    "section": "sweep",
                    "set": "wet" if wet else "dry",
                    "xi": xi,
                    "xi_end": xi_end,
                    "repaint_cycles": int(cycles),
                    "nfe": sample.nfe(config),
                }
                for name, y, op, axes, metric in tasks:
                    start = time.perf_counter()
                    x = sample.Restorer(prior, config, operator_in_axes=axes)(y, op, keys)
                    if metric == "lsd":
                        value = float(jnp.mean(metrics.lsd(x, x0)))
                        record[f"{name}_input_lsd"] = round(float(jnp.mean(metrics.lsd(y, x0))), 3)
                    else:
                        value = float(jnp.mean(metrics.si_sdr(x, x0) - metrics.si_sdr(y, x0)))
                    record[f"{name}_{metric}"] = round(value, 3)
                    record[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
                emit(record)


def warmstart_section() -> None:
    """Declipping quality against NFE: cold presets, A-SPADE warm starts, A-SPADE alone.

    Uses the prior (--checkpoint, default the shipped one) on held-out synthetic clips
    (validation seeds), 5 and 10 dB input SDR.
    """
    import dataclasses

    import jax
    import jax.numpy as jnp

    from jaxrestore import degradations, metrics, sample, spade

    model = cli.load_prior(FLAGS.checkpoint)
    T = FLAGS.sampler_length
    points = []
    for wet in (False, True):
        x0 = _clips(model, "validation", wet, FLAGS.warm_clips, T, offset=50_000_000)
        keys = jax.random.split(jax.random.key(0), x0.shape[0])
        for sdr in (5.0, 10.0):
            c = jax.vmap(degradations.clip_threshold_for_sdr, in_axes=(0, None))(x0, sdr)
            op = degradations.Clip(c)
            y = jax.vmap(lambda x, c: degradations.Clip(c).apply(x))(x0, c)
            base = float(jnp.mean(metrics.si_sdr(y, x0)))

            def gain_of(x, x0=x0, base=base):
                return float(jnp.mean(metrics.si_sdr(x, x0))) - base

            aspade = jax.vmap(spade.aspade)(y, c)
            runs = [(name, sample.PRESETS[name]) for name in ("rg+dc", "rg_drho+dc+rp")]
            runs += [
                (
                    f"aspade warm σ={s}",
                    dataclasses.replace(
                        sample.PRESETS["rg+dc"], init=spade.ASpadeStart(), sigma_start=float(s)
                    ),
                )
                for s in FLAGS.sigma_starts
            ]
            for name, config in runs:
                start = time.perf_counter()
                x = sample.Restorer(model, config)(y, op, keys)
                record = {
                    "section": "warmstart",
                    "set": "wet" if wet else "dry",
                    "input_sdr": sdr,
                    "method": name,
                    "nfe": sample.nfe(config),
                    "si_sdr_gain_db": round(gain_of(x), 3),
                    "aspade_gain_db": round(gain_of(aspade), 3),
                    "clips": int(x0.shape[0]),
                    "num_samples": T,
                    "seconds": round(time.perf_counter() - start, 1),
                }
                points.append(record)
                emit(record)
    if FLAGS.warm_plot:
        _plot_warmstart(FLAGS.warm_plot, points)


def _plot_warmstart(path: str, points: list[dict]) -> None:
    from jaxrestore import plots

    plt = plots.plt
    keys = sorted({(p["set"], p["input_sdr"]) for p in points})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    for ax, (set_name, sdr) in zip(axes[0], keys, strict=True):
        mine = [p for p in points if (p["set"], p["input_sdr"]) == (set_name, sdr)]
        warm = [p for p in mine if p["method"].startswith("aspade warm")]
        cold = [p for p in mine if not p["method"].startswith("aspade warm")]
        ax.plot(
            [p["nfe"] for p in warm],
            [p["si_sdr_gain_db"] for p in warm],
            "o-",
            label="A-SPADE warm start",
        )
        for p in cold:
            ax.plot(p["nfe"], p["si_sdr_gain_db"], "s", label=f"cold {p['method']}")
        ax.axhline(mine[0]["aspade_gain_db"], color="k", ls="--", label="A-SPADE")
        ax.set_title(f"{set_name}, {sdr:g} dB input SDR")
        ax.set_xlabel("NFE")
        ax.set_ylabel("SI-SDR gain (dB)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    del argv
    import jax

    if FLAGS.platform:
        jax.config.update("jax_platforms", FLAGS.platform)
    emit(
        {
            "devices": [str(d) for d in jax.devices()],
            "process_count": jax.process_count(),
            "jax": jax.__version__,
        }
    )
    if FLAGS.params_only:
        from jaxrestore import checkpoints

        for name in checkpoints.MODEL_NAMES:
            module, _, _ = checkpoints.network_module(name)
            for preset in module.CONFIGS:
                _, _, model = build(f"{name}:{preset}")
                emit({"model": name, "config": preset, "params": count_params(model, 65536)})
        return
    sections = {
        "sampler": sampler_section,
        "networks": networks_section,
        "warmstart": warmstart_section,
        "prior": prior_section,
        "sweep": sweep_section,
    }
    for section in FLAGS.sections:
        if section not in sections:
            raise cli.UsageError(f"unknown section {section!r}; use {sorted(sections)}")
        sections[section]()


if __name__ == "__main__":
    cli.run(main)
