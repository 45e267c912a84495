"""Tilt-fidelity bandits: one-step tasks whose Q-tilted target pi*(a|s) ∝ pi_beta(a|s) exp(beta r(s, a)) is known
exactly, so a policy's distance to it measures extraction alone.

Names: `tilt-<family>-d<dim>[-b<beta>][-oracle]`, e.g. `tilt-ring-d2-b3`, `tilt-gmm-d21-b10-oracle`.
- Families with 2-D actions; the target density is computed on a 500 x 500 grid over [-1, 1]^2:
  `8gaussians` (the FAV toy, envs/toy.py), `ring` (64 Gaussians on a circle, a three-lobed reward), `spiral` (64
  Gaussians along a spiral, a quadratic reward), `checker` (uniform on the 8 dark squares of a 4 x 4 board, a linear
  reward).
- Contextual families `ctx-ring` and `ctx-8gaussians`: the state s = (cos theta, sin theta) rotates the behavior and the
  reward by theta, so pi*(a|s) is the base target rotated by theta. The data draw theta uniformly; evaluation uses
  8 fixed angles, none of which occurs in the data; metrics are computed in the un-rotated frame and averaged.
- `gmm` with any action dimension (d = 8 and d = 21 in the benchmark): a mixture of 8 isotropic Gaussians times
  exp(beta r) with r(a) = b.a - (c/2)|a|^2 is again a Gaussian mixture, in closed form (`gmm_target`).
- beta (default 1) sets the target the metrics compare against; the data are the same for every beta.
- `-oracle`: the agent's critic is replaced by the true reward (Q = r in a one-step task) through Task.extra['oracle_q']
  (agents.common.trainer.Learner.apply), so extraction error is measured without critic error. No agent branches on it.

Metrics (`metrics`), all from policy samples: `tv_distance` between the region occupancies of the policy and the target
(regions: the nearest mixture center, ring / spiral sectors, board squares; `occupancy_k` per region),
`energy_distance` to exact target samples, `mean_reward` beside `target_mean_reward`, and `off_support_fraction`, the
share of samples where the behavior density is below its 0.1% quantile under the behavior itself.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import gymnasium
import numpy as np

from envs import toy
from envs.base import Task

BETAS = (0.3, 1.0, 3.0, 10.0)  # the benchmark's grid (scripts/tilt_table.py)
FAMILIES_2D = ('8gaussians', 'ring', 'spiral', 'checker')
CONTEXTUAL = ('ctx-ring', 'ctx-8gaussians')
# The benchmark's tasks (each run at every beta of BETAS; scripts/tilt_table.py).
BENCHMARK_TASKS = tuple(f'tilt-{f}-d2' for f in FAMILIES_2D + CONTEXTUAL) + ('tilt-gmm-d8', 'tilt-gmm-d21')
NUM_DATA = 500_000  # behavior actions in the dataset (the FAV toy's pool size)
NUM_EVAL = 10_000  # policy samples per evaluation
NUM_EVAL_STATES = 8  # contextual: evaluation angles
EVAL_ANGLES = 2 * np.pi * (np.arange(NUM_EVAL_STATES) + 0.5) / NUM_EVAL_STATES + 0.1
ENERGY_SAMPLES = 1000  # samples per side (per evaluation state) in the energy distance
GRID = 500  # 2-D targets: cells per axis over [-1, 1] (cell 0.004: the board edges of `checker` are cell edges)
SUPPORT_QUANTILE = 1e-3  # off-support: behavior log-density below its 0.1% quantile under the behavior
NAME_RE = re.compile(
    r'tilt-(?P<family>ctx-ring|ctx-8gaussians|8gaussians|ring|spiral|checker|gmm)-d(?P<dim>\d+)'
    r'(?:-b(?P<beta>\d+(?:\.\d+)?))?(?P<oracle>-oracle)?'
)


def _xp(a):
    """numpy for numpy inputs (computed in float64), jax.numpy for jax arrays (the oracle critic, differentiable)."""
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np, np.asarray(a, np.float64)
    import jax.numpy as jnp

    return jnp, a


# ---- 2-D behavior families: sampler, log-density, reward, regions ------------------------------------------------
def _sq_dists(a, b):
    """|a_i - b_j|^2 for a (n, d), b (m, d) as an (n, m) matrix (float64), without an (n, m, d) intermediate."""
    return np.maximum(np.sum(a**2, -1)[:, None] + np.sum(b**2, -1)[None] - 2.0 * a @ b.T, 0.0)


def _gmm_log_density(a, means, std):
    """log of the equal-weight isotropic Gaussian mixture density at a (n, d), float64."""
    logits = -_sq_dists(a, means) / (2 * std**2)
    m = logits.max(axis=1, keepdims=True)
    d = a.shape[-1]
    return (m[:, 0] + np.log(np.mean(np.exp(logits - m), axis=1))) - 0.5 * d * np.log(2 * np.pi * std**2)


@dataclasses.dataclass(frozen=True)
class Mixture2D:
    """Behavior = equal mixture of isotropic Gaussians at `means` (std `std`); `reward(a)` written for numpy (float64)
    and jax alike; regions = `region_of_component[nearest mean]`."""

    name: str
    means: np.ndarray
    std: float
    reward_fn: object
    region_of_component: np.ndarray

    @property
    def num_regions(self):
        return int(self.region_of_component.max()) + 1

    def sample(self, n, rng):
        k = rng.integers(0, len(self.means), n)
        return self.means[k] + self.std * rng.standard_normal((n, 2))

    def log_density(self, a):
        return _gmm_log_density(np.asarray(a, np.float64), self.means, self.std)

    def reward(self, a):
        return self.reward_fn(a)

    def region(self, a):
        return self.region_of_component[np.argmin(_sq_dists(np.asarray(a, np.float64), self.means), axis=1)]


@dataclasses.dataclass(frozen=True)
class Checker:
    """Behavior uniform on the 8 dark squares of a 4 x 4 board over [-0.8, 0.8]^2; reward 1.5 a_x + a_y."""

    name: str = 'checker'
    half: float = 0.8
    num_regions: int = 8

    def _cell(self, a):
        a = np.asarray(a, np.float64)
        ij = np.floor((a + self.half) / (self.half / 2)).astype(int)
        inside = np.all((ij >= 0) & (ij < 4), axis=-1)
        return ij, inside & ((ij.sum(-1) % 2) == 0)

    def sample(self, n, rng):
        dark = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
        cells = dark[rng.integers(0, 8, n)]
        return (cells + rng.random((n, 2))) * (self.half / 2) - self.half

    def log_density(self, a):
        _, dark = self._cell(a)
        return np.where(dark, -np.log(8 * (self.half / 2) ** 2), -np.inf)

    def reward(self, a):
        return 1.5 * a[..., 0] + a[..., 1]

    def region(self, a):
        ij, dark = self._cell(a)
        ij = np.clip(ij, 0, 3)
        # dark squares numbered 0..7 row by row; light squares go to their left / right dark neighbour's number
        return (ij[..., 0] * 4 + ij[..., 1]) // 2


def _ring_reward(a):
    """cos(3 angle) + a_x / 2 on the ring (a cubic polynomial: Re((a_x + i a_y)^3) / R^3 + a_x / (2R))."""
    xp, a = _xp(a)
    x, y = a[..., 0], a[..., 1]
    return (x**3 - 3 * x * y**2) / RING_R**3 + 0.5 * x / RING_R


def _spiral_reward(a):
    """-2 |a - (0.3, 0.2)|^2: the spiral's inner turn pays most."""
    xp, a = _xp(a)
    return -2.0 * ((a[..., 0] - 0.3) ** 2 + (a[..., 1] - 0.2) ** 2)


def _toy_reward(a):
    """The FAV toy's reward r(4a) (envs/toy.py), for numpy and jax."""
    xp, a = _xp(a)
    x = toy.SCALE * a
    logits = -xp.sum((x[..., None, :] - xp.asarray(toy.CENTERS)) ** 2, axis=-1)
    logits = logits - logits.max(axis=-1, keepdims=True)
    w = xp.exp(logits)
    w = w / w.sum(axis=-1, keepdims=True)
    return xp.log(xp.maximum(w @ xp.asarray(np.arange(8) / 7.0), 1e-12))


RING_R = 0.6
_angles64 = 2 * np.pi * np.arange(64) / 64
_spiral_t = np.linspace(0.0, 1.0, 64)
FAMILIES = {
    '8gaussians': Mixture2D('8gaussians', toy.CENTERS / toy.SCALE, toy.STD / toy.SCALE, _toy_reward, np.arange(8)),
    'ring': Mixture2D(
        'ring', RING_R * np.stack([np.cos(_angles64), np.sin(_angles64)], 1), 0.05, _ring_reward, np.arange(64) // 8
    ),
    'spiral': Mixture2D(
        'spiral',
        (0.15 + 0.65 * _spiral_t)[:, None]
        * np.stack([np.cos(3 * np.pi * _spiral_t), np.sin(3 * np.pi * _spiral_t)], 1),
        0.04,
        _spiral_reward,
        np.arange(64) // 8,
    ),
    'checker': Checker(),
}


# ---- exact targets --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GridTarget:
    """pi*(a) ∝ pi_beta(a) exp(beta r(a)) on the cell centers of a GRID x GRID grid over [-1, 1]^2 (float64)."""

    points: np.ndarray  # (G*G, 2) cell centers
    probs: np.ndarray  # (G*G,) target mass of each cell
    occupancy: np.ndarray  # (num_regions,) target mass of each region
    behavior_occupancy: np.ndarray
    mean_reward: float
    cell: float

    def sample(self, n, rng):
        idx = rng.choice(len(self.probs), size=n, p=self.probs)
        return self.points[idx] + (rng.random((n, 2)) - 0.5) * self.cell


@functools.lru_cache(maxsize=None)
def _grid(family: str):
    """The beta-free part of a 2-D target: cell centers, behavior log-density, reward and region of every cell."""
    fam = FAMILIES[family]
    cell = 2.0 / GRID
    lin = -1 + cell * (np.arange(GRID) + 0.5)
    pts = np.stack(np.meshgrid(lin, lin, indexing='ij'), -1).reshape(-1, 2)
    return pts, fam.log_density(pts), np.asarray(fam.reward(pts), np.float64), fam.region(pts), cell


@functools.lru_cache(maxsize=None)
def grid_target(family: str, beta: float) -> GridTarget:
    pts, logp, r, regions, cell = _grid(family)
    logt = logp + beta * r
    probs = np.exp(logt - logt[np.isfinite(logt)].max())
    probs /= probs.sum()
    behavior = np.exp(logp - logp[np.isfinite(logp)].max())
    behavior /= behavior.sum()
    k = FAMILIES[family].num_regions
    occ = np.bincount(regions, weights=probs, minlength=k)
    bocc = np.bincount(regions, weights=behavior, minlength=k)
    return GridTarget(pts, probs, occ, bocc, float(probs @ r), cell)


@dataclasses.dataclass(frozen=True)
class GMMTask:
    """Behavior: equal mixture of 8 isotropic Gaussians N(mu_k, std^2 I) in d dimensions; reward
    r(a) = b.a - c/2 |a|^2."""

    means: np.ndarray  # (8, d)
    std: float
    b: np.ndarray  # (d,)
    c: float

    @property
    def num_regions(self):
        return len(self.means)

    def sample(self, n, rng):
        k = rng.integers(0, len(self.means), n)
        return self.means[k] + self.std * rng.standard_normal((n, self.means.shape[1]))

    def log_density(self, a):
        return _gmm_log_density(np.asarray(a, np.float64), self.means, self.std)

    def reward(self, a):
        xp, a = _xp(a)
        return a @ xp.asarray(self.b) - 0.5 * self.c * xp.sum(a**2, axis=-1)


@functools.lru_cache(maxsize=None)
def gmm_task(dim: int) -> GMMTask:
    """The fixed instance of dimension `dim`: means uniform in [-0.6, 0.6]^d, std 0.1, |b| = 3, c = 2."""
    rng = np.random.default_rng(1000 + dim)
    means = rng.uniform(-0.6, 0.6, (8, dim))
    b = rng.standard_normal(dim)
    return GMMTask(means, 0.1, 3.0 * b / np.linalg.norm(b), 2.0)


@dataclasses.dataclass(frozen=True)
class GMMTarget:
    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    std: float

    def sample(self, n, rng):
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return self.means[k] + self.std * rng.standard_normal((n, self.means.shape[1]))


def gmm_target(task: GMMTask, beta: float) -> GMMTarget:
    """N(a; mu_k, s^2 I) exp(beta (b.a - c/2 |a|^2)) = Z_k N(a; mu'_k, s'^2 I) with precision lam = 1/s^2 + beta c,
    eta_k = mu_k / s^2 + beta b, mu'_k = eta_k / lam, s'^2 = 1 / lam and
    log Z_k = |eta_k|^2 / (2 lam) - |mu_k|^2 / (2 s^2) + (d/2) log(1 / (s^2 lam)).
    Target weights w'_k ∝ Z_k for equal behavior weights (the last term is the same for every k)."""
    lam = 1.0 / task.std**2 + beta * task.c
    eta = task.means / task.std**2 + beta * task.b
    logz = np.sum(eta**2, -1) / (2 * lam) - np.sum(task.means**2, -1) / (2 * task.std**2)
    w = np.exp(logz - logz.max())
    return GMMTarget(w / w.sum(), eta / lam, float(1.0 / np.sqrt(lam)))


def gmm_target_mean_reward(task: GMMTask, target: GMMTarget) -> float:
    """E_target[b.a - c/2 |a|^2] in closed form: sum_k w_k (b.mu_k - c/2 (|mu_k|^2 + d s^2))."""
    d = task.means.shape[1]
    per = target.means @ task.b - 0.5 * task.c * (np.sum(target.means**2, -1) + d * target.std**2)
    return float(target.weights @ per)


# ---- metrics --------------------------------------------------------------------------------------------------------
def _mean_pairwise_distance(x, y, chunk=1000):
    total = 0.0
    for i in range(0, len(x), chunk):
        total += np.sqrt(_sq_dists(x[i : i + chunk], y)).sum()
    return total / (len(x) * len(y))


def energy_distance(x, y) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistic; 0 iff the distributions agree, up to sampling noise)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(2 * _mean_pairwise_distance(x, y) - _mean_pairwise_distance(x, x) - _mean_pairwise_distance(y, y))


@functools.lru_cache(maxsize=None)
def _reference(family: str, dim: int, beta: float, n: int, seed: int):
    """n exact target samples (fixed seed) and their E|Y - Y'|, shared by every evaluation."""
    y = exact_target(family, dim, beta).sample(n, np.random.default_rng(seed))
    return y, _mean_pairwise_distance(y, y)


@functools.lru_cache(maxsize=None)
def support_threshold(family: str, dim: int) -> float:
    """The 0.1% quantile of the behavior's log-density under the behavior itself (200,000 samples, fixed seed)."""
    fam = _base(family, dim)
    a = fam.sample(200_000, np.random.default_rng(7))
    return float(np.quantile(fam.log_density(a), SUPPORT_QUANTILE))


def _base(family: str, dim: int):
    if family == 'gmm':
        return gmm_task(dim)
    return FAMILIES[family.removeprefix('ctx-')]


@dataclasses.dataclass(frozen=True)
class Target:
    """The exact target of a base (un-rotated) family at one beta: region occupancy, mean reward, a sampler."""

    occupancy: np.ndarray
    behavior_occupancy: np.ndarray
    mean_reward: float
    sample: object  # (n, rng) -> samples

    def off_support_fraction(self, family: str, dim: int) -> float:
        """The target's own off-support share (40,000 exact samples, fixed seed): the reference for a policy's."""
        a = self.sample(40_000, np.random.default_rng(11))
        return float(np.mean(_base(family, dim).log_density(a) < support_threshold(family, dim)))


@functools.lru_cache(maxsize=None)
def exact_target(family: str, dim: int, beta: float) -> Target:
    base = family.removeprefix('ctx-')
    if base == 'gmm':
        task = gmm_task(dim)
        tgt = gmm_target(task, beta)
        # Regions are the nearest behavior mean; the components are >= 10 target stds apart in the benchmark's
        # instances, so the region masses equal the component weights (tests/test_tilt.py checks the overlap).
        return Target(tgt.weights, np.full(8, 1 / 8), gmm_target_mean_reward(task, tgt), tgt.sample)
    g = grid_target(base, beta)
    return Target(g.occupancy, g.behavior_occupancy, g.mean_reward, g.sample)


@functools.lru_cache(maxsize=None)
def _target_off_support(family: str, dim: int, beta: float) -> float:
    return exact_target(family, dim, beta).off_support_fraction(family, dim)


def region(family: str, dim: int, a) -> np.ndarray:
    fam = _base(family, dim)
    if isinstance(fam, GMMTask):
        return np.argmin(_sq_dists(np.asarray(a, np.float64), fam.means), axis=1)
    return fam.region(a)


def metrics(family: str, dim: int, beta: float, actions, seed: int = 0) -> dict:
    """Fidelity of samples `actions` (n, d) in the un-rotated frame to the exact target at `beta` (see the module
    docstring), plus `beta<b>/tv_distance`, `beta<b>/energy_distance`, `beta<b>/target_mean_reward` against the target
    at every other beta of BETAS: an agent without a temperature is trained once and read at every beta."""
    fam = _base(family, dim)
    a = np.asarray(actions, np.float64)
    rng = np.random.default_rng(seed)
    n = min(len(a), ENERGY_SAMPLES)
    sub = a[rng.choice(len(a), n, replace=False)] if len(a) > n else a
    regions = region(family, dim, a)
    out = {
        'mean_reward': float(np.mean(fam.reward(a))),
        'off_support_fraction': float(np.mean(fam.log_density(a) < support_threshold(family, dim))),
    }
    out['score'] = out['mean_reward']
    xx = _mean_pairwise_distance(sub, sub)
    for b in (beta, *(x for x in BETAS if x != beta)):
        tgt = exact_target(family, dim, b)
        occ = np.bincount(regions, minlength=len(tgt.occupancy)) / len(a)
        ref, yy = _reference(family.removeprefix('ctx-'), dim, b, n, seed + 1)
        vals = {
            'tv_distance': float(0.5 * np.abs(occ - tgt.occupancy).sum()),
            'energy_distance': float(2 * _mean_pairwise_distance(sub, ref) - xx - yy),
            'target_mean_reward': tgt.mean_reward,
        }
        if b == beta:
            out.update(vals)
            out['target_off_support_fraction'] = _target_off_support(family, dim, beta)
            out.update({f'occupancy_{k}': float(occ[k]) for k in range(len(occ))})
        else:
            out.update({f'beta{b:g}/{k}': v for k, v in vals.items()})
    return out


# ---- tasks ----------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Spec:
    family: str
    dim: int
    beta: float
    oracle: bool

    @property
    def contextual(self):
        return self.family.startswith('ctx-')


def parse_name(name: str) -> Spec:
    m = NAME_RE.fullmatch(name)
    if not m:
        raise ValueError(
            f'Unknown tilt task {name!r}. Names: tilt-<family>-d<dim>[-b<beta>][-oracle] with family in '
            f'{", ".join(FAMILIES_2D + CONTEXTUAL)} (d2) or gmm (any d >= 1), e.g. tilt-ring-d2-b3, tilt-gmm-d21.'
        )
    family, dim = m['family'], int(m['dim'])
    if family != 'gmm' and dim != 2:
        raise ValueError(f'Tilt family {family!r} has 2-D actions: use tilt-{family}-d2, not d{dim}.')
    if dim < 1:
        raise ValueError('Tilt tasks need at least one action dimension.')
    beta = float(m['beta']) if m['beta'] else 1.0
    if beta <= 0:
        raise ValueError(f'beta must be positive in {name!r}.')
    return Spec(family, dim, beta, bool(m['oracle']))


def _rotate(a, cos, sin):
    """R(theta) a, rows of a rotated by their own angle; R(-theta) with sin -> -sin."""
    return np.stack([cos * a[..., 0] - sin * a[..., 1], sin * a[..., 0] + cos * a[..., 1]], -1)


def sample_dataset(spec: Spec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(observations, actions) of n behavior draws; actions clipped to [-1, 1]."""
    fam = _base(spec.family, spec.dim)
    a = fam.sample(n, rng)
    if spec.contextual:
        theta = rng.uniform(0, 2 * np.pi, n)
        obs = np.stack([np.cos(theta), np.sin(theta)], 1)
        a = _rotate(a, obs[:, 0], obs[:, 1])
    else:
        obs = np.zeros((n, 1))
    return obs, np.clip(a, -1.0, 1.0)


def true_reward(spec: Spec, observations, actions):
    """r(s, a) for numpy (float64) or jax arrays: the base reward of the un-rotated action R(-theta) a."""
    fam = _base(spec.family, spec.dim)
    if spec.contextual:
        xp, actions = _xp(actions)
        _, observations = _xp(observations)
        c, s = observations[..., 0], observations[..., 1]
        actions = xp.stack([c * actions[..., 0] + s * actions[..., 1], -s * actions[..., 0] + c * actions[..., 1]], -1)
    return fam.reward(actions)


def eval_observations(spec: Spec) -> np.ndarray:
    """The NUM_EVAL observations an evaluation asks the policy to act at (contextual: NUM_EVAL_STATES angles)."""
    if not spec.contextual:
        return np.zeros((NUM_EVAL, 1), np.float32)
    per = NUM_EVAL // NUM_EVAL_STATES
    theta = np.repeat(EVAL_ANGLES, per)
    return np.stack([np.cos(theta), np.sin(theta)], 1).astype(np.float32)


def evaluate_samples(spec: Spec, observations, actions) -> dict:
    """Metrics of policy samples at `observations` (contextual: per evaluation angle in the un-rotated frame, then
    averaged over the angles)."""
    actions = np.asarray(actions, np.float64)
    if not spec.contextual:
        return metrics(spec.family, spec.dim, spec.beta, actions)
    obs = np.asarray(observations, np.float64)
    theta = np.arctan2(obs[:, 1], obs[:, 0])
    outs = []
    for i, t in enumerate(np.unique(np.round(theta, 6))):
        rows = np.isclose(np.round(theta, 6), t)
        back = _rotate(actions[rows], obs[rows, 0], -obs[rows, 1])
        outs.append(metrics(spec.family, spec.dim, spec.beta, back, seed=i))
    return {k: float(np.mean([o[k] for o in outs])) for k in outs[0]}


class TiltBanditEnv(gymnasium.Env):
    """One-step episodes at a random state (contextual) or the single state [0]; reward r(s, a)."""

    def __init__(self, spec: Spec):
        self.spec = spec
        obs_dim = 2 if spec.contextual else 1
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (spec.dim,), np.float32)
        self._obs = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.spec.contextual:
            t = self.np_random.uniform(0, 2 * np.pi)
            self._obs = np.array([np.cos(t), np.sin(t)], np.float32)
        else:
            self._obs = np.zeros(1, np.float32)
        return self._obs, {}

    def step(self, action):
        r = float(true_reward(self.spec, self._obs[None].astype(np.float64), np.asarray(action, np.float64)[None])[0])
        return self._obs, r, True, False, {}


def make_task(name: str, data_seed: int = 0) -> Task:
    """The tilt task `name`; its data depend only on the family and dimension (fixed seed), never on beta, the
    oracle switch or the run seed."""
    spec = parse_name(name)
    obs, a = sample_dataset(spec, NUM_DATA, np.random.default_rng(data_seed))
    n = len(a)
    ds = dict(
        observations=obs.astype(np.float32),
        actions=a.astype(np.float32),
        rewards=np.asarray(true_reward(spec, obs, a), np.float32),
        masks=np.zeros(n, np.float32),
        terminals=np.ones(n, np.float32),
        next_observations=obs.astype(np.float32),
    )

    def evaluate(policy, seed, num_episodes):
        observations = eval_observations(spec)
        actions = np.asarray(policy(observations))
        out = evaluate_samples(spec, observations, actions)
        out['samples'] = actions
        return out

    extra = {'config_defaults': {'actor_hidden_dims': (256, 256, 256), 'value_hidden_dims': (256, 256, 256)}}
    if spec.oracle:
        extra['oracle_q'] = lambda observations, actions: true_reward(spec, observations, actions)
    protocol = (
        f'tilt (beta={spec.beta:g}{", oracle critic" if spec.oracle else ""}): {NUM_EVAL} policy samples'
        + (f' at {NUM_EVAL_STATES} held-out states' if spec.contextual else '')
        + '; score = mean true reward; TV of region occupancy, energy distance, off-support share vs the exact target'
    )
    return Task(
        name=name,
        family='tilt',
        train_dataset=ds,
        val_dataset=None,
        make_env=lambda seed: TiltBanditEnv(spec),
        score=lambda ret, info: ret,
        protocol=protocol,
        evaluate=evaluate,
        extra=extra,
    )
