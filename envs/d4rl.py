"""D4RL tasks from two sources behind one loader: the original D4RL v2 hdf5 files and Minari's ports.

(1) `make_d4rl_task('hopper-medium-v2')`: the original D4RL v2 hdf5 files (published numbers use these), read with
h5py, no `d4rl` package needed. Conventions follow the IQL / FQL / ReBRAC code: antmaze rewards are shifted r - 1
(so -1 / 0); masks = 1 - terminals (true terminations); trajectory ends (our `terminals`) = timeouts | terminals |
observation discontinuity (`|obs[i+1] - next_obs[i]| > 1e-6`). Files without next_observations: the next row within
an episode, the last transition of an episode dropped unless it is a true termination (kept, mask 0). Scores are
D4RL normalized returns x100 with the reference returns of d4rl/infos.py. Evaluation: `d4rl` needs mujoco-py and
is not installable, so locomotion maps to gymnasium MuJoCo v5 envs (see `_LOCOMOTION_ENVS`). v5 is NOT bit-identical
with the D4RL v2 mujoco-py envs; the observation shapes match (hopper 11, halfcheetah / walker2d 17, ant 111 with
the always-zero contact forces padded). Antmaze evaluates in envs/d4rl_antmaze.py, a rebuild of d4rl's AntMazeEnv
on the mujoco bindings (same model and rules; MuJoCo 3, so not bit-identical with mujoco-py).

(2) `make_minari_task('D4RL/antmaze/large-play-v1')` / `make_minari_task('mujoco/hopper/medium-v0')`: Minari datasets,
evaluated in `dataset.recover_environment(eval_env=True)` (gymnasium-robotics AntMaze v4, gymnasium MuJoCo v5).
NOT COMPARABLE WITH PUBLISHED D4RL NUMBERS: Minari's data were regenerated with different simulators and envs
(different observations, e.g. AntMaze dict observations with the goal; no episode end at the goal; different
rewards and horizons), and there is no medium-replay / medium-expert / full-replay for MuJoCo.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from envs.base import DatasetError, Task, check_dataset

_LOCOMOTION = ('halfcheetah', 'hopper', 'walker2d', 'ant')
_LOCOMOTION_DATASETS = (
    'random',
    'medium',
    'expert',
    'medium-replay',
    'medium-expert',
    'full-replay',
)
_ANTMAZE_DATASETS = (
    'umaze',
    'umaze-diverse',
    'medium-play',
    'medium-diverse',
    'large-play',
    'large-diverse',
)

# Reference returns for the normalized score, copied from d4rl/infos.py (REF_MIN_SCORE / REF_MAX_SCORE) of
# github.com/Farama-Foundation/D4RL: the gym-mujoco v2 entries reuse the '<env>-random-v0' values.
_LOCOMOTION_REF = {  # env: (REF_MIN_SCORE, REF_MAX_SCORE)
    'halfcheetah': (-280.178953, 12135.0),
    'hopper': (-20.272305, 3234.3),
    'walker2d': (1.629008, 4592.3),
    'ant': (-325.6, 3879.7),
}
D4RL_REF_SCORES: dict[str, tuple[float, float]] = {
    **{f'{e}-{d}-v2': _LOCOMOTION_REF[e] for e in _LOCOMOTION for d in _LOCOMOTION_DATASETS},
    **{f'antmaze-{d}-v2': (0.0, 1.0) for d in _ANTMAZE_DATASETS},
}
D4RL_NAMES: tuple[str, ...] = tuple(D4RL_REF_SCORES)

# File names d4rl itself caches under ~/.d4rl/datasets (the basename of its download URL, d4rl/infos.py DATASET_URLS).
_D4RL_URL_ROOT = 'http://rail.eecs.berkeley.edu/datasets/offline_rl'
_ANTMAZE_URLS = {
    f'antmaze-{d}-v2': f'ant_maze_v2/Ant_maze_{maze}_noisy_multistart_{start}_multigoal_{goal}_sparse_fixed.hdf5'
    for d, maze, start, goal in [
        ('umaze', 'u-maze', False, False),
        ('umaze-diverse', 'u-maze', True, True),
        ('medium-play', 'big-maze', True, False),
        ('medium-diverse', 'big-maze', True, True),
        ('large-play', 'hardest-maze', True, False),
        ('large-diverse', 'hardest-maze', True, True),
    ]
}

# gymnasium v5 stand-ins for the D4RL v2 (gym v2, mujoco-py / MuJoCo 2.0) envs, with the D4RL observation size.
# Known differences: v5 uses the mujoco bindings (not bit-identical dynamics), Walker2d-v5 gives both feet the same
# friction (v2: left foot 0.9), and Ant-v2's 84 contact-force dims were always 0 under MuJoCo 2.0, so Ant-v5 runs
# without them (and without contact cost, which was 0 as well) and the observation is zero-padded to 111.
_LOCOMOTION_ENVS = {  # env: (gymnasium id, kwargs, D4RL obs dim, dims the v5 env provides)
    'halfcheetah': ('HalfCheetah-v5', {}, 17, 17),
    'hopper': ('Hopper-v5', {}, 11, 11),
    'walker2d': ('Walker2d-v5', {}, 17, 17),
    'ant': (
        'Ant-v5',
        {'include_cfrc_ext_in_observation': False, 'contact_cost_weight': 0.0},
        111,
        27,
    ),
}
_ANTMAZE_NOTE = (
    "evaluated in tiltbench's D4RL v2 antmaze env (envs/d4rl_antmaze.py: d4rl's maps, ant model, goal and reset "
    "rules, sparse reward, termination at the goal, 700 / 1000 steps), simulated by MuJoCo 3 instead of mujoco-py's "
    'MuJoCo 2: the same model, not bit-identical dynamics (scripts/check_d4rl_env.py measures the one-step difference '
    'on a real file)'
)

_MINARI_CAVEAT = (
    'Minari data were regenerated: NOT comparable with published D4RL numbers (different observations, '
    'no episode end at the goal, no medium-replay/medium-expert for MuJoCo).'
)
_HDF5_KEYS = ('observations', 'actions', 'rewards', 'terminals')


def is_d4rl_name(name: str) -> bool:
    """True for D4RL v2 hdf5 task names with reference scores, e.g. 'hopper-medium-v2', 'antmaze-large-play-v2'."""
    return name in D4RL_REF_SCORES


def is_minari_name(name: str) -> bool:
    """True for Minari dataset ids in the 'D4RL/' or 'mujoco/' namespaces, e.g. 'mujoco/hopper/medium-v0'."""
    return name.startswith(('D4RL/', 'mujoco/'))


def _url_path(name: str) -> str:
    if name.startswith('antmaze-'):
        return _ANTMAZE_URLS[name]
    env, rest = name.split('-', 1)
    dset = rest.rsplit('-v', 1)[0]
    return f'gym_mujoco_v2/{env}_{dset.replace("-", "_")}-v2.hdf5'


def _candidate_paths(name: str, dataset_path: str | None) -> list[str]:
    """Where the hdf5 file of `name` is looked for, in order."""
    basenames = [f'{name}.hdf5', os.path.basename(_url_path(name))]
    if dataset_path is not None:
        path = os.path.expanduser(dataset_path)
        return [os.path.join(path, b) for b in basenames] if os.path.isdir(path) else [path]
    dirs = [os.environ.get('D4RL_DATASET_DIR'), os.path.expanduser('~/.d4rl/datasets')]
    return [os.path.join(d, b) for d in dirs if d for b in basenames]


def _read_hdf5(path: str) -> dict[str, np.ndarray]:
    """Read the D4RL keys from an hdf5 file; any h5py/IO failure becomes a DatasetError."""
    import h5py

    try:
        with h5py.File(path, 'r') as f:
            missing = [k for k in _HDF5_KEYS if k not in f]
            if missing:
                raise DatasetError(
                    f'{path}: not a D4RL dataset file, it lacks keys {missing} (has {sorted(f.keys())}). '
                    'Re-download it (the file may be truncated or a different format).'
                )
            keys = [k for k in (*_HDF5_KEYS, 'timeouts', 'next_observations') if k in f]
            out = {k: np.asarray(f[k][()]) for k in keys}
            if 'tiltbench_generated' in f.attrs:  # envs/d4rl_antmaze.write_dataset: not D4RL's data
                out['tiltbench_generated'] = str(f.attrs['tiltbench_generated'])
            return out
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise DatasetError(
            f'{path}: cannot read as an HDF5 D4RL dataset ({type(e).__name__}: {e}). The file is corrupt or '
            'truncated: delete it and download it again.'
        ) from None


def _episode_ends(n: int, *flags: np.ndarray) -> np.ndarray:
    ends = np.zeros(n, dtype=bool)
    for f in flags:
        ends |= f
    ends[-1] = True
    return ends


def _d4rl_transitions(raw: dict[str, np.ndarray], source: str) -> tuple[dict[str, np.ndarray], dict]:
    """Build (observations, actions, rewards, masks, terminals, next_observations) from D4RL hdf5 arrays."""
    obs = np.asarray(raw['observations'], dtype=np.float32)
    n = len(obs)
    for k, v in raw.items():
        if np.ndim(v) == 0 or len(v) != n:
            raise DatasetError(
                f'{source}: key {k!r} has {np.shape(v)[:1]} rows, observations has {n} (truncated file?).'
            )
    if n == 0:
        raise DatasetError(f'{source}: dataset is empty.')
    if obs.ndim != 2:
        raise DatasetError(f'{source}: observations must be 2-D (N, dim), got shape {obs.shape}.')
    if 'next_observations' in raw and np.shape(raw['next_observations']) != obs.shape:
        raise DatasetError(
            f'{source}: next_observations {np.shape(raw["next_observations"])} != observations {obs.shape}.'
        )
    actions = np.asarray(raw['actions'], dtype=np.float32)
    rewards = np.asarray(raw['rewards'], dtype=np.float32).reshape(n)
    term = np.asarray(raw['terminals']).reshape(n) > 0
    timeouts = np.asarray(raw['timeouts']).reshape(n) > 0 if 'timeouts' in raw else np.zeros(n, dtype=bool)
    stats = {'raw_rows': n, 'has_next_observations': 'next_observations' in raw}
    if 'next_observations' in raw:
        next_obs = np.asarray(raw['next_observations'], dtype=np.float32)
        jump = np.zeros(n, dtype=bool)  # recompute episode ends where the data have none (IQL)
        jump[:-1] = np.linalg.norm(obs[1:] - next_obs[:-1], axis=-1) > 1e-6
        ends = _episode_ends(n, term, timeouts, jump)
        stats['discontinuity_ends'] = int((jump & ~term & ~timeouts).sum())
        keep = np.ones(n, dtype=bool)
    else:
        # next state = next row within an episode. The last transition of an episode has no next state and is
        # dropped, except true terminations (kept, as d4rl.qlearning_dataset does: their next state is never
        # bootstrapped from, mask 0; we store the observation itself there instead of the next episode's start).
        ends = _episode_ends(n, term, timeouts)
        next_obs = np.concatenate([obs[1:], obs[-1:]], axis=0)
        next_obs[term] = obs[term]
        keep = ~ends | term
        stats['dropped_episode_ends'] = int((~keep).sum())
    # episode id of each row; a kept row ends its trajectory when the next kept row belongs to another episode
    ep = np.concatenate([[0], np.cumsum(ends)[:-1]])[keep]
    ds = {
        'observations': obs[keep],
        'actions': actions[keep],
        'rewards': rewards[keep],
        'masks': 1.0 - term[keep].astype(np.float32),
        'terminals': np.append(ep[1:] != ep[:-1], True).astype(np.float32) if len(ep) else ep,
        'next_observations': next_obs[keep],
    }
    if ds['actions'].ndim == 1:
        ds['actions'] = ds['actions'][:, None]
    stats['episodes'] = int(ds['terminals'].sum())
    return ds, stats


def return_range_scale(raw: dict[str, np.ndarray], horizon: int = 1000) -> float | None:
    """Reward scale 1000 / (max - min episode return) of `--normalize_r` in the VGF code (envs/d4rl_utils.py,
    get_dataset / return_range; IQL's locomotion normalization), on the rows d4rl.qlearning_dataset keeps: all but
    the last row, without the timeout rows. An episode there ends at a true terminal or after `horizon` rows (so it
    can straddle a timeout); the trailing unfinished one is not counted. Files without timeouts (D4RL v2 files have
    them) keep every row but the last. None without two distinct returns."""
    n = len(raw['rewards'])
    keep = np.arange(n) < n - 1
    if 'timeouts' in raw:
        keep &= ~(np.asarray(raw['timeouts']).reshape(n) > 0)
    rewards = np.asarray(raw['rewards'], np.float32).reshape(n)[keep].astype(np.float64)
    done = (np.asarray(raw['terminals']).reshape(n) > 0)[keep]
    # position of each row in its terminal-delimited segment; an episode ends at a terminal or every `horizon` rows
    idx = np.arange(len(rewards))
    seg_start = np.maximum.accumulate(np.where(np.concatenate([[True], done[:-1]]), idx, 0)) if len(idx) else idx
    ends = np.flatnonzero(done | ((idx - seg_start + 1) % horizon == 0))
    if len(ends) == 0:
        return None
    returns = np.add.reduceat(rewards[: ends[-1] + 1], np.concatenate([[0], ends[:-1] + 1]))
    lo, hi = float(returns.min()), float(returns.max())
    return 1000.0 / (hi - lo) if hi > lo else None


def make_d4rl_task(name: str, dataset_path: str | None = None) -> Task:
    """Task from an original D4RL v2 hdf5 file (`dataset_path`, else ~/.d4rl/datasets/{name}.hdf5 or d4rl's name)."""
    if not is_d4rl_name(name):
        raise DatasetError(f'unknown D4RL task {name!r}; valid names: {", ".join(D4RL_NAMES)}.')
    candidates = _candidate_paths(name, dataset_path)
    path = next((p for p in candidates if os.path.isfile(p)), None)
    if path is None:
        url = f'{_D4RL_URL_ROOT}/{_url_path(name)}'
        raise DatasetError(
            f'D4RL dataset {name!r} not found; looked for: {", ".join(candidates)}. Download it on a machine with '
            f'internet (wget {url}), then put it at ~/.d4rl/datasets/{name}.hdf5 (or in $D4RL_DATASET_DIR) or '
            'pass --dataset_path /path/to/file.hdf5.'
        )
    raw = _read_hdf5(path)
    generated = raw.pop('tiltbench_generated', None)
    try:
        ds, stats = _d4rl_transitions(raw, path)
    except (ValueError, TypeError) as e:  # e.g. rewards of shape (N, 2)
        raise DatasetError(f'{path}: malformed D4RL arrays ({e}); is this a D4RL v2 file?') from None
    is_antmaze = name.startswith('antmaze-')
    # VGF's `normalize_r` reward scale, a task config default (the rewards stay as they are): 1000 / return range on
    # locomotion, 1 on antmaze (the VGF code only shifts antmaze rewards).
    normalize_r_scale = 1.0 if is_antmaze else return_range_scale(raw)
    if is_antmaze:
        ds['rewards'] = ds['rewards'] - 1.0
    train = check_dataset(ds, path)
    ref_min, ref_max = D4RL_REF_SCORES[name]

    def score(episode_return: float, last_info: dict) -> float:
        return 100.0 * (float(episode_return) - ref_min) / (ref_max - ref_min)

    notes = [f'D4RL v2 hdf5 file {path}', f'stats: {stats}']
    if generated:
        notes.insert(0, f'NOT the D4RL data: a file written by tiltbench ({generated}); scores are not comparable')
    if is_antmaze:
        from envs import d4rl_antmaze

        if train['observations'].shape[-1] != d4rl_antmaze.OBS_DIM:
            raise DatasetError(
                f'{path}: {train["observations"].shape[-1]}-D observations, D4RL v2 antmaze has '
                f'{d4rl_antmaze.OBS_DIM} (qpos[:15], qvel[:14]): wrong file?'
            )

        def make_env(seed: int):
            return d4rl_antmaze.make_antmaze_env(name, seed=seed)

        notes.append(_ANTMAZE_NOTE)
        protocol = (
            f'D4RL {name} hdf5 data (rewards r-1); normalized return x100 with d4rl ref ({ref_min}, {ref_max}) on the '
            f'untransformed return (= success rate: the episode ends at the goal with reward 1), '
            f'{d4rl_antmaze.HORIZONS[name]}-step episodes in envs/d4rl_antmaze.py (MuJoCo 3)'
        )
    else:
        make_env, note = _locomotion_env_factory(name.split('-', 1)[0], train['observations'])
        notes.append(note)
        protocol = (
            f'D4RL {name} hdf5 data; normalized return x100 with d4rl ref ({ref_min}, {ref_max}); evaluated in '
            f'gymnasium {_LOCOMOTION_ENVS[name.split("-", 1)[0]][0]} (1000 steps), not bit-identical with D4RL v2'
        )
    return Task(
        name=name,
        family='d4rl',
        train_dataset=train,
        val_dataset=None,
        make_env=make_env,
        score=score,
        protocol=protocol,
        transform_reward=(lambda r: r - 1.0) if is_antmaze else (lambda r: r),
        notes=notes,
        extra={
            'dataset_path': path,
            'ref_min_score': ref_min,
            'ref_max_score': ref_max,
            **stats,
            **({'config_defaults': {'normalize_r_scale': normalize_r_scale}} if normalize_r_scale else {}),
        },
    )


def _locomotion_env_factory(env_name: str, observations: np.ndarray):
    """make_env for a D4RL locomotion task (gymnasium v5), checking the observation layout against the data."""
    env_id, kwargs, d4rl_dim, env_dim = _LOCOMOTION_ENVS[env_name]
    obs_dim = observations.shape[-1]
    if obs_dim != d4rl_dim:
        raise DatasetError(f'{env_name}: the file has {obs_dim}-D observations, D4RL v2 has {d4rl_dim}: wrong file?')
    pad = d4rl_dim - env_dim
    if pad and np.abs(observations[:, env_dim:]).max() > 0:
        return (
            None,
            f'no evaluation env: observation dims {env_dim}: are nonzero in the data, {env_id} cannot match',
        )

    def make_env(seed: int):
        import gymnasium as gym

        env = gym.make(env_id, max_episode_steps=1000, **kwargs)
        if pad:
            env = _PadObservation(env, pad)
        env.reset(seed=seed)
        env.action_space.seed(seed)
        return env

    note = f'evaluation env: gymnasium {env_id} {kwargs or ""} (not bit-identical with the D4RL v2 mujoco-py env)'
    return make_env, note + (f', observation zero-padded by {pad} (contact forces, 0 in D4RL data)' if pad else '')


def _PadObservation(env, pad: int):
    """Wrap `env` so its observations get `pad` trailing zeros (float32)."""
    import gymnasium as gym

    class PadObservation(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            n = env.observation_space.shape[0] + pad
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)

        def observation(self, obs):
            return np.concatenate([np.asarray(obs, np.float32), np.zeros(pad, np.float32)])

    return PadObservation(env)


# ----------------------------------------------------------------------------------------------------- Minari


_GOAL_KEYS = ('achieved_goal', 'observation', 'desired_goal')


def _dict_keys(obs: dict) -> list[str]:
    """Key order for flattening dict observations.

    Goal dicts (AntMaze, PointMaze) become [achieved_goal, observation, desired_goal]: for AntMaze v4 that is the xy
    position + the 27-D ant state (together qpos + qvel, the D4RL 29-D layout) + the 2-D goal = 31-D. The xy position
    is needed: AntMaze's 'observation' alone excludes it. Other dicts: sorted keys.
    """
    return list(_GOAL_KEYS) if set(obs) == set(_GOAL_KEYS) else sorted(obs)


def _flatten_batch(obs: Any) -> np.ndarray:
    """Flatten a batch of Minari observations (array or dict of arrays) to float32 (T, d)."""
    if isinstance(obs, dict):
        return np.concatenate([_flatten_batch(obs[k]) for k in _dict_keys(obs)], axis=-1)
    arr = np.asarray(obs, dtype=np.float32)
    return arr.reshape(len(arr), -1)


def _flatten_single(obs: Any) -> np.ndarray:
    """Flatten one env observation exactly like `_flatten_batch` flattens the data."""
    if isinstance(obs, dict):
        return np.concatenate([_flatten_single(obs[k]) for k in _dict_keys(obs)], axis=-1)
    return np.asarray(obs, dtype=np.float32).reshape(-1)


def _load_minari(name: str):
    import minari

    root = os.environ.get('MINARI_DATASETS_PATH', os.path.expanduser('~/.minari/datasets'))
    how = (
        f'On a machine with internet run `minari download {name}` (pip install "minari[hf]"), then copy '
        f'{os.path.join("~/.minari/datasets", name)} to {os.path.join(root, name)} (or set MINARI_DATASETS_PATH).'
    )
    try:
        return minari.load_dataset(name)
    except FileNotFoundError:
        pass
    except Exception as e:  # noqa: BLE001 (any failure becomes an actionable DatasetError)
        raise DatasetError(
            f'Minari dataset {name!r} at {os.path.join(root, name)} is unreadable ({e}). {how}'
        ) from None
    try:
        return minari.load_dataset(name, download=True)
    except Exception as e:  # noqa: BLE001 (any failure becomes an actionable DatasetError)
        raise DatasetError(
            f'Minari dataset {name!r} not found locally at {os.path.join(root, name)} and the download failed '
            f'({type(e).__name__}: {e}). {how}'
        ) from None


def _minari_transitions(dataset, source: str) -> tuple[dict[str, np.ndarray], list[float]]:
    """Transitions from Minari episodes (observations have T+1 rows), plus the episode returns."""
    parts: dict[str, list] = {k: [] for k in ('observations', 'actions', 'rewards', 'masks', 'terminals', 'nobs')}
    returns = []
    for episode in dataset.iterate_episodes():
        obs = _flatten_batch(episode.observations)
        t = len(episode.actions)
        if len(obs) != t + 1:
            raise DatasetError(f'{source}: episode {episode.id} has {len(obs)} observations for {t} actions.')
        if t == 0:
            continue
        rewards = np.asarray(episode.rewards, dtype=np.float32).reshape(t)
        terminals = np.zeros(t, dtype=np.float32)
        terminals[-1] = 1.0  # = terminations | truncations at the last step (or the data simply end there)
        parts['observations'].append(obs[:-1])
        parts['nobs'].append(obs[1:])
        parts['actions'].append(np.asarray(episode.actions, dtype=np.float32).reshape(t, -1))
        parts['rewards'].append(rewards)
        parts['masks'].append(1.0 - np.asarray(episode.terminations, dtype=np.float32).reshape(t))
        parts['terminals'].append(terminals)
        returns.append(float(rewards.sum()))
    if not returns:
        raise DatasetError(f'{source}: dataset has no transitions.')
    ds = {k: np.concatenate(v, axis=0) for k, v in parts.items()}
    ds['next_observations'] = ds.pop('nobs')
    return ds, returns


def make_minari_task(name: str) -> Task:
    """Task from a Minari 'D4RL/...' or 'mujoco/...' dataset, evaluated in its recovered (eval) environment."""
    if not is_minari_name(name):
        raise DatasetError(f"{name!r} is not a Minari dataset id starting with 'D4RL/' or 'mujoco/'.")
    import gymnasium as gym

    dataset = _load_minari(name)
    source = f'minari:{name}'
    try:
        ds, returns = _minari_transitions(dataset, source)
        metadata = dataset.storage.metadata
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 (any failure becomes an actionable DatasetError)
        raise DatasetError(f'{source}: cannot read episodes ({type(e).__name__}: {e}); re-download it.') from None
    train = check_dataset(ds, source)
    is_goal = isinstance(metadata.get('observation_space'), gym.spaces.Dict)
    is_antmaze = 'antmaze' in name.lower()
    ref_min, ref_max = metadata.get('ref_min_score'), metadata.get('ref_max_score')
    notes = [
        _MINARI_CAVEAT,
        f'{len(returns)} episodes, mean return {np.mean(returns):.3f}',
    ]
    if is_antmaze:
        protocol = (
            f'Minari {name}: success x100 (info["success"] reached at any step of the episode) in the recovered eval '
            'env; rewards as in the data (sparse 1 at the goal, no shift); obs = [xy, ant state, goal]'
        )

        def score(episode_return: float, last_info: dict) -> float:
            return 100.0 * float(bool(last_info.get('success_any', last_info.get('success', False))))

    elif ref_min is not None and ref_max is not None and ref_max != ref_min:
        protocol = f'Minari {name}: normalized return x100 with Minari ref scores ({ref_min}, {ref_max})'

        def score(episode_return: float, last_info: dict) -> float:
            return 100.0 * (float(episode_return) - ref_min) / (ref_max - ref_min)

    else:
        protocol = f'Minari {name}: raw undiscounted return (the dataset has no ref_min_score/ref_max_score)'

        def score(episode_return: float, last_info: dict) -> float:
            return float(episode_return)

    def make_env(seed: int):
        import gymnasium as gym

        if is_antmaze:
            import gymnasium_robotics  # noqa: F401  (registers AntMaze; the spec's entry point also imports it)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            env = dataset.recover_environment(eval_env=True)
        env = _MinariEvalWrapper(env, gym)
        env.reset(seed=seed)
        env.action_space.seed(seed)
        return env

    return Task(
        name=name,
        family='minari',
        train_dataset=train,
        val_dataset=None,
        make_env=make_env,
        score=score,
        protocol=protocol,
        notes=notes,
        extra={
            'ref_min_score': ref_min,
            'ref_max_score': ref_max,
            'goal_dict_obs': is_goal,
            'episodes': len(returns),
        },
    )


def _MinariEvalWrapper(env, gym):
    """Flatten observations like the data and track info['success_any'] (success at any step so far)."""

    class MinariEvalWrapper(gym.Wrapper):
        def __init__(self, env):
            super().__init__(env)
            obs = env.observation_space.sample()
            n = _flatten_single(obs).shape[0]
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
            self._success = False

        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            self._success = bool(info.get('success', False))
            return _flatten_single(obs), info

        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            self._success = self._success or bool(info.get('success', False))
            info = {**info, 'success_any': self._success}
            return _flatten_single(obs), reward, terminated, truncated, info

    return MinariEvalWrapper(env)
