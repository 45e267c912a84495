"""Run directory files: atomic JSON, CSV logs that can be appended to, the run status."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import socket
import tempfile
import time
import warnings

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


# ---- one live process per run directory ---------------------------------------------------------------------------
LOCK_FILE = '.lock'
_HELD: dict[str, int] = {}  # run directory -> file descriptor of its lock, held until the process exits


class RunLockedError(RuntimeError):
    """Another live process holds the run directory."""


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors='replace').strip()
    try:
        h = json.loads(text)
        since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(h['time']))
        return f'process {h["pid"]} on {h["host"]} (since {since})'
    except (ValueError, KeyError, TypeError):
        return 'another process'


def lock_run_dir(path: str) -> None:
    """Take the OS lock (flock) of run directory `path` for the rest of this process, creating the directory.

    The OS releases it when the process ends however it ends (SIGKILL, OOM, node failure), so a crashed run never
    blocks its own --resume. Raises RunLockedError, naming the holder, while another live process holds it."""
    path = os.path.abspath(path)
    if path in _HELD:
        return
    os.makedirs(path, exist_ok=True)
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    for attempt in range(6):  # a probe of run_dir_holder holds a shared lock for a moment: try again briefly
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.1 * attempt)
    else:
        holder = _holder(fd)
        os.close(fd)
        raise RunLockedError(
            f'run directory {path} is in use by {holder}; nothing was changed. Wait for it to end or stop it; '
            'a run whose process has died is not locked (--resume continues it).'
        ) from None
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname(), 'time': time.time()}).encode())
    _HELD[path] = fd


def unlock_run_dir(path: str) -> None:
    fd = _HELD.pop(os.path.abspath(path), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def run_dir_holder(path: str) -> str | None:
    """Who holds the lock of run directory `path` ('process PID on HOST (since ...)'), or None if nobody does."""
    p = os.path.join(path, LOCK_FILE)
    if not os.path.exists(p) or os.path.abspath(path) in _HELD:
        return None
    fd = os.open(p, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)  # also releases the shared lock taken by the probe


def run_dir_is_empty(path: str) -> bool:
    """No run has written here (the lock file alone does not count)."""
    return not os.path.isdir(path) or not [e for e in os.listdir(path) if e != LOCK_FILE]


def clear_run_dir(path: str) -> None:
    """Delete everything in a locked run directory except its lock file (--overwrite)."""
    import shutil

    for e in os.listdir(path):
        if e == LOCK_FILE:
            continue
        p = os.path.join(path, e)
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)


class CsvLogger:
    """Rows of {column: value}. The header is the union of the keys seen (a new key widens it once; earlier rows
    get empty cells). Opening an existing file appends to it."""

    def __init__(self, path: str):
        self.path = path
        self.columns = None
        repair_truncated_csv(path)
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
        keep = [r for r in rows if None not in r.values() and None not in r and float(r['step']) <= step]
        s = io.StringIO()
        w = csv.DictWriter(s, fieldnames=self.columns)
        w.writeheader()
        w.writerows(keep)
        atomic_write_bytes(self.path, s.getvalue().encode())


def repair_truncated_csv(path: str) -> None:
    """A CSV log cut off mid-line (a process killed while writing, a full disk) loses its partial last line, with a
    warning; the complete rows are kept."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, 'rb') as f:
        data = f.read()
    if data.endswith(b'\n'):
        return
    keep = data[: data.rfind(b'\n') + 1]
    warnings.warn(
        f'{path}: dropped a partial last line ({len(data) - len(keep)} bytes; the run was cut off while writing it)',
        stacklevel=2,
    )
    atomic_write_bytes(path, keep)


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
        if not os.path.exists(p):
            return None
        try:
            return read_json(p)
        except (ValueError, OSError) as e:  # cut off or corrupted: the checkpoints and logs decide, not this file
            return {'status': 'unreadable', 'error': f'{type(e).__name__}: {e}'}

    def set_status(self, status: str, **extra) -> None:
        atomic_write_json(self.file('status.json'), {'status': status, 'time': time.time(), **extra})
