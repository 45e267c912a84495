"""The one replay buffer: a pytree of device arrays, sampled and written inside jitted code.

The offline dataset is a buffer whose size equals its capacity. The online buffer is the offline data copied into a
larger circular buffer (capacity 2M by default); new transitions are written at `ptr`, which wraps inside
[keep, capacity) where `keep` = number of offline rows protected from overwriting (only when mixing offline/online
batches RLPD-style; otherwise 0, so the oldest data are overwritten first, as in the FQL code base).
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


def sample(buffer: dict, rng: jax.Array, batch_size: int, mix_offline: float = 0.0) -> dict:
    """Uniform batch of `batch_size` transitions. With `mix_offline` > 0, that fraction of the batch comes from the
    offline rows and the rest from the online rows (RLPD-style 50/50 with mix_offline=0.5; falls back to uniform
    while there are no online rows yet)."""
    size = buffer['size']
    if mix_offline <= 0.0:
        idx = jax.random.randint(rng, (batch_size,), 0, size)
    else:
        n_off = int(round(batch_size * mix_offline))
        r1, r2 = jax.random.split(rng)
        num_offline = buffer['num_offline']
        off = jax.random.randint(r1, (n_off,), 0, num_offline)
        has_online = size > num_offline
        on = jax.random.randint(r2, (batch_size - n_off,), jnp.where(has_online, num_offline, 0), size)
        idx = jnp.concatenate([off, on])
    return _gather(buffer['data'], idx, size)
