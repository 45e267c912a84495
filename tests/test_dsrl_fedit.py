"""DSRL and FEdit against float64 numpy references of the released QAM code's formulas (ColinQiyangLi/qam @ f93efd2
agents/dsrl.py, agents/fedit.py, utils/networks.py TanhNormal): losses and gradient routing, acting, presets
(experiments/reproduce.py, FAV Table 6) and validation."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import dsrl, fedit
from agents.common.trainer import Learner
from configs.presets import PresetError
from runner.experiment import resolve_config

H = 2  # chunks of 2 actions of dim 1: the policies and critics act on dim 2, the TD target bootstraps with gamma^2
A = H
K = 3  # critic heads


def _np(x):
    return np.asarray(x, np.float64)


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def _learner(name, **overrides):
    config = agents.get_config(name)
    config.actor_hidden_dims = config.value_hidden_dims = (16, 16)
    config.num_critics, config.flow_steps, config.horizon_length = K, 3, H
    for k, v in overrides.items():
        config[k] = v
    agents.get_agent(name).validate(config)
    learner = Learner(agents.get_agent(name), config, 3, 1)
    state = learner.init(jax.random.PRNGKey(0))

    # Move the parameters off their initialization, the targets elsewhere, and the temperature off 1.
    def move(tree, f, scale):
        return jax.tree_util.tree_map(lambda p: p + scale * f(jnp.arange(p.size).reshape(p.shape)), tree)

    params = move(state.params, jnp.sin, 0.1)
    alpha = 'log_alpha' if name == 'dsrl' else 'edit_log_alpha'
    params[alpha] = {'log_value': jnp.asarray(0.3, jnp.float32)}
    targets = move(state.target_params, jnp.cos, 0.05)
    return learner, state.replace(params=params, target_params=targets)


def _batch(n=12):
    rng = np.random.default_rng(0)
    b = dict(
        observations=rng.normal(size=(n, 3)),
        actions=rng.uniform(-1, 1, (n, A)),
        rewards=rng.normal(size=n),
        masks=np.where(np.arange(n) % 3 == 0, 0.0, 1.0),
        valid=np.where(np.arange(n) % 4 == 1, 0.0, 1.0),  # chunks that run past an episode end
        next_observations=rng.normal(size=(n, 3)),
    )
    return {k: _f32(v) for k, v in b.items()}


def _flow(learner, params, obs, x):
    """The released Euler integration x += v(s, x, i/T)/T, T = flow_steps, then clip (float64 state)."""
    T = learner.config.flow_steps
    x = _np(x)
    for i in range(T):
        t = np.full((len(x), 1), i / T)
        x = x + _np(learner.apply('bc_flow', params, obs, _f32(x), _f32(t))) / T
    return np.clip(x, -1, 1)


def _tanh_normal(learner, name, params, inputs, key):
    """The released TanhNormal: (tanh(x), log pi(tanh x)), x = mu + std eps, log std clipped to [-20, 2]."""
    mu, log_std = (_np(v) for v in learner.apply(name, params, *inputs))
    eps = _np(jax.random.normal(key, mu.shape, jnp.float32))
    x = mu + np.exp(log_std) * eps
    log_prob = np.sum(-0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi), -1) - np.sum(np.log(1 - np.tanh(x) ** 2), -1)
    return np.tanh(x), log_prob


def _critic(learner, name, params, obs, actions):
    return _np(learner.apply(name, params, obs, _f32(actions)))


def _td(learner, state, b, next_actions):
    """The released critic_loss: mean over heads and batch of valid (Q - y)^2, y with mean - rho std at gamma^h."""
    cfg = learner.config
    nq = _critic(learner, 'critic', state.target_params, b['next_observations'], next_actions)
    y = _np(b['rewards']) + cfg.discount**H * _np(b['masks']) * (nq.mean(0) - cfg.rho * nq.std(0))
    q = _critic(learner, 'critic', state.params, b['observations'], b['actions'])
    return np.mean((q - y) ** 2 * _np(b['valid'])), y


def _flow_matching(learner, params, b, key):
    x_key, t_key = jax.random.split(key)
    a = _np(b['actions'])
    x0 = _np(jax.random.normal(x_key, a.shape, jnp.float32))
    t = _np(jax.random.uniform(t_key, (len(a), 1), jnp.float32))
    pred = _np(learner.apply('bc_flow', params, b['observations'], _f32((1 - t) * x0 + t * a), _f32(t)))
    return np.mean(np.mean((pred - (a - x0)) ** 2, -1) * _np(b['valid']))


def _flow_matching_jnp(learner, b, key):
    """The same flow-matching loss as a function of f_beta's parameters (for the gradient routing checks)."""
    x_key, t_key = jax.random.split(key)
    a = b['actions']
    x0 = jax.random.normal(x_key, a.shape, jnp.float32)
    t = jax.random.uniform(t_key, (len(a), 1), jnp.float32)

    def fm(params):
        pred = learner.apply('bc_flow', params, b['observations'], (1 - t) * x0 + t * a, t)
        return jnp.mean(jnp.mean((pred - (a - x0)) ** 2, -1) * b['valid'])

    return fm


def _tanh_normal_jnp(learner, name, params, inputs, key):
    """The released TanhNormal's reparameterized sample and log-density, written out (tanh(x), log pi(tanh x))."""
    mu, log_std = learner.apply(name, params, *inputs)
    x = mu + jnp.exp(log_std) * jax.random.normal(key, mu.shape, jnp.float32)
    gauss = -0.5 * ((x - mu) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    return jnp.tanh(x), jnp.sum(gauss - jnp.log(1 - jnp.tanh(x) ** 2), -1)


def _td_jnp(learner, b, y):
    """The critic's TD loss onto the fixed target y, as a function of the critic's parameters."""
    return lambda p: jnp.mean((learner.apply('critic', p, b['observations'], b['actions']) - _f32(y)) ** 2 * b['valid'])


def _grads_close(got, want, rtol=1e-4):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(_np(g), _np(w), rtol=rtol, atol=1e-6)


def _loss_and_grads(agent, learner, state, b, key):
    """(loss, info), d loss / d params, op by op (cheaper on the CPU than compiling each test's whole program)."""
    return jax.value_and_grad(lambda p: agent.loss(learner, p, state, b, key), has_aux=True)(state.params)


def _close(got, want, rtol=1e-5):
    np.testing.assert_allclose(_np(got), want, rtol=rtol, atol=1e-6)


# ---- DSRL ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('use_target_latent', [True, False])
def test_dsrl_losses_match_the_released_formulas(use_target_latent):
    learner, state = _learner('dsrl', noise_scale=0.7, use_target_latent=use_target_latent)
    b, key = _batch(), jax.random.PRNGKey(3)
    (loss, info), grads = _loss_and_grads(dsrl, learner, state, b, key)
    next_key, distill_key, fm_key, pi_key = jax.random.split(key, 4)
    p, obs = state.params, b['observations']
    flow_p = state.target_params if use_target_latent else p  # released use_target_latent: target_actor_bc_flow

    # critic_loss: a' = flow(0.7 tanh(x')) from the noise policy at s' (released sample_actions)
    z_next, _ = _tanh_normal(learner, 'noise_policy', p, (b['next_observations'],), next_key)
    critic_loss, y = _td(learner, state, b, _flow(learner, flow_p, b['next_observations'], 0.7 * z_next))
    # distill_loss: z_critic(s, e) onto critic(s, flow(e)), e ~ N(0, I) unscaled, current critic, no valid mask
    e = _np(jax.random.normal(distill_key, (12, A), jnp.float32))
    target_qs = _critic(learner, 'critic', p, obs, _flow(learner, flow_p, obs, e))
    distill_loss = np.mean((_critic(learner, 'z_critic', p, obs, e) - target_qs) ** 2)
    # actor_loss: (log_prob * alpha - mean_k z_critic(s, 0.7 tanh x)).mean(); alpha_loss: alpha (H - (-0.5 dim A))
    z, log_prob = _tanh_normal(learner, 'noise_policy', p, (obs,), pi_key)
    alpha = np.exp(0.3)
    actor_loss = np.mean(log_prob * alpha - _critic(learner, 'z_critic', p, obs, 0.7 * z).mean(0))
    entropy = -log_prob.mean()
    alpha_loss = alpha * (entropy + 0.5 * A)
    bc_loss = _flow_matching(learner, p, b, fm_key)

    _close(info['critic/loss'], critic_loss)
    _close(info['critic/distill_loss'], distill_loss)
    _close(info['actor/loss'], actor_loss)
    _close(info['actor/entropy'], entropy)
    _close(info['actor/alpha_loss'], alpha_loss)
    _close(info['actor/bc_flow_loss'], bc_loss)
    _close(loss, critic_loss + distill_loss + actor_loss + alpha_loss + bc_loss)

    # Gradient routing: the z critic learns from the distillation only (frozen in the actor loss), the critic from the
    # TD loss only (frozen in the distillation target), f_beta from flow matching only (frozen in the TD targets and
    # the distillation), the noise policy from the actor loss only (through z, Q_z and alpha frozen), the temperature
    # from the alpha loss only.
    want = jax.grad(lambda zp: jnp.mean((learner.apply('z_critic', zp, obs, _f32(e)) - _f32(target_qs)) ** 2))(p)
    _grads_close(grads['z_critic'], want['z_critic'])
    _grads_close(grads['critic'], jax.grad(_td_jnp(learner, b, y))(p)['critic'])
    _grads_close(grads['bc_flow'], jax.grad(_flow_matching_jnp(learner, b, fm_key))(p)['bc_flow'])

    def actor_ref(pp):
        zz, lp = _tanh_normal_jnp(learner, 'noise_policy', pp, (obs,), pi_key)
        return jnp.mean(lp * alpha - learner.apply('z_critic', p, obs, 0.7 * zz).mean(0))

    _grads_close(grads['noise_policy'], jax.grad(actor_ref)(p)['noise_policy'])
    _close(grads['log_alpha']['log_value'], alpha_loss)  # d/dlog_alpha of exp(log_alpha) (H - target)


def test_dsrl_acts_through_the_noise_policy_and_the_online_flow():
    learner, state = _learner('dsrl', noise_scale=0.4)
    obs, key = _batch()['observations'], jax.random.PRNGKey(5)
    acts = _np(jax.jit(lambda p, k: dsrl.sample_actions(learner, p, obs, k, temperature=0.0))(state.params, key))
    assert acts.shape == (12, A) and np.abs(acts).max() <= 1.0
    z, _ = _tanh_normal(learner, 'noise_policy', state.params, (obs,), key)
    _close(acts, _flow(learner, state.params, obs, 0.4 * z))  # |noise| < sigma_z, then the online f_beta
    zj, _ = dsrl.noise_actions(learner, state.params, obs, key)
    assert np.abs(_np(zj)).max() < 0.4
    # stochastic at every temperature, as the released sample_actions (no temperature argument)
    _close(dsrl.sample_actions(learner, state.params, obs, key, temperature=1.0), acts)
    assert np.abs(_np(dsrl.sample_actions(learner, state.params, obs, jax.random.PRNGKey(6))) - acts).max() > 1e-3
    assert dsrl.target_networks(learner.config) == ('critic', 'bc_flow')


# ---- FEdit -----------------------------------------------------------------------------------------------------------
def test_fedit_losses_match_the_released_formulas():
    learner, state = _learner('fedit', sigma_a=0.3)
    b, key = _batch(), jax.random.PRNGKey(4)
    (loss, info), grads = _loss_and_grads(fedit, learner, state, b, key)
    next_key, fm_key, noise_key, edit_key = jax.random.split(key, 4)
    p, obs = state.params, b['observations']

    # critic_loss: a' = clip(flow(e') + 0.3 tanh(x')), the online f_beta (FEdit has no flow target)
    n_noise_key, n_edit_key = jax.random.split(next_key)
    flow_next = _flow(learner, p, b['next_observations'], jax.random.normal(n_noise_key, (12, A), jnp.float32))
    delta_next, _ = _tanh_normal(learner, 'edit', p, (b['next_observations'], _f32(flow_next)), n_edit_key)
    critic_loss, _ = _td(learner, state, b, np.clip(flow_next + 0.3 * delta_next, -1, 1))
    # edit: -mean_k Q(s, clip(a~ + 0.3 delta)) + alpha log pi; alpha_loss: alpha (H - (-0.5 dim A))
    flow_a = _flow(learner, p, obs, jax.random.normal(noise_key, (12, A), jnp.float32))
    delta, log_prob = _tanh_normal(learner, 'edit', p, (obs, _f32(flow_a)), edit_key)
    q = _critic(learner, 'critic', p, obs, np.clip(flow_a + 0.3 * delta, -1, 1)).mean(0)
    alpha = np.exp(0.3)
    entropy_loss = np.mean(log_prob * alpha)
    entropy = -log_prob.mean()
    alpha_loss = alpha * (entropy + 0.5 * A)
    bc_loss = _flow_matching(learner, p, b, fm_key)

    _close(info['critic/loss'], critic_loss)
    _close(info['actor/edit_q_loss'], -q.mean())
    _close(info['actor/edit_entropy_loss'], entropy_loss)
    _close(info['actor/edit_entropy'], entropy)
    _close(info['actor/edit_alpha_loss'], alpha_loss)
    _close(info['actor/bc_flow_loss'], bc_loss)
    _close(loss, critic_loss - q.mean() + entropy_loss + alpha_loss + bc_loss)

    # Gradient routing: the critic learns from the TD loss only (frozen in the edit loss), f_beta from flow matching
    # only (frozen under the edit and in the TD target), the edit policy from its loss only (through delta, Q and alpha
    # frozen), alpha from its loss only.
    _, y = _td(learner, state, b, np.clip(flow_next + 0.3 * delta_next, -1, 1))
    _grads_close(grads['critic'], jax.grad(_td_jnp(learner, b, y))(p)['critic'])
    _grads_close(grads['bc_flow'], jax.grad(_flow_matching_jnp(learner, b, fm_key))(p)['bc_flow'])

    def edit_ref(pp):
        dd, lp = _tanh_normal_jnp(learner, 'edit', pp, (obs, _f32(flow_a)), edit_key)
        qq = learner.apply('critic', p, obs, jnp.clip(_f32(flow_a) + 0.3 * dd, -1, 1)).mean(0)
        return jnp.mean(alpha * lp - qq)

    _grads_close(grads['edit'], jax.grad(edit_ref)(p)['edit'])
    _close(grads['edit_log_alpha']['log_value'], alpha_loss)


@pytest.mark.parametrize('sigma_a', [0.0, 0.3])
def test_fedit_acts_with_the_edited_flow_within_sigma_a(sigma_a):
    learner, state = _learner('fedit', sigma_a=sigma_a)
    obs, key = _batch()['observations'], jax.random.PRNGKey(5)
    acts = _np(jax.jit(lambda p, k: fedit.sample_actions(learner, p, obs, k, temperature=0.0))(state.params, key))
    assert acts.shape == (12, A) and np.abs(acts).max() <= 1.0
    noise_key, edit_key = jax.random.split(key)
    flow_a = _flow(learner, state.params, obs, jax.random.normal(noise_key, (12, A), jnp.float32))
    delta, _ = _tanh_normal(learner, 'edit', state.params, (obs, _f32(flow_a)), edit_key)
    _close(acts, np.clip(flow_a + sigma_a * delta, -1, 1))
    assert np.abs(acts - flow_a).max() <= sigma_a + 1e-6  # the released default 0: the BC flow acts
    _close(fedit.sample_actions(learner, state.params, obs, key, temperature=1.0), acts)  # no temperature
    assert fedit.target_networks(learner.config) == ('critic',)


# ---- defaults, presets, validation -----------------------------------------------------------------------------------
def test_released_defaults():
    d, f = agents.get_config('dsrl'), agents.get_config('fedit')
    for c in (d, f):  # released get_config: num_qs=10, rho=0.5, flow_steps=10, plain Adam, 4 x 512
        assert (c.num_critics, c.q_agg, c.rho, c.flow_steps, c.grad_clip_norm, c.grad_clip_value) == (
            10,
            'pessimistic',
            0.5,
            10,
            0.0,
            0.0,
        )
        assert (c.lr, c.batch_size, c.discount, c.tau, c.layer_norm, c.actor_layer_norm) == (
            3e-4,
            256,
            0.99,
            0.005,
            True,
            False,
        )
    assert (d.noise_scale, d.entropy_target, d.use_target_latent) == (1.0, -0.5, True)
    assert (f.sigma_a, f.edit_entropy_target) == (0.0, -0.5)


def _resolve(agent, env, preset='paper'):
    task = types.SimpleNamespace(name=env, extra={})
    return resolve_config(agents.get_agent(agent), agents.get_config(agent), task, preset, set())[0]


# The released experiments/reproduce.py: {env: (DSRL noise_scale, FEDIT edit_scale)}; QAM Table 4's dsrl_sigma_z and
# fedit_sigma_a columns print the same values in all ten domains.
REPRODUCE = {
    'scene-play-sparse-singletask-task2-v0': (0.4, 0.2),
    'puzzle-4x4-play-sparse-singletask-task4-v0': (1.0, 0.8),
    'humanoidmaze-medium-navigate-singletask-task1-v0': (0.6, 0.5),
    'antmaze-giant-navigate-singletask-task3-v0': (1.2, 0.3),
}


def test_qam_presets_are_reproduce_py():
    for env, (noise_scale, edit_scale) in REPRODUCE.items():
        for agent, key, want in [('dsrl', 'noise_scale', noise_scale), ('fedit', 'sigma_a', edit_scale)]:
            c = _resolve(agent, env)  # 'paper' is QAM's protocol for both
            assert c[key] == want and c.to_dict() == _resolve(agent, env, 'qam').to_dict(), (agent, env)
            maze, hum = 'maze' in env, 'humanoid' in env
            assert (c.num_critics, c.q_agg, c.rho) == (10, 'pessimistic', 0.0 if hum else 0.5), (agent, env)
            assert c.horizon_length == (1 if maze else 5) and c.discount == (0.995 if hum or 'giant' in env else 0.99)


def test_dsrl_fav_preset_is_table6_with_two_heads():
    for env, sigma_z, rho, discount in [
        ('cube-double-play-singletask-task1-v0', 1.5, 0.5, 0.99),
        ('humanoidmaze-medium-navigate-singletask-task2-v0', 0.5, 0.0, 0.995),
        ('antmaze-large-play-v2', 1.4, 0.5, 0.99),  # a D4RL row: FAV's own rerun of this code
    ]:
        c = _resolve('dsrl', env, 'fav')
        assert (c.noise_scale, c.num_critics, c.q_agg, c.rho, c.discount, c.horizon_length) == (
            sigma_z,
            2,
            'pessimistic',
            rho,
            discount,
            1,
        )
    with pytest.raises(ValueError, match="no values under the FAV paper's protocol"):
        _resolve('fedit', 'cube-double-play-singletask-task1-v0', 'fav')
    with pytest.raises(PresetError, match='No paper preset'):
        _resolve('dsrl', 'antsoccer-arena-navigate-singletask-task1-v0', 'qam')


@pytest.mark.parametrize(
    'agent, key, value, msg',
    [
        ('dsrl', 'noise_scale', 0.0, 'noise_scale must be positive'),
        ('dsrl', 'flow_steps', 0, 'flow_steps must be positive'),
        ('dsrl', 'entropy_target', math.nan, 'entropy_target'),
        ('fedit', 'sigma_a', -0.1, r'sigma_a .* \[0, 2\]'),
        ('fedit', 'sigma_a', 2.5, r'sigma_a .* \[0, 2\]'),
        ('fedit', 'edit_entropy_target', math.inf, 'edit_entropy_target'),
    ],
)
def test_validation_errors(agent, key, value, msg):
    config = agents.get_config(agent)
    agents.get_agent(agent).validate(config)
    config[key] = value
    with pytest.raises(ValueError, match=msg):
        agents.get_agent(agent).validate(config)


@pytest.mark.parametrize('use_target_latent', [True, False])
def test_dsrl_acts_through_the_polyak_target_flow_as_released(use_target_latent):
    """Evaluation and online acting go through Learner.acting_params: f_beta's Polyak target when use_target_latent
    (released sample_flow_actions), the noise policy's current parameters either way."""
    learner, state = _learner('dsrl', use_target_latent=use_target_latent)
    obs, key = _batch()['observations'], jax.random.PRNGKey(5)
    acts = _np(learner.act(learner.acting_params(state), obs, key, 0.0))
    flow = state.target_params if use_target_latent else state.params
    z, _ = _tanh_normal(learner, 'noise_policy', state.params, (obs,), key)
    _close(acts, np.clip(_flow(learner, flow, obs, learner.config.noise_scale * z), -1, 1))
    if use_target_latent:  # the two flows differ, so this tells them apart
        assert np.abs(acts - _np(learner.act(state.params, obs, key, 0.0))).max() > 1e-3
