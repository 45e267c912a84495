"""Tests for local OGBench dataset generation (tiny datasets; the real envs and oracles)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip('ogbench')

from envs.ogbench_gen import (
    GENERATABLE,
    dataset_name_for,
    generate_dataset,
    generation_note,
    generation_unsupported_reason,
    parse_env_name,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE_KEYS = {'observations', 'actions', 'terminals', 'qpos', 'qvel'}


def _load_raw(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _num_episodes(raw):
    return int(raw['terminals'].sum())


@pytest.fixture(scope='module')
def pointmaze_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('pointmaze')
    generate_dataset('pointmaze-medium-navigate-v0', str(d), num_episodes=2, episode_length=300, progress=False)
    return d


@pytest.fixture(scope='module')
def cube_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('cube')
    generate_dataset('cube-single-play-v0', str(d), num_episodes=2, episode_length=250, progress=False)
    return d


def test_names():
    assert dataset_name_for('cube-single-play-singletask-task2-v0') == 'cube-single-play-v0'
    assert dataset_name_for('pointmaze-medium-navigate-singletask-v0') == 'pointmaze-medium-navigate-v0'
    assert dataset_name_for('pointmaze-medium-navigate-v0') == 'pointmaze-medium-navigate-v0'
    assert parse_env_name('puzzle-4x4-play-singletask-task5-v0') == 'puzzle-4x4-play-v0'
    assert len(GENERATABLE) == 9
    for name in GENERATABLE:
        assert generation_unsupported_reason(name) is None


def test_download_only_and_unknown(tmp_path):
    reason = generation_unsupported_reason('antmaze-large-navigate-v0')
    assert 'expert' in reason and 'download' in reason.lower() and '--dataset_dir' in reason
    with pytest.raises(ValueError, match='expert'):
        generate_dataset('antmaze-large-navigate-v0', str(tmp_path), num_episodes=2, progress=False)
    with pytest.raises(ValueError, match='expert'):
        parse_env_name('humanoidmaze-medium-navigate-singletask-task1-v0')
    with pytest.raises(ValueError, match='Unknown'):
        generate_dataset('foo-bar-v0', str(tmp_path), num_episodes=2, progress=False)
    assert not list(tmp_path.iterdir())


def test_pointmaze_file_layout(pointmaze_dir):
    train = _load_raw(pointmaze_dir / 'pointmaze-medium-navigate-v0.npz')
    val = _load_raw(pointmaze_dir / 'pointmaze-medium-navigate-v0-val.npz')
    assert set(train) == FILE_KEYS and set(val) == FILE_KEYS
    assert train['observations'].shape == (2 * 301, 2) and train['observations'].dtype == np.float32
    assert train['actions'].shape == (2 * 301, 2) and train['actions'].dtype == np.float32
    assert train['terminals'].dtype == bool
    assert np.flatnonzero(train['terminals']).tolist() == [300, 601]
    assert _num_episodes(train) == 2 and _num_episodes(val) == 1
    assert np.abs(train['actions']).max() <= 1.0
    np.testing.assert_array_equal(train['observations'], train['qpos'])
    # The oracle moves the point through the maze (the noise alone would barely move it).
    for ep in np.split(train['qpos'], 2):
        assert np.ptp(ep, axis=0).max() > 4.0


def test_pointmaze_loads_with_ogbench(pointmaze_dir):
    import ogbench

    env, train, val = ogbench.make_env_and_datasets(
        'pointmaze-medium-navigate-singletask-task1-v0', dataset_dir=str(pointmaze_dir)
    )
    assert train['observations'].shape == (600, 2) and train['next_observations'].shape == (600, 2)
    assert train['actions'].shape == (600, 2) and val['observations'].shape == (300, 2)
    assert set(np.unique(train['rewards'])) <= {-1.0, 0.0}
    np.testing.assert_array_equal(train['masks'], -train['rewards'])
    assert train['terminals'].sum() == 2
    assert env.observation_space.shape == (2,)


def test_cube_loads_with_ogbench(cube_dir):
    import ogbench

    raw = _load_raw(cube_dir / 'cube-single-play-v0.npz')
    assert set(raw) == FILE_KEYS
    assert raw['observations'].shape == (2 * 251, 28) and raw['actions'].shape == (2 * 251, 5)
    assert raw['qpos'].dtype == np.float32 and raw['terminals'].dtype == bool
    assert _num_episodes(_load_raw(cube_dir / 'cube-single-play-v0-val.npz')) == 1

    env, train, val = ogbench.make_env_and_datasets('cube-single-play-singletask-task2-v0', dataset_dir=str(cube_dir))
    assert train['observations'].shape == (500, 28) and val['observations'].shape == (250, 28)
    assert np.abs(train['actions']).max() <= 1.0
    assert set(np.unique(train['rewards'])) <= {-1.0, 0.0}
    assert env.observation_space.shape == (28,)


def test_cube_oracle_moves_cube(cube_dir):
    raw = _load_raw(cube_dir / 'cube-single-play-v0.npz')
    cube_xyz = raw['qpos'][:, 14:17]
    moved = [np.linalg.norm(ep - ep[0], axis=-1).max() for ep in np.split(cube_xyz, 2)]
    assert max(moved) > 0.05, moved  # Picked up and moved at least once within 250 steps.
    assert np.ptp(raw['actions'][:, 4]) > 0.5  # The gripper opens and closes.


def test_sidecar_records_the_generating_versions(pointmaze_dir):
    """The same seed gives other bytes under another simulator, so the sidecar names the versions and the runs' note
    repeats them."""
    import mujoco

    info = json.loads((pointmaze_dir / 'pointmaze-medium-navigate-v0.tiltbench.json').read_text())
    assert info['versions']['mujoco'] == mujoco.__version__ and set(info['versions']) == {'mujoco', 'ogbench', 'numpy'}
    note = generation_note(str(pointmaze_dir / 'pointmaze-medium-navigate-v0.npz'))
    assert 'REDUCED' in note and f'mujoco {mujoco.__version__}' in note and 'ogbench ' in note


def test_deterministic(tmp_path, pointmaze_dir):
    generate_dataset('pointmaze-medium-navigate-v0', str(tmp_path), num_episodes=2, episode_length=300, progress=False)
    for suffix in ('', '-val'):
        a = _load_raw(pointmaze_dir / f'pointmaze-medium-navigate-v0{suffix}.npz')
        b = _load_raw(tmp_path / f'pointmaze-medium-navigate-v0{suffix}.npz')
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    generate_dataset('pointmaze-medium-navigate-v0', str(tmp_path), num_episodes=2, episode_length=300, seed=1)
    c = _load_raw(tmp_path / 'pointmaze-medium-navigate-v0.npz')
    assert not np.array_equal(a['observations'], c['observations'])
    assert [p.name for p in tmp_path.iterdir() if 'tmp' in p.name] == []


def test_cube_deterministic(tmp_path):
    kw = {'num_episodes': 1, 'episode_length': 60, 'progress': False, 'seed': 3}
    generate_dataset('cube-single-play-v0', str(tmp_path / 'a'), **kw)
    generate_dataset('cube-single-play-v0', str(tmp_path / 'b'), **kw)
    for suffix in ('', '-val'):
        a = _load_raw(tmp_path / 'a' / f'cube-single-play-v0{suffix}.npz')
        b = _load_raw(tmp_path / 'b' / f'cube-single-play-v0{suffix}.npz')
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize(
    'dataset_name, env_name, num_rewards',
    [
        ('puzzle-3x3-play-v0', 'puzzle-3x3-play-singletask-task1-v0', 9),
        ('scene-play-v0', 'scene-play-singletask-task1-v0', 5),
    ],
)
def test_buttons_envs(tmp_path, dataset_name, env_name, num_rewards):
    import ogbench

    generate_dataset(dataset_name, str(tmp_path), num_episodes=1, episode_length=150, progress=False)
    raw = _load_raw(tmp_path / f'{dataset_name}.npz')
    assert set(raw) == FILE_KEYS | {'button_states'}
    assert raw['button_states'].dtype == np.int64 and len(raw['button_states']) == 151
    _, train, val = ogbench.make_env_and_datasets(env_name, dataset_dir=str(tmp_path))
    assert train['observations'].shape[0] == 150 and val['observations'].shape[0] == 150
    assert train['rewards'].min() >= -num_rewards and train['rewards'].max() <= 0
    assert np.abs(train['actions']).max() <= 1.0


def test_cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    cmd = [sys.executable, os.path.join(REPO_ROOT, 'scripts', 'generate_dataset.py'), f'--dataset_dir={tmp_path}']
    out = subprocess.run(
        check=False,
        args=cmd
        + ['--env_name=pointmaze-medium-navigate-singletask-task1-v0', '--num_episodes=1', '--episode_length=20'],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / 'pointmaze-medium-navigate-v0.npz').exists()
    assert (tmp_path / 'pointmaze-medium-navigate-v0-val.npz').exists()
    out = subprocess.run(
        check=False, args=cmd + ['--env_name=antsoccer-arena-navigate-v0'], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0 and 'expert' in out.stderr


def test_sparse_variant_relabels_rewards_as_the_released_qam_code(tmp_path):
    """scene-play-sparse-singletask-task2-v0: the scene data and environment, rewards (r != 0) * -1 on the data and
    online, the variant's name kept (so a run directory says which reward it used)."""
    import envs

    generate_dataset('scene-play-v0', str(tmp_path), num_episodes=2, episode_length=200, progress=False)
    dense = envs.make_task('scene-play-singletask-task2-v0', dataset_dir=str(tmp_path), download=False)
    sparse = envs.make_task('scene-play-sparse-singletask-task2-v0', dataset_dir=str(tmp_path), download=False)
    assert sparse.name == 'scene-play-sparse-singletask-task2-v0'
    r = dense.train_dataset['rewards']
    assert r.min() <= -2.0  # several unsolved subtasks: the dense reward is not already sparse
    np.testing.assert_array_equal(sparse.train_dataset['rewards'], np.where(r != 0.0, -1.0, 0.0))
    np.testing.assert_array_equal(sparse.train_dataset['observations'], dense.train_dataset['observations'])
    np.testing.assert_array_equal(sparse.train_dataset['masks'], dense.train_dataset['masks'])
    assert [sparse.transform_reward(x) for x in (-3.0, -1.0, 0.0)] == [-1.0, -1.0, 0.0]
    assert dense.transform_reward(-3.0) == -3.0
    assert any('sparse rewards' in n for n in sparse.notes)
    env = sparse.make_env(0)  # the real scene environment behind the variant name
    assert env.action_space.shape == (dense.action_dim,)
    env.close()


def test_sparse_variant_of_a_navigation_task_is_refused(pointmaze_dir):
    import envs

    with pytest.raises(ValueError, match='manipulation families'):
        envs.make_task('pointmaze-medium-navigate-sparse-singletask-task1-v0', dataset_dir=str(pointmaze_dir))


def test_variant_names():
    from envs.ogbench_env import split_variants

    assert split_variants('puzzle-4x4-play-100m-sparse-singletask-task4-v0') == (
        'puzzle-4x4-play-singletask-task4-v0',
        True,
        True,
    )
    assert split_variants('cube-quadruple-play-100m-singletask-task1-v0') == (
        'cube-quadruple-play-singletask-task1-v0',
        False,
        True,
    )
    assert split_variants('scene-play-sparse-singletask-task2-v0') == ('scene-play-singletask-task2-v0', True, False)
    assert split_variants('cube-single-play-singletask-task2-v0') == (
        'cube-single-play-singletask-task2-v0',
        False,
        False,
    )


def test_missing_100m_dataset_says_how_to_get_it(tmp_path):
    import envs
    from envs.base import DatasetError

    with pytest.raises(DatasetError) as e:
        envs.make_task('cube-quadruple-play-100m-singletask-task1-v0', dataset_dir=str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / 'cube-quadruple-play-100m-v0') in msg
    assert (
        'wget -r -np -nH --cut-dirs=2 -A "*.npz" https://rail.eecs.berkeley.edu/datasets/ogbench/cube-quadruple-play-100m-v0/'
        in msg
    )


def test_sharded_100m_layout_is_read_shard_by_shard_in_training(tmp_path):
    """The released layout <dataset_dir>/<name>-100m-v0/*.npz (+ -val.npz per shard), written here from a locally
    generated cube-single dataset cut into three one-episode shards: main.py reads them in turn, one shard per
    --dataset_replace_interval gradient steps (logged as data/shard), offline and online."""
    from runner.io import read_csv
    from tests.conftest import TINY, read_final, run_main

    src = tmp_path / 'src'
    generate_dataset('cube-single-play-v0', str(src), num_episodes=3, episode_length=100, progress=False)
    raw = _load_raw(src / 'cube-single-play-v0.npz')
    ends = np.flatnonzero(raw['terminals']) + 1
    starts = np.concatenate([[0], ends[:-1]])
    shard_dir = tmp_path / 'data' / 'cube-single-play-100m-v0'
    shard_dir.mkdir(parents=True)
    for k, (a, b) in enumerate(zip(starts, ends)):
        np.savez(shard_dir / f'cube-single-play-v0-{k:03d}.npz', **{key: v[a:b] for key, v in raw.items()})
        (shard_dir / f'cube-single-play-v0-{k:03d}-val.npz').write_bytes(
            (src / 'cube-single-play-v0-val.npz').read_bytes()
        )
    env = 'cube-single-play-100m-singletask-task2-v0'
    run_main(
        [
            '--agent=fql',
            f'--env_name={env}',
            f'--dataset_dir={tmp_path / "data"}',
            '--download=false',
            '--dataset_replace_interval=2',
            '--offline_steps=6',
            '--online_steps=4',
            '--log_interval=2',
            '--eval_interval=0',
            '--eval_episodes=1',
            *TINY,
        ],
        tmp_path,
    )
    rows = read_csv(tmp_path / f'fql_{env}_seed0' / 'train.csv')
    offline = [(int(float(r['step'])), int(float(r['data/shard']))) for r in rows if r['phase'] == 'offline']
    assert offline == [(2, 0), (4, 1), (6, 2)]
    assert [r['phase'] for r in rows].count('online') == 2
    final = read_final(tmp_path / f'fql_{env}_seed0')
    assert final['steps'] == 10 and any('3 shards' in n for n in final['task_notes'])


def test_seeded_reset_makes_locomaze_episodes_reproducible():
    """ogbench's pointmaze reset draws from numpy's global RNG and the action space's generator, which
    reset(seed=...) leaves alone; SeededReset seeds both per reset (and restores the global state)."""
    import ogbench

    from envs.ogbench_env import SeededReset

    name = 'pointmaze-medium-navigate-singletask-task1-v0'

    def starts(wrap: bool, seed: int = 0):
        env = ogbench.make_env_and_datasets(name, env_only=True)
        env = SeededReset(env, seed) if wrap else env
        out = [env.reset(seed=5)[0]]
        np.random.rand(3)  # other code drawing from the global RNG in between
        out += [env.reset()[0] for _ in range(2)]  # unseeded resets: the online phase's episode starts
        return np.stack(out)

    a, b = starts(True), starts(True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(starts(True, seed=1)[1:], a[1:])  # the wrapper's seed drives the unseeded resets
    assert not np.array_equal(starts(False)[0], starts(False)[0])  # what it fixes: the same seed, other starts
    state = np.random.get_state()[1].copy()
    SeededReset(ogbench.make_env_and_datasets(name, env_only=True), 0).reset(seed=3)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global RNG is left as it was
