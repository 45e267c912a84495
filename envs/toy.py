"""The FAV paper's toy bandit `toy-8gaussians` (FAV Appendix A.1): one state, 2-D actions.

Behavior data: an equal mixture of 8 isotropic Gaussians with centers on a circle of radius 4 and std 0.5, all
scaled by 1/sqrt(2); actions are those points divided by 4, so they lie in [-1, 1]^2. Reward, in the unscaled
coordinates x = 4a: exp(r(x)) = sum_k softmax_k(-||x - c_k||^2) * (k / 7), c_k the scaled centers. Episodes last
one step (mask 0), so Q regresses the reward, and the exact target of every method is p(a) exp(beta r(a)).
"""

from __future__ import annotations

import functools

import gymnasium
import numpy as np

from envs.base import Task

NAME = 'toy-8gaussians'
SCALE = 4.0  # actions a = x / SCALE
CENTERS = (4.0 / np.sqrt(2.0)) * np.stack(
    [np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], 1
)
STD = 0.5 / np.sqrt(2.0)
NUM_DATA = 500_000  # the paper's training pool
NUM_EVAL = 10_000  # policy samples per evaluation
BETA = 1.0  # tilt of the reported target


def sample_behavior(n: int, rng: np.random.Generator) -> np.ndarray:
    """n behavior actions (in [-1, 1]^2 up to far tails, clipped)."""
    k = rng.integers(0, 8, n)
    x = CENTERS[k] + STD * rng.standard_normal((n, 2))
    return np.clip(x / SCALE, -1.0, 1.0)


def reward(actions: np.ndarray) -> np.ndarray:
    """r(4a) with exp(r(x)) = sum_k softmax_k(-||x - c_k||^2) k/7, in float64 (log floored at 1e-12)."""
    x = SCALE * np.asarray(actions, np.float64)
    logits = -np.sum((x[:, None, :] - CENTERS[None]) ** 2, axis=-1)
    logits -= logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(axis=1, keepdims=True)
    return np.log(np.maximum(w @ (np.arange(8) / 7.0), 1e-12))


def nearest_cluster(actions: np.ndarray) -> np.ndarray:
    x = SCALE * np.asarray(actions, np.float64)
    return np.argmin(np.sum((x[:, None, :] - CENTERS[None]) ** 2, axis=-1), axis=1)


def behavior_density(x: np.ndarray) -> np.ndarray:
    """Density of the behavior mixture in the unscaled coordinates x (float64)."""
    d2 = np.sum((x[:, None, :] - CENTERS[None]) ** 2, axis=-1)
    return np.mean(np.exp(-d2 / (2 * STD**2)), axis=1) / (2 * np.pi * STD**2)


@functools.lru_cache(maxsize=None)
def target_occupancy(beta: float = BETA, grid: int = 401) -> np.ndarray:
    """Cluster occupancy (nearest center) of the exact tilted target p(a) exp(beta r(a)), by quadrature of the density
    on a 401 x 401 grid over [-4.5, 4.5]^2 in x = 4a (float64; spacing 0.0225, 1/16 of the component std)."""
    lin = np.linspace(-4.5, 4.5, grid)
    x = np.stack(np.meshgrid(lin, lin), -1).reshape(-1, 2)
    w = behavior_density(x) * np.exp(beta * reward(x / SCALE))
    occ = np.bincount(nearest_cluster(x / SCALE), weights=w, minlength=8)
    return occ / occ.sum()


def metrics(actions: np.ndarray) -> dict:
    """The toy's evaluation: mean true reward, TV distance of cluster occupancy to the exact tilted target (beta=1),
    and the fraction of samples farther than 3 std from every center."""
    occ = np.bincount(nearest_cluster(actions), minlength=8) / len(actions)
    tv = 0.5 * np.abs(occ - target_occupancy()).sum()
    x = SCALE * np.asarray(actions, np.float64)
    dmin = np.sqrt(np.min(np.sum((x[:, None, :] - CENTERS[None]) ** 2, axis=-1), axis=1))
    out = {
        'score': float(reward(actions).mean()),
        'mean_reward': float(reward(actions).mean()),
        'tv_distance': float(tv),
        'outlier_fraction': float(np.mean(dmin > 3 * STD)),
    }
    out.update({f'occupancy_{k}': float(occ[k]) for k in range(8)})
    return out


class ToyBanditEnv(gymnasium.Env):
    """One-step episodes: observation [0], reward r(4a), terminated after the first step."""

    def __init__(self):
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        r = float(reward(np.asarray(action)[None])[0])
        return np.zeros(1, np.float32), r, True, False, {}


def make_task(data_seed: int = 0) -> Task:
    """The toy task; its data depend only on `data_seed` (fixed), never on the run seed."""
    a = sample_behavior(NUM_DATA, np.random.default_rng(data_seed)).astype(np.float32)
    n = len(a)
    ds = dict(
        observations=np.zeros((n, 1), np.float32),
        actions=a,
        rewards=reward(a).astype(np.float32),
        masks=np.zeros(n, np.float32),
        terminals=np.ones(n, np.float32),
        next_observations=np.zeros((n, 1), np.float32),
    )

    def evaluate(policy, seed, num_episodes):
        actions = policy(np.zeros((NUM_EVAL, 1), np.float32))
        out = metrics(actions)
        out['samples'] = actions
        return out

    return Task(
        name=NAME,
        family='toy',
        train_dataset=ds,
        val_dataset=None,
        make_env=lambda seed: ToyBanditEnv(),
        score=lambda ret, info: ret,
        protocol='toy: mean true reward of 10,000 policy samples; TV of cluster occupancy to p*exp(r) (beta=1)',
        evaluate=evaluate,
        extra={'config_defaults': {'actor_hidden_dims': (256, 256, 256), 'value_hidden_dims': (256, 256, 256)}},
    )
