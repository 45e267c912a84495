"""Tests for envs/d4rl_antmaze.py: the D4RL v2 antmaze evaluation env rebuilt on the mujoco bindings.

The expected values are D4RL's (d4rl 1.1, d4rl/locomotion/*), restated here by hand so that a change to the module's
constants fails a test: goal cells, maze scaling 4, success radius 0.5, horizons 700 / 1000, reset and goal noise.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from envs import d4rl_antmaze as A

# name: (GOAL cell (row, col) in the map, noise-free goal xy = cell * 4 - (4, 4), horizon)
EXPECTED = {
    'antmaze-umaze-v2': ((3, 1), (0.0, 8.0), 700),
    'antmaze-umaze-diverse-v2': ((3, 1), (0.0, 8.0), 700),
    'antmaze-medium-play-v2': ((6, 6), (20.0, 20.0), 1000),
    'antmaze-medium-diverse-v2': ((6, 6), (20.0, 20.0), 1000),
    'antmaze-large-play-v2': ((7, 9), (32.0, 24.0), 1000),
    'antmaze-large-diverse-v2': ((7, 9), (32.0, 24.0), 1000),
}


def _obs_of(env):
    d = env.unwrapped.data
    return np.concatenate([d.qpos[:15], d.qvel[:14]])


def test_constants_and_maps():
    assert set(A.ANTMAZE_NAMES) == set(EXPECTED)
    assert A.MAZE_SIZE_SCALING == 4.0 and A.SUCCESS_RADIUS == 0.5 and A.FRAME_SKIP == 5 and A.CTRL_LIMIT == 30.0
    assert A.OBS_DIM == 29 and A.ACTION_DIM == 8
    assert A.GOAL_NOISE_MAX == 1.5
    for name, (cell, xy, horizon) in EXPECTED.items():
        maze = A.TASKS[name][0]
        assert A.find_cell(maze, A.GOAL) == cell
        assert A.find_cell(maze, A.RESET) == (1, 1)  # the ant starts in cell (1, 1): xy (0, 0)
        np.testing.assert_array_equal(A.torso_offset(maze), [4.0, 4.0])
        np.testing.assert_array_equal(A.goal_base_xy(name), xy)
        assert A.HORIZONS[name] == horizon
        # exactly one goal and one reset cell; a closed border of walls
        flat = [c for row in maze for c in row]
        assert flat.count(A.GOAL) == 1 and flat.count(A.RESET) == 1
        assert all(c == 1 for c in maze[0]) and all(c == 1 for c in maze[-1])
        assert all(row[0] == 1 and row[-1] == 1 for row in maze)
    with pytest.raises(ValueError, match='unknown D4RL antmaze task'):
        A.make_antmaze_env('antmaze-umaze-v0')


@pytest.mark.parametrize('name', ['antmaze-umaze-v2', 'antmaze-medium-play-v2', 'antmaze-large-diverse-v2'])
def test_model_walls_and_spaces(name):
    env = A.make_antmaze_env(name, seed=0)
    m = env.unwrapped.model
    maze = A.TASKS[name][0]
    walls = [(i, j) for i, row in enumerate(maze) for j, c in enumerate(row) if c == 1]
    blocks = [
        g for g in range(m.ngeom) if (mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or '').startswith('block')
    ]
    assert len(blocks) == len(walls)
    assert (m.nq, m.nv, m.nu) == (15, 14, 8)  # walls are static: the ant's state is the whole state
    for g, (i, j) in zip(blocks, walls):
        np.testing.assert_allclose(m.geom_pos[g], [4 * j - 4, 4 * i - 4, 1.0])
        np.testing.assert_allclose(m.geom_size[g], [2.0, 2.0, 1.0])
        assert m.geom_contype[g] == 1 and m.geom_conaffinity[g] == 1
    assert m.opt.timestep == 0.02 and m.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    np.testing.assert_array_equal(m.actuator_ctrlrange, np.tile([-30.0, 30.0], (8, 1)))
    np.testing.assert_array_equal(m.actuator_gear[:, 0], np.ones(8))
    assert env.action_space.shape == (8,) and np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    assert env.observation_space.shape == (29,)
    assert env.spec.max_episode_steps == EXPECTED[name][2]


def test_observation_order_and_action_scaling():
    env = A.make_antmaze_env('antmaze-medium-diverse-v2', seed=0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (29,) and obs.dtype == np.float64 and info['success'] is False
    np.testing.assert_array_equal(obs, _obs_of(env))
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.uniform(-1, 1, 8)
        obs, r, terminated, truncated, info = env.step(a)
        np.testing.assert_array_equal(obs, _obs_of(env))
        np.testing.assert_allclose(env.unwrapped.data.ctrl, 30.0 * a, atol=1e-12)  # NormalizedBoxEnv: 30 a
        assert r == 0.0 and terminated is False and truncated is False and info['success'] is False
    env.step(np.array([2.0, -3.0, 1.0, -1.0, 0.5, 0, 0, 0]))  # out of range: clipped to [-30, 30]
    np.testing.assert_allclose(env.unwrapped.data.ctrl, [30, -30, 30, -30, 15, 0, 0, 0])


def test_reset_distribution():
    env = A.make_antmaze_env('antmaze-large-play-v2')
    qpos, qvel, goals = [], [], []
    for s in range(200):
        obs, _ = env.reset(seed=s)
        qpos.append(obs[:15])
        qvel.append(obs[15:])
        goals.append(env.unwrapped.target_goal)
    qpos_noise = np.array(qpos) - A.INIT_QPOS
    np.testing.assert_array_equal(A.INIT_QPOS[:7], [0, 0, 0.75, 1, 0, 0, 0])  # qpos0: torso at z 0.75, joints 0
    assert np.all(np.abs(qpos_noise) <= 0.1) and np.abs(qpos_noise).max() > 0.09  # U(-0.1, 0.1) on every qpos
    assert abs(qpos_noise.std() - 0.2 / np.sqrt(12)) < 0.005
    qvel = np.array(qvel)
    assert abs(qvel.mean()) < 0.01 and abs(qvel.std() - 0.1) < 0.005  # 0.1 N(0, 1)
    # a new goal every reset (v2_resets), in [base, base + 1.5]^2 (U(0, 1) + U(0, 0.5) per coordinate)
    goal_noise = np.array(goals) - A.goal_base_xy('antmaze-large-play-v2')
    assert np.all(goal_noise >= 0) and np.all(goal_noise <= 1.5)
    assert goal_noise.min() < 0.2 and goal_noise.max() > 1.3 and len(np.unique(goal_noise[:, 0])) == 200
    assert abs(goal_noise.mean() - 0.75) < 0.05  # E[U(0, 1) + U(0, 0.5)]


@pytest.mark.parametrize('name', list(EXPECTED))
def test_goal_per_task(name):
    env = A.make_antmaze_env(name, seed=3)
    base = np.array(EXPECTED[name][1])
    for s in range(5):
        env.reset(seed=s)
        g = env.unwrapped.target_goal
        assert g.shape == (2,) and np.all(g >= base) and np.all(g <= base + 1.5)
    env.reset(options={'target_goal': (1.0, 2.0)})  # like d4rl's set_target(xy)
    np.testing.assert_array_equal(env.unwrapped.target_goal, [1.0, 2.0])


def test_determinism():
    def rollout(env, seed):
        obs, _ = env.reset(seed=seed)
        out = [obs, env.unwrapped.target_goal]
        for a in np.random.default_rng(seed).uniform(-1, 1, (20, 8)).astype(np.float32):
            out.append(env.step(a)[0])
        return np.concatenate(out)

    e1, e2 = A.make_antmaze_env('antmaze-umaze-v2'), A.make_antmaze_env('antmaze-umaze-v2', seed=99)
    np.testing.assert_array_equal(rollout(e1, 5), rollout(e2, 5))
    assert not np.array_equal(rollout(e1, 5), rollout(e1, 6))
    # make_antmaze_env(seed) seeds the first reset (and the construction goal) without reset(seed=...)
    e3, e4 = A.make_antmaze_env('antmaze-umaze-v2', seed=7), A.make_antmaze_env('antmaze-umaze-v2', seed=7)
    np.testing.assert_array_equal(e3.unwrapped.target_goal, e4.unwrapped.target_goal)
    np.testing.assert_array_equal(e3.reset()[0], e4.reset()[0])


def test_sparse_reward_and_termination():
    env = A.make_antmaze_env('antmaze-umaze-v2', seed=0)
    obs0, _ = env.reset(seed=0)
    goal = env.unwrapped.target_goal
    seen = set()
    for dx in (0.0, 0.3, 0.45, 0.55, 0.8, 2.0):
        obs = obs0.copy()
        obs[:2] = goal + [dx, 0.0]
        A.set_state_from_obs(env, obs)
        obs1, r, terminated, truncated, info = env.step(np.zeros(8))
        hit = np.linalg.norm(obs1[:2] - goal) <= 0.5  # judged after the step
        assert r == float(hit) and terminated == hit and info['success'] == hit and truncated is False
        seen.add(bool(hit))
    assert seen == {True, False}


def test_horizon_truncation():
    env = A.make_antmaze_env('antmaze-umaze-v2', seed=0)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, r, terminated, truncated, _ = env.step(np.zeros(8, np.float32))  # standing still: never at the goal
        steps += 1
        done = terminated or truncated
    assert steps == 700 and truncated and not terminated and r == 0.0


def test_set_state_from_obs_round_trip():
    src = A.make_antmaze_env('antmaze-medium-play-v2', seed=0)
    dst = A.make_antmaze_env('antmaze-medium-play-v2', seed=1)
    obs, _ = src.reset(seed=0)
    dst.reset(seed=1)
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 8))
    for a in actions[:10]:
        obs = src.step(a)[0]
    A.set_state_from_obs(dst, obs)
    np.testing.assert_array_equal(_obs_of(dst), obs)
    # the next steps from the copied state: equal up to the solver warm start (src keeps its history)
    A.set_state_from_obs(src, obs)  # now both start cold: bitwise equal
    for a in actions[10:]:
        np.testing.assert_array_equal(src.step(a)[0], dst.step(a)[0])
    with pytest.raises(ValueError, match='29'):
        A.set_state_from_obs(dst, obs[:27])


# ---- a file in D4RL's layout made by the env itself: the replay check, and main.py offline + online ---------------
@pytest.fixture(scope='module')
def umaze_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('d4rl') / 'antmaze-umaze-v2.hdf5'
    A.write_dataset(str(path), 'antmaze-umaze-v2', num_episodes=3, episode_length=200, seed=0)
    return path


def test_written_file_has_d4rl_layout(umaze_file):
    import h5py

    with h5py.File(umaze_file, 'r') as f:
        assert f['observations'].shape == (600, 29) and f['actions'].shape == (600, 8)
        assert f['infos/goal'].shape == (600, 2) and f['infos/qpos'].shape == (600, 15)
        assert not f['terminals'][()].any() and np.flatnonzero(f['timeouts'][()]).tolist() == [199, 399, 599]
        np.testing.assert_allclose(f['observations'][:, :15], f['infos/qpos'][()], atol=1e-6)


def test_replay_check_passes_on_the_env_s_own_file_and_fails_a_perturbed_one(umaze_file, tmp_path, capsys):
    import h5py

    from scripts.check_d4rl_env import main as check

    assert check(['--env_name=antmaze-umaze-v2', f'--dataset_path={umaze_file}', '--num_transitions=200']) == 0
    out = capsys.readouterr().out
    assert 'verdict: PASS' in out and 'goals in the goal region of a free cell: 100.00%' in out
    # without infos/qpos: the state comes from the (float32) observation, still near-exact; actions scaled: FAIL
    for scale, rc in ((1.0, 0), (0.8, 1)):
        bad = tmp_path / f'scaled{scale}.hdf5'
        with h5py.File(umaze_file, 'r') as f, h5py.File(bad, 'w') as g:
            for k in ('observations', 'rewards', 'terminals', 'timeouts', 'infos/goal'):
                g[k] = f[k][()]
            g['actions'] = f['actions'][()] * scale
        assert check(['--env_name=antmaze-umaze-v2', f'--dataset_path={bad}', '--num_transitions=200']) == rc
        out = capsys.readouterr().out
        assert ('MISMATCH' in out) == (rc == 1) and 'from the observation' in out
    # a goal outside every free cell's goal region is a mismatch too
    moved = tmp_path / 'moved_goal.hdf5'
    with h5py.File(umaze_file, 'r') as f, h5py.File(moved, 'w') as g:
        for k in ('observations', 'actions', 'rewards', 'terminals', 'timeouts'):
            g[k] = f[k][()]
        g['infos/goal'] = f['infos/goal'][()] + np.float32(2.0)  # into a wall
    assert check(['--env_name=antmaze-umaze-v2', f'--dataset_path={moved}', '--num_transitions=50']) == 1


@pytest.mark.parametrize('agent', ['fql', 'iql'])
def test_main_offline_then_online_on_antmaze(umaze_file, tmp_path, agent):
    import csv
    import json

    from tests.conftest import TINY, run_main

    args = [
        f'--agent={agent}',
        '--env_name=antmaze-umaze-v2',
        f'--dataset_path={umaze_file}',
        '--offline_steps=20',
        '--online_steps=30',
        '--eval_interval=0',
        '--eval_episodes=1',
        '--log_interval=10',
        '--buffer_size=2000',
        *TINY,
    ]
    run_main(args, tmp_path)
    run = tmp_path / f'{agent}_antmaze-umaze-v2_seed0'
    final = json.load(open(run / 'final.json'))
    assert any('NOT the D4RL data' in n for n in final['task_notes'])
    assert final['final_phase'] == 'online' and final['steps'] == 50
    evals = list(csv.DictReader(open(run / 'eval.csv')))
    assert [r['phase'] for r in evals] == ['offline', 'online']
    for r in evals:  # a random-ish policy from the start cell: 700 steps, no goal (score 0, return 0)
        assert float(r['length']) == 700 and float(r['score']) in (0.0, 100.0)


def test_generate_dataset_cli_writes_a_labeled_antmaze_file(tmp_path):
    import h5py

    from scripts.generate_dataset import main as generate

    assert generate(['--env_name=antmaze-umaze-v2', '--num_episodes=1']) == 2  # never a default (real) path
    path = tmp_path / 'u.hdf5'
    assert (
        generate(['--env_name=antmaze-umaze-v2', '--num_episodes=2', '--episode_length=30', f'--dataset_path={path}'])
        == 0
    )
    with h5py.File(path, 'r') as f:
        assert f['observations'].shape == (60, 29) and 'random policy' in f.attrs[A.GENERATED_ATTR]
