"""Run directory files: atomic JSON, CSV logs that can be appended to, the run status."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time

import numpy as np


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if hasattr(x, 'to_dict'):
        return _jsonable(x.to_dict())
    return x


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path` (never a half-written file)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix='.' + os.path.basename(path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path: str, obj) -> None:
    atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, sort_keys=False) + '\n').encode())


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


class CsvLogger:
    """Rows of {column: value}. The header is the union of the keys seen (a new key widens it once; earlier rows
    get empty cells). Opening an existing file appends to it."""

    def __init__(self, path: str):
        self.path = path
        self.columns = None
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, newline='') as f:
                self.columns = next(csv.reader(f))

    def write(self, row: dict) -> None:
        row = {k: (float(v) if isinstance(v, (np.floating, np.ndarray)) else v) for k, v in row.items()}
        new = self.columns is None
        if new:
            self.columns = list(row)
        extra = [k for k in row if k not in self.columns]
        if extra:  # e.g. online-only metrics: widen the header once, rewriting the file atomically
            rows = read_csv(self.path)
            self.columns += extra
            s = io.StringIO()
            w = csv.DictWriter(s, fieldnames=self.columns)
            w.writeheader()
            w.writerows(rows)
            atomic_write_bytes(self.path, s.getvalue().encode())
        with open(self.path, 'a', newline='') as f:
            w = csv.DictWriter(f, fieldnames=self.columns)
            if new:
                w.writeheader()
            w.writerow(row)

    def truncate_after(self, step: int) -> None:
        """Drop rows whose step is greater than `step` (resume: no step is logged twice)."""
        if self.columns is None:
            return
        with open(self.path, newline='') as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if float(r['step']) <= step]
        s = io.StringIO()
        w = csv.DictWriter(s, fieldnames=self.columns)
        w.writeheader()
        w.writerows(keep)
        atomic_write_bytes(self.path, s.getvalue().encode())


def read_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


class RunDir:
    """One directory per run: config.json, train.csv, eval.csv, final.json, status.json, checkpoints/."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.checkpoint_dir = os.path.join(path, 'checkpoints')

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def status(self) -> dict | None:
        p = self.file('status.json')
        return read_json(p) if os.path.exists(p) else None

    def set_status(self, status: str, **extra) -> None:
        atomic_write_json(self.file('status.json'), {'status': status, 'time': time.time(), **extra})
