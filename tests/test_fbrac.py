"""FBRAC against float64 numpy references of the released QAM code's formulas (ColinQiyangLi/qam @ f93efd2,
agents/fbrac.py: critic_loss, actor_loss with backpropagation through the Euler steps, sample_actions with
best_of_n), presets (reproduce.py vs QAM Table 4) and validation. Helpers from tests/test_fawac.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import fbrac
from agents.common.trainer import Learner
from configs.presets import qam_table4
from tests.test_fawac import (
    ACT,
    OBS,
    B,
    H,
    _np,
    _resolved,
    critic_reference,
    euler_reference,
    flow_matching_draws,
    is_zero,
    loss_and_grad,
    make_batch,
    make_learner,
)

A = ACT * H
ALPHA = 0.5


@pytest.fixture(scope='module')
def setup():
    learner, state = make_learner('fbrac', alpha=ALPHA, flow_steps=3)  # the released 10 in the defaults test
    return learner, state, make_batch()


def test_losses_match_the_released_formulas_and_the_q_term_backpropagates_through_every_euler_step(setup):
    learner, state, b = setup
    key = jax.random.PRNGKey(1)
    (loss, info), grad = loss_and_grad(fbrac, learner, state, b, key, 'actor/loss')
    next_rng, fm_rng, noise_rng = jax.random.split(key, 3)
    obs, a, valid = b['observations'], _np(b['actions']), _np(b['valid'])

    # critic: next actions = the one (best_of_n = 1) flow sample of the current policy
    next_a = euler_reference(
        learner, state.params, b['next_observations'], jax.random.normal(next_rng, (B, 1, A))[:, 0]
    )
    critic_loss, _ = critic_reference(learner, state, b, next_a)
    # actor: BC flow matching (invalid chunks as zeros) - mean_k Q_k(s, clip(flow(z))) / alpha over every sample
    x0, t = flow_matching_draws(fm_rng, (B, A))
    x_t = (1 - t) * x0 + t * a
    pred = _np(learner.apply('actor', state.params, obs, jnp.asarray(x_t, jnp.float32), jnp.asarray(t, jnp.float32)))
    bc = np.mean(np.mean((pred - (a - x0)) ** 2, -1) * valid)
    z = jax.random.normal(noise_rng, (B, A))
    a_pi = euler_reference(learner, state.params, obs, z)
    q = _np(learner.apply('critic', state.params, obs, jnp.asarray(a_pi, jnp.float32))).mean(0)
    actor_loss = bc - q.mean() / ALPHA

    np.testing.assert_allclose(float(info['critic/loss']), critic_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['actor/bc_flow_loss']), bc, rtol=1e-5)
    np.testing.assert_allclose(float(info['actor/q']), q.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(info['actor/loss']), actor_loss, rtol=1e-5)
    np.testing.assert_allclose(float(loss), critic_loss + actor_loss, rtol=1e-5)

    # Gradient: into the policy through all flow_steps Euler steps and the clip (released compute_flow_actions with
    # params=grad_params), none into the critic (released: critic without grad_params).
    T = learner.config.flow_steps

    def reference(actor):
        p = {**state.params, 'actor': actor}
        x = z
        for i in range(T):
            x = x + learner.apply('actor', p, obs, x, jnp.full((B, 1), i / T)) / T
        q = learner.apply('critic', state.params, obs, jnp.clip(x, -1.0, 1.0)).mean(0)
        v = learner.apply('actor', p, obs, jnp.asarray(x_t, jnp.float32), jnp.asarray(t, jnp.float32))
        return jnp.mean(jnp.mean((v - (b['actions'] - jnp.asarray(x0, jnp.float32))) ** 2, -1) * b['valid']) - (
            q.mean() / ALPHA
        )

    expected = jax.jit(jax.grad(reference))(state.params['actor'])
    assert is_zero(grad['critic'])
    for got, want in zip(jax.tree_util.tree_leaves(grad['actor']), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_acting_keeps_the_best_of_n_flow_samples_by_the_current_critic(setup):
    learner, state, b = setup
    obs, key = b['observations'], jax.random.PRNGKey(3)
    # best_of_n = 1 (released default): the flow sample, stochastic at temperature 0 too
    acts = _np(learner.act(state.params, obs, key, 0.0))
    assert acts.shape == (B, A) and np.all(np.abs(acts) <= 1.0)
    np.testing.assert_allclose(
        acts, euler_reference(learner, state.params, obs, jax.random.normal(key, (B, 1, A))[:, 0]), rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(acts, _np(learner.act(state.params, obs, jax.random.PRNGKey(4), 0.0)))
    # best_of_n = 4: the candidate with the highest mean over the current critic's heads
    config = learner.config.copy_and_resolve_references()
    config.best_of_n = 4
    best = Learner(fbrac, config, OBS, ACT)
    acts = _np(best.act(state.params, obs, key, 0.0))
    noises = jax.random.normal(key, (B, 4, A))
    cands = np.stack([euler_reference(learner, state.params, obs, noises[:, j]) for j in range(4)], 1)
    qs = np.stack(
        [
            _np(learner.apply('critic', state.params, obs, jnp.asarray(cands[:, j], jnp.float32))).mean(0)
            for j in range(4)
        ],
        1,
    )
    pick = qs.argmax(1)
    assert len(set(pick.tolist())) > 1  # the choice is not the same candidate everywhere
    np.testing.assert_allclose(acts, cands[np.arange(B), pick], rtol=1e-5, atol=1e-6)
    assert learner.targets == ('critic',)  # released: only target_critic


def test_released_defaults_and_the_qam_preset():
    c = agents.get_config('fbrac')
    assert (c.num_critics, c.q_agg, c.rho, c.alpha, c.flow_steps, c.best_of_n) == (10, 'pessimistic', 0.5, 100.0, 10, 1)
    assert (c.grad_clip_norm, c.grad_clip_value, c.layer_norm, c.actor_layer_norm, c.tau) == (0, 0, True, False, 0.005)
    # reproduce.py differs from QAM Table 4 on puzzle-3x3-sparse: 0.03 (the command, applied) vs 0.3 (the table)
    env = 'puzzle-3x3-play-sparse-singletask-task1-v0'
    p = _resolved('fbrac', env, 'qam')
    assert (p.alpha, p.horizon_length, p.num_critics, p.rho, p.discount) == (0.03, 5, 10, 0.5, 0.99)
    assert qam_table4(env, {'alpha': 'fbrac_alpha'})['alpha'] == 0.3
    h = _resolved('fbrac', 'humanoidmaze-large-navigate-singletask-task1-v0', 'paper')
    assert (h.alpha, h.horizon_length, h.rho, h.discount) == (10.0, 1, 0.0, 0.995)
    with pytest.raises(ValueError, match="no values under the FAV paper's protocol"):
        _resolved('fbrac', 'cube-double-play-singletask-task2-v0', 'fav')


@pytest.mark.parametrize(
    'key, value, match',
    [
        ('alpha', 0.0, 'alpha'),
        ('alpha', math.inf, 'alpha'),
        ('flow_steps', 0, 'flow_steps'),
        ('best_of_n', 0, 'best_of_n'),
    ],
)
def test_validate_rejects_bad_values(key, value, match):
    config = agents.get_config('fbrac')
    config[key] = value
    with pytest.raises(ValueError, match=match):
        fbrac.validate(config)
