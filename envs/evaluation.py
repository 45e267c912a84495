"""Policy evaluation under each family's protocol (episodes in the real environment, or the task's own)."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm


def evaluate(
    task, policy, num_episodes: int, seed: int, progress: bool = True, desc: str = 'eval', horizon: int = 1
) -> dict:
    """`policy(observations[B, obs_dim]) -> actions[B, horizon * action_dim]`. Each chunk of `horizon` actions is
    executed open-loop: one policy call per `horizon` environment steps, a new chunk at every episode start (the
    released QAM evaluation's action queue). Returns {'score': mean episode score, ...}."""
    if task.evaluate is not None:
        return task.evaluate(policy, seed, num_episodes)
    env = task.make_env(seed)
    scores, returns, lengths = [], [], []
    for ep in tqdm(range(num_episodes), desc=desc, leave=False, disable=not progress):
        obs, info = env.reset(seed=seed + ep)
        ret, length, done, queue = 0.0, 0, False, []
        while not done:
            if not queue:
                queue = list(np.reshape(policy(np.asarray(obs, np.float32)[None])[0], (horizon, -1)))
            obs, r, terminated, truncated, info = env.step(np.asarray(queue.pop(0)))
            ret += float(r)
            length += 1
            done = terminated or truncated
        scores.append(task.score(ret, info))
        returns.append(ret)
        lengths.append(length)
    env.close()
    return {'score': float(np.mean(scores)), 'return': float(np.mean(returns)), 'length': float(np.mean(lengths))}
