"""Tests for the prior's report card against known cases."""

import math

import jax
import numpy as np

from jaxrestore import priors, report_card

RATE, T, SIGMA_D = 22050, 2048, 0.2


def _periodic(count: int) -> np.ndarray:
    """Pulse-like periodic clips (whole periods of 100 samples, 220.5 Hz), [count, T]."""
    t = np.arange(T)
    phase = 2 * np.pi * t / 100
    clip = sum(np.cos(k * phase) / k for k in range(1, 12))
    return np.stack([np.roll(clip, 7 * i) for i in range(count)]).astype(np.float32)


def _white(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, T)).astype(np.float32)


def test_report_card_of_the_white_gaussian_prior_matches_closed_forms():
    # The white Gaussian prior's denoiser is the scalar Wiener gain σ_d²/(σ_d² + σ²); on clips of
    # RMS σ_d its expected MSE is σ²σ_d²/(σ² + σ_d²), so the gain is 10·log10(1 + σ²/σ_d²).
    gaussian = priors.white(T, SIGMA_D**2)
    prior = priors.Prior(gaussian.denoiser, RATE, SIGMA_D)
    held_out = {"periodic": _periodic(4), "noise": _white(4, 0)}
    training = {"periodic": _periodic(2), "noise": _white(2, 1)}
    rows = report_card.report(
        prior,
        held_out,
        training,
        jax.random.key(0),
        sigmas=(0.03, 0.2, 1.0),
        sdedit_sigmas=(0.1,),
        num_unconditional=2,
        steps=35,  # enough Heun steps from σ_max = 10 for the samples' level (4 give 3.7 σ_d)
        baseline=gaussian.denoiser,
    )
    by = {(r["set"], r["row"], r.get("sigma", r.get("sigma_start"))): r for r in rows}
    for name in held_out:
        for sigma in (0.03, 0.2, 1.0):
            row = by[(name, "denoise", sigma)]
            expected = 10 * math.log10(1 + sigma**2 / SIGMA_D**2)
            assert abs(row["prior_gain_db"] - expected) < 0.1, (name, sigma, row)
            assert row["baseline_gain_db"] == row["prior_gain_db"]  # same denoiser, same noise
    # A periodic clip reads as harmonic, white noise as noise (Praat's HNR).
    assert min(by[("periodic", "clean", None)]["held_out_hnr_db"]) > 20
    assert min(by[("periodic", "clean", None)]["training_hnr_db"]) > 20
    assert max(by[("noise", "clean", None)]["held_out_hnr_db"]) < 0
    # A white prior regrows no harmonics: SDEdit from σ = 0.1 (half σ_d) already loses some of
    # the periodic clips' HNR, and its unconditional samples are white noise.
    sdedit = by[("periodic", "sdedit", 0.1)]
    assert len(sdedit["hnr_db"]) == 4 and len(sdedit["si_sdr_db"]) == 4
    assert max(sdedit["hnr_db"]) < min(by[("periodic", "clean", None)]["held_out_hnr_db"])
    unconditional = by[("prior", "unconditional", None)]
    assert max(unconditional["hnr_db"]) < 0
    # Exact denoiser, so the samples have the prior's level: RMS σ_d (Heun's error aside).
    assert all(0.9 < v < 1.1 for v in unconditional["rms_over_sigma_data"]), unconditional
    table = report_card.summary(rows)
    assert "| 0.2 |" in table and "unconditional samples: HNR" in table
    levels = ", ".join(f"{v:.2f}" for v in unconditional["rms_over_sigma_data"])
    assert f"RMS {levels} σ_d" in table
