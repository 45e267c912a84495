"""Evaluation in lockstep (envs/evaluation.py): many episodes, seeds and evaluation variants per policy call, with
the episodes the sequential pass plays."""

from __future__ import annotations

import csv

import gymnasium
import jax
import numpy as np
import pytest

import agents
import envs
from agents.common.trainer import Learner
from envs.evaluation import EnvPool, run_episodes
from tests.conftest import TINY, run_main

POINTMAZE = 'pointmaze-medium-navigate-singletask-task1-v0'


def _learner(obs_dim, action_dim, horizon=1, agent='fql'):
    config = agents.get_config(agent)
    config.actor_hidden_dims = config.value_hidden_dims = (32, 32)
    config.horizon_length = horizon
    return Learner(agents.get_agent(agent), config, obs_dim, action_dim)


def test_each_row_is_drawn_with_the_key_of_its_episode_and_policy_call():
    learner = _learner(6, 3)
    params = learner.init(jax.random.PRNGKey(0)).params
    key = jax.random.PRNGKey(7)
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    episodes = np.array([0, 3, 3, 1, 4], np.int32)
    calls = np.array([0, 0, 9, 2, 5], np.int32)
    rows = np.asarray(learner.act_episodes(params, obs, key, episodes, calls, 0.0, ()))
    for i in range(5):
        k = jax.random.fold_in(jax.random.fold_in(key, int(episodes[i])), int(calls[i]))
        alone = np.asarray(learner.act(params, obs[i : i + 1], k, 0.0, ()))[0]
        np.testing.assert_allclose(rows[i], alone, atol=1e-6)
    # FQL's noise makes the key matter: the same observation at another call gets another action
    assert not np.allclose(
        rows[1], np.asarray(learner.act_episodes(params, obs[1:2], key, episodes[1:2], calls[2:3]))[0]
    )
    # ... and a row does not depend on its neighbours
    perm = np.array([4, 2, 0, 1, 3])
    permuted = np.asarray(learner.act_episodes(params, obs[perm], key, episodes[perm], calls[perm], 0.0, ()))
    np.testing.assert_allclose(permuted, rows[perm], atol=1e-6)


class _Trace(gymnasium.Wrapper):
    """Short episodes (60 steps) whose final info carries a fingerprint of every observation and action."""

    def reset(self, **kw):
        self.t, self.trace = 0, 0.0
        obs, info = self.env.reset(**kw)
        self.trace += float(np.sum(np.abs(obs)))
        return obs, info

    def step(self, action):
        obs, r, terminated, truncated, info = self.env.step(action)
        self.t += 1
        self.trace += float(np.sum(np.abs(obs))) + 10.0 * float(
            np.sum(np.asarray(action) * np.arange(1, action.size + 1))
        )
        truncated = truncated or self.t >= 60
        return obs, r, terminated, truncated, {**info, 'trace': self.trace}


@pytest.mark.parametrize('horizon', [1, 3])
def test_lockstep_pools_play_the_episodes_of_the_sequential_pass(pointmaze_dir, horizon):
    """Two policies (groups) x 5 episodes, with chunks of `horizon` actions run open-loop: one environment per group
    (sequential), every episode at once, and two worker processes give the same episodes."""
    task = envs.make_task(POINTMAZE, dataset_dir=str(pointmaze_dir), download=False)
    learner = _learner(task.obs_dim, task.action_dim, horizon)
    params = [learner.init(jax.random.PRNGKey(s)).params for s in (0, 1)]
    keys = [jax.random.PRNGKey(10), jax.random.PRNGKey(11)]
    calls_made = []

    def act(obs, episodes, calls):  # [2, W, ...]
        calls_made.append(obs.shape[1])
        return np.stack(
            [np.asarray(learner.act_episodes(params[g], obs[g], keys[g], episodes[g], calls[g])) for g in (0, 1)]
        )

    def run(width, workers=0):
        calls_made.clear()
        pool = EnvPool(lambda seed: _Trace(task.make_env(seed)), 0, workers)
        try:
            out = run_episodes(
                pool, act, 2, 5, [100, 200], lambda ret, info: info['trace'], horizon, False, width=width
            )
        finally:
            pool.close()
        return out, len(calls_made)

    sequential, n_seq = run(1)
    for width, workers in ((5, 0), (3, 2)):
        out, n = run(width, workers)
        for g in (0, 1):
            assert out[g]['length'] == sequential[g]['length'] == 60
            np.testing.assert_allclose(out[g]['score'], sequential[g]['score'], rtol=1e-6)
            np.testing.assert_allclose(out[g]['return'], sequential[g]['return'], rtol=1e-6)
        assert n == -(-5 // width) * -(-60 // horizon)  # one call per step that needs a chunk, for all slots at once
    assert n_seq == 5 * -(-60 // horizon)
    assert sequential[0]['score'] != sequential[1]['score']  # the groups are different policies


def _eval_rows(run_dir):
    with open(run_dir / 'eval.csv', newline='') as f:
        return list(csv.DictReader(f))


def test_seeds_and_variants_in_one_lockstep_pass_score_as_one_environment_each(minari_root, monkeypatch, tmp_path):
    """main.py: VGF's L_test variants x two seeds on hopper (15-step episodes, a return that moves with every action),
    evaluated with one environment per (seed, variant) and with every episode at once in two worker processes: the
    same eval.csv."""
    monkeypatch.setenv('MINARI_DATASETS_PATH', minari_root)
    base = [
        '--agent=vgf',
        '--env_name=mujoco/hopper/tiny-v0',
        '--offline_steps=0',
        '--num_seeds=2',
        '--eval_episodes=3',
        '--agent.test_vgf_steps=(0,2)',
        *TINY,
    ]
    run_main([*base, '--eval_envs=1', '--run_name=seq'], tmp_path)
    run_main([*base, '--eval_envs=12', '--eval_workers=2', '--run_name=lockstep'], tmp_path)
    scores = []
    for seed in (0, 1):
        seq, lock = _eval_rows(tmp_path / f'seq_seed{seed}'), _eval_rows(tmp_path / f'lockstep_seed{seed}')
        assert len(seq) == len(lock) == 1 and set(seq[0]) == set(lock[0])
        assert {'L0/score', 'L2/score'} <= set(seq[0])
        for k in seq[0]:
            if k != 'phase':
                np.testing.assert_allclose(float(lock[0][k]), float(seq[0][k]), rtol=1e-6, err_msg=k)
        scores += [float(seq[0]['L0/return']), float(seq[0]['L2/return'])]
    assert len(set(scores)) == 4  # every (seed, variant) played its own episodes
