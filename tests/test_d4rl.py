"""Tests for envs/d4rl.py: D4RL v2 hdf5 files (tiny synthetic ones) and Minari datasets (tiny, collected locally)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from envs import d4rl
from envs.base import DatasetError

# ---------------------------------------------------------------------------------------------------- hdf5

# 4 trajectories in 11 rows: rows 0-2 end with a true termination, rows 3-6 with a timeout, rows 7-8 end with no flag
# at all (only the observation jump to row 9 tells), rows 9-10 end with the file.
N_ROWS = 11
TERMINAL_ROWS = [2]
TIMEOUT_ROWS = [6]
ENDS_WITH_NEXT_OBS = [2, 6, 8, 10]


def _write_d4rl_file(path, obs_dim, with_next_obs=True, rewards=None, zero_tail=0, seed=0):
    import h5py

    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(N_ROWS, obs_dim)).astype(np.float32)
    if zero_tail:
        obs[:, -zero_tail:] = 0.0
    next_obs = np.concatenate([obs[1:], obs[-1:]], axis=0)
    for i in ENDS_WITH_NEXT_OBS:  # true next state of an episode's last step: not the next row
        next_obs[i] = obs[i] + 1.0
        if zero_tail:
            next_obs[i, -zero_tail:] = 0.0
    terminals = np.zeros(N_ROWS, dtype=bool)
    terminals[TERMINAL_ROWS] = True
    timeouts = np.zeros(N_ROWS, dtype=bool)
    timeouts[TIMEOUT_ROWS] = True
    if rewards is None:
        rewards = rng.normal(size=N_ROWS).astype(np.float32)
    with h5py.File(path, 'w') as f:
        f['observations'] = obs
        f['actions'] = rng.uniform(-1, 1, size=(N_ROWS, 3)).astype(np.float32)
        f['rewards'] = rewards
        f['terminals'] = terminals
        f['timeouts'] = timeouts
        if with_next_obs:
            f['next_observations'] = next_obs
    return obs, next_obs, np.asarray(rewards, np.float32)


def test_names():
    assert d4rl.is_d4rl_name('hopper-medium-v2') and d4rl.is_d4rl_name('antmaze-large-play-v2')
    assert d4rl.is_d4rl_name('walker2d-full-replay-v2') and not d4rl.is_d4rl_name('hopper-medium-v0')
    assert not d4rl.is_d4rl_name('mujoco/hopper/medium-v0')
    assert d4rl.is_minari_name('D4RL/antmaze/large-play-v1') and d4rl.is_minari_name('mujoco/hopper/medium-v0')
    assert not d4rl.is_minari_name('hopper-medium-v2')
    assert len(d4rl.D4RL_NAMES) == 4 * 6 + 6
    assert d4rl.D4RL_REF_SCORES['hopper-medium-v2'] == (-20.272305, 3234.3)
    assert d4rl.D4RL_REF_SCORES['antmaze-umaze-diverse-v2'] == (0.0, 1.0)


def test_hdf5_locomotion_with_next_observations(tmp_path):
    path = tmp_path / 'hopper.hdf5'
    obs, next_obs, rewards = _write_d4rl_file(path, 11)
    task = d4rl.make_d4rl_task('hopper-medium-v2', dataset_path=str(path))
    ds = task.train_dataset
    assert task.family == 'd4rl' and task.obs_dim == 11 and task.action_dim == 3
    assert len(ds['observations']) == N_ROWS  # nothing dropped: the file has the true next states
    np.testing.assert_array_equal(ds['observations'], obs)
    np.testing.assert_array_equal(ds['next_observations'], next_obs)
    np.testing.assert_array_equal(ds['rewards'], rewards)  # no shift for locomotion
    expected_masks = np.ones(N_ROWS, np.float32)
    expected_masks[TERMINAL_ROWS] = 0.0
    np.testing.assert_array_equal(ds['masks'], expected_masks)
    expected_ends = np.zeros(N_ROWS, np.float32)
    expected_ends[ENDS_WITH_NEXT_OBS] = 1.0  # terminal | timeout | discontinuity (row 8) | last row
    np.testing.assert_array_equal(ds['terminals'], expected_ends)
    assert task.extra['discontinuity_ends'] == 1
    # D4RL normalized score: 100 * (R - min) / (max - min)
    assert task.score(1000.0, {}) == pytest.approx(100 * (1000 + 20.272305) / (3234.3 + 20.272305))
    assert task.score(-20.272305, {}) == pytest.approx(0.0)
    assert task.transform_reward(0.5) == 0.5
    assert 'Hopper-v5' in task.protocol
    env = task.make_env(0)
    o, _ = env.reset(seed=0)
    assert o.shape == (task.obs_dim,)
    o, r, *_ = env.step(np.zeros(task.action_dim, np.float32))
    assert o.shape == (11,) and np.isfinite(r)
    env.close()


def test_hdf5_without_next_observations(tmp_path):
    path = tmp_path / 'walker.hdf5'
    obs, _, rewards = _write_d4rl_file(path, 17, with_next_obs=False)
    ds = d4rl.make_d4rl_task('walker2d-medium-replay-v2', dataset_path=str(path)).train_dataset
    # episode ends: row 2 (terminal, kept), row 6 (timeout, dropped), row 10 (last row, dropped); the unflagged
    # boundary between rows 8 and 9 cannot be seen without next_observations.
    kept = [0, 1, 2, 3, 4, 5, 7, 8, 9]
    np.testing.assert_array_equal(ds['observations'], obs[kept])
    np.testing.assert_array_equal(ds['rewards'], rewards[kept])
    np.testing.assert_array_equal(ds['next_observations'][[0, 1, 3, 4, 5, 6, 7, 8]], obs[[1, 2, 4, 5, 6, 8, 9, 10]])
    np.testing.assert_array_equal(ds['next_observations'][2], obs[2])  # terminal: never bootstrapped from
    np.testing.assert_array_equal(ds['masks'], [1, 1, 0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(ds['terminals'], [0, 0, 1, 0, 0, 1, 0, 0, 1])


def test_hdf5_antmaze(tmp_path):
    sparse = np.zeros(N_ROWS, np.float32)
    sparse[[2, 5]] = 1.0
    # d4rl's own file name (the URL basename) inside a directory given as dataset_path
    name = 'Ant_maze_u-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5'
    _write_d4rl_file(tmp_path / name, 29, rewards=sparse)
    task = d4rl.make_d4rl_task('antmaze-umaze-diverse-v2', dataset_path=str(tmp_path))
    ds = task.train_dataset
    assert task.obs_dim == 29 and len(ds['rewards']) == N_ROWS
    np.testing.assert_array_equal(ds['rewards'], sparse - 1.0)  # r - 1: -1 / 0
    assert set(np.unique(ds['rewards'])) == {-1.0, 0.0}
    assert ds['masks'][2] == 0.0 and ds['masks'].sum() == N_ROWS - 1
    np.testing.assert_array_equal(np.flatnonzero(ds['terminals']), ENDS_WITH_NEXT_OBS)
    assert task.transform_reward(1.0) == 0.0 and task.transform_reward(0.0) == -1.0
    assert any('envs/d4rl_antmaze.py' in n for n in task.notes) and '700-step episodes' in task.protocol
    env = task.make_env(3)  # the D4RL v2 antmaze env of this task (tests/test_d4rl_antmaze.py tests it)
    assert env.spec.max_episode_steps == 700 and env.reset(seed=3)[0].shape == (29,)
    assert task.score(1.0, {}) == 100.0 and task.score(0.0, {}) == 0.0


def test_hdf5_ant_zero_padded_env(tmp_path):
    path = tmp_path / 'ant.hdf5'
    _write_d4rl_file(path, 111, zero_tail=84)
    task = d4rl.make_d4rl_task('ant-medium-v2', dataset_path=str(path))
    env = task.make_env(1)
    o, _ = env.reset(seed=1)
    assert o.shape == (111,) and o.dtype == np.float32 and not o[27:].any()
    env.close()


def test_hdf5_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('D4RL_DATASET_DIR', raising=False)
    with pytest.raises(DatasetError) as e:
        d4rl.make_d4rl_task('hopper-medium-replay-v2')
    msg = str(e.value)
    assert '.d4rl/datasets/hopper-medium-replay-v2.hdf5' in msg and 'hopper_medium_replay-v2.hdf5' in msg
    assert 'gym_mujoco_v2/hopper_medium_replay-v2.hdf5' in msg and '--dataset_path' in msg
    with pytest.raises(DatasetError, match='nope.hdf5'):
        d4rl.make_d4rl_task('antmaze-large-play-v2', dataset_path=str(tmp_path / 'nope.hdf5'))
    with pytest.raises(DatasetError, match='unknown D4RL task'):
        d4rl.make_d4rl_task('hopper-median-v2')


def test_hdf5_found_in_default_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('D4RL_DATASET_DIR', str(tmp_path))
    _write_d4rl_file(tmp_path / 'halfcheetah-expert-v2.hdf5', 17)
    assert d4rl.make_d4rl_task('halfcheetah-expert-v2').obs_dim == 17


def test_hdf5_corrupt_files(tmp_path):
    import h5py

    garbage = tmp_path / 'garbage.hdf5'
    garbage.write_bytes(b'this is not an hdf5 file' * 100)
    with pytest.raises(DatasetError, match='corrupt or truncated'):
        d4rl.make_d4rl_task('hopper-medium-v2', dataset_path=str(garbage))

    full = tmp_path / 'full.hdf5'
    _write_d4rl_file(full, 11)
    truncated = tmp_path / 'truncated.hdf5'
    truncated.write_bytes(full.read_bytes()[: os.path.getsize(full) // 2])
    with pytest.raises(DatasetError, match='corrupt or truncated'):
        d4rl.make_d4rl_task('hopper-medium-v2', dataset_path=str(truncated))

    partial = tmp_path / 'partial.hdf5'
    with h5py.File(partial, 'w') as f:
        f['observations'] = np.zeros((5, 11), np.float32)
    with pytest.raises(DatasetError, match='lacks keys'):
        d4rl.make_d4rl_task('hopper-medium-v2', dataset_path=str(partial))

    ragged = tmp_path / 'ragged.hdf5'
    with h5py.File(ragged, 'w') as f:
        f['observations'] = np.zeros((5, 11), np.float32)
        f['actions'] = np.zeros((4, 3), np.float32)
        f['rewards'] = np.zeros(5, np.float32)
        f['terminals'] = np.zeros(5, bool)
    with pytest.raises(DatasetError, match='rows'):
        d4rl.make_d4rl_task('hopper-medium-v2', dataset_path=str(ragged))

    wrong_dim = tmp_path / 'wrong_dim.hdf5'
    _write_d4rl_file(wrong_dim, 5)
    with pytest.raises(DatasetError, match='wrong file'):
        d4rl.make_d4rl_task('hopper-medium-v2', dataset_path=str(wrong_dim))


# -------------------------------------------------------------------------------------------------- Minari


def _check_transitions(ds):
    ends = ds['terminals'] > 0
    assert ends[-1]
    inside = np.flatnonzero(~ends)
    np.testing.assert_array_equal(ds['next_observations'][inside], ds['observations'][inside + 1])


def _run_env(task, steps=5):
    env = task.make_env(0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (task.obs_dim,) and obs.dtype == np.float32
    total = 0.0
    for _ in range(steps):
        obs, r, terminated, truncated, info = env.step(np.zeros(task.action_dim, np.float32))
        assert obs.shape == (task.obs_dim,)
        total += float(r)
        if terminated or truncated:
            break
    env.close()
    return total, info


def test_minari_mujoco(minari_root, monkeypatch):
    import minari

    monkeypatch.setenv('MINARI_DATASETS_PATH', minari_root)
    task = d4rl.make_minari_task('mujoco/hopper/tiny-v0')
    ds = task.train_dataset
    source = minari.load_dataset('mujoco/hopper/tiny-v0')
    assert task.family == 'minari' and task.obs_dim == 11 and task.action_dim == 3
    assert len(ds['observations']) == source.total_steps and int(ds['terminals'].sum()) == source.total_episodes == 3
    _check_transitions(ds)
    terminations = np.concatenate([ep.terminations for ep in source.iterate_episodes()])
    np.testing.assert_array_equal(ds['masks'], 1.0 - terminations)
    assert task.score(40.0, {}) == pytest.approx(50.0)  # 100 * (40 - -10) / (90 - -10)
    assert 'normalized return' in task.protocol and any('NOT comparable' in n for n in task.notes)
    ret, _ = _run_env(task)
    assert np.isfinite(task.score(ret, {}))

    raw = d4rl.make_minari_task('mujoco/hopper/noref-v0')
    assert 'raw undiscounted return' in raw.protocol and raw.score(12.5, {}) == 12.5


def test_minari_antmaze(minari_root, monkeypatch):
    monkeypatch.setenv('MINARI_DATASETS_PATH', minari_root)
    task = d4rl.make_minari_task('D4RL/antmaze/tiny-v1')
    ds = task.train_dataset
    assert task.obs_dim == 2 + 27 + 2 and task.action_dim == 8 and len(ds['observations']) == 40
    np.testing.assert_array_equal(np.flatnonzero(ds['terminals']), [19, 39])
    assert ds['masks'].min() == 1.0  # continuing task: no true terminations, only truncations
    _check_transitions(ds)
    assert task.transform_reward(1.0) == 1.0  # rewards kept as in the data
    _, info = _run_env(task)
    assert 'success_any' in info and task.score(0.0, info) in (0.0, 100.0)
    assert task.score(0.0, {'success_any': True}) == 100.0 and task.score(1.0, {'success_any': False}) == 0.0
    # the env's flattened observation matches the data's layout: [xy, ant state, goal]
    env = task.make_env(3)
    raw, _ = env.env.reset(seed=3)  # the recovered gymnasium-robotics env under our wrapper: dict observation
    obs, _ = env.reset(seed=3)
    expected = np.concatenate([raw['achieved_goal'], raw['observation'], raw['desired_goal']]).astype(np.float32)
    np.testing.assert_array_equal(obs, expected)
    env.close()


def test_minari_missing_and_corrupt(tmp_path, monkeypatch):
    import minari.storage.hosting

    def no_internet(*args, **kwargs):
        raise ConnectionError('no internet')

    monkeypatch.setattr(minari.storage.hosting, 'download_dataset', no_internet)
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path))
    with pytest.raises(DatasetError) as e:
        d4rl.make_minari_task('mujoco/hopper/medium-v0')
    assert 'minari download mujoco/hopper/medium-v0' in str(e.value) and str(tmp_path) in str(e.value)

    bad = tmp_path / 'D4RL' / 'antmaze' / 'broken-v1' / 'data'
    bad.mkdir(parents=True)
    (bad / 'metadata.json').write_text('{not json')
    with pytest.raises(DatasetError, match='minari download D4RL/antmaze/broken-v1'):
        d4rl.make_minari_task('D4RL/antmaze/broken-v1')
    with pytest.raises(DatasetError, match='not a Minari dataset id'):
        d4rl.make_minari_task('hopper-medium-v2')
