"""CGQL (simple / MSE / Linex modes) against float64 numpy references of the released formulas (ColinQiyangLi/qam
@ f93efd2 agents/cgql.py: critic_loss, actor_loss, compute_flow_actions, sample_actions), its presets
(experiments/reproduce.py) and validation."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import cgql
from agents.common.trainer import Learner
from tests.test_core import _dataset


def _fill(state, seed):
    """Parameters drawn in numpy for the shapes of `state` (jax.eval_shape of Learner.init): kernels ~ N(0, 1/fan_in),
    biases ~ N(0, 0.1^2), LayerNorm scales ~ 1 + N(0, 0.1^2). Initializing a 10-head ensemble eagerly compiles
    dozens of small programs, most of these tests' time otherwise."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = jax.tree_util.keystr(path)
        if 'kernel' in name:
            x = rng.normal(size=s.shape) / np.sqrt(s.shape[-2])
        else:
            x = ('scale' in name) + 0.1 * rng.normal(size=s.shape)
        return jnp.asarray(x, s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, state)


def _learner(name, horizon=1, **overrides):
    """A learner of tiny networks (16, 16) for 3-d observations and 2-d (chunked) actions, with current parameters
    and (different) targets."""
    config = agents.get_config(name)
    config.actor_hidden_dims = config.value_hidden_dims = (16, 16)
    config.horizon_length = horizon
    for k, v in overrides.items():
        config[k] = v
    cgql.validate(config)
    learner = Learner(agents.get_agent(name), config, 3, 2 // horizon)
    shapes = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return learner, zeros.replace(params=_fill(shapes.params, 0), target_params=_fill(shapes.target_params, 1))


def _batch(action_dim, n=12):
    ds = _dataset(n=n, act_dim=action_dim, episode_len=4)
    ds['masks'] = np.where(np.arange(n) % 3 == 0, 0.0, 1.0).astype(np.float32)
    ds['valid'] = np.where(np.arange(n) % 5 == 4, 0.0, 1.0).astype(np.float32)  # chunks running past an episode end
    return {k: jnp.asarray(v) for k, v in ds.items()}


def _np(x):
    return np.asarray(x, np.float64)


def _q(learner, params, obs, actions, times):
    """Critic heads (K, *batch) at [s; a; u], float64."""
    x = np.concatenate([_np(actions), _np(times)], -1).astype(np.float32)
    return _np(learner.apply('critic', params, obs, jnp.asarray(x)))


def _policy_stand_in(learner, actor_params, critic_params, observations, rng):
    """A cheap stand-in for cgql.policy_actions (the guided flow, tested below) that depends on both parameter sets."""
    z = jax.random.normal(rng, (*observations.shape[:-1], learner.action_dim))
    t = jnp.ones_like(z[..., :1])
    q = cgql.critic_q(learner, critic_params, observations, z, t).mean(0)[..., None]
    return jnp.clip(learner.apply('actor', actor_params, observations, z, t) + 0.1 * q, -1, 1)


@pytest.mark.parametrize('name, horizon', [('cgql', 1), ('cgql_mse', 2), ('cgql_linex', 1)])
def test_losses_match_the_released_formulas(name, horizon, monkeypatch):
    monkeypatch.setattr(cgql, 'policy_actions', _policy_stand_in)
    learner, state = _learner(name, horizon, inv_temp=3.0, noisy_coef=0.3, isd_clip=0.5, rho=0.7)
    cfg = learner.config
    b = _batch(learner.action_dim)
    rng = jax.random.PRNGKey(1)
    (loss, info), grads = jax.jit(jax.value_and_grad(lambda p, s, b, r: cgql.loss(learner, p, s, b, r), has_aux=True))(
        state.params, state, b, rng
    )

    next_rng, fm_rng, u_rng, z_rng = jax.random.split(rng, 4)
    obs, nobs = b['observations'], b['next_observations']
    a, r, m, valid = _np(b['actions']), _np(b['rewards']), _np(b['masks']), _np(b['valid'])
    n, dim = a.shape
    one = np.ones((n, 1))
    # critic_loss: next actions of the guided policy with the target flow and the current critic (target_guidance)
    na = _policy_stand_in(learner, state.target_params, state.params, nobs, next_rng)
    next_qs = _q(learner, state.target_params, nobs, na, one)
    next_q = next_qs.mean(0) - 0.7 * next_qs.std(0)
    y = r + 0.99**horizon * m * next_q
    qs = _q(learner, state.params, obs, a, one)
    critic_loss = np.mean((qs - y) ** 2 * valid)
    total = critic_loss
    np.testing.assert_allclose(float(info['critic/loss']), critic_loss, rtol=1e-5)
    if cfg.mode != 'simple':
        u = _np(jax.random.uniform(u_rng, (n, 1)))
        z = _np(jax.random.normal(z_rng, (n, dim)))
        q_noisy = _q(learner, state.params, obs, (1 - u) * z + u * a, u)
        q_target = _q(learner, state.target_params, obs, a, one)
        if cfg.mode == 'mse':
            per = (q_noisy - q_target) ** 2
        else:
            d = 3.0 * (q_target - q_noisy)
            assert (d > 0.5).any() and (d <= 0.5).any()  # both sides of the clip
            per = np.where(d > 0.5, d, np.exp(np.where(d > 0.5, 0.5, d)) + 3.0 * q_noisy)
            gap = (np.log(np.mean(np.exp(3.0 * q_noisy))) - np.log(np.mean(np.exp(3.0 * q_target)))) / 3.0
            np.testing.assert_allclose(float(info['critic/soft_gap']), gap, rtol=1e-4, atol=1e-6)
        noisy_loss = np.mean(per * valid)
        np.testing.assert_allclose(float(info['critic/noisy_loss']), noisy_loss, rtol=1e-5)
        total += 0.3 * noisy_loss
    else:
        assert 'critic/noisy_loss' not in info
    # actor_loss: flow matching, mean over the action dimensions, invalid samples as zeros
    x_rng, t_rng = jax.random.split(fm_rng)
    x0 = _np(jax.random.normal(x_rng, (n, dim)))
    t = _np(jax.random.uniform(t_rng, (n, 1)))
    x_t = jnp.asarray((1 - t) * x0 + t * a, jnp.float32)
    pred = _np(learner.apply('actor', state.params, obs, x_t, jnp.asarray(t, jnp.float32)))
    flow_loss = np.mean(np.mean((pred - (a - x0)) ** 2, -1) * valid)
    np.testing.assert_allclose(float(info['actor/flow_loss']), flow_loss, rtol=1e-5)
    np.testing.assert_allclose(float(loss), total + flow_loss, rtol=1e-5)

    # Gradient routing: the critic from the TD loss at u = 1 (fixed target y: target critic, no gradient through the
    # guided next actions) plus noisy_coef times the noisy regression onto the fixed target heads; the flow from flow
    # matching alone.
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731

    def critic_ref(p):
        q = cgql.critic_q(learner, p, obs, f32(a), f32(one))
        out = jnp.mean((q - f32(y)) ** 2 * f32(valid))
        if cfg.mode != 'simple':
            qn = cgql.critic_q(learner, p, obs, f32((1 - u) * z + u * a), f32(u))
            if cfg.mode == 'mse':
                per_j = (qn - f32(q_target)) ** 2
            else:
                d = 3.0 * (f32(q_target) - qn)
                per_j = jnp.where(d > 0.5, d, jnp.exp(jnp.where(d > 0.5, 0.5, d)) + 3.0 * qn)
            out = out + 0.3 * jnp.mean(per_j * f32(valid))
        return out

    def flow_ref(p):
        pred_j = learner.apply('actor', p, obs, x_t, f32(t))
        return jnp.mean(jnp.mean((pred_j - f32(a - x0)) ** 2, -1) * f32(valid))

    for net, ref in [('critic', critic_ref), ('actor', flow_ref)]:
        want = jax.grad(ref)(state.params)[net]
        for g, w in zip(jax.tree_util.tree_leaves(grads[net]), jax.tree_util.tree_leaves(want), strict=True):
            np.testing.assert_allclose(_np(g), _np(w), rtol=1e-4, atol=1e-6, err_msg=net)


@pytest.mark.parametrize('mode', ['simple', 'mse'])
def test_guided_step_is_the_released_rule(mode):
    """Two Euler steps: u = 0 unguided, then at u = 1/2 v_beta + c (tau (1 - u) grad_a Qbar(s, a, u') + a) / u with
    u' = 1 (simple) or u (mse / linex), clipped at the end only."""
    learner, state = _learner('cgql', mode=mode, flow_steps=2, inv_temp=3.0, guidance_coef=0.5)
    p = state.params
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    rng = jax.random.PRNGKey(2)
    got = _np(cgql.sample_actions(learner, p, obs, rng))

    z = _np(jax.random.normal(rng, (6, 2)))
    a1 = z + _np(learner.apply('actor', p, obs, jnp.asarray(z, jnp.float32), jnp.zeros((6, 1)))) / 2
    a1_32 = jnp.asarray(a1, jnp.float32)
    v = _np(learner.apply('actor', p, obs, a1_32, jnp.full((6, 1), 0.5)))
    u = jnp.full((6, 1), 1.0 if mode == 'simple' else 0.5)
    # the critic's action gradient (a network output): of the head-mean summed over the batch
    g = _np(jax.grad(lambda x: cgql.critic_q(learner, p, obs, x, u).mean(0).sum())(a1_32))
    want = np.clip(a1 + (v + 0.5 * (3.0 * 0.5 * g + a1) / 0.5) / 2, -1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    plain = np.clip(a1 + v / 2, -1, 1)
    assert np.abs(got - plain).max() > 1e-2  # the guidance acts
    assert np.abs(a1).max() > 1.0  # an intermediate action outside [-1, 1]: the reference does not clip it


def test_inv_temp_zero_is_the_behavior_flow_and_best_of_n_keeps_the_largest_q():
    from agents.common.networks import euler_flow

    obs = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)), jnp.float32)
    rng = jax.random.PRNGKey(3)
    learner, state = _learner('cgql_linex', inv_temp=0.0)
    p = state.params
    z = jax.random.normal(rng, (5, 2))
    plain = euler_flow(lambda x, t: learner.apply('actor', p, obs, x, t), z, 10)
    np.testing.assert_allclose(_np(cgql.sample_actions(learner, p, obs, rng)), _np(plain), rtol=1e-5, atol=1e-6)

    learner, state = _learner('cgql', best_of_n=4, inv_temp=1.0)
    p = state.params
    got = _np(cgql.sample_actions(learner, p, obs, rng))
    obs4 = jnp.repeat(obs[:, None], 4, axis=1)
    cands = cgql.guided_flow(learner, p, p, obs4, jax.random.normal(rng, (5, 4, 2)))
    q = _q(learner, p, obs4, cands, np.ones((5, 4, 1))).mean(0)  # current critic at u = 1
    assert len(set(np.argmax(q, -1))) > 1  # not always the same candidate
    np.testing.assert_allclose(got, _np(cands)[np.arange(5), np.argmax(q, -1)], rtol=1e-6)


def _resolved(agent, env, preset='qam'):
    from runner.experiment import resolve_config

    task = types.SimpleNamespace(name=env, extra={})
    return resolve_config(agents.get_agent(agent), agents.get_config(agent), task, preset, set())[0]


def test_qam_presets_are_reproduce_py():
    # cube-double: chunks of 5, rho 0.5; CGQL's guidance 0.01 (its MSE / Linex modes: 0.01 with noisy_coef 0.001)
    env = 'cube-double-play-singletask-task2-v0'
    c = _resolved('cgql', env)
    assert (c.mode, c.inv_temp, c.guidance_coef, c.noisy_coef) == ('simple', 10.0, 0.01, 0.001)  # noisy: default
    assert (c.num_critics, c.q_agg, c.rho, c.discount, c.horizon_length) == (10, 'pessimistic', 0.5, 0.99, 5)
    assert 'noisy_coef' not in cgql.qam_preset(env)
    # humanoidmaze-medium: rho 0, discount 0.995, no chunks; the modes differ (CGQL 0.01; MSE / Linex 0.1, 0.1)
    env = 'humanoidmaze-medium-navigate-singletask-task1-v0'
    c = _resolved('cgql', env)
    assert (c.mode, c.guidance_coef, c.rho, c.discount, c.horizon_length) == ('simple', 0.01, 0.0, 0.995, 1)
    for name, mode in [('cgql_mse', 'mse'), ('cgql_linex', 'linex')]:
        c = _resolved(name, env)
        assert (c.mode, c.inv_temp, c.guidance_coef, c.noisy_coef, c.rho) == (mode, 10.0, 0.1, 0.1, 0.0)
    # puzzle-3x3 (sparse): the MSE and Linex modes' noisy_coef differ (0.1 / 0.001)
    env = 'puzzle-3x3-play-sparse-singletask-task1-v0'
    assert (_resolved('cgql_mse', env).noisy_coef, _resolved('cgql_linex', env).noisy_coef) == (0.1, 0.001)
    assert _resolved('cgql_linex', env, 'paper').to_dict() == _resolved('cgql_linex', env).to_dict()
    assert agents.protocol_of('cgql_mse', 'paper') == 'qam'


def test_registry_and_released_defaults():
    for name, mode in [('cgql', 'simple'), ('cgql_mse', 'mse'), ('cgql_linex', 'linex')]:
        c = agents.get_config(name)
        assert (c.agent_name, c.mode) == (name, mode)
        assert (c.inv_temp, c.guidance_coef, c.noisy_coef, c.isd_clip, c.flow_steps, c.best_of_n) == (
            1.0,
            0.1,
            0.001,
            5.0,
            10,
            1,
        )
        assert (c.num_critics, c.q_agg, c.rho, c.target_guidance, c.grad_clip_norm) == (10, 'pessimistic', 0.5, True, 0)
    with pytest.raises(ValueError, match='Unknown CGQL variant'):
        cgql.get_config('linear')


@pytest.mark.parametrize(
    'key, value, msg',
    [
        ('mode', 'linear', 'mode must be one of'),
        ('flow_steps', 0, 'flow_steps'),
        ('best_of_n', 0, 'best_of_n'),
        ('inv_temp', -1.0, 'inv_temp'),
        ('guidance_coef', math.inf, 'guidance_coef'),
        ('noisy_coef', math.nan, 'noisy_coef'),
        ('isd_clip', 0.0, 'isd_clip'),
    ],
)
def test_validation_errors(key, value, msg):
    config = agents.get_config('cgql')
    cgql.validate(config)
    config[key] = value
    with pytest.raises(ValueError, match=msg):
        cgql.validate(config)


@pytest.mark.parametrize('target_guidance', [True, False])
def test_acting_integrates_the_polyak_target_flow_guided_by_the_current_critic(target_guidance):
    """Evaluation and online acting go through Learner.acting_params (released compute_flow_actions selects
    target_actor when target_guidance; the guidance is the current critic's)."""
    learner, state = _learner('cgql', target_guidance=target_guidance, flow_steps=2, inv_temp=3.0)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    rng = jax.random.PRNGKey(2)
    got = _np(learner.act(learner.acting_params(state), obs, rng, 0.0))
    flow = state.target_params if target_guidance else state.params
    want = cgql.policy_actions(learner, {**state.params, 'actor': flow['actor']}, state.params, obs, rng)
    np.testing.assert_allclose(got, np.clip(_np(want), -1, 1), rtol=1e-6, atol=1e-6)
    if target_guidance:
        assert np.abs(got - _np(learner.act(state.params, obs, rng, 0.0))).max() > 1e-3


def test_keys_of_other_modes_set_explicitly_are_refused():
    """noisy_coef acts in the mse / linex modes only, isd_clip in linex only: set where ignored, they are an error."""
    from configs.common import check_explicit_keys

    with pytest.raises(ValueError, match=r"--agent.noisy_coef has no effect unless mode='mse' or 'linex'"):
        check_explicit_keys(agents.get_config('cgql'), {'noisy_coef'})
    with pytest.raises(ValueError, match=r"--agent.isd_clip has no effect unless mode='linex'"):
        check_explicit_keys(agents.get_config('cgql_mse'), {'isd_clip'})
    check_explicit_keys(agents.get_config('cgql_mse'), {'noisy_coef'})
    check_explicit_keys(agents.get_config('cgql_linex'), {'noisy_coef', 'isd_clip'})
