"""The one replay buffer: a pytree of device arrays, sampled and written inside jitted code.

The offline dataset is a buffer whose size equals its capacity. The online buffer is the offline data copied into a
larger circular buffer (capacity 2M by default); new transitions are written at `ptr`, which wraps inside
[keep, capacity) where `keep` = number of offline rows protected from overwriting (only when mixing offline/online
batches RLPD-style; otherwise 0, so the oldest data are overwritten first, as in the FQL code base).

Action chunking (`horizon_length` h > 1): the buffer keeps single transitions; `sample` cuts sequences of h
consecutive rows out of it inside jitted code, with the rules of the released QAM code (utils/datasets.py,
sample_sequence): rewards summed with gamma^i, the mask the minimum over the chunk, and each step `valid` only while no
earlier step of the chunk ended an episode (steps after an episode end add no reward and keep the last valid next
observation). The batch then holds one row per chunk: the first observation, the h actions flattened to (h * d),
and the chunk's last-step reward sum, mask, terminal, valid flag and next observation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

BUFFER_KEYS = ('observations', 'actions', 'rewards', 'masks', 'terminals', 'next_observations')


def make_buffer(dataset: dict[str, np.ndarray], capacity: int | None = None, keep_offline: bool = False) -> dict:
    """Put `dataset` on the device, in a buffer of `capacity` rows (default: exactly the dataset)."""
    n = len(dataset['observations'])
    capacity = n if capacity is None else max(int(capacity), n)
    data = {}
    for k in BUFFER_KEYS:
        v = np.asarray(dataset[k], np.float32)
        if capacity > n:
            v = np.concatenate([v, np.zeros((capacity - n, *v.shape[1:]), np.float32)])
        data[k] = jnp.asarray(v)
    return dict(
        data=data,
        size=jnp.asarray(n, jnp.int32),
        ptr=jnp.asarray(n % capacity if capacity > n else 0, jnp.int32),
        keep=jnp.asarray(n if keep_offline else 0, jnp.int32),
        num_offline=jnp.asarray(n, jnp.int32),
    )


def replace_offline_rows(buffer: dict, dataset: dict[str, np.ndarray]) -> dict:
    """Overwrite the offline rows [0, num_offline) with another shard of the same size (the 100M datasets: the
    released main.py's `replay_buffer[k][:size] = train_dataset[k]`). Works on a seed-stacked buffer too."""
    n = len(dataset['observations'])
    num_offline = int(np.asarray(buffer['num_offline']).reshape(-1)[0])
    if n != num_offline:
        raise ValueError(f'dataset shard has {n} transitions, the buffer holds {num_offline} offline rows')
    data = {}
    for k, v in buffer['data'].items():
        new = jnp.asarray(np.asarray(dataset[k], np.float32))
        data[k] = v.at[:, :n].set(new) if v.ndim > new.ndim else v.at[:n].set(new)  # seed-stacked: broadcast
    return dict(buffer, data=data)


def capacity(buffer: dict) -> int:
    return int(buffer['data']['observations'].shape[0])


def add_transition(buffer: dict, transition: dict) -> dict:
    """Write one transition at `ptr` (jit-friendly); the pointer wraps inside [keep, capacity)."""
    cap = buffer['data']['observations'].shape[0]
    ptr = buffer['ptr']
    data = {k: v.at[ptr].set(jnp.asarray(transition[k], v.dtype)) for k, v in buffer['data'].items()}
    nxt = ptr + 1
    nxt = jnp.where(nxt >= cap, buffer['keep'], nxt)
    return dict(buffer, data=data, ptr=nxt, size=jnp.minimum(buffer['size'] + 1, cap))


def _gather(data: dict, idx: jax.Array, size: jax.Array) -> dict:
    batch = {k: v[idx] for k, v in data.items()}
    # ReBRAC's critic BC target a' (rows are stored in time order). 'next_actions': the next row's action, also across
    # an episode end, clamped at the last row (the FQL code base's Dataset.get_subset). 'next_actions_in_episode':
    # the same action at an episode end instead. Agents that use neither cost nothing (dead code under jit).
    nxt = data['actions'][jnp.minimum(idx + 1, size - 1)]
    batch['next_actions'] = nxt
    batch['next_actions_in_episode'] = jnp.where(batch['terminals'][:, None] > 0, batch['actions'], nxt)
    return batch


def chunk_steps(buffer: dict, idx: jax.Array, horizon: int, discount: float) -> dict:
    """Per-step fields (B, h) of the chunks starting at rows `idx` (the released sample_sequence's arrays, before it
    takes the last step): `rewards` (running sum of gamma^i r_i over valid steps), `masks` (running minimum over valid
    steps), `terminals` (running maximum: an episode ended at or before step i), `valid` (1 while no earlier step ended
    an episode) and `next_observations` (B, h, obs_dim), frozen after the episode end. Rows are consecutive in the
    buffer; in a buffer that has wrapped, the newest row (before `ptr`) also ends the chunk, so no chunk runs from the
    newest transition into the oldest."""
    data = buffer['data']
    cap = data['observations'].shape[0]
    rows = idx[:, None] + jnp.arange(horizon)  # (B, h), all < size by the choice of idx
    terminals = data['terminals'][rows]
    wrapped = (buffer['size'] >= cap) & (buffer['ptr'] > buffer['keep'])
    terminals = jnp.where(wrapped & (rows == buffer['ptr'] - 1), 1.0, terminals)
    ended = jax.lax.cummax(terminals, axis=1)
    valid = jnp.concatenate([jnp.ones_like(ended[:, :1]), 1.0 - ended[:, :-1]], axis=1)
    powers = jnp.asarray(discount, jnp.float32) ** jnp.arange(horizon, dtype=jnp.float32)
    rewards = jnp.cumsum(data['rewards'][rows] * powers * valid, axis=1)
    masks = jax.lax.cummin(jnp.where(valid > 0, data['masks'][rows], 1.0), axis=1)
    last_valid = jnp.cumsum(valid, axis=1).astype(jnp.int32) - 1  # index of the last valid step at or before i
    next_obs = data['next_observations'][idx[:, None] + last_valid]
    return dict(rewards=rewards, masks=masks, terminals=ended, valid=valid, next_observations=next_obs)


def _gather_chunks(buffer: dict, idx: jax.Array, horizon: int, discount: float) -> dict:
    data, size = buffer['data'], buffer['size']
    steps = chunk_steps(buffer, idx, horizon, discount)
    rows = idx[:, None] + jnp.arange(horizon)
    b = idx.shape[0]
    actions = data['actions'][rows].reshape(b, -1)
    # ReBRAC's critic BC target: the h actions after the chunk (rows clamped at the last row), or at an episode end
    # inside the chunk the chunk itself (as 'next_actions' / 'next_actions_in_episode' for h = 1).
    nxt = data['actions'][jnp.minimum(rows + horizon, size - 1)].reshape(b, -1)
    batch = {k: v[:, -1] for k, v in steps.items()}
    batch.update(
        observations=data['observations'][idx],
        actions=actions,
        next_actions=nxt,
        next_actions_in_episode=jnp.where(batch['terminals'][:, None] > 0, actions, nxt),
    )
    return batch


def sample(
    buffer: dict, rng: jax.Array, batch_size: int, mix_offline: float = 0.0, horizon: int = 1, discount: float = 1.0
) -> dict:
    """Uniform batch of `batch_size` transitions, or with `horizon` h > 1 of chunks of h consecutive transitions
    (module docstring; `discount` is gamma, used only for h > 1). Chunks start at rows 0..size-h, as the released
    sample_sequence's. With `mix_offline` > 0, that fraction of the batch comes from the offline rows and the rest from
    the online rows (RLPD-style 50/50 with mix_offline=0.5; falls back to uniform while there are no online rows
    yet)."""
    size = buffer['size']
    starts = size if horizon == 1 else size - (horizon - 1)  # number of valid start rows
    if mix_offline <= 0.0:
        idx = jax.random.randint(rng, (batch_size,), 0, starts)
    else:
        n_off = int(round(batch_size * mix_offline))
        r1, r2 = jax.random.split(rng)
        num_offline = buffer['num_offline']
        off_starts = num_offline if horizon == 1 else num_offline - (horizon - 1)
        off = jax.random.randint(r1, (n_off,), 0, off_starts)
        has_online = starts > num_offline
        on = jax.random.randint(r2, (batch_size - n_off,), jnp.where(has_online, num_offline, 0), starts)
        idx = jnp.concatenate([off, on])
    if horizon == 1:
        return _gather(buffer['data'], idx, size)
    return _gather_chunks(buffer, idx, horizon, discount)
