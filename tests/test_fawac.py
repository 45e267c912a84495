"""FAWAC against float64 numpy references of the released QAM code's formulas (ColinQiyangLi/qam @ f93efd2,
agents/fawac.py: critic_loss, actor_loss, sample_actions), the paper's value-target switch, acting, presets and
validation. The network outputs come from learner.apply; every formula around them is redone in numpy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import fawac
from agents.common.trainer import Learner, TrainState

B, OBS, ACT, H = 12, 3, 2, 2  # batch, observation dim, environment action dim, chunk length (flattened: ACT * H)


def _np(x):
    return np.asarray(x, np.float64)


def _filled(tree, phase):
    """Deterministic parameter values of the shapes of `tree` (no random initializer to compile: the tests need
    parameters, not initial ones)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    values = [
        jnp.asarray(0.4 * np.sin(1.3 * np.arange(np.prod(x.shape)) + phase + i).reshape(x.shape), jnp.float32)
        for i, x in enumerate(leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, values)


def make_learner(name, **overrides):
    """A tiny learner (16 x 16 networks) on chunks of H, and a state with current and target parameters that
    differ."""
    config = agents.get_config(name)
    config.actor_hidden_dims = config.value_hidden_dims = (16, 16)
    config.horizon_length = H
    for k, v in overrides.items():
        config[k] = v
    learner = Learner(agents.get_agent(name), config, OBS, ACT)
    shapes = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
    params = _filled(shapes.params, 0.0)
    targets = _filled(shapes.target_params, 2.0)
    return learner, TrainState(params, targets, None, jax.random.PRNGKey(0), jnp.zeros((), jnp.int32))


def make_batch(seed=0):
    """A chunked batch with some episode ends (masks 0) and some invalid chunks (valid 0)."""
    rng = np.random.default_rng(seed)
    batch = dict(
        observations=rng.normal(size=(B, OBS)),
        actions=rng.uniform(-1, 1, (B, ACT * H)),
        rewards=rng.normal(size=B),
        masks=(np.arange(B) % 4 != 0).astype(float),
        next_observations=rng.normal(size=(B, OBS)),
        valid=(np.arange(B) % 5 != 3).astype(float),
    )
    return {k: jnp.asarray(v, jnp.float32) for k, v in batch.items()}


def loss_and_grad(agent, learner, state, batch, key, part):
    """One compiled call: the agent's loss and info at state.params, and the gradient of the info entry `part` with
    respect to all parameters."""

    def run(state):
        def f(p):
            loss, info = agent.loss(learner, p, state, batch, key)
            return info[part], (loss, info)

        return jax.grad(f, has_aux=True)(state.params)

    grad, out = jax.jit(run)(state)
    return out, grad


def is_zero(tree):
    return all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(tree))


def euler_reference(learner, params, observations, noises):
    """clip(x_T), x_{i+1} = x_i + v(s, x_i, i/T)/T from x_0 = noises: the released compute_flow_actions, in float64
    around the network's outputs."""
    T = learner.config.flow_steps
    x = _np(noises)
    for i in range(T):
        t = np.full((*x.shape[:-1], 1), i / T)
        x = x + _np(learner.apply('actor', params, observations, jnp.asarray(x, jnp.float32), jnp.asarray(t))) / T
    return np.clip(x, -1.0, 1.0)


def critic_reference(learner, state, batch, next_actions):
    """Released critic_loss: TD of every head onto r + gamma^h m (mean - rho std) of the target heads, times valid.
    Returns (loss, TD target)."""
    cfg = learner.config
    next_qs = _np(learner.apply('critic', state.target_params, batch['next_observations'], jnp.asarray(next_actions)))
    y = _np(batch['rewards']) + cfg.discount**H * _np(batch['masks']) * (next_qs.mean(0) - cfg.rho * next_qs.std(0))
    qs = _np(learner.apply('critic', state.params, batch['observations'], batch['actions']))
    return np.mean((qs - y) ** 2 * _np(batch['valid'])), y


def flow_matching_draws(rng, shape):
    """x_0 and t as agents.common.networks.flow_matching_loss draws them from its key."""
    x_rng, t_rng = jax.random.split(rng)
    return _np(jax.random.normal(x_rng, shape)), _np(jax.random.uniform(t_rng, (shape[0], 1)))


@pytest.fixture(scope='module')
def setup():
    """The learner, a state whose V is shifted so that about half of the batch's weights hit the clip at 100, and the
    batch."""
    learner, state = make_learner('fawac', inv_temp=10.0, flow_steps=3)  # the released 10: defaults test
    b = make_batch()
    q = _np(learner.apply('critic', state.params, b['observations'], b['actions'])).mean(0)
    adv = q - _np(learner.apply('value', state.params, b['observations']))
    shift = np.median(adv) - math.log(100.0) / 10.0  # V + shift puts the median advantage at the clip
    value = jax.tree_util.tree_map(lambda x: x, state.params['value'])
    value['MLP_0']['Dense_2']['bias'] = value['MLP_0']['Dense_2']['bias'] + jnp.float32(shift)
    return learner, state.replace(params={**state.params, 'value': value}), b


def test_losses_match_the_released_formulas_and_the_weights_carry_no_gradient(setup):
    learner, state, b = setup
    key = jax.random.PRNGKey(1)
    (loss, info), grad = loss_and_grad(fawac, learner, state, b, key, 'actor/loss')
    next_rng, fm_rng = jax.random.split(key)
    obs, a, valid = b['observations'], _np(b['actions']), _np(b['valid'])
    A = ACT * H

    next_a = euler_reference(learner, state.params, b['next_observations'], jax.random.normal(next_rng, (B, A)))
    critic_loss, _ = critic_reference(learner, state, b, next_a)
    # released value loss: V onto every target head at the data action, (K, B) against (B,)
    v = _np(learner.apply('value', state.params, obs))
    q_t = _np(learner.apply('critic', state.target_params, obs, b['actions']))
    value_loss = np.mean((q_t - v) ** 2 * valid)
    # released actor loss: flow matching weighted by min(exp(inv_temp (mean_k Q_k - V)), 100), current networks
    x0, t = flow_matching_draws(fm_rng, (B, A))
    x_t = (1 - t) * x0 + t * a
    pred = _np(learner.apply('actor', state.params, obs, jnp.asarray(x_t, jnp.float32), jnp.asarray(t, jnp.float32)))
    adv = _np(learner.apply('critic', state.params, obs, b['actions'])).mean(0) - v
    w = np.minimum(np.exp(adv * 10.0), 100.0)
    assert 0 < np.sum(w == 100.0) < B  # the clip at 100 is exercised, and not on every sample
    actor_loss = np.mean(np.mean((pred - (a - x0)) ** 2, -1) * w * valid)

    np.testing.assert_allclose(float(info['critic/loss']), critic_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['value/loss']), value_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['actor/loss']), actor_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['actor/adv']), adv.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(loss), critic_loss + value_loss + actor_loss, rtol=1e-5)
    # The weights come from the current networks without gradient (released: network.select(...) without
    # grad_params): the actor loss reaches the policy only.
    assert is_zero(grad['critic']) and is_zero(grad['value']) and not is_zero(grad['actor'])


def test_value_target_td_is_the_papers_eq_76(setup):
    learner, state, b = setup
    td = Learner(fawac, learner.config.copy_and_resolve_references(), OBS, ACT)
    td.config.value_target = 'td'
    next_a = np.clip(np.random.default_rng(5).normal(size=(B, ACT * H)), -1, 1)
    got, _ = jax.jit(lambda s: fawac.value_loss(td, s.params, s, b, jnp.asarray(next_a, jnp.float32)))(state)
    _, y = critic_reference(learner, state, b, next_a)
    v = _np(learner.apply('value', state.params, b['observations']))
    np.testing.assert_allclose(float(got), np.mean((y - v) ** 2 * _np(b['valid'])), rtol=1e-5)


def test_acting_is_the_clipped_euler_flow_and_stochastic_at_temperature_zero(setup):
    learner, state, b = setup
    obs, key = b['observations'], jax.random.PRNGKey(3)
    acts = _np(learner.act(state.params, obs, key, 0.0))
    assert acts.shape == (B, ACT * H) and np.all(np.abs(acts) <= 1.0)
    ref = euler_reference(learner, state.params, obs, jax.random.normal(key, (B, ACT * H)))
    np.testing.assert_allclose(acts, ref, rtol=1e-5, atol=1e-6)
    # the released evaluation samples (no temperature): another key, other actions, at temperature 0 too
    assert not np.allclose(acts, _np(learner.act(state.params, obs, jax.random.PRNGKey(4), 0.0)))
    assert learner.targets == ('critic',)  # released: only target_critic


def _resolved(agent, env, preset):
    import types

    from runner.experiment import resolve_config

    task = types.SimpleNamespace(name=env, extra={})
    return resolve_config(agents.get_agent(agent), agents.get_config(agent), task, preset, set())[0]


def test_released_defaults_and_presets():
    c = agents.get_config('fawac')
    assert (c.num_critics, c.q_agg, c.rho, c.inv_temp, c.flow_steps, c.value_target) == (
        10,
        'pessimistic',
        0.5,
        10.0,
        10,
        'critic',
    )
    assert (c.grad_clip_norm, c.grad_clip_value, c.layer_norm, c.actor_layer_norm, c.tau) == (0, 0, True, False, 0.005)
    # QAM protocol: reproduce.py's inv_temp (QAM Table 4 has no FAWAC column), chunks of 5 on manipulation
    p = _resolved('fawac', 'puzzle-3x3-play-sparse-singletask-task1-v0', 'qam')
    assert (p.inv_temp, p.horizon_length, p.num_critics, p.rho, p.discount) == (0.8, 5, 10, 0.5, 0.99)
    h = _resolved('fawac', 'humanoidmaze-medium-navigate-singletask-task1-v0', 'qam')
    assert (h.inv_temp, h.horizon_length, h.rho, h.discount) == (6.4, 1, 0.0, 0.995)
    assert _resolved('fawac', 'scene-play-sparse-singletask-task2-v0', 'paper').to_dict() == (
        _resolved('fawac', 'scene-play-sparse-singletask-task2-v0', 'qam').to_dict()
    )
    # FAV protocol: Table 6's FAWAC alpha as inv_temp, a 2-head critic, FAV's discounts
    f = _resolved('fawac', 'cube-double-play-singletask-task2-v0', 'fav')
    assert (f.inv_temp, f.num_critics, f.horizon_length, f.discount, f.rho) == (0.3, 2, 1, 0.99, 0.5)
    s = _resolved('fawac', 'antsoccer-arena-navigate-singletask-task4-v0', 'fav')
    assert (s.inv_temp, s.discount) == (10.0, 0.995)


@pytest.mark.parametrize(
    'key, value, match',
    [
        ('inv_temp', -1.0, 'inv_temp'),
        ('inv_temp', math.inf, 'inv_temp'),
        ('flow_steps', 0, 'flow_steps'),
        ('value_target', 'expectile', 'value_target'),
    ],
)
def test_validate_rejects_bad_values(key, value, match):
    config = agents.get_config('fawac')
    config[key] = value
    with pytest.raises(ValueError, match=match):
        fawac.validate(config)
