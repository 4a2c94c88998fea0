"""`python -m experiments.generate`: unconditional samples, plot, reproducibility, bad input."""

import os
import subprocess
import sys

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cache, model):
    env = dict(os.environ, JAXRESTORE_CACHE=cache, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    command = [sys.executable, "-m", "experiments.generate", f"--checkpoint={model}", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_writes_reproducible_samples_and_a_plot(tiny_model, cache, tmp_path):
    args = ["--num_clips=2", "--clip_length=2048", "--steps=3", "--seed=5"]
    first = _run([f"--output_dir={tmp_path / 'a'}", "--plot", *args], cache, tiny_model)
    assert first.returncode == 0, first.stderr[-2000:]
    clips = []
    for i in range(2):
        x, rate = sf.read(tmp_path / "a" / f"sample{i}.wav", dtype="float32")
        assert rate == 22050 and x.shape == (2048,) and np.all(np.isfinite(x))
        clips.append(x)
    assert np.abs(clips[0] - clips[1]).max() > 1e-3  # independent draws
    assert (tmp_path / "a" / "samples.png").stat().st_size > 10_000
    # The harmonics-to-noise ratio of the samples and of as many training clips is printed.
    hnr_lines = [line for line in first.stdout.splitlines() if "HNR" in line]
    assert [line.split(":")[0].strip() for line in hnr_lines] == ["samples", "training clips"]
    assert all(line.count(" dB") == 1 and line.count("%") == 2 for line in hnr_lines), hnr_lines

    # The same seed draws the same samples; --overwrite is needed to replace them.
    again = _run([f"--output_dir={tmp_path / 'b'}", *args], cache, tiny_model)
    assert again.returncode == 0, again.stderr[-2000:]
    x, _ = sf.read(tmp_path / "b" / "sample0.wav", dtype="float32")
    np.testing.assert_allclose(x, clips[0], atol=1e-6)


def test_sigma_start_begins_from_held_out_clips(tiny_model, cache, tmp_path):
    # From a tiny σ the sampler hardly moves: the samples are their starting clips (which the
    # untrained tiny model could never invent), so SI-SDR to them is high; from σ_max it is not.
    args = ["--num_clips=2", "--clip_length=2048", "--steps=4", "--sigma_max=1"]
    si_sdr = {}
    for sigma_start in ("0.001", "1"):
        out = tmp_path / sigma_start
        result = _run(
            [f"--output_dir={out}", f"--sigma_start={sigma_start}", *args], cache, tiny_model
        )
        assert result.returncode == 0, result.stderr[-2000:]
        line = next(line for line in result.stdout.splitlines() if "SI-SDR" in line)
        si_sdr[sigma_start] = [float(v) for v in line.split(":")[1].replace("dB", "").split(",")]
        assert "starting clips: HNR" in result.stdout
    assert min(si_sdr["0.001"]) > 30, si_sdr
    assert max(si_sdr["1"]) < 10, si_sdr


def test_bad_input_exits_2_with_one_line_and_replaces_nothing(tiny_model, cache, tmp_path):
    (tmp_path / "sample0.wav").write_bytes(b"keep me")
    cases = [
        (["--output_dir", str(tmp_path), "--clip_length=2048", "--steps=2"], "exists"),
        (["--output_dir", str(tmp_path / "new"), "--clip_length=1000"], "multiple of 256"),
        (["--num_clips=2"], "--output_dir is required"),
        (["--output_dir", str(tmp_path / "new"), "--sigma_start=0"], "--sigma_start must be"),
    ]
    for args, message in cases:
        result = _run(args, cache, tiny_model)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], lines
    assert (tmp_path / "sample0.wav").read_bytes() == b"keep me"
    assert not (tmp_path / "new").exists()
