"""The prior's report card: how much of a voice a denoiser knows, in four numbers per set.

1. Denoising gain `10·log10(σ²/MSE)` per σ on held-out clips, beside a baseline prior's (the
   Wiener filter of the data's spectrum, `priors.wiener_prior`: the best prior that knows
   no pitch, harmonics or phrasing).
2. SDEdit (Meng et al. 2022): the held-out clips noised to σ_start and sampled down from there
   with no observation. A prior that knows a voice locks onto the pitch it can still see and
   regrows the harmonics: the result's harmonics-to-noise ratio (`metrics.harmonicity`) stays
   near the clean clips', and its SI-SDR to the clip it started from says how much it kept.
3. Unconditional samples from σ_max: their HNR against the training clips', and their RMS in
   units of σ_d (near 1 for a prior that has the data's level; a sampler drifting to silence
   shows here before it shows in the HNR).
4. The clean held-out and training clips' HNR, the targets of 2 and 3.

Clips are scaled to RMS σ_d, as restorations show them to the prior.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrestore import degradations, edm, metrics, priors, sample


def scale_to_sigma_data(clips: np.ndarray, sigma_data: float) -> np.ndarray:
    """Returns clips [N, T] each scaled to RMS σ_d."""
    clips = np.asarray(clips, np.float32)
    return clips * sigma_data / np.sqrt(np.mean(clips**2, axis=-1, keepdims=True))


def denoising_gain_db(
    denoiser: edm.Denoiser, clips: jax.Array, sigma: float, key: jax.Array
) -> float:
    """Returns `10·log10(σ² / MSE)` of `denoiser` on clips [N, T] + white noise at σ."""
    sigma = jnp.float32(sigma)
    x = clips + sigma * jax.random.normal(key, clips.shape)
    estimate = jax.jit(jax.vmap(denoiser, in_axes=(0, None)))(x, sigma)
    return float(10 * jnp.log10(sigma**2 / jnp.mean((estimate - clips) ** 2)))


def sample_from(
    denoiser: edm.Denoiser,
    sigma_data: float,
    start: np.ndarray,
    key: jax.Array,
    *,
    steps: int,
    sigma_start: float | None,
    sigma_max: float = 10.0,
) -> np.ndarray:
    """Samples the prior with no observation, [N, T] → [N, T].

    With `sigma_start`, from `start + σ_start·ε` (SDEdit); with None, from pure noise at
    σ_max (`start` then only gives the shape). The restorations' sampler with no guidance and
    no data consistency: a mask passes the clips to the warm start and is never looked at again.
    """
    config = sample.SamplerConfig(
        steps=steps,
        sigma_max=sigma_max,
        sigma_data=sigma_data,
        guidance=(),  # no guidance, no data consistency
        init=sample.ColdStart() if sigma_start is None else sample.FromObservation(),
        sigma_start=sigma_start,
    )
    N, T = start.shape
    restorer = sample.Restorer(denoiser, config, operator_in_axes=None)
    operator = degradations.Mask(jnp.ones((T,), jnp.float32))
    keys = jax.random.split(key, N)
    return np.asarray(restorer(jnp.asarray(start, jnp.float32), operator, keys))


def report(
    prior: priors.Prior,
    held_out: Mapping[str, np.ndarray],
    training: Mapping[str, np.ndarray],
    key: jax.Array,
    *,
    sigmas: Sequence[float] = (0.01, 0.03, 0.1, 0.3),
    sdedit_sigmas: Sequence[float] = (0.1, 0.3),
    num_unconditional: int = 2,
    steps: int = 35,
    baseline: edm.Denoiser | None = None,
) -> list[dict]:
    """Returns the report card's rows (dicts ready for JSON), set by set.

    Args:
      prior: the prior under test.
      held_out: set name ("dry", "wet") → clean held-out clips [N, T].
      training: set name → as many training clips [N, T] (the HNR the samples should reach).
      key: randomness for the noise and the samplers.
      sigmas: noise levels of the denoising rows.
      sdedit_sigmas: starting levels of the SDEdit rows.
      num_unconditional: unconditional samples (0: none), as long as the held-out clips.
      steps: sampler steps of SDEdit and the unconditional samples.
      baseline: a denoiser to print beside the prior's gains (the Wiener filter), or None.
    """
    rate, sigma_data = prior.sample_rate, prior.sigma_data

    def hnr(clips: np.ndarray) -> list[float]:
        return [round(float(v), 2) for v in metrics.harmonicity(clips, rate)["hnr_db"]]

    rows = []
    for index, (name, clips) in enumerate(held_out.items()):
        set_key = jax.random.fold_in(key, index)
        x0 = scale_to_sigma_data(clips, sigma_data)
        rows.append(
            {
                "set": name,
                "row": "clean",
                "held_out_hnr_db": hnr(x0),
                "training_hnr_db": hnr(scale_to_sigma_data(training[name], sigma_data)),
            }
        )
        for i, sigma in enumerate(sigmas):
            noise_key = jax.random.fold_in(set_key, i)
            row = {"set": name, "row": "denoise", "sigma": float(sigma)}
            row["prior_gain_db"] = round(denoising_gain_db(prior.denoiser, x0, sigma, noise_key), 2)
            if baseline is not None:
                gain = denoising_gain_db(baseline, x0, sigma, noise_key)
                row["baseline_gain_db"] = round(gain, 2)
            rows.append(row)
        for i, sigma in enumerate(sdedit_sigmas):
            x = sample_from(
                prior.denoiser,
                sigma_data,
                x0,
                jax.random.fold_in(set_key, 1000 + i),
                steps=steps,
                sigma_start=sigma,
            )
            si_sdr = [round(float(v), 2) for v in np.asarray(metrics.si_sdr(x, x0))]
            rows.append(
                {
                    "set": name,
                    "row": "sdedit",
                    "sigma_start": float(sigma),
                    "hnr_db": hnr(x),
                    "si_sdr_db": si_sdr,
                }
            )
    if num_unconditional:
        length = next(iter(held_out.values())).shape[-1]
        x = sample_from(
            prior.denoiser,
            sigma_data,
            np.zeros((num_unconditional, length), np.float32),
            jax.random.fold_in(key, 2000),
            steps=steps,
            sigma_start=None,
        )
        rms = np.sqrt(np.mean(np.asarray(x, np.float64) ** 2, axis=-1)) / sigma_data
        rows.append(
            {
                "set": "prior",
                "row": "unconditional",
                "hnr_db": hnr(x),
                "rms_over_sigma_data": [round(float(v), 3) for v in rms],
            }
        )
    return rows


def summary(rows: Sequence[dict]) -> str:
    """Returns the report card as Markdown: one table per set, means over clips."""

    def mean(values: Sequence[float]) -> str:
        return f"{np.mean(values):.1f}"

    lines = []
    for name in dict.fromkeys(r["set"] for r in rows if r["set"] != "prior"):
        mine = [r for r in rows if r["set"] == name]
        clean = next(r for r in mine if r["row"] == "clean")
        lines += [
            f"{name}: HNR of the clean held-out clips {mean(clean['held_out_hnr_db'])} dB, "
            f"of training clips {mean(clean['training_hnr_db'])} dB",
            "",
            "| σ | prior gain (dB) | baseline gain (dB) |",
            "|---|---|---|",
        ]
        for r in mine:
            if r["row"] == "denoise":
                baseline = r.get("baseline_gain_db", "–")
                lines.append(f"| {r['sigma']:g} | {r['prior_gain_db']:.2f} | {baseline} |")
        lines += ["", "| SDEdit from σ | HNR (dB) | SI-SDR to the start (dB) |", "|---|---|---|"]
        for r in mine:
            if r["row"] == "sdedit":
                lines.append(
                    f"| {r['sigma_start']:g} | {mean(r['hnr_db'])} | {mean(r['si_sdr_db'])} |"
                )
        lines.append("")
    for r in rows:
        if r["row"] == "unconditional":
            values = ", ".join(f"{v:.1f}" for v in r["hnr_db"])
            levels = ", ".join(f"{v:.2f}" for v in r["rms_over_sigma_data"])
            lines.append(
                f"unconditional samples: HNR {values} dB (mean {mean(r['hnr_db'])}), "
                f"RMS {levels} σ_d"
            )
    return "\n".join(lines)
