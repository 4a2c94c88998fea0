"""The on-disk records of an evaluation: per-clip JSON lines and embedding files, atomically.

Each finished clip's record is appended at once to `metrics.<process>.jsonl` (flushed and
fsynced, its embeddings written beside it first); reading drops a torn last line.
"""

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes arrays to `path` atomically: a killed run leaves the old file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def embedding_path(workdir: Path, task: str, set_name: str, method: str, index: int) -> Path:
    return workdir / "embeddings" / task / set_name / method / f"{index:06d}.npz"


def reference_path(workdir: Path, set_name: str, index: int) -> Path:
    return workdir / "embeddings" / "reference" / set_name / f"{index:06d}.npz"


class RecordLog:
    """This process's JSON-lines file of finished clips: append, flush and fsync per batch.

    Opening drops a torn last line (a run killed mid-write), so that appends start on a line
    of their own.
    """

    def __init__(self, path: Path):
        self.path = path
        if path.exists():
            text = path.read_text()
            lines = text.splitlines()
            good = [line for line in lines if _parse(line) is not None]
            if len(good) != len(lines) or (text and not text.endswith("\n")):
                temporary = path.with_name(path.name + ".tmp")
                temporary.write_text("".join(line + "\n" for line in good))
                os.replace(temporary, path)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Appends records, one JSON object per line, and makes them durable."""
        text = "".join(json.dumps(record) + "\n" for record in records)
        if not text:
            return
        with self.path.open("a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "task" in record else None


def read_records(workdir: str | os.PathLike) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """Returns the records of `workdir/metrics.*.jsonl` by (task, set, method, index).

    Torn or unreadable lines are skipped; a clip recorded twice keeps its first record.
    """
    records = {}
    for path in sorted(Path(workdir).glob("metrics.*.jsonl")):
        for line in path.read_text().splitlines():
            record = _parse(line)
            if record is not None:
                key = (record["task"], record["set"], record["method"], int(record["index"]))
                records.setdefault(key, record)
    return records


def write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
