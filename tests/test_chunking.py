"""Action chunking (`--agent.horizon_length=h`): the sequence sampler against a slow float64 numpy transcription of
the released QAM sample_sequence, the h = 1 path, the chunked TD target, open-loop execution in a real environment,
and every agent through main.py with h = 5."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents.common import buffer as buffer_lib
from tests.conftest import TINY, read_final, run_main

GAMMA = 0.9


def reference_sequence(ds: dict, idx: np.ndarray, h: int, discount: float) -> dict:
    """The released utils/datasets.py sample_sequence, step by step in float64 (per-step arrays (B, h))."""
    b = len(idx)
    out = {k: np.zeros((b, h)) for k in ('rewards', 'masks', 'terminals', 'valid')}
    next_obs = np.zeros((b, h, ds['observations'].shape[-1]))
    for i in range(h):
        cur = idx + i
        if i == 0:
            out['rewards'][:, 0] = ds['rewards'][cur]
            out['masks'][:, 0] = ds['masks'][cur]
            out['terminals'][:, 0] = ds['terminals'][cur]
            out['valid'][:, 0] = 1.0
            next_obs[:, 0] = ds['next_observations'][cur]
            continue
        valid = 1.0 - out['terminals'][:, i - 1]
        out['valid'][:, i] = valid
        out['rewards'][:, i] = out['rewards'][:, i - 1] + ds['rewards'][cur] * discount**i * valid
        out['masks'][:, i] = np.minimum(out['masks'][:, i - 1], ds['masks'][cur]) * valid + out['masks'][:, i - 1] * (
            1.0 - valid
        )
        out['terminals'][:, i] = np.maximum(out['terminals'][:, i - 1], ds['terminals'][cur])
        next_obs[:, i] = ds['next_observations'][cur] * valid[:, None] + next_obs[:, i - 1] * (1.0 - valid[:, None])
    out['next_observations'] = next_obs
    out['actions'] = np.stack([ds['actions'][idx + i] for i in range(h)], axis=1)
    return out


def small_dataset(n: int = 40, seed: int = 0) -> dict:
    """Episodes of lengths 3, 1, 7, ... (ends inside most chunks), some masks 0 (goal reached), distinct values."""
    rng = np.random.default_rng(seed)
    terminals = np.zeros(n, np.float32)
    t = 0
    for length in [3, 1, 7, 2, 5, 4, 9, 3, 6]:
        t += length
        if t <= n:
            terminals[t - 1] = 1.0
    terminals[-1] = 1.0
    masks = (rng.random(n) > 0.2).astype(np.float32)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    return dict(
        observations=obs,
        actions=rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        masks=masks,
        terminals=terminals,
        next_observations=(obs + 0.5).astype(np.float32),
    )


@pytest.mark.parametrize('h', [2, 5])
def test_sequence_sampler_matches_released_reference(h):
    ds = small_dataset()
    buf = buffer_lib.make_buffer(ds)
    idx = np.arange(len(ds['observations']) - h + 1)  # every start row
    steps = jax.device_get(buffer_lib.chunk_steps(buf, jnp.asarray(idx), h, GAMMA))
    ref = reference_sequence({k: v.astype(np.float64) for k, v in ds.items()}, idx, h, GAMMA)
    for k in ('rewards', 'masks', 'terminals', 'valid', 'next_observations'):
        np.testing.assert_allclose(steps[k], ref[k], rtol=1e-6, atol=1e-6, err_msg=k)
    assert ref['valid'][:, -1].min() == 0.0 and ref['valid'][:, -1].max() == 1.0  # both cases are exercised
    # The batch the agents see: the last step of each field, the first observation, the h actions flattened.
    batch = jax.device_get(buffer_lib._gather_chunks(buf, jnp.asarray(idx), h, GAMMA))
    for k in ('rewards', 'masks', 'terminals', 'valid'):
        np.testing.assert_allclose(batch[k], ref[k][:, -1], rtol=1e-6, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(batch['next_observations'], ref['next_observations'][:, -1], rtol=1e-6)
    np.testing.assert_array_equal(batch['observations'], ds['observations'][idx])
    np.testing.assert_array_equal(batch['actions'], ref['actions'].reshape(len(idx), -1))


def test_sampled_chunks_start_in_range_and_h1_is_the_transition_sampler():
    ds = small_dataset()
    n = len(ds['observations'])
    buf = buffer_lib.make_buffer(ds)
    rng = jax.random.PRNGKey(3)
    batch = jax.device_get(jax.jit(lambda k: buffer_lib.sample(buf, k, 4000, horizon=5, discount=GAMMA))(rng))
    starts = {tuple(r) for r in batch['observations']}
    assert starts == {tuple(ds['observations'][i]) for i in range(n - 4)}  # rows 0..n-5, each drawn
    # h = 1 is today's transition sampler, bit for bit, whatever the discount.
    a = jax.device_get(buffer_lib.sample(buf, rng, 64))
    b = jax.device_get(buffer_lib.sample(buf, rng, 64, horizon=1, discount=GAMMA))
    assert a.keys() == b.keys() and 'valid' not in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # ... and one-step chunks of the sequence path agree with it.
    idx = jnp.arange(n)
    one = jax.device_get(buffer_lib.chunk_steps(buf, idx, 1, GAMMA))
    np.testing.assert_array_equal(one['rewards'][:, 0], ds['rewards'])
    np.testing.assert_array_equal(one['masks'][:, 0], ds['masks'])
    np.testing.assert_array_equal(one['next_observations'][:, 0], ds['next_observations'])


def test_chunks_never_cross_the_write_pointer_of_a_wrapped_buffer():
    ds = small_dataset(n=20)
    buf = buffer_lib.make_buffer(ds, capacity=24)
    for t in range(10):  # 4 rows fill the buffer, 6 more overwrite rows 0..5 (ptr wraps to 0 with keep = 0)
        row = {k: np.full_like(v[0], 100 + t) for k, v in ds.items() if k != 'terminals'}
        buf = buffer_lib.add_transition(buf, {**row, 'terminals': np.float32(0.0)})
    assert int(buf['ptr']) == 6 and int(buf['size']) == 24
    steps = jax.device_get(buffer_lib.chunk_steps(buf, jnp.asarray([3, 4, 5, 6]), 4, GAMMA))
    # Start 3: rows 3, 4, 5 (newest) then row 6 (old data): the step after the newest row is not valid.
    np.testing.assert_array_equal(steps['valid'][0], [1, 1, 1, 0])
    np.testing.assert_array_equal(steps['valid'][2], [1, 0, 0, 0])
    assert steps['next_observations'][0, -1, 0] == 109.0  # the newest row's next observation, not old data
    assert steps['valid'][3, 1] == 1.0  # rows 6.. are old data, consecutive among themselves


def test_mixed_batches_cut_offline_and_online_chunks_separately():
    ds = small_dataset(n=30)
    buf = buffer_lib.make_buffer(ds, capacity=60, keep_offline=True)
    for t in range(12):
        row = {k: np.full_like(v[0], 1000 + t) for k, v in ds.items() if k != 'terminals'}
        buf = buffer_lib.add_transition(buf, {**row, 'terminals': np.float32(t % 4 == 3)})
    batch = jax.device_get(buffer_lib.sample(buf, jax.random.PRNGKey(0), 2000, mix_offline=0.5, horizon=3))
    first = batch['observations'][:, 0]
    off, on = first[:1000], first[1000:]
    assert np.all(off < 1000) and set(np.round(on).astype(int)) == set(range(1000, 1010))  # online starts 30..39


def _learner(agent_name, h, **overrides):
    from agents.common.trainer import Learner

    config = agents.get_config(agent_name)
    with config.unlocked():
        config.update(
            dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), batch_size=8, horizon_length=h, **overrides)
        )
    return Learner(agents.get_agent(agent_name), config, 3, 2)


def test_chunked_td_target_uses_gamma_to_the_h_and_drops_invalid_chunks():
    """critic_td_loss on a chunk batch against float64 numpy: y = R + gamma^h m Q_target(s', a'), invalid chunks count
    as zeros in the mean."""
    from agents.common.rl import critic_td_loss

    h = 5
    learner = _learner('fql', h, discount=GAMMA, q_agg='min')
    state = learner.init(jax.random.PRNGKey(0))
    ds = small_dataset()
    batch = buffer_lib._gather_chunks(buffer_lib.make_buffer(ds), jnp.arange(8) * 3, h, GAMMA)
    assert 0.0 < float(batch['valid'].mean()) < 1.0
    next_actions = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (8, 2 * h)), jnp.float32)
    loss, _ = critic_td_loss(learner, state.params, state, batch, next_actions)

    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    next_q = f64(learner.apply('critic', state.target_params, batch['next_observations'], next_actions)).min(0)
    target = f64(batch['rewards']) + GAMMA**h * f64(batch['masks']) * next_q
    qs = f64(learner.apply('critic', state.params, batch['observations'], batch['actions']))
    expected = np.mean((qs - target) ** 2 * f64(batch['valid']))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@dataclasses.dataclass
class _Recorder:
    env: object
    actions: list

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, action):
        self.actions.append(np.asarray(action))
        return self.env.step(action)


def test_evaluation_executes_each_chunk_open_loop_in_the_real_environment(pointmaze_dir):
    import envs
    from envs.evaluation import evaluate

    task = envs.make_task(
        'pointmaze-medium-navigate-singletask-task1-v0', dataset_dir=str(pointmaze_dir), download=False
    )
    executed, calls = [], []
    make_env = task.make_env
    task = dataclasses.replace(task, make_env=lambda seed: _Recorder(make_env(seed), executed))
    h = 4

    def policy(obs):  # chunk k: actions (k + j) / 1000 for j < h, both action dimensions
        calls.append(obs)
        k = len(calls)
        return np.asarray([[(k + j) / 1000.0 for j in range(h) for _ in range(2)]], np.float32)

    out = evaluate(task, policy, num_episodes=2, seed=0, progress=False, horizon=h)
    length = int(out['length'])
    assert len(executed) == 2 * length
    assert len(calls) == 2 * -(-length // h)  # one policy call per h steps, a fresh chunk at each episode start
    first = [a[0] * 1000 for a in executed[: h + 1]]
    np.testing.assert_allclose(first, [1, 2, 3, 4, 2], atol=1e-3)  # chunk 1 in order, then chunk 2 starts


@pytest.mark.parametrize('agent', sorted(agents.AGENTS))
def test_every_agent_runs_offline_and_online_with_chunks_of_five(agent, pointmaze_dir, tmp_path):
    run_main(
        [
            f'--agent={agent}',
            '--env_name=pointmaze-medium-navigate-singletask-task1-v0',
            f'--dataset_dir={pointmaze_dir}',
            '--download=false',
            '--agent.horizon_length=5',
            '--offline_steps=6',
            '--online_steps=12',
            '--eval_interval=0',
            '--eval_episodes=1',
            '--log_interval=3',
            '--updates_per_call=3',
            # online steps 1-6 only act (random actions for one agent), 7-12 also train: for every agent, whatever
            # its released code's wait
            '--agent.start_training=7',
            *(['--agent.random_before_training=True'] if agent == 'rlpd' else []),
            # one agent also with vmapped seeds: each seed executes its own chunks online (per-seed action queues)
            *(['--num_seeds=2'] if agent == 'fql' else []),
            *TINY,
        ],
        tmp_path,
    )
    for seed in (0, 1) if agent == 'fql' else (0,):
        final = read_final(tmp_path / f'{agent}_pointmaze-medium-navigate-singletask-task1-v0_seed{seed}')
        assert final['steps'] == 12 and final['online_score'] in (0.0, 100.0)  # gradient steps: 6 + online 7-12


# ---- presets named by the paper whose protocol they reproduce -------------------------------------------------------
def _resolved(agent, env, preset):
    import types

    from runner.experiment import resolve_config

    task = types.SimpleNamespace(name=env, extra={})
    config, applied = resolve_config(agents.get_agent(agent), agents.get_config(agent), task, preset, set())
    return config, applied


def test_one_baseline_has_each_papers_values_under_that_papers_preset():
    # FQL on antmaze-large: alpha 10 in FAV Table 6, 3 in QAM's reproduce.py (with QAM's K = 10 pessimistic critics).
    env = 'antmaze-large-navigate-singletask-task1-v0'
    fav, _ = _resolved('fql', env, 'fav')
    qam_cfg, _ = _resolved('fql', env, 'qam')
    assert (fav.alpha, fav.num_critics, fav.q_agg) == (10.0, 2, 'min')
    assert (qam_cfg.alpha, qam_cfg.num_critics, qam_cfg.q_agg, qam_cfg.rho) == (3.0, 10, 'pessimistic', 0.5)
    assert qam_cfg.horizon_length == 1 and fav.horizon_length == 1  # reproduce.py: no chunks on locomotion
    assert _resolved('fql', env, 'paper')[0].alpha == 10.0  # FQL's 'paper' is FAV Table 6, as before
    # ReBRAC under QAM's protocol on puzzle-4x4 (sparse): reproduce.py's (alpha, sigma), no critic BC, chunks of 5
    reb, applied = _resolved('rebrac', 'puzzle-4x4-play-sparse-singletask-task4-v0', 'qam')
    assert (reb.alpha_actor, reb.actor_noise, reb.alpha_critic, reb.horizon_length) == (0.01, 0.2, 0.0, 5)
    assert (reb.num_critics, reb.q_agg, reb.discount) == (10, 'pessimistic', 0.99)
    assert applied['horizon_length'] == 5
    # QAM's own paper is its protocol: 'paper' and 'qam' agree
    assert _resolved('qam', 'cube-double-play-singletask-task2-v0', 'paper')[0].to_dict() == (
        _resolved('qam', 'cube-double-play-singletask-task2-v0', 'qam')[0].to_dict()
    )
    assert agents.protocol_of('qam_edit', 'paper') == 'qam' and agents.protocol_of('fav', 'paper') == 'fav'


def test_qam_protocol_refuses_the_dense_reward_where_qam_ran_sparse_and_agents_it_has_no_values_for():
    from configs.presets import PresetError

    with pytest.raises(PresetError, match='scene-play-sparse-singletask-task2-v0'):
        _resolved('fql', 'scene-play-singletask-task2-v0', 'qam')
    with pytest.raises(ValueError, match='agents that do: ') as err:
        _resolved('iql', 'cube-double-play-singletask-task2-v0', 'qam')
    have = str(err.value).split('agents that do: ')[1].rstrip('.').split(', ')
    assert have == sorted(have) and {'fql', 'qam', 'qam_edit', 'qam_fql', 'rebrac'} <= set(have) and 'iql' not in have
    with pytest.raises(ValueError, match="no values under the VGF paper's protocol"):
        _resolved('fql', 'cube-double-play-singletask-task2-v0', 'vgf')


def test_preset_qam_runs_the_protocol_on_a_sparse_task_and_records_it(tmp_path):
    """--preset=qam on a locally generated scene (sparse variant): chunks of 5 and K = 10 critics from the preset,
    sparse rewards from the name, the protocol written into config.json."""
    import json

    from envs.ogbench_gen import generate_dataset

    data = tmp_path / 'data'
    generate_dataset('scene-play-v0', str(data), num_episodes=2, episode_length=120, progress=False)
    env = 'scene-play-sparse-singletask-task2-v0'
    run_main(
        [
            '--agent=fql',
            f'--env_name={env}',
            f'--dataset_dir={data}',
            '--download=false',
            '--preset=qam',
            '--offline_steps=4',
            '--online_steps=7',
            '--eval_interval=0',
            '--eval_episodes=1',
            '--updates_per_call=2',
            *TINY,
        ],
        tmp_path,
    )
    run = tmp_path / f'fql_{env}_seed0'
    with open(run / 'config.json') as f:
        cfg = json.load(f)
    assert cfg['protocol'].startswith('QAM Table 1')
    assert cfg['preset_applied']['horizon_length'] == 5 and cfg['config']['num_critics'] == 10
    assert cfg['config']['alpha'] == 300.0  # reproduce.py FQL on scene-play-sparse
    assert any('sparse rewards' in n for n in cfg['task_notes'])
    assert cfg['config']['start_training'] == 5000  # QAM's main.py: the 7 online steps take no gradient step
    assert read_final(run)['steps'] == 4


def test_fav_dataset_bandwidth_is_scotts_rule_on_the_flattened_chunks():
    from agents import fav

    config = agents.get_config('fav')
    with config.unlocked():
        config.update(adaptive_bandwidth='dataset', horizon_length=3)
    actions = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    chunks = np.stack([actions[i : i + 3].reshape(-1) for i in range(48)])  # (N - h + 1, h * d), slow and obvious
    got = fav.constants(config, {'actions': actions})['bandwidth']
    assert got == pytest.approx(fav.scott_bandwidth(chunks, config.batch_size), rel=1e-12)
    assert got != pytest.approx(fav.scott_bandwidth(actions, config.batch_size), rel=1e-3)  # d enters the exponent


def _chunk_args(pointmaze_dir, *extra):
    return [
        '--agent=fql',
        '--env_name=pointmaze-medium-navigate-singletask-task1-v0',
        f'--dataset_dir={pointmaze_dir}',
        '--download=false',
        '--agent.horizon_length=5',
        '--eval_interval=0',
        '--eval_episodes=1',
        '--log_interval=4',
        '--save_interval=4',
        '--updates_per_call=3',
        *TINY,
        *extra,
    ]


def _leaves(run):
    from runner import checkpoint as ckpt_lib

    return jax.tree_util.tree_leaves(ckpt_lib.read(ckpt_lib.latest(str(run / 'checkpoints')))['state'])


def test_chunked_runs_resume_bit_exactly(pointmaze_dir, tmp_path):
    import json
    import os

    from runner import checkpoint as ckpt_lib

    name = 'fql_pointmaze-medium-navigate-singletask-task1-v0_seed'
    run_main(_chunk_args(pointmaze_dir, '--offline_steps=12'), tmp_path / 'ref')
    # Resume: drop the last checkpoint (step 12) and the final files, so the run continues from step 8.
    run_main(_chunk_args(pointmaze_dir, '--offline_steps=12'), tmp_path / 'cut')
    cut = tmp_path / 'cut' / f'{name}0'
    newest = ckpt_lib.latest(str(cut / 'checkpoints'))
    os.remove(newest) if os.path.isfile(newest) else __import__('shutil').rmtree(newest)
    os.remove(cut / 'final.json')
    (cut / 'status.json').write_text(json.dumps({'status': 'running'}))
    proc = run_main([*_chunk_args(pointmaze_dir, '--offline_steps=12'), '--resume'], tmp_path / 'cut')
    assert 'resuming from the offline checkpoint at step 8' in proc.stderr
    for x, y in zip(_leaves(tmp_path / 'ref' / f'{name}0'), _leaves(cut), strict=True):
        np.testing.assert_array_equal(x, y)
