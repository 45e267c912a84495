"""Generate OGBench datasets locally with the real environments and the scripted oracles shipped in `ogbench`.

OGBench's datasets are normally downloaded. Where that is impossible, the datasets whose behavior policy is a scripted
oracle (point maze navigation and the manipulation `play` datasets) can be regenerated here, following the official
`data_gen_scripts/generate_locomaze.py` and `generate_manipspace.py` of the ogbench repository: same environments,
oracles, noise levels, episode counts and lengths, and the same `.npz` layout, so `ogbench.make_env_and_datasets` and
`ogbench.utils.load_dataset` read the files unchanged. The data is a fresh sample from the same process, not a
byte-identical copy of the official files. Datasets collected with trained expert policies (antmaze, humanoidmaze,
antsoccer) cannot be generated and must be downloaded.

File layout (one row per step; an episode of `L` transitions is stored as `L + 1` rows, the last with terminals=1,
whose action `load_dataset` drops): observations, actions, qpos, qvel (float32), terminals (bool, as in the official
scripts), and button_states (int64) for the environments with buttons (puzzle, scene). The validation file holds
`max(1, round(val_fraction * num_episodes))` further episodes (official: num_episodes // 10).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

# name -> (official number of training episodes, official transitions per episode). Episodes are stored with one extra
# row, matching the official `--max_episode_steps` (1001 for 1000 transitions).
OFFICIAL_SIZES = {
    'pointmaze-medium-navigate-v0': (1000, 1000),
    'pointmaze-large-navigate-v0': (1000, 1000),
    'pointmaze-giant-navigate-v0': (500, 2000),
    'cube-single-play-v0': (1000, 1000),
    'cube-double-play-v0': (1000, 1000),
    'cube-triple-play-v0': (3000, 1000),
    'scene-play-v0': (1000, 1000),
    'puzzle-3x3-play-v0': (1000, 1000),
    'puzzle-4x4-play-v0': (1000, 1000),
}
GENERATABLE = tuple(OFFICIAL_SIZES)
DOWNLOAD_ONLY_PREFIXES = ('antmaze', 'humanoidmaze', 'antsoccer')

POINTMAZE_NOISE = 0.5  # Gaussian action noise of the official pointmaze navigate datasets.
PLAN_NOISE = 0.1  # Noise level of the manipulation plan oracles.
PLAN_NOISE_SMOOTHING = 0.5  # Temporal smoothing of the plan oracles' noise.


def dataset_name_for(env_name: str) -> str:
    """Dataset name of an env or dataset name: drop `singletask` and `taskN` (`cube-single-play-v0` stays)."""
    splits = env_name.split('-')
    if 'singletask' in splits:
        pos = splits.index('singletask')
        return '-'.join(splits[:pos] + splits[-1:])
    return env_name


def generation_unsupported_reason(dataset_name: str) -> str | None:
    """None if `dataset_name` can be generated here, else a message saying why not and what to do instead."""
    if dataset_name in OFFICIAL_SIZES:
        return None
    base = dataset_name.removeprefix('visual-')
    if base.startswith(DOWNLOAD_ONLY_PREFIXES):
        return (
            f'{dataset_name} cannot be generated locally: its behavior policy is a trained expert locomotion policy '
            f'(not shipped with ogbench), not a scripted oracle. Download it with ogbench '
            f"(ogbench.download_datasets(['{dataset_name}'])) on a machine with internet access, or copy "
            f'{dataset_name}.npz and {dataset_name}-val.npz into --dataset_dir.'
        )
    return (
        f'Unknown or unsupported dataset {dataset_name!r}: only these can be generated locally: '
        f'{", ".join(GENERATABLE)}. (Pass a dataset name such as pointmaze-medium-navigate-v0 or a single-task env '
        f'name such as cube-single-play-singletask-task2-v0.)'
    )


def _env_id(dataset_name: str) -> str:
    """gymnasium id of the environment that collects `dataset_name` (drop the dataset type)."""
    splits = dataset_name.split('-')
    return '-'.join(splits[:-2] + splits[-1:])


def _pointmaze_cells(maze_map: np.ndarray) -> tuple[list, list]:
    """All free cells (initial states) and free cells that are not straight hallway cells (goals)."""
    all_cells, vertex_cells = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            all_cells.append((i, j))
            vertical_hall = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0
            vertical_hall = vertical_hall and maze_map[i, j - 1] == 1 and maze_map[i, j + 1] == 1
            horizontal_hall = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0
            horizontal_hall = horizontal_hall and maze_map[i - 1, j] == 1 and maze_map[i + 1, j] == 1
            if not (vertical_hall or horizontal_hall):
                vertex_cells.append((i, j))
    return all_cells, vertex_cells


class _PointmazeCollector:
    """Point agent heading for the maze's BFS oracle subgoal with Gaussian action noise; new goal on arrival."""

    def __init__(self, env, noise: float = POINTMAZE_NOISE):
        self.env = env
        self.u = env.unwrapped
        self.noise = noise
        self.all_cells, self.vertex_cells = _pointmaze_cells(self.u.maze_map)
        self._subgoal_cache: dict = {}  # (start_ij, goal_ij) -> subgoal xy; the BFS depends only on the cells.

    def _subgoal(self, xy: np.ndarray) -> np.ndarray:
        key = (self.u.xy_to_ij(xy), self.u.xy_to_ij(self.u.cur_goal_xy))
        if key not in self._subgoal_cache:
            self._subgoal_cache[key] = self.u.get_oracle_subgoal(xy, self.u.cur_goal_xy)[0]
        return self._subgoal_cache[key]

    def _set_goal(self, goal_ij) -> None:
        # Same as the official `set_goal(goal_ij)` (including the goal noise), but passes goal_xy so that the
        # target marker is not set to NaN.
        goal_xy = self.u.ij_to_xy(goal_ij)
        if self.u._add_noise_to_goal:
            goal_xy = self.u.add_noise(goal_xy)
        self.u.set_goal(goal_xy=goal_xy)

    def episode(self, seed: int | None) -> dict[str, list]:
        init_ij = self.all_cells[np.random.randint(len(self.all_cells))]
        goal_ij = self.vertex_cells[np.random.randint(len(self.vertex_cells))]
        ob, _ = self.env.reset(seed=seed, options={'task_info': {'init_ij': init_ij, 'goal_ij': goal_ij}})
        ep = {k: [] for k in ('observations', 'actions', 'terminals', 'qpos', 'qvel')}
        done = False
        while not done:
            xy = self.u.get_xy()
            direction = self._subgoal(xy) - xy
            direction = direction / (np.linalg.norm(direction) + 1e-6)
            action = np.clip(direction + np.random.normal(0, self.noise, direction.shape), -1, 1)
            next_ob, _, terminated, truncated, info = self.env.step(action)
            done = terminated or truncated
            if info['success']:
                self._set_goal(self.vertex_cells[np.random.randint(len(self.vertex_cells))])
            ep['observations'].append(ob)
            ep['actions'].append(action)
            ep['terminals'].append(done)
            ep['qpos'].append(info['prev_qpos'])
            ep['qvel'].append(info['prev_qvel'])
            ob = next_ob
        return ep


class _ManipCollector:
    """Manipulation play data: plan oracles with smoothed noise; a new random target whenever the oracle finishes."""

    def __init__(
        self, env, dataset_name: str, noise: float = PLAN_NOISE, noise_smoothing: float = PLAN_NOISE_SMOOTHING
    ):
        from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
        from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
        from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

        self.env = env
        self.dataset_name = dataset_name
        self.has_buttons = hasattr(env.unwrapped, '_cur_button_states')
        kw = {'env': env, 'noise': noise, 'noise_smoothing': noise_smoothing}
        if dataset_name.startswith('cube'):
            self.oracles = {'cube': CubePlanOracle(**kw)}
        elif dataset_name.startswith('scene'):
            self.oracles = {
                'cube': CubePlanOracle(**kw),
                'button': ButtonPlanOracle(**kw),
                'drawer': DrawerPlanOracle(**kw),
                'window': WindowPlanOracle(**kw),
            }
        elif dataset_name.startswith('puzzle'):
            self.oracles = {'button': ButtonPlanOracle(gripper_always_closed=True, **kw)}
        else:
            raise ValueError(f'No manipulation oracle for {dataset_name}.')

    def _p_stack(self) -> float:
        """Per-episode probability of stacking a cube on another (as in the OGBench paper / official script)."""
        name = self.dataset_name
        if 'single' in name:
            return 0.0
        if 'double' in name:
            return np.random.uniform(0.0, 0.25)
        if 'triple' in name:
            return np.random.uniform(0.05, 0.35)
        return 0.5  # scene (and puzzle, where it is unused)

    @staticmethod
    def _scene_healthy(qpos: np.ndarray) -> bool:
        """The cube stays visible: not too far right, and not too far left unless it is in the drawer."""
        xyz = qpos[:, 14:17]
        if (xyz[:, 1] >= 0.29).any():
            return False
        return not ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()

    def episode(self, seed: int | None) -> dict[str, list]:
        while True:  # Scene: redo the rare episodes where the cube leaves the visible area.
            ep = self._try_episode(seed)
            seed = None
            if not self.dataset_name.startswith('scene') or self._scene_healthy(np.asarray(ep['qpos'])):
                return ep

    def _try_episode(self, seed: int | None) -> dict[str, list]:
        env = self.env
        ob, info = env.reset(seed=seed)
        p_stack = self._p_stack()
        oracle = self.oracles[info['privileged/target_task']]
        oracle.reset(ob, info)
        keys = ['observations', 'actions', 'terminals', 'qpos', 'qvel'] + (['button_states'] * self.has_buttons)
        ep = {k: [] for k in keys}
        done = False
        while not done:
            action = np.clip(np.asarray(oracle.select_action(ob, info)), -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if oracle.done:
                oracle_ob, oracle_info = env.unwrapped.set_new_target(p_stack=p_stack)
                oracle = self.oracles[oracle_info['privileged/target_task']]
                oracle.reset(oracle_ob, oracle_info)
            ep['observations'].append(ob)
            ep['actions'].append(action)
            ep['terminals'].append(done)
            ep['qpos'].append(info['prev_qpos'])
            ep['qvel'].append(info['prev_qvel'])
            if self.has_buttons:
                ep['button_states'].append(info['prev_button_states'])
            ob = next_ob
        return ep


def _make_collector(dataset_name: str, episode_length: int):
    import gymnasium
    import ogbench.locomaze  # registers the envs
    import ogbench.manipspace  # noqa: F401

    kwargs = {'terminate_at_goal': False, 'max_episode_steps': episode_length + 1}
    if dataset_name.startswith('pointmaze'):
        return _PointmazeCollector(gymnasium.make(_env_id(dataset_name), **kwargs))
    env = gymnasium.make(_env_id(dataset_name), mode='data_collection', **kwargs)
    return _ManipCollector(env, dataset_name)


def _episode_arrays(ep: dict[str, list]) -> dict[str, np.ndarray]:
    """Per-step lists -> arrays with the official dtypes (kept compact while the dataset is being collected)."""
    dtypes = {'terminals': bool, 'button_states': np.int64}
    return {k: np.asarray(v, dtype=dtypes.get(k, np.float32)) for k, v in ep.items()}


def _concat(episodes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([ep[k] for ep in episodes]) for k in episodes[0]}


def _save_atomic(files: dict[str, dict[str, np.ndarray]]) -> None:
    """Write each {path: arrays} to a temp file first, then move all of them into place."""
    tmps = {path: f'{path}.tmp{os.getpid()}' for path in files}
    try:
        for path, data in files.items():
            with open(tmps[path], 'wb') as f:
                np.savez_compressed(f, **data)
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def generate_dataset(
    dataset_name: str,
    dataset_dir: str,
    num_episodes: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    progress: bool = True,
    episode_length: int | None = None,
) -> tuple[str, str]:
    """Write `{dataset_dir}/{dataset_name}.npz` and `-val.npz`; return (train_path, val_path).

    num_episodes: training episodes (None: official count); the val file gets max(1, round(val_fraction * n)) more.
    episode_length: transitions per episode (None: official; stored as episode_length + 1 rows).
    Deterministic given `seed`. Uses (and afterwards restores) numpy's global RNG, which the ogbench oracles draw from.
    """
    reason = generation_unsupported_reason(dataset_name)
    if reason is not None:
        raise ValueError(reason)
    official_episodes, official_length = OFFICIAL_SIZES[dataset_name]
    num_episodes = official_episodes if num_episodes is None else int(num_episodes)
    episode_length = official_length if episode_length is None else int(episode_length)
    if num_episodes < 1 or episode_length < 1:
        raise ValueError(f'num_episodes and episode_length must be >= 1 (got {num_episodes}, {episode_length}).')
    num_val = max(1, round(val_fraction * num_episodes))

    from tqdm import trange

    dataset_dir = os.path.expanduser(dataset_dir)
    os.makedirs(dataset_dir, exist_ok=True)
    train_path = os.path.join(dataset_dir, f'{dataset_name}.npz')
    val_path = os.path.join(dataset_dir, f'{dataset_name}-val.npz')

    rng_state = np.random.get_state()
    np.random.seed(seed)
    try:
        collector = _make_collector(dataset_name, episode_length)
        collector.env.unwrapped.action_space.seed(seed)  # Used by the envs' reset routines.
        episodes = []
        bar = trange(num_episodes + num_val, desc=f'generate {dataset_name}', unit='ep', disable=not progress)
        for ep_idx in bar:
            episodes.append(_episode_arrays(collector.episode(seed if ep_idx == 0 else None)))
        collector.env.close()
    finally:
        np.random.set_state(rng_state)

    _save_atomic({train_path: _concat(episodes[:num_episodes]), val_path: _concat(episodes[num_episodes:])})
    info = dict(
        generated_locally=True,
        dataset=dataset_name,
        num_episodes=num_episodes,
        num_val_episodes=num_val,
        episode_length=episode_length,
        seed=seed,
        official_size=(num_episodes, episode_length) == (official_episodes, official_length),
        # the bytes depend on the simulator: the same seed gives another file under another MuJoCo / OGBench
        versions=generator_versions(),
    )
    with open(sidecar_path(train_path), 'w') as f:
        json.dump(info, f, indent=2)
    return train_path, val_path


def generator_versions() -> dict:
    """The packages a generated dataset's content depends on."""
    from importlib.metadata import version

    return {name: version(name) for name in ('mujoco', 'ogbench', 'numpy')}


def sidecar_path(train_path: str) -> str:
    """Where generate_dataset records how a dataset was made (read by main.py to label runs)."""
    return train_path[: -len('.npz')] + '.tiltbench.json'


def generation_note(train_path: str) -> str | None:
    """A note for runs on a locally generated dataset, or None for downloaded / user-provided files."""
    p = sidecar_path(train_path)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        info = json.load(f)
    size = 'official size' if info.get('official_size') else 'REDUCED size'
    versions = ', '.join(f'{k} {v}' for k, v in info.get('versions', {}).items()) or 'versions not recorded'
    return (
        f'dataset {info["dataset"]} generated locally: {info["num_episodes"]} episodes x {info["episode_length"]} '
        f'steps ({size}), seed {info["seed"]} ({versions})'
    )


def parse_env_name(env_name: str) -> str:
    """Dataset name for a CLI argument; raise ValueError with a clear message if it cannot be generated."""
    name = dataset_name_for(env_name.strip())
    if not re.fullmatch(r'[\w.-]+', name):
        raise ValueError(f'Invalid env/dataset name {env_name!r}.')
    reason = generation_unsupported_reason(name)
    if reason is not None:
        raise ValueError(reason)
    return name
