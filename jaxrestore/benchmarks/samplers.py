"""The samplers measured: their overhead, RG δρ / RePaint sweeps, quality against NFE.

Quality is measured on held-out synthetic clips of the validation split (never the test
clips the tables report), scaled to RMS σ_d as restorations show them to the prior.
"""

import dataclasses
import functools
import time
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrestore import degradations, guidance, metrics, networks, plots, priors, sample, spade
from jaxrestore.benchmarks import costs
from jaxrestore.benchmarks.networks import build
from jaxrestore.data import synthetic
from jaxrestore.evaluation.tables import mean_interval


def synthetic_clips(
    sigma_data: float, split: str, wet: bool, count: int, length: int, offset: int = 0
) -> jax.Array:
    """Returns `count` synthetic clips [count, length] of `split`, each scaled to RMS σ_d."""
    data = synthetic.SyntheticVocals(wet=wet).split(split)
    x0 = jnp.stack([jnp.asarray(data.segment(offset + i, length)) for i in range(count)])
    return x0 * sigma_data / jnp.sqrt(jnp.mean(x0**2, axis=-1, keepdims=True))


def overhead(
    spec: str, *, clip_length: int, batch: int, steps: int, repeats: int
) -> Iterator[dict]:
    """Yields, per preset, one restore's time against NFE × one guided evaluation.

    Both loop forms of `sample.Restorer` are timed (host loop over passes, one program), on a
    randomly initialised network `spec` ("model:preset"), declipping.
    """
    name, preset, model = build(spec)
    T, B = clip_length, batch
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, T)), jnp.zeros((1,)))["params"]
    denoiser = networks.as_denoiser(model, params, 0.1)
    x = 0.1 * jax.random.normal(jax.random.key(1), (B, T))
    op = degradations.Clip(jnp.float32(0.08))
    y = jax.vmap(op.apply)(x)
    keys = jax.random.split(jax.random.key(2), B)
    rg_dc = (guidance.ReconstructionGuidance(), guidance.DataConsistency())

    def guided_estimate(x, y, s):  # one RG + DC evaluation, as each guided pass makes
        context = guidance.Context(y, op, 0.1, jnp.int32(0), steps, 1.0)
        return guidance.guide(rg_dc, denoiser, context)(x, s)

    estimate = jax.jit(jax.vmap(guided_estimate, in_axes=(0, 0, None)))
    jax.block_until_ready(estimate(x, y, 0.5))
    eval_s, _ = costs.timed(estimate, x, y, 0.5, repeats=repeats)
    for method in ("rg+dc", "rg_drho+dc+rp"):
        config = dataclasses.replace(sample.PRESETS[method], sigma_data=0.1, steps=steps)
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
            seconds, _ = costs.timed(restorer, y, op, keys, repeats=max(1, repeats - 1))
            form = "host_loop" if stepwise else "single_program"
            record[f"{form}_restore_s"] = round(seconds, 3)
            record[f"{form}_compile_s"] = round(first - seconds, 3)
            record[f"{form}_overhead"] = round(seconds / (record["nfe"] * eval_s) - 1, 3)
        yield record


def sweep(
    prior: priors.Prior,
    *,
    xi_pairs: Sequence[tuple[float, float]],
    repaint_cycles: Sequence[int],
    sets: Sequence[str],
    num_clips: int,
    clip_length: int,
) -> Iterator[dict]:
    """Yields, per ξ schedule and RePaint u, RG δρ + DC's declipping gain and BWE LSD.

    For every ξ:ξ_end pair (ξ rising linearly over the steps; equal values: constant ξ) and
    every u: the mean SI-SDR gain of declipping at 5 dB input SDR and the LSD of bandwidth
    extension from 3 kHz, on validation clips (the poster publishes neither setting).
    """
    lowpass = degradations.lowpass(3000.0, prior.sample_rate)
    for set_name in sets:
        x0 = synthetic_clips(
            prior.sigma_data, "validation", set_name == "wet", num_clips, clip_length, 100
        )
        keys = jax.random.split(jax.random.key(0), x0.shape[0])
        c = jax.vmap(degradations.clip_threshold_for_sdr, in_axes=(0, None))(x0, 5.0)
        clipped = jax.vmap(lambda x, c: degradations.Clip(c).apply(x))(x0, c)
        lowpassed = jax.vmap(lowpass.apply)(x0)
        tasks = [
            ("declip5", clipped, degradations.Clip(c), 0, "si_sdr_gain_db"),
            ("bwe3k", lowpassed, lowpass, None, "lsd"),
        ]
        for xi, xi_end in xi_pairs:
            for cycles in repaint_cycles:
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
                    "set": set_name,
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
                yield record


@dataclasses.dataclass(frozen=True)
class Method:
    """A declipping method of the quality-vs-NFE curve.

    Attributes:
      name: its label in the records and the plot.
      config: the sampler's configuration; None for A-SPADE alone (no prior, NFE 0).
      num_draws: posterior draws averaged (`sample.posterior_mean`); 1 is a single draw.
    """

    name: str
    config: sample.SamplerConfig | None
    num_draws: int = 1

    @property
    def nfe(self) -> int:
        return 0 if self.config is None else self.num_draws * sample.nfe(self.config)


# The guidance of a warm start: RG + DC (a forward pass and a VJP per evaluation), or DC alone
# (a forward pass only: 2.5–3× faster per evaluation here), since below σ 0.01 the observation
# already pins the reliable samples and RG's pull adds little.
WARM_GUIDANCE = {
    "rg+dc": sample.PRESETS["rg+dc"].guidance,
    "dc": (guidance.DataConsistency(),),
}


def declipping_methods(
    sigma_starts: Sequence[float],
    presets: Sequence[str],
    num_draws: Sequence[int],
    steps: Sequence[int] = (35,),
    guidances: Sequence[str] = ("rg+dc",),
) -> list[Method]:
    """Returns the curve's methods: A-SPADE, cold presets, A-SPADE warm starts at each σ_start,
    and posterior means of `num_draws` draws of each warm start.

    A warm start of T `steps` runs the levels of a T-step schedule at or below σ_start, so a
    smaller T is a coarser, cheaper walk down from the same place; names carry T and the
    guidance when they differ from the defaults (35, RG + DC).
    """
    unknown = [g for g in guidances if g not in WARM_GUIDANCE]
    if unknown:
        raise ValueError(f"unknown warm-start guidance {unknown[0]!r}; use {sorted(WARM_GUIDANCE)}")
    methods = [Method("aspade", None)]
    methods += [Method(name, sample.PRESETS[name]) for name in presets]
    for s in sigma_starts:
        for g in guidances:
            for T in steps:
                warm = dataclasses.replace(
                    sample.PRESETS["rg+dc"],
                    guidance=WARM_GUIDANCE[g],
                    init=spade.ASpadeStart(),
                    sigma_start=float(s),
                    steps=int(T),
                )
                family = "aspade warm" if g == "rg+dc" else f"aspade warm {g}"
                detail = f"σ={s:g}" if T == 35 else f"σ={s:g} T={T}"
                methods.append(Method(f"{family} {detail}", warm))
                methods += [
                    Method(f"mean{n} {family} {detail}", warm, n) for n in num_draws if n > 1
                ]
    return methods


def _restore(prior: priors.Prior, method: Method, y, op, keys) -> jax.Array:
    """Restores a batch [B, T] of clips, each with its own key and threshold."""
    if method.config is None:
        return jax.jit(jax.vmap(spade.aspade))(y, op.threshold)
    if method.num_draws == 1:
        return sample.Restorer(prior, method.config)(y, op, keys)
    mean = functools.partial(
        sample.posterior_mean, prior, config=method.config, num_draws=method.num_draws
    )
    return jax.jit(jax.vmap(lambda y, op, key: mean(y, op, key)[0]))(y, op, keys)


def declipping_curve(
    prior: priors.Prior,
    methods: Sequence[Method],
    *,
    sets: Sequence[str] = ("dry", "wet"),
    input_sdrs: Sequence[float] = (5.0, 10.0),
    num_clips: int,
    clip_length: int,
) -> Iterator[dict]:
    """Yields each method's SI-SDR gain on validation clips per set and input SDR, with NFE.

    Each record holds the per-clip gains, their mean and 95 % interval, and A-SPADE's mean
    gain on the same clips beside it.
    """
    for set_name in sets:
        x0 = synthetic_clips(
            prior.sigma_data, "validation", set_name == "wet", num_clips, clip_length, 50_000_000
        )
        keys = jax.random.split(jax.random.key(0), x0.shape[0])
        for sdr in input_sdrs:
            c = jax.vmap(degradations.clip_threshold_for_sdr, in_axes=(0, None))(x0, sdr)
            op = degradations.Clip(c)
            y = jax.vmap(lambda x, c: degradations.Clip(c).apply(x))(x0, c)
            base = np.asarray(metrics.si_sdr(y, x0))
            aspade_gain = None
            for method in methods:
                start = time.perf_counter()
                x = _restore(prior, method, y, op, keys)
                gains = np.asarray(metrics.si_sdr(x, x0)) - base
                if method.config is None:
                    aspade_gain = float(np.mean(gains))
                interval = mean_interval(gains)
                yield {
                    "section": "warmstart",
                    "set": set_name,
                    "input_sdr": sdr,
                    "method": method.name,
                    "nfe": method.nfe,
                    "si_sdr_gain_db": round(interval["mean"], 3),
                    "ci95_db": None if interval["ci95"] is None else round(interval["ci95"], 3),
                    "clip_gains_db": [round(float(g), 2) for g in gains],
                    "aspade_gain_db": None if aspade_gain is None else round(aspade_gain, 3),
                    "clips": int(x0.shape[0]),
                    "num_samples": clip_length,
                    "seconds": round(time.perf_counter() - start, 1),
                }


def plot_declipping_curve(path: str, points: Sequence[dict]) -> None:
    """Saves each method's SI-SDR gain over A-SPADE's against NFE, one panel per (set, SDR).

    The difference is paired (clip by clip, on the same clips), with its 95 % t interval:
    clips differ from each other far more than methods differ on one clip.
    """
    plt = plots.plt
    panels = sorted({(p["set"], p["input_sdr"]) for p in points})
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5), squeeze=False)
    for ax, (set_name, sdr) in zip(axes[0], panels, strict=True):
        mine = [p for p in points if (p["set"], p["input_sdr"]) == (set_name, sdr)]
        aspade = next(p for p in mine if p["nfe"] == 0)
        ax.axhline(
            0.0, color="k", ls="--", label=f"A-SPADE (gain {aspade['si_sdr_gain_db']:.1f} dB)"
        )
        curves: dict[str, list[tuple[int, dict]]] = {}
        for p in mine:
            if p["nfe"] == 0:
                continue
            family = p["method"].split(" σ=")[0] if "warm" in p["method"] else p["method"]
            difference = np.subtract(p["clip_gains_db"], aspade["clip_gains_db"])
            curves.setdefault(family, []).append((p["nfe"], mean_interval(difference)))
        for family, group in curves.items():
            group.sort(key=lambda point: point[0])
            ax.errorbar(
                [nfe for nfe, _ in group],
                [cell["mean"] for _, cell in group],
                yerr=[cell["ci95"] or 0.0 for _, cell in group],
                fmt="o-" if len(group) > 1 else "s",
                capsize=3,
                label=family,
            )
        ax.set_xscale("log")
        ax.set_title(f"{set_name}, {sdr:g} dB input SDR, {aspade['clips']} clips")
        ax.set_xlabel("NFE")
        ax.set_ylabel("SI-SDR gain over A-SPADE (dB)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
