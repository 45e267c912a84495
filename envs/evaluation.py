"""Policy evaluation: episodes in the real environment, many at once in lockstep (or the task's own protocol).

`run_episodes` plays the episodes of several policies ("groups": the seeds of a `--num_seeds` run times the
evaluation variants, e.g. VGF's L_test sweep) through a pool of environments stepped in lockstep: one policy call per
step for every episode that needs a new action (chunk), finished episodes masked out and their environment handed
the group's next episode. An episode's actions depend only on (group, episode index, policy call index within the
episode): the caller keys the policy's noise by those, so the scores do not depend on the pool's width; one
environment per group (`width=1`) is the sequential pass. Episode e of group g resets with seed reset_seeds[g] + e.
"""

from __future__ import annotations

import os

import numpy as np
from tqdm.auto import tqdm

# Memory the auto-sized pool may take (`--eval_envs=0`). OGBench's manipulation environments hold ~160 MB each (the
# compiled MuJoCo model with its meshes and textures), the locomotion ones ~1 MB.
EVAL_ENV_MEMORY = 2 * 2**30


def rss_bytes() -> int | None:
    """Resident memory of this process (Linux), or None where /proc is not available."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


def _env_worker(conn, make_env, seed: int, n: int) -> None:
    """A worker process: owns `n` environments, answers ('reset', [(i, seed)]) with observations and ('step',
    [(i, action)]) with (obs, reward, terminated, truncated, info at an episode's end else {}) until ('close',)."""
    envs = [make_env(seed) for _ in range(n)]
    conn.send('ready')
    try:
        while True:
            msg, items = conn.recv()
            if msg == 'reset':
                conn.send([np.asarray(envs[i].reset(seed=s)[0], np.float32) for i, s in items])
            elif msg == 'step':
                out = []
                for i, a in items:
                    o, r, terminated, truncated, info = envs[i].step(a)
                    out.append(
                        (
                            np.asarray(o, np.float32),
                            float(r),
                            bool(terminated),
                            bool(truncated),
                            info if terminated or truncated else {},
                        )
                    )
                conn.send(out)
            else:
                break
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        for env in envs:
            env.close()


class EnvPool:
    """Evaluation environments, kept across evaluations (creating one costs from 20 ms (pointmaze) to 1.5 s
    (cube)). In this process, or (`workers` > 0) split over worker processes that step their share in parallel
    (forked: the task's make_env need not pickle; the workers never touch jax)."""

    def __init__(self, make_env, seed: int, workers: int = 0):
        self.make_env, self.seed, self.workers = make_env, seed, workers
        self.envs = []  # in-process environments
        self.conns, self.procs, self.owner = [], [], []  # worker pipes, processes, env index -> (worker, local index)
        self.bytes_per_env = None  # measured while creating the second in-process environment

    def _grow(self, n: int) -> None:
        while len(self.envs) < n:
            before = rss_bytes() if len(self.envs) == 1 else None
            self.envs.append(self.make_env(self.seed))
            if before is not None and (after := rss_bytes()) is not None:
                self.bytes_per_env = max(after - before, 1)

    def size(self, n: int) -> None:
        """Have `n` environments (worker pools are made once, at their first size)."""
        if not self.workers:
            self._grow(n)
            return
        if self.owner:
            if len(self.owner) < n:
                raise ValueError(f'EnvPool: {len(self.owner)} worker environments, {n} needed.')
            return
        import multiprocessing as mp
        import warnings

        self.close()
        k = min(self.workers, n)
        counts = [n // k + (j < n % k) for j in range(k)]
        with warnings.catch_warnings():  # jax warns at every fork; the workers only step environments
            warnings.filterwarnings('ignore', message='.*fork.*', category=RuntimeWarning)
            ctx = mp.get_context('fork')
            for j, c in enumerate(counts):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_env_worker, args=(child, self.make_env, self.seed, c), daemon=True)
                proc.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(proc)
                self.owner += [(j, i) for i in range(c)]
        for conn in self.conns:
            if conn.recv() != 'ready':
                raise RuntimeError('EnvPool: a worker failed to create its environments.')

    def width(self, groups: int, episodes: int, requested: int = 0) -> int:
        """Environments per group: `requested` in all (`--eval_envs`) or, with 0, as many as EVAL_ENV_MEMORY allows
        (at least one per group, at most one per episode)."""
        if requested <= 0:
            self._grow(min(2, groups * episodes))
            per = self.bytes_per_env or 50 * 2**20
            requested = max(1, EVAL_ENV_MEMORY // per)
            if self.workers:  # the two measured here are not the workers'
                for env in self.envs:
                    env.close()
                self.envs = []
        return int(min(episodes, max(1, requested // groups)))

    def _scatter(self, msg: str, items: list) -> list:
        """Run (env index, argument) items where their environments live; results in the items' order."""
        if not self.workers:
            if msg == 'reset':
                return [np.asarray(self.envs[i].reset(seed=a)[0], np.float32) for i, a in items]
            out = []
            for i, a in items:
                o, r, terminated, truncated, info = self.envs[i].step(a)
                out.append((np.asarray(o, np.float32), float(r), terminated, truncated, info))
            return out
        per = [[] for _ in self.conns]
        where = []
        for i, a in items:
            j, local = self.owner[i]
            where.append((j, len(per[j])))
            per[j].append((local, a))
        busy = [j for j, p in enumerate(per) if p]
        for j in busy:
            self.conns[j].send((msg, per[j]))
        got = {j: self.conns[j].recv() for j in busy}
        return [got[j][k] for j, k in where]

    def reset(self, items: list) -> list:
        """items: (env index, seed) -> observations."""
        return self._scatter('reset', items)

    def step(self, items: list) -> list:
        """items: (env index, action) -> (obs, reward, terminated, truncated, info) each."""
        return self._scatter('step', items)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []
        for conn in self.conns:
            try:
                conn.send(('close', None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        self.conns, self.procs, self.owner = [], [], []


def run_episodes(
    pool: EnvPool,
    act,
    num_groups: int,
    num_episodes: int,
    reset_seeds,
    score,
    horizon: int = 1,
    progress: bool = True,
    desc: str = 'eval',
    width: int = 1,
) -> list[dict]:
    """Play episodes 0..num_episodes-1 of each of `num_groups` policies on `width` environments per group of `pool`
    (group g owns environments g * width .. (g + 1) * width - 1 and plays its episodes on them in order as they free
    up); all of them step in lockstep.

    `act(obs[G, W, obs_dim], episode[G, W], call[G, W]) -> actions[G, W, horizon * action_dim]` is called once per
    step in which some episode needs a new chunk (every slot is passed, so shapes never change; rows of other slots
    are ignored); `call` counts that episode's policy calls from 0. Each chunk of `horizon` actions runs open-loop
    (the released QAM evaluation's action queue), a new chunk at every episode start. `score(return, last_info)`.
    Returns one {'score', 'return', 'length'} (means over the episodes) per group."""
    G, E, W = num_groups, num_episodes, width
    pool.size(G * W)
    episode = np.full((G, W), -1, np.int32)  # the episode a slot plays; -1: idle
    calls = np.zeros((G, W), np.int32)
    pos = np.zeros((G, W), np.int64)  # next action of the slot's chunk; == horizon: a new chunk is needed
    obs, chunks = None, None  # [G, W, obs_dim], [G, W, horizon, action_dim]
    ret, length = np.zeros((G, W)), np.zeros((G, W), np.int64)
    results = [[None] * E for _ in range(G)]  # (score, return, length) per episode
    next_episode = [0] * G
    bar = tqdm(total=G * E, desc=desc, leave=False, disable=not progress, unit='episode')

    def start(slots):
        """Give each slot its group's next episode (or idle it) and reset those environments together."""
        nonlocal obs
        items = []
        for g, w in slots:
            e = next_episode[g]
            if e >= E:
                episode[g, w] = -1
                continue
            next_episode[g] += 1
            episode[g, w], calls[g, w], pos[g, w], ret[g, w], length[g, w] = e, 0, horizon, 0.0, 0
            items.append((g * W + w, int(reset_seeds[g]) + e))
        for (i, _), o in zip(items, pool.reset(items)):
            if obs is None:
                obs = np.zeros((G, W, *o.shape), np.float32)
            obs[i // W, i % W] = o

    start([(g, w) for g in range(G) for w in range(W)])
    while (episode >= 0).any():
        need = (episode >= 0) & (pos >= horizon)
        if need.any():
            actions = np.asarray(act(obs, np.maximum(episode, 0), calls)).reshape(G, W, horizon, -1)
            if chunks is None:
                chunks = np.zeros_like(actions)
            chunks[need] = actions[need]
            calls[need] += 1
            pos[need] = 0
        live = list(zip(*np.nonzero(episode >= 0)))
        outs = pool.step([(g * W + w, chunks[g, w, pos[g, w]].copy()) for g, w in live])  # copies: envs may keep them
        finished = []
        for (g, w), (o, r, terminated, truncated, info) in zip(live, outs):
            pos[g, w] += 1
            ret[g, w] += r
            length[g, w] += 1
            obs[g, w] = o
            if terminated or truncated:
                results[g][episode[g, w]] = (score(ret[g, w], info), ret[g, w], length[g, w])
                bar.update(1)
                finished.append((g, w))
        if finished:
            start(finished)
    bar.close()
    return [
        {k: float(np.mean([r[i] for r in res])) for i, k in enumerate(('score', 'return', 'length'))} for res in results
    ]


def evaluate(
    task, policy, num_episodes: int, seed: int, progress: bool = True, desc: str = 'eval', horizon: int = 1
) -> dict:
    """One policy, one environment, episodes one after another: `policy(observations[1, obs_dim]) -> actions[1,
    horizon * action_dim]` (the task's own evaluation when it has one). Returns {'score': mean episode score, ...}."""
    if task.evaluate is not None:
        return task.evaluate(policy, seed, num_episodes)
    pool = EnvPool(task.make_env, seed)
    try:
        return run_episodes(
            pool,
            lambda obs, episode, call: np.asarray(policy(obs[0]))[None],
            1,
            num_episodes,
            [seed],
            task.score,
            horizon,
            progress,
            desc,
        )[0]
    finally:
        pool.close()
