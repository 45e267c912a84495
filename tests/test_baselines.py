"""IQL, ReBRAC and FQL against float64 numpy references of the FQL code base's formulas (seohongpark/fql
agents/iql.py, rebrac.py, fql.py, utils/networks.py), and their presets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import fql, iql, rebrac
from agents.common.trainer import Learner
from tests.test_core import _dataset


def _learner(name, **overrides):
    config = agents.get_config(name)
    config.actor_hidden_dims = config.value_hidden_dims = (16, 16)
    for k, v in overrides.items():
        config[k] = v
    learner = Learner(agents.get_agent(name), config, 3, 2)
    return learner, learner.init(jax.random.PRNGKey(0))


def _batch(n=12):
    ds = _dataset(n=n, episode_len=4)
    ds['masks'] = np.where(np.arange(n) % 3 == 0, 0.0, 1.0).astype(np.float32)
    ds['actions'] = np.clip(ds['actions'] * 1.5, -1, 1)
    ds['next_actions'] = np.roll(ds['actions'], -1, axis=0)
    ds['next_actions_in_episode'] = ds['actions'][::-1].copy()
    return {k: jnp.asarray(v) for k, v in ds.items()}


def _np(x):
    return np.asarray(x, np.float64)


def _agg(qs, how):
    return qs.min(0) if how == 'min' else qs.mean(0)


@pytest.mark.parametrize('q_agg', ['min', 'mean'])
def test_iql_losses_match_the_released_formulas(q_agg):
    learner, state = _learner('iql', q_agg=q_agg, alpha=3.0)
    # Move the parameters off their initialization so that the targets and the current networks differ.
    state = state.replace(
        params=jax.tree_util.tree_map(lambda p: p + 0.1 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), state.params)
    )
    b = _batch()
    loss, info = iql.loss(learner, state.params, state, b, jax.random.PRNGKey(1))

    obs, act = b['observations'], b['actions']
    q_t = _np(learner.apply('critic', state.target_params, obs, act))
    q_c = _np(learner.apply('critic', state.params, obs, act))
    v = _np(learner.apply('value', state.params, obs))
    next_v = _np(learner.apply('value', state.params, b['next_observations']))
    mu = _np(learner.apply('actor', state.params, obs)[0])
    a, r, m = _np(act), _np(b['rewards']), _np(b['masks'])

    diff = _agg(q_t, q_agg) - v
    value_loss = np.mean(np.where(diff >= 0, 0.9, 0.1) * diff**2)
    y = r + 0.99 * m * next_v
    critic_loss = np.mean((q_c[0] - y) ** 2 + (q_c[1] - y) ** 2)  # summed over the two heads
    w = np.minimum(np.exp(3.0 * (_agg(q_c, q_agg) - v)), 100.0)
    log_prob = np.sum(-0.5 * (a - mu) ** 2 - 0.5 * np.log(2 * np.pi), -1)  # N(a; mu, 1), mu unsquashed
    actor_loss = -np.mean(w * log_prob)

    np.testing.assert_allclose(float(info['value/loss']), value_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['critic/loss']), critic_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['critic/target_mean']), y.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(info['actor/loss']), actor_loss, rtol=1e-5)
    np.testing.assert_allclose(float(loss), value_loss + critic_loss + actor_loss, rtol=1e-5)


def test_iql_actor_is_unsquashed_and_acts_with_the_clipped_mean():
    learner, state = _learner('iql')
    params = dict(state.params)
    # Scale the mean layer up so that the mean leaves [-1, 1]: a tanh mean could not.
    actor = jax.tree_util.tree_map(lambda x: x, params['actor'])
    dense = [k for k in actor if k.startswith('Dense')][-1]
    actor[dense] = {'kernel': actor[dense]['kernel'] * 1e3, 'bias': actor[dense]['bias'] + 3.0}
    params['actor'] = actor
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(64, 3)), jnp.float32)
    mu = np.asarray(learner.apply('actor', params, obs)[0])
    assert np.abs(mu).max() > 1.5
    acts = np.asarray(iql.sample_actions(learner, params, obs, jax.random.PRNGKey(0), temperature=0.0))
    np.testing.assert_allclose(acts, np.clip(mu, -1, 1), rtol=1e-6)


@pytest.mark.parametrize('name', ['iql', 'rebrac'])
def test_actor_mean_layer_starts_at_scale_1e_2(name):
    """variance_scaling(1e-2, fan_avg, uniform) on the mean layer, 1.0 on the hidden layers (utils/networks.py)."""
    learner, state = _learner(name)
    actor = state.params['actor']
    dense = sorted((k for k in actor if k.startswith('Dense')), key=lambda k: int(k.split('_')[-1]))
    w = np.asarray(actor[dense[-1]]['kernel'])
    limit = np.sqrt(3 * 1e-2 / ((w.shape[0] + w.shape[1]) / 2))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.5 * limit
    for k in dense[:-1]:
        wk = np.asarray(actor[k]['kernel'])
        assert np.abs(wk).max() > 0.5 * np.sqrt(3 / ((wk.shape[0] + wk.shape[1]) / 2))


@pytest.mark.parametrize('q_agg, episode_aware', [('min', False), ('mean', True)])
def test_rebrac_losses_match_the_released_formulas(q_agg, episode_aware):
    learner, state = _learner(
        'rebrac', q_agg=q_agg, alpha_actor=0.3, alpha_critic=0.2, episode_aware_next_actions=episode_aware
    )
    b = _batch()
    rng = jax.random.PRNGKey(3)
    state = state.replace(step=jnp.asarray(1, jnp.int32))  # the 2nd gradient step: a full (actor) update
    loss, info = rebrac.loss(learner, state.params, state, b, rng)

    obs, nobs = b['observations'], b['next_observations']
    na = _np(learner.apply('actor', state.target_params, nobs)[0])
    noise = np.clip(_np(jax.random.normal(rng, na.shape)) * 0.2, -0.5, 0.5)
    na = np.clip(na + noise, -1, 1)
    nq = _agg(_np(learner.apply('critic', state.target_params, nobs, jnp.asarray(na, jnp.float32))), q_agg)
    data_next = _np(b['next_actions_in_episode'] if episode_aware else b['next_actions'])
    nq = nq - 0.2 * np.sum((na - data_next) ** 2, -1)
    y = _np(b['rewards']) + 0.99 * _np(b['masks']) * nq
    qs = _np(learner.apply('critic', state.params, obs, b['actions']))
    critic_loss = np.mean((qs - y) ** 2)
    pi = _np(learner.apply('actor', state.params, obs)[0])
    q = _agg(_np(learner.apply('critic', state.params, obs, jnp.asarray(pi, jnp.float32))), q_agg)
    q_loss = -np.mean(q / np.abs(q).mean())
    bc = np.mean(np.sum((pi - _np(b['actions'])) ** 2, -1))

    np.testing.assert_allclose(float(info['critic/loss']), critic_loss, rtol=2e-5)
    np.testing.assert_allclose(float(info['actor/q_loss']), q_loss, rtol=2e-5)
    np.testing.assert_allclose(float(info['actor/loss']), q_loss + 0.3 * bc, rtol=2e-5)
    np.testing.assert_allclose(float(loss), critic_loss + q_loss + 0.3 * bc, rtol=2e-5)
    # The 1st gradient step (step 0) is critic-only: the trainer calls loss(actor=False) there.
    assert [bool(rebrac.actor_step(learner.config, jnp.int32(t))) for t in range(4)] == [False, True, False, True]
    loss0, info0 = rebrac.loss(learner, state.params, state, b, rng, actor=False)
    np.testing.assert_allclose(float(loss0), critic_loss, rtol=2e-5)
    assert not any(k.startswith('actor/') for k in info0)


class _MaskedReBRAC:
    """ReBRAC as it ran before critic-only steps were skipped: the actor loss computed on every step and multiplied
    by 0 on the steps between actor updates."""

    def __getattr__(self, name):
        if name == 'actor_step':
            raise AttributeError(name)
        return getattr(rebrac, name)

    def loss(self, learner, params, state, batch, rng):
        _, info = rebrac.loss(learner, params, state, batch, rng, actor=True)
        weight = rebrac.actor_step(learner.config, state.step).astype(jnp.float32)
        return info['critic/loss'] + weight * info['actor/loss'], info


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_rebrac_skips_the_actor_on_critic_only_steps_with_bit_identical_results():
    from agents.common import buffer as buffer_lib

    learner, _ = _learner('rebrac', alpha_actor=0.3, alpha_critic=0.2, batch_size=8)
    masked = Learner(_MaskedReBRAC(), learner.config, 3, 2)
    buf = buffer_lib.make_buffer(_dataset(n=64, episode_len=8))
    for k in (learner, masked):
        k.state = k.init(jax.random.PRNGKey(0))
    # step by step: the same parameters, targets and optimizer state, bit for bit; actor metrics on actor steps only
    for t in range(2):
        infos = {}
        for k in (learner, masked):
            k.state, infos[k] = k.train_steps(k.state, buf, 1)
        for a, b in zip(_leaves(learner.state), _leaves(masked.state)):
            np.testing.assert_array_equal(a, b)
        assert float(infos[learner]['critic/loss']) == float(infos[masked]['critic/loss'])
        if t == 1:
            assert float(infos[learner]['actor/loss']) == float(infos[masked]['actor/loss'])
        else:
            assert np.isnan(float(infos[learner]['actor/loss']))  # not computed: not logged
    # fused (lax.scan): still bit for bit
    new, _ = learner.train_steps(learner.state, buf, 5)
    old, _ = masked.train_steps(masked.state, buf, 5)
    for a, b in zip(_leaves(new), _leaves(old)):
        np.testing.assert_array_equal(a, b)
    # seeds vmapped (--num_seeds): a branch per step too; equal to float rounding, as vmapped seeds are to separate runs
    seeds = learner.init_seeds(jax.random.split(jax.random.PRNGKey(1), 2))
    new, info = learner.train_steps_seeds(seeds, buf, 3)
    old, _ = masked.train_steps_seeds(seeds, buf, 3)
    for a, b in zip(_leaves(new), _leaves(old)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    assert np.all(np.isfinite(np.asarray(info['actor/loss'])))  # one actor step among the three (steps 0-2)
    # the compiled programs branch (a cond, not a select of both sides), for one seed and for vmapped seeds
    assert ' cond[' in str(jax.make_jaxpr(lambda s: learner._scan(s, buf, 2))(learner.state))
    assert ' cond[' in str(jax.make_jaxpr(lambda s: learner.train_steps_seeds.__wrapped__(learner, s, buf, 2))(seeds))


def test_released_defaults():
    """The defaults the FQL code base's get_config() ships (its README's commands set the rest per task)."""
    r = agents.get_config('rebrac')
    assert (r.alpha_actor, r.alpha_critic, r.actor_freq, r.q_agg, r.actor_fc_scale) == (0.0, 0.0, 2, 'min', 0.01)
    i = agents.get_config('iql')
    assert (i.alpha, i.expectile, i.q_agg, i.const_std, i.actor_fc_scale) == (10.0, 0.9, 'min', True, 0.01)
    f = agents.get_config('fql')
    assert (f.alpha, f.q_agg, f.flow_steps, f.normalize_q_loss) == (10.0, 'mean', 10, False)
    for c in (r, i, f):
        assert (c.lr, c.batch_size, c.discount, c.tau, c.layer_norm, c.actor_layer_norm) == (
            3e-4,
            256,
            0.99,
            0.005,
            True,
            False,
        )


@pytest.mark.parametrize(
    'env_name, q_agg, discount',
    [
        ('antmaze-large-navigate-singletask-task1-v0', 'min', 0.99),
        ('antmaze-giant-navigate-singletask-v0', 'min', 0.995),
        ('cube-single-play-singletask-task2-v0', None, 0.99),
        ('humanoidmaze-medium-navigate-singletask-task1-v0', None, 0.995),
    ],
)
def test_fql_preset_uses_min_aggregation_where_the_released_commands_do(env_name, q_agg, discount):
    values = fql.paper_preset(env_name)
    assert values.get('q_agg') == q_agg and values['discount'] == discount
