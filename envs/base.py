"""The one data/evaluation interface every environment family implements.

A `Task` bundles what the trainer and main.py need from an environment, so main.py never branches on the family:

- `train_dataset` / `val_dataset`: dicts of float32 numpy arrays with the keys
  observations, actions, rewards, masks, terminals, next_observations (all of length N; `masks` = 1 - true
  termination, used for bootstrapping; `terminals` = 1 at the last transition of each trajectory, for bookkeeping).
- `make_env(seed)`: a gymnasium env for evaluation and online interaction (None for data-only tasks).
- `score(episode_return, last_info)`: the per-episode score under the family's protocol (OGBench: success in %,
  D4RL: normalized return x100); the evaluation reports its mean as `score`.
- `transform_reward(r)`: applied to online rewards so they match the offline data's conventions.
- `evaluate(policy_fn, rng, num_episodes)`: optional custom evaluation (the toy bandit), replaces the episode loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

DATASET_KEYS = ('observations', 'actions', 'rewards', 'masks', 'terminals', 'next_observations')


class DatasetError(RuntimeError):
    """A dataset is missing, truncated or malformed. The message says how to get or generate it."""


@dataclasses.dataclass
class Task:
    name: str
    family: str  # 'ogbench' | 'd4rl' | 'minari' | 'toy'
    train_dataset: dict[str, np.ndarray]
    val_dataset: dict[str, np.ndarray] | None
    make_env: Callable[[int], Any] | None
    score: Callable[[float, dict], float]
    protocol: str  # human-readable evaluation protocol, written to final.json
    transform_reward: Callable[[float], float] = lambda r: r
    evaluate: Callable[..., dict] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. "data generated locally"
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def obs_dim(self) -> int:
        return int(self.train_dataset['observations'].shape[-1])

    @property
    def action_dim(self) -> int:
        return int(self.train_dataset['actions'].shape[-1])


ACTION_CLIP_EPS = 1e-5


def check_dataset(ds: dict, source: str) -> dict[str, np.ndarray]:
    """Validate a transition dataset and cast it to float32; raise DatasetError with an actionable message."""
    missing = [k for k in DATASET_KEYS if k not in ds]
    if missing:
        raise DatasetError(f'{source}: dataset lacks keys {missing} (has {sorted(ds)}).')
    n = len(ds['observations'])
    if n == 0:
        raise DatasetError(f'{source}: dataset is empty.')
    out = {}
    for k in DATASET_KEYS:
        v = np.asarray(ds[k], dtype=np.float32)
        if len(v) != n:
            raise DatasetError(f'{source}: key {k!r} has {len(v)} rows, observations has {n}.')
        if not np.all(np.isfinite(v)):
            raise DatasetError(f'{source}: key {k!r} contains NaN or inf.')
        out[k] = v
    for k in ('actions',):
        if out[k].ndim != 2:
            raise DatasetError(f'{source}: {k} must be 2-D (N, dim), got shape {out[k].shape}.')
    # Dataset actions are clipped to [-1 + eps, 1 - eps], as the FQL code base does for every dataset
    # (envs/env_utils.py, action_clip_eps=1e-5).
    out['actions'] = np.clip(out['actions'], -1 + ACTION_CLIP_EPS, 1 - ACTION_CLIP_EPS)
    return out
