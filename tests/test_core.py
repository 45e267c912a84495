"""Core: buffer sampling, shared loss math against slow references, scan == loop, toy bandit math."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import agents
from agents import iql
from agents.common import buffer as buffer_lib
from agents.common.networks import euler_flow, gaussian_log_prob
from agents.common.rl import aggregate_q, critic_td_loss
from agents.common.trainer import Learner
from envs import toy


def _dataset(n=10, obs_dim=3, act_dim=2, seed=0, episode_len=5):
    rng = np.random.default_rng(seed)
    term = np.zeros(n, np.float32)
    term[episode_len - 1 :: episode_len] = 1
    return dict(
        observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        masks=np.ones(n, np.float32),
        terminals=term,
        next_observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
    )


def test_buffer_uniform_sampling_and_next_actions():
    ds = _dataset(n=10)
    ds['rewards'] = np.arange(10, dtype=np.float32)  # row id
    buf = buffer_lib.make_buffer(ds)
    batch = jax.jit(lambda k: buffer_lib.sample(buf, k, 20_000))(jax.random.PRNGKey(0))
    counts = np.bincount(np.asarray(batch['rewards']).astype(int), minlength=10)
    # chi-square goodness of fit to uniform (p > 1e-4 unless sampling is broken)
    assert stats.chisquare(counts).pvalue > 1e-4
    rows = np.asarray(batch['rewards']).astype(int)
    # The FQL code base's rule: the next row's action, also across an episode end, clamped at the last row.
    np.testing.assert_array_equal(np.asarray(batch['next_actions']), ds['actions'][np.minimum(rows + 1, 9)])
    expected = np.where(ds['terminals'][rows, None] > 0, ds['actions'][rows], ds['actions'][np.minimum(rows + 1, 9)])
    np.testing.assert_array_equal(np.asarray(batch['next_actions_in_episode']), expected)
    assert ds['terminals'][:9].any()  # the two rules differ on this data


def test_buffer_add_wraps_and_mixing():
    ds = _dataset(n=10)
    ds['rewards'] = np.zeros(10, np.float32)
    buf = buffer_lib.make_buffer(ds, capacity=14, keep_offline=True)
    add = jax.jit(buffer_lib.add_transition)
    for i in range(6):  # 4 fit, then the pointer wraps to `keep` = 10, never overwriting offline rows
        t = {k: np.ones_like(v[0]) * (i + 1) for k, v in ds.items()}
        buf = add(buf, t)
    r = np.asarray(buf['data']['rewards'])
    np.testing.assert_array_equal(r[:10], 0)
    np.testing.assert_array_equal(r[10:], [5, 6, 3, 4])
    assert int(buf['size']) == 14 and int(buf['ptr']) == 12
    batch = buffer_lib.sample(buf, jax.random.PRNGKey(1), 1000, mix_offline=0.5)
    rr = np.asarray(batch['rewards'])
    assert np.sum(rr == 0) == 500 and np.all(rr[500:] > 0)
    # without keep_offline the oldest rows are overwritten first
    buf2 = buffer_lib.make_buffer(ds, capacity=10)
    buf2 = add(buf2, {k: np.ones_like(v[0]) * 7 for k, v in ds.items()})
    assert float(buf2['data']['rewards'][0]) == 7 and int(buf2['size']) == 10


def test_online_buffer_has_room_beside_a_dataset_larger_than_buffer_size():
    """The FQL code's sizes: plain fine-tuning max(buffer_size, offline + 1) rows; mixed batches keep every offline
    row and give the online rows buffer_size rows of their own, so the online half of a batch is the online data even
    when the dataset is larger than --buffer_size."""
    import types

    from runner.loop import make_online_buffer, online_capacity

    assert online_capacity(10, 4, mixing=False) == 11 and online_capacity(10, 40, mixing=False) == 40
    assert online_capacity(10, 4, mixing=True) == 14
    ds = _dataset(n=10)
    ds['rewards'] = np.zeros(10, np.float32)
    task = types.SimpleNamespace(train_dataset=ds)
    buf = make_online_buffer(task, types.SimpleNamespace(buffer_size=4), {'mix_offline': 0.5})
    buf = buffer_lib.add_transition(buf, {k: np.ones_like(v[0]) for k, v in ds.items()})
    np.testing.assert_array_equal(np.asarray(buf['data']['rewards'])[:10], 0)  # no offline row overwritten
    rr = np.asarray(buffer_lib.sample(buf, jax.random.PRNGKey(0), 100, mix_offline=0.5)['rewards'])
    assert np.all(rr[:50] == 0) and np.all(rr[50:] == 1)  # the online half is the one online transition
    plain = make_online_buffer(task, types.SimpleNamespace(buffer_size=4), {})
    plain = buffer_lib.add_transition(plain, {k: np.ones_like(v[0]) for k, v in ds.items()})
    assert buffer_lib.capacity(plain) == 11 and float(plain['data']['rewards'][10]) == 1  # written after the data


def test_aggregate_q_and_gaussian_log_prob():
    qs = np.random.default_rng(0).normal(size=(4, 7))
    np.testing.assert_allclose(aggregate_q(jnp.asarray(qs), 'mean'), qs.mean(0), rtol=1e-6)
    np.testing.assert_allclose(aggregate_q(jnp.asarray(qs), 'min'), qs.min(0), rtol=1e-6)
    np.testing.assert_allclose(
        aggregate_q(jnp.asarray(qs), 'pessimistic', 0.5), qs.mean(0) - 0.5 * qs.std(0), rtol=1e-5
    )
    rng = np.random.default_rng(1)
    mu, ls, a = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) * 0.3, rng.normal(size=(5, 3))
    ref = stats.multivariate_normal.logpdf
    expected = [ref(a[i], mu[i], np.diag(np.exp(2 * ls[i]))) for i in range(5)]
    np.testing.assert_allclose(gaussian_log_prob(jnp.asarray(mu), jnp.asarray(ls), jnp.asarray(a)), expected, rtol=1e-5)


def test_expectile_loss_matches_definition():
    d = np.linspace(-2, 2, 9)
    expected = np.array([(0.9 if x > 0 else 0.1) * x**2 for x in d])
    np.testing.assert_allclose(iql.expectile_loss(jnp.asarray(d), 0.9), expected, rtol=1e-6)


def test_euler_flow_linear_field_matches_explicit_loop():
    # dx/dt = -x + 1 with 10 Euler steps: x_{k+1} = x_k + (1 - x_k)/10 => x_10 = 1 + (x0 - 1) * 0.9^10
    x0 = jnp.array([[0.0, -0.5]])
    out = euler_flow(lambda x, t: 1.0 - x, x0, 10)
    np.testing.assert_allclose(out, np.clip(1 + (np.asarray(x0) - 1) * 0.9**10, -1, 1), rtol=1e-6)


def test_critic_td_loss_matches_numpy():
    config = agents.get_config('fql')
    config.actor_hidden_dims = config.value_hidden_dims = (8,)
    learner = Learner(agents.get_agent('fql'), config, 3, 2)
    state = learner.init(jax.random.PRNGKey(0))
    ds = {k: jnp.asarray(v) for k, v in _dataset(n=6).items()}
    ds['masks'] = jnp.asarray([1, 0, 1, 1, 0, 1], jnp.float32)
    next_a = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (6, 2)), jnp.float32)
    loss, _ = critic_td_loss(learner, state.params, state, ds, next_a)
    q_next = np.asarray(learner.apply('critic', state.target_params, ds['next_observations'], next_a)).mean(0)
    y = np.asarray(ds['rewards']) + 0.99 * np.asarray(ds['masks']) * q_next
    q = np.asarray(learner.apply('critic', state.params, ds['observations'], ds['actions']))
    np.testing.assert_allclose(float(loss), np.mean((q - y[None]) ** 2), rtol=1e-5)


@pytest.mark.parametrize('name', ['iql', 'rebrac', 'fql'])
def test_scan_equals_loop_of_updates(name):
    """The fused lax.scan of k steps equals k separate update calls with the same RNG stream; with metrics='step' its
    metrics are those of the k-th call (ReBRAC: the actor's are NaN, not logged, when the k-th is critic-only)."""
    config = agents.get_config(name)
    config.actor_hidden_dims = config.value_hidden_dims = (16,)
    config.batch_size = 8
    learner = Learner(agents.get_agent(name), config, 3, 2)
    buf = buffer_lib.make_buffer(_dataset(n=40))
    s0 = learner.init(jax.random.PRNGKey(0))
    fused, _ = learner.train_steps(s0, buf, 4)
    s, infos = s0, []
    for _ in range(4):
        s, info = learner.train_steps(s, buf, 1)
        infos.append(jax.device_get(info))
    for a, b in zip(jax.tree_util.tree_leaves(fused.params), jax.tree_util.tree_leaves(s.params)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    assert int(fused.step) == 4
    for k in (3, 4) if name == 'rebrac' else (4,):
        _, own = learner.train_steps(s0, buf, k, 'step')
        _, mean = learner.train_steps(s0, buf, k)
        assert own.keys() == infos[k - 1].keys()
        for key, v in own.items():
            np.testing.assert_allclose(v, infos[k - 1][key], rtol=1e-4, atol=1e-6, err_msg=key)
        assert float(mean['critic/loss']) != pytest.approx(float(own['critic/loss']), rel=1e-4)
    if name == 'rebrac':  # steps count from 1, the actor updates on even ones
        assert any(np.isnan(v) for v in infos[2].values()) and not any(np.isnan(v) for v in infos[3].values())
    with pytest.raises(ValueError, match='chunk_mean'):
        learner.train_steps(s0, buf, 1, 'last')


def test_rebrac_actor_delay_freezes_targets_on_critic_only_steps():
    config = agents.get_config('rebrac')
    config.actor_hidden_dims = config.value_hidden_dims = (8,)
    config.batch_size = 8
    learner = Learner(agents.get_agent('rebrac'), config, 3, 2)
    buf = buffer_lib.make_buffer(_dataset(n=40))
    s0 = learner.init(jax.random.PRNGKey(0))
    # The released loop counts gradient steps from 1 and updates the actor and targets when the count is even.
    s1, _ = learner.train_steps(s0, buf, 1)  # 1st step: critic only, targets frozen
    s2, _ = learner.train_steps(s1, buf, 1)  # 2nd step: full update, targets move
    s3, _ = learner.train_steps(s2, buf, 1)  # 3rd step: critic only again

    def moved(a, b):
        return any(not np.allclose(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))

    assert not moved(s0.target_params, s1.target_params)
    assert moved(s1.target_params, s2.target_params)
    assert not moved(s2.target_params, s3.target_params)
    # A critic-only step gives the actor a zero gradient: before any actor step Adam leaves it in place; after one,
    # Adam's momentum still moves it (the released code applies its one optimizer to zero actor gradients alike).
    assert not moved(s0.params['actor'], s1.params['actor'])
    assert moved(s2.params['actor'], s3.params['actor'])


def test_toy_reward_and_target():
    # reward in unscaled coordinates: at center k, exp(r) ~ k/7 (plus small neighbour leakage)
    centers = toy.CENTERS / toy.SCALE
    r = toy.reward(centers)
    assert np.all(np.diff(r[1:]) > 0) and r[0] < np.log(0.02)
    np.testing.assert_allclose(np.exp(r[7]), 1.0 - 0.0, atol=0.02)
    occ = toy.target_occupancy()
    assert abs(occ.sum() - 1) < 1e-9 and np.argmax(occ) == 7 and occ[0] < 0.01
    # behavior samples: uniform occupancy, TV to target equals 0.5 * sum |1/8 - occ|
    a = toy.sample_behavior(80_000, np.random.default_rng(0))
    m = toy.metrics(a)
    assert abs(m['tv_distance'] - 0.5 * np.abs(1 / 8 - occ).sum()) < 0.01
    assert m['outlier_fraction'] < 0.02
