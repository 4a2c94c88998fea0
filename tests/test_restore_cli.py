"""`python -m experiments.restore` end to end: every task, rates, channels, lengths, bad input."""

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jaxrestore import degradations
from jaxrestore.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cache, model=None):
    env = dict(os.environ, JAXRESTORE_CACHE=cache, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    command = [sys.executable, "-m", "experiments.restore", *args]
    if model:
        command += [f"--checkpoint={model}", "--steps=2", "--segment_length=4096"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _voice(seconds, rate, seed=0):
    x = synthetic.sing(seed, int(seconds * 22050))[0]
    # A little noise: exact digital silence would read as a dropout to inpaint.
    x = x + 1e-4 * np.random.default_rng(seed).normal(size=x.shape)
    if rate != 22050:
        from jaxrestore import audio

        x = audio.resample(x, 22050, rate)
    return x.astype(np.float32)


def _write(path, audio, rate):
    sf.write(path, np.asarray(audio).T, rate, subtype="FLOAT")
    return str(path)


@pytest.mark.parametrize(
    "task,rate,channels,seconds",
    [
        ("declip", 22050, 1, 0.5),
        ("bwe", 48000, 2, 0.4),
        ("inpaint", 8000, 1, 0.5),
        ("declip", 22050, 2, 1.6),  # several 4096-sample segments per channel
    ],
)
def test_restores_every_task_rate_and_layout(
    tiny_model, cache, tmp_path, task, rate, channels, seconds
):
    x = np.stack([_voice(seconds, rate, seed=s) for s in range(channels)])
    if task == "declip":
        c = 0.5 * float(np.abs(x).max())
        y = np.clip(x, -c, c)
    elif task == "bwe":
        op = degradations.lowpass(4000.0, rate)
        y = np.stack([np.asarray(op.apply(ch)) for ch in x])
    else:
        y = x.copy()
        y[:, 1000:1200] = 0.0
    source = _write(tmp_path / "in.wav", y, rate)
    out = tmp_path / "out.wav"
    result = _run(
        [f"--input={source}", f"--output={out}", f"--task={task}", "--plot"], cache, tiny_model
    )
    assert result.returncode == 0, result.stderr
    restored, out_rate = sf.read(out, always_2d=True)
    assert out_rate == rate and restored.T.shape == y.shape
    assert np.all(np.isfinite(restored))
    assert (tmp_path / "out.png").exists()
    if task == "declip" and rate == 22050:
        # DC holds through segmenting and cross-fades, so the reliable samples come back.
        reliable = np.abs(y) < c * (1 - 1e-4)
        np.testing.assert_allclose(restored.T[reliable], y[reliable], atol=1e-5)
    if task == "inpaint":
        # Observed samples survive the trip to the model's rate and back (away from the gap).
        err = np.abs(restored.T[:, 50:900] - y[:, 50:900]).max()
        assert err < 0.02 * np.abs(y).max(), err


def test_several_posterior_samples_write_their_mean_and_spread(tiny_model, cache, tmp_path):
    x = _voice(0.3, 22050)[None]
    c = 0.5 * float(np.abs(x).max())
    source = _write(tmp_path / "in.wav", np.clip(x, -c, c), 22050)
    out = tmp_path / "out.wav"
    args = [f"--input={source}", f"--output={out}", "--method=rg+dc", "--num_draws=2"]
    result = _run(args, cache, tiny_model)
    assert result.returncode == 0, result.stderr
    s0, s1 = sf.read(tmp_path / "out.sample0.wav")[0], sf.read(tmp_path / "out.sample1.wav")[0]
    mean = sf.read(out)[0]
    assert not np.allclose(s0, s1)
    np.testing.assert_allclose(mean, (s0 + s1) / 2, atol=1e-5)
    assert (tmp_path / "out.spread.png").exists()


def test_aspade_warm_start_stays_near_aspade(tiny_model, cache, tmp_path):
    """--init=aspade --sigma_start: the sampler starts from A-SPADE's output plus a little noise."""
    x = _voice(0.3, 22050)[None]
    c = 0.3 * float(np.abs(x).max())
    source = _write(tmp_path / "in.wav", np.clip(x, -c, c), 22050)
    spade_out, warm_out = tmp_path / "spade.wav", tmp_path / "warm.wav"
    spade = _run([f"--input={source}", f"--output={spade_out}", "--method=aspade"], cache)
    assert spade.returncode == 0, spade.stderr
    warm = _run(
        [
            f"--input={source}",
            f"--output={warm_out}",
            "--method=rg+dc",
            "--init=aspade",
            "--sigma_start=0.001",
        ],
        cache,
        tiny_model,
    )
    assert warm.returncode == 0, warm.stderr
    a, b = sf.read(spade_out)[0], sf.read(warm_out)[0]
    # One step from σ ≤ 0.001 (the untrained network barely moves it) against a signal of
    # RMS σ_d = 0.2: within about −40 dB of A-SPADE's answer.
    assert np.sum((a - b) ** 2) < 1e-3 * np.sum(a**2), np.sum((a - b) ** 2) / np.sum(a**2)
    assert not np.array_equal(a, b)


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_model, cache, tmp_path):
    good = _write(tmp_path / "good.wav", np.clip(_voice(0.2, 22050), -0.05, 0.05)[None], 22050)
    text = tmp_path / "text.wav"
    text.write_text("this is not audio\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silent = _write(tmp_path / "silent.wav", np.zeros((1, 1000)), 22050)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(100, np.nan), 22050, subtype="FLOAT")
    existing = tmp_path / "existing.wav"
    existing.write_bytes(b"keep me")
    out = tmp_path / "out.wav"
    cases = [
        ([f"--input={tmp_path / 'missing.wav'}", f"--output={out}"], "no such file"),
        ([f"--input={text}", f"--output={out}"], "not a readable audio file"),
        ([f"--input={empty}", f"--output={out}"], "empty"),
        ([f"--input={silent}", f"--output={out}"], "silent"),
        ([f"--input={nan}", f"--output={out}"], "NaN"),
        ([f"--input={good}", f"--output={good}"], "same file"),
        ([f"--input={good}", f"--output={out}", "--clip_threshold=3"], "out of range"),
        ([f"--input={good}", f"--output={out}", "--task=bwe", "--cutoff_hz=50000"], "out of range"),
        ([f"--input={good}", f"--output={existing}"], "--overwrite"),
        ([f"--input={good}", f"--output={out}", "--task=denoise"], "task"),
        ([f"--input={good}", f"--output={out}", "--sigma_start=0.01"], "needs --init"),
        ([f"--input={good}", f"--output={out}", "--task=bwe", "--init=aspade"], "--task=declip"),
        ([f"--input={good}", f"--output={out}", "--method=rg+dc+mean1"], "unknown method"),
        ([f"--input={good}", f"--output={out}", "--task=bwe", "--method=aspade_warm"], "declip"),
        (
            [f"--input={good}", f"--output={out}", "--method=rg+dc+mean4", "--num_draws=2"],
            "drop --num_draws",
        ),
    ]
    good_bytes = Path(good).read_bytes()
    # Each case is its own process, mostly imports: four at a time.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: _run(case[0], cache, tiny_model), cases))
    for (args, message), result in zip(cases, results, strict=True):
        assert result.returncode == 2, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert not out.exists()
    assert existing.read_bytes() == b"keep me"
    assert Path(good).read_bytes() == good_bytes
