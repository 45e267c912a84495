"""Checkpoints: the whole train state (parameters, optimizer states, targets, RNG key, step), the online buffer and
the loop position, serialized with flax.serialization (msgpack), written atomically, the last `keep` kept."""

from __future__ import annotations

import glob
import os
import re

import flax.serialization
import jax
import numpy as np

from runner.io import atomic_write_bytes


def _to_host(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x) if isinstance(x, (jax.Array, np.ndarray)) else x, tree)


def save(checkpoint_dir: str, step: int, payload: dict, keep: int = 2) -> str:
    """Write checkpoint_dir/ckpt_{step:09d}.msgpack atomically and delete all but the newest `keep`."""
    path = os.path.join(checkpoint_dir, f'ckpt_{step:09d}.msgpack')
    atomic_write_bytes(path, flax.serialization.msgpack_serialize(_to_host(flax.serialization.to_state_dict(payload))))
    for old in list_checkpoints(checkpoint_dir)[:-keep]:
        os.remove(old)
    return path


def list_checkpoints(checkpoint_dir: str) -> list[str]:
    files = glob.glob(os.path.join(checkpoint_dir, 'ckpt_*.msgpack'))
    return sorted(files, key=step_of)


def latest(checkpoint_dir: str) -> str | None:
    files = list_checkpoints(checkpoint_dir)
    return files[-1] if files else None


def step_of(path: str) -> int:
    return int(re.search(r'ckpt_(\d+)', os.path.basename(path)).group(1))


class UnreadableCheckpointError(RuntimeError):
    pass


def move_aside(path: str) -> str:
    """Rename an unreadable checkpoint to <name>.unreadable (kept for inspection, never deleted; no longer listed)."""
    dest = path + '.unreadable'
    os.replace(path, dest)
    return dest


def read(path: str) -> dict:
    """The raw nested dict of a checkpoint (numpy arrays and Python scalars)."""
    try:
        with open(path, 'rb') as f:
            return flax.serialization.msgpack_restore(f.read())
    except Exception as e:
        raise UnreadableCheckpointError(f'Checkpoint {path} is unreadable ({type(e).__name__}: {e}).') from e


def from_raw(template, raw):
    """Restore a pytree of the structure of `template` from its raw state dict."""
    return flax.serialization.from_state_dict(template, raw)
