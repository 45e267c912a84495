"""Checkpoint cost: size, save time and restore time of a full checkpoint (train state + online buffer rows) for an
agent with the paper networks, a 1M-transition dataset and a 2M online buffer, at the start and at the end of a 1M-step
online phase; and the overhead at the default --save_interval as a fraction of training time.

    python scripts/checkpoint_benchmark.py --agent=fql --ms_per_update=150
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--agent', default='fql')
    p.add_argument('--dataset_size', type=int, default=1_000_000)
    p.add_argument('--buffer_size', type=int, default=2_000_000)
    p.add_argument('--obs_dim', type=int, default=28)
    p.add_argument('--act_dim', type=int, default=5)
    p.add_argument('--save_interval', type=int, default=100_000, help='main.py default')
    p.add_argument('--ms_per_update', type=float, required=True, help='measured training speed (scripts/benchmark.py)')
    a = p.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    import agents
    from agents.common import buffer as buffer_lib
    from agents.common.trainer import Learner
    from runner import checkpoint as ckpt_lib
    from runner.loop import buffer_rows, restore_buffer

    n, rng = a.dataset_size, np.random.default_rng(0)
    ds = dict(
        observations=rng.normal(size=(n, a.obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, a.act_dim)).astype(np.float32),
        rewards=np.zeros(n, np.float32),
        masks=np.ones(n, np.float32),
        terminals=np.zeros(n, np.float32),
        next_observations=rng.normal(size=(n, a.obs_dim)).astype(np.float32),
    )
    learner = Learner(agents.get_agent(a.agent), agents.get_config(a.agent), a.obs_dim, a.act_dim)
    state = learner.init(jax.random.PRNGKey(0))
    print(f'{a.agent}: {sum(x.size for x in jax.tree_util.tree_leaves(state.params)):,} parameters')
    for online_rows in (0, a.buffer_size - n):
        buf = buffer_lib.make_buffer(ds, capacity=a.buffer_size)
        buf = dict(
            buf, size=jnp.asarray(n + online_rows, jnp.int32), ptr=jnp.asarray((n + online_rows) % a.buffer_size)
        )
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            payload = {'state': state, 'step': 1, 'phase': 'online', 'buffer': buffer_rows(buf)}
            path = ckpt_lib.save(d, 1, payload)
            save_s = time.perf_counter() - t0
            size_mb = os.path.getsize(path) / 2**20
            t0 = time.perf_counter()
            raw = ckpt_lib.read(path)
            restored = ckpt_lib.from_raw(state, raw['state'])
            fresh = buffer_lib.make_buffer(ds, capacity=a.buffer_size)
            fresh = restore_buffer(fresh, raw['buffer'])
            jax.block_until_ready(fresh)
            restore_s = time.perf_counter() - t0
        assert all(
            np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state))
        )
        train_s = a.save_interval * a.ms_per_update / 1000
        print(
            f'online rows {online_rows:>9,}: checkpoint {size_mb:8.1f} MB, save {save_s:6.2f} s, restore '
            f'{restore_s:6.2f} s; overhead at --save_interval={a.save_interval} ({train_s:.0f} s of training at '
            f'{a.ms_per_update} ms/update): {100 * save_s / train_s:.3f} %'
        )


if __name__ == '__main__':
    main()
