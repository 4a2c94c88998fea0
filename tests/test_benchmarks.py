"""Tests for the benchmark library: FLOP counts against their definitions, records and curves."""

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrestore import checkpoints, guidance, priors, sample
from jaxrestore.benchmarks import costs, networks, samplers

ROOT = Path(__file__).resolve().parents[1]


def test_flop_counts_follow_their_definitions():
    a, b = jnp.ones((3, 5)), jnp.ones((5, 7))
    assert costs.count_flops(lambda a, b: a @ b, a, b) == 2 * 3 * 5 * 7
    x = jnp.ones((4, 256))
    assert costs.count_flops(jnp.fft.rfft, x) == 2.5 * 4 * 256 * 8
    z = jnp.ones((4, 256), jnp.complex64)
    assert costs.count_flops(jnp.fft.fft, z) == 5.0 * 4 * 256 * 8

    # A scanned body counts once per iteration (XLA's cost analysis counts it once).
    def scanned(a, b):
        return jax.lax.scan(lambda c, _: (c, a @ b), 0.0, None, length=10)[1]

    assert costs.count_flops(scanned, a, b) == 10 * 2 * 3 * 5 * 7
    # Elementwise arithmetic: one per output element.
    assert costs.count_flops(lambda x: x * 2.0 + 1.0, x) == 2 * x.size


def test_network_record_comparison_and_parameter_count():
    record = networks.record(
        "sashimi:tiny",
        100.0,
        clip_length=1024,
        batch=1,
        repeats=1,
        restore_steps=1,
        sample_rate=22050,
    )
    assert record["model"] == "sashimi" and record["config"] == "tiny"
    assert record["forward_s"] > 0 and record["forward_vjp_s"] > 0
    assert record["forward_vjp_gflop"] > record["forward_gflop"] > 0
    rate = record["forward_gflop"] / record["forward_s"] / 100.0
    assert record["fraction_of_matmul_rate"] == pytest.approx(rate, rel=0.05, abs=2e-3)
    assert record["nfe"] == sample.nfe(sample.PRESETS["rg+dc"])
    cqt = {**record, "model": "cqtdiff", "forward_s": 3 * record["forward_s"], "forward_gflop": 12}
    (ratio,) = networks.comparisons([record, cqt])
    assert ratio["forward_speed_ratio"] == 3.0
    assert ratio["flop_ratio"] == round(12 / record["forward_gflop"], 2)
    assert list(networks.comparisons([record])) == []  # no CQT-Diff of that preset
    assert record["prepared"]  # SaShiMi on the CPU: the chunked S4D, as restoration runs it
    # Unprepared (the FFT path) and without the restore: no restore figures, and no ratio.
    bare = networks.record(
        "sashimi:tiny",
        100.0,
        clip_length=1024,
        batch=1,
        repeats=1,
        restore_steps=0,
        sample_rate=22050,
        prepared=False,
    )
    assert not bare["prepared"] and "restore_35_steps_s" not in bare and bare["forward_s"] > 0
    assert next(networks.comparisons([bare, cqt]))["restore_speed_ratio"] is None
    # The parameter count is the sum of the initialised leaves.
    _, _, model = networks.build("sashimi:tiny")
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 512)), jnp.zeros((1,)))
    expected = sum(int(np.size(p)) for p in jax.tree.leaves(params["params"]))
    assert record["params"] == costs.count_params(model, 512) == expected > 0


def test_declipping_curve_records_gains_intervals_and_nfe(tmp_path):
    prior = priors.gaussian_prior(2048, sigma_data=0.1)
    fast = dataclasses.replace(sample.PRESETS["rg+dc"], steps=4)
    methods = [
        samplers.Method("aspade", None),
        samplers.Method("rg+dc 4 steps", fast),
        samplers.Method("mean2 rg+dc 4 steps", fast, num_draws=2),
    ]
    points = list(
        samplers.declipping_curve(
            prior, methods, sets=("dry",), input_sdrs=(5.0,), num_clips=3, clip_length=2048
        )
    )
    by = {p["method"]: p for p in points}
    assert [p["method"] for p in points] == [m.name for m in methods]
    assert by["aspade"]["nfe"] == 0
    assert (
        by["mean2 rg+dc 4 steps"]["nfe"] == 2 * by["rg+dc 4 steps"]["nfe"] == 2 * sample.nfe(fast)
    )
    for p in points:
        assert len(p["clip_gains_db"]) == 3 == p["clips"]
        assert p["si_sdr_gain_db"] == pytest.approx(np.mean(p["clip_gains_db"]), abs=0.01)
        assert p["ci95_db"] > 0
        assert p["aspade_gain_db"] == by["aspade"]["si_sdr_gain_db"]
    # A-SPADE restores clipped voices: a positive gain on every clip.
    assert min(by["aspade"]["clip_gains_db"]) > 0
    samplers.plot_declipping_curve(str(tmp_path / "curve.png"), points)
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_declipping_methods_pair_warm_starts_with_posterior_means():
    methods = samplers.declipping_methods([0.1, 0.01], ["rg+dc"], [1, 4])
    names = [m.name for m in methods]
    assert names == [
        "aspade",
        "rg+dc",
        "aspade warm σ=0.1",
        "mean4 aspade warm σ=0.1",
        "aspade warm σ=0.01",
        "mean4 aspade warm σ=0.01",
    ]
    assert methods[3].config == methods[2].config and methods[3].nfe == 4 * methods[2].nfe
    assert methods[2].config.sigma_start == 0.1


def test_declipping_methods_vary_steps_and_guidance_of_warm_starts():
    methods = samplers.declipping_methods([0.01], [], [1, 4], steps=[35, 12], guidances=["dc"])
    assert [m.name for m in methods] == [
        "aspade",
        "aspade warm dc σ=0.01",
        "mean4 aspade warm dc σ=0.01",
        "aspade warm dc σ=0.01 T=12",
        "mean4 aspade warm dc σ=0.01 T=12",
    ]
    short = methods[3].config
    assert short.steps == 12 and short.guidance == (guidance.DataConsistency(),)
    # 12 levels reach σ ≤ 0.01 sooner than 35 do: fewer evaluations from the same start.
    assert methods[3].nfe < methods[1].nfe and methods[4].nfe == 4 * methods[3].nfe
    with pytest.raises(ValueError, match="unknown warm-start guidance"):
        samplers.declipping_methods([0.01], [], [1], guidances=["rg"])


def _run_benchmark(*flags: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Runs the benchmark app with `flags` in a process of its own."""
    command = [sys.executable, "-m", "experiments.benchmark", *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_benchmark_app_refuses_an_unknown_section():
    result = _run_benchmark("--sections=nonsense")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown section 'nonsense'; use "
        "['networks', 'prior', 'sampler', 'sweep', 'warmstart']"
    ]


def test_side_by_side_times_training_steps_in_each_tree():
    # Two "checkouts" that are both this tree: the records come from separate processes, and
    # the comparison is the ratio of their best training-step times.
    script = str(ROOT / "experiments" / "network_timing.py")
    trees = {"baseline": str(ROOT), "this": str(ROOT)}
    records = list(
        networks.side_by_side(
            "sashimi:tiny", trees, script, clip_length=64, batch=2, repeats=1, pairs=1, train=True
        )
    )
    runs, (comparison,) = records[:-1], records[-1:]
    assert [r["tree"] for r in runs] == ["baseline", "this"]
    assert all(r["train_step_s"] > 0 and r["batch"] == 2 and np.isfinite(r["loss"]) for r in runs)
    assert runs[0]["loss"] == runs[1]["loss"]  # the same seeded step
    expected = round(runs[0]["train_step_s"] / runs[1]["train_step_s"], 2)
    assert comparison == {
        "comparison": "baseline:this",
        "model": "sashimi:tiny",
        "train_step_speedup": expected,
    }


def test_benchmark_app_refuses_a_malformed_training_shape():
    result = _run_benchmark("--sections=networks", "--baseline=.", "--baseline_train=4096")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --baseline_train must be LENGTH,BATCH (positive integers), got ['4096']"
    ]


def test_benchmark_app_sets_the_matrix_product_precision():
    # The header record reports JAX's own setting, so it shows the flag took effect.
    result = _run_benchmark("--params_only", "--matmul_precision=bfloat16", timeout=300)
    assert result.returncode == 0, result.stderr[-500:]
    header = json.loads(result.stdout.splitlines()[0])
    assert header["matmul_precision"] == "bfloat16"


def test_network_timing_reads_a_preset_with_fields_replaced():
    spec = importlib.util.spec_from_file_location(
        "network_timing", ROOT / "experiments" / "network_timing.py"
    )
    timing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(timing)
    name, config = timing._model_config("sashimi:cpu:d_model=32:film=False")
    assert name == "sashimi" and (config.d_model, config.film, config.n_layers) == (32, False, 2)
    assert timing._model_config("cqtdiff")[1] == checkpoints.model_config("cqtdiff", "reference")
    with pytest.raises(ValueError, match="unknown sashimi config field"):
        timing._model_config("sashimi:cpu:width=3")
