"""Statistics and Markdown tables of an evaluation's records: `results.json`, Tables 1 and 2."""

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import scipy.stats

from jaxrestore import fad, metrics, priors
from jaxrestore.evaluation import records
from jaxrestore.evaluation.tasks import (
    CLIP_METRICS,
    DEGRADED,
    SET_METRICS,
    TASKS,
    EvalConfig,
    method_label,
    methods_for,
)


def mean_interval(values: Sequence[float]) -> dict[str, Any]:
    """Returns {"mean", "ci95", "n"}: the mean and the half-width of its 95 % t interval.

    `ci95 = t_{0.975, n−1} · s / √n` with s the sample standard deviation; None for n < 2.
    Non-finite values (an SI-SDR of a silent clip, say) are left out and counted under
    "non_finite", so that one bad clip cannot turn a cell into NaN.
    """
    x = np.asarray(values, np.float64)
    finite = x[np.isfinite(x)]
    n = int(finite.size)
    cell: dict[str, Any] = {"mean": float(finite.mean()) if n else None, "ci95": None, "n": n}
    if n >= 2:
        t = scipy.stats.t.ppf(0.975, n - 1)
        cell["ci95"] = float(t * finite.std(ddof=1) / math.sqrt(n))
    if n < x.size:
        cell["non_finite"] = int(x.size - n)
    return cell


def _set_distance(
    workdir: Path, kind: str, task: str, set_name: str, method: str, indices
) -> float | None:
    """Returns the Fréchet distance of `kind` ("fad"/"fmd") between clean and restored clips."""
    reference, restored = [], []
    for index in indices:
        paths = (
            records.reference_path(workdir, set_name, index),
            records.embedding_path(workdir, task, set_name, method, index),
        )
        if not all(p.exists() for p in paths):
            return None
        pair = [np.load(p) for p in paths]
        if any(kind not in p.files for p in pair):
            return None
        reference.append(pair[0][kind])
        restored.append(pair[1][kind])
    a, b = np.concatenate(reference), np.concatenate(restored)
    if min(len(a), len(b)) < 2:
        return None  # e.g. VGGish on clips shorter than one 0.96 s patch
    a, b = fad.EmbeddingSet.fit(a), fad.EmbeddingSet.fit(b)
    return metrics.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def summarize(
    config: EvalConfig,
    workdir: str | os.PathLike,
    prior: priors.Prior,
    fad_note: str = "",
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """Aggregates the records of `workdir` into the results of `results.json`.

    Per task, set and method: mean/ci95/n of SI-SDR and LSD over the clips (in index order,
    so the numbers do not depend on which process or batch did a clip), FAD and FMD over the
    set, NFE, and seconds per clip (mean over batches that did not compile, when any did not).
    """
    workdir = Path(workdir)
    by_clip = records.read_records(workdir)
    results: dict[str, Any] = {}
    for task in config.tasks:
        for set_name in config.sets:
            degraded = {
                i: r
                for (t, s, m, i), r in by_clip.items()
                if (t, s, m) == (task, set_name, DEGRADED)
            }
            for method in config.methods_for(task):
                rows = sorted(
                    (
                        r
                        for (t, s, m, _), r in by_clip.items()
                        if (t, s, m) == (task, set_name, method)
                    ),
                    key=lambda r: r["index"],
                )
                if not rows:
                    continue
                entry = {name: mean_interval([r[name] for r in rows]) for name in CLIP_METRICS}
                if method != DEGRADED and degraded:
                    for name in CLIP_METRICS:
                        entry[name].update(_against_input(rows, degraded, name))
                indices = [r["index"] for r in rows]
                for kind in SET_METRICS:
                    entry[kind] = _set_distance(workdir, kind, task, set_name, method, indices)
                warm = [r["seconds"] for r in rows if not r["first_batch"]]
                entry["nfe"] = rows[0]["nfe"]
                entry["seconds_per_clip"] = float(np.mean(warm or [r["seconds"] for r in rows]))
                entry["seconds_include_compilation"] = not warm
                results.setdefault(task, {}).setdefault(set_name, {})[method] = entry
    return {
        "config": dataclasses.asdict(config),
        "prior": {
            "name": config.prior,
            "sample_rate": prior.sample_rate,
            "sigma_data": prior.sigma_data,
        },
        "fad_note": fad_note,
        "devices": None if mesh is None else mesh.size,
        "processes": jax.process_count(),
        "results": results,
    }


# Which way each clip metric improves.
_HIGHER_IS_BETTER = {"si_sdr": True, "lsd": False}


def _against_input(rows: Sequence[dict], degraded: dict[int, dict], name: str) -> dict[str, int]:
    """Counts the clips on which a method's `name` is better, and worse, than the degraded
    input's on the same clip: a mean can hide a method that harms most clips."""
    pairs = [(r[name], degraded[r["index"]][name]) for r in rows if r["index"] in degraded]
    pairs = [(a, b) for a, b in pairs if np.isfinite(a) and np.isfinite(b)]
    sign = 1.0 if _HIGHER_IS_BETTER[name] else -1.0
    return {
        "better": sum(sign * (a - b) > 0 for a, b in pairs),
        "worse": sum(sign * (a - b) < 0 for a, b in pairs),
    }


def _cell(value: float | None, ci95: float | None = None, digits: int = 2) -> str:
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    return text if ci95 is None else f"{text} ± {ci95:.{digits}f}"


def table(results: dict[str, Any], kind: str) -> str:
    """Returns the poster's Table 1 (kind "declip") or Table 2 ("bwe") as Markdown.

    Columns per task: the set distance (FAD, or FMD when there are no VGGish weights) and
    the clip metric (SI-SDR for declipping, LSD for BWE) on the dry and the wet set, as
    mean ± 95 % interval; then NFE and seconds per clip (averaged over the table's cells).
    The best restoration of each column (the degraded input excluded) is in bold.
    """
    config = results["config"]
    tasks = [t for t in config["tasks"] if TASKS[t].kind == kind]
    number, what = ("1", "declipping") if kind == "declip" else ("2", "bandwidth extension")
    title = f"**Table {number}.** Objective metrics for {what}"
    if not tasks:
        return f"{title}: no {what} task in this evaluation.\n"
    clip_metric, clip_label, higher = (
        ("si_sdr", "SI-SDR ↑", True) if kind == "declip" else ("lsd", "LSD ↓", False)
    )
    data = results["results"]
    has_fad = any(
        e.get("fad") is not None
        for t in tasks
        for s in data.get(t, {}).values()
        for e in s.values()
    )
    distance, distance_label = ("fad", "FAD ↓") if has_fad else ("fmd", "FMD ↓")
    sets = config["sets"]
    methods = methods_for(tuple(config["methods"]), kind)

    columns = []  # (task, set, metric)
    for task in tasks:
        columns += [(task, s, distance) for s in sets] + [(task, s, clip_metric) for s in sets]

    def entry(task, set_name, method):
        return data.get(task, {}).get(set_name, {}).get(method)

    def value(task, set_name, method, metric):
        e = entry(task, set_name, method)
        if e is None:
            return None
        return e[metric]["mean"] if metric in CLIP_METRICS else e[metric]

    best = {}
    for column in columns:
        candidates = [(value(*column[:2], m, column[2]), m) for m in methods if m != DEGRADED]
        candidates = [(v, m) for v, m in candidates if v is not None]
        if candidates:
            maximise = higher if column[2] in CLIP_METRICS else False
            best[column] = (max if maximise else min)(candidates)[1]

    header = (
        ["Method"]
        + [
            f"{TASKS[t].label} {distance_label if metric == distance else clip_label} {s}"
            for t, s, metric in columns
        ]
        + ["NFE", "s/clip"]
    )
    lines = [title + ".", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    compile_mark = False
    for method in methods:
        cells = [method_label(method, tasks[0])]
        for column in columns:
            e = entry(*column[:2], method)
            if e is None:
                cells.append("—")
                continue
            metric = column[2]
            if metric in CLIP_METRICS:
                text = _cell(e[metric]["mean"], e[metric]["ci95"])
            else:
                text = _cell(e[metric])
            text = f"**{text}**" if best.get(column) == method and text != "—" else text
            if metric in CLIP_METRICS and "better" in e[metric]:
                text += f" ({e[metric]['better']}↑ {e[metric]['worse']}↓)"
            cells.append(text)
        entries = [entry(t, s, method) for t in tasks for s in sets]
        entries = [e for e in entries if e is not None]
        if entries:
            cells.append(str(entries[0]["nfe"]))
            seconds = float(np.mean([e["seconds_per_clip"] for e in entries]))
            mark = "†" if any(e["seconds_include_compilation"] for e in entries) else ""
            compile_mark |= bool(mark)
            cells.append(f"{seconds:.3g}{mark}")
        else:
            cells += ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")

    n = sorted(
        {e[clip_metric]["n"] for t in tasks for s in data.get(t, {}).values() for e in s.values()}
    )
    notes = [
        "",
        f"Mean ± 95 % interval over n = {', '.join(map(str, n))} clips per set of "
        f"{config['clip_length']} samples at {results['prior']['sample_rate']} Hz; prior "
        f"{results['prior']['name']!r} (σ_d = {results['prior']['sigma_data']:.4g}); data "
        f"{config['data']!r}, {config.get('split', 'test')} split; sampler steps "
        f"{config['steps'] or 'of the presets'}.",
    ]
    if not has_fad:
        notes.append(
            f"{results['fad_note'] or 'FAD: no VGGish weights'}. FMD (log-mel) is the Fréchet "
            "distance between Gaussians of VGGish log-mel frames, without the network: not FAD, "
            "not comparable with published FAD values."
        )
    notes.append(
        f"(k↑ m↓): the clips on which a method's {clip_label[:-2]} is better (k) and worse (m) "
        "than the degraded input's."
    )
    notes.append(
        "s/clip: wall-clock seconds per clip over all devices"
        + ("; † includes compilation (a single batch ran)." if compile_mark else ".")
    )
    return "\n".join(lines + notes) + "\n"
