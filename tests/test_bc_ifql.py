"""BC (Gaussian MLE and flow-matching BC) and IFQL against float64 numpy references of the released formulas
(IFQL: seohongpark/fql agents/ifql.py and the QAM repo's modified agents/ifql.py), their action selection and
presets."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import bc, ifql
from agents.common.trainer import Learner, TrainState
from configs.presets import PresetError, qam_table4
from runner.experiment import resolve_config

OBS, ACT, B = 3, 2, 12


def _filled(tree, phase):
    """Deterministic parameter values of the shapes of `tree` (no initializer to compile: CPU time in these tests is
    mostly compilation); `phase` makes the current and the target networks differ."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    values = [
        jnp.asarray(0.4 * np.sin(1.3 * np.arange(np.prod(x.shape)) + phase + i).reshape(x.shape), jnp.float32)
        for i, x in enumerate(leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, values)


def _learner(name, **overrides):
    """A learner with tiny networks and a state whose current and target parameters differ (and whose Gaussian log
    std, when learned, is not constant). With horizon_length h > 1 the environment's action dimension is ACT / h, so
    that the networks see the same flattened chunk dimension ACT."""
    config = agents.get_config(name)
    config.actor_hidden_dims = config.value_hidden_dims = (16, 16)
    for k, v in overrides.items():
        config[k] = v
    agents.get_agent(name).validate(config)
    assert ACT % config.horizon_length == 0
    learner = Learner(agents.get_agent(name), config, OBS, ACT // config.horizon_length)
    assert learner.action_dim == ACT
    shapes = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
    state = TrainState(
        _filled(shapes.params, 0.0), _filled(shapes.target_params, 2.0), None, jax.random.PRNGKey(0), jnp.int32(0)
    )
    return learner, state


def _loss(agent, learner, state, b, rng):
    """The agent's (loss, info) at state.params, compiled as one program."""
    return jax.jit(lambda s: agent.loss(learner, s.params, s, b, rng))(state)


def _batch(valid=False):
    """A batch of transitions (or of flattened action chunks); `valid` zeroes a few chunks as past an episode end."""
    rng = np.random.default_rng(0)
    b = dict(
        observations=rng.normal(size=(B, OBS)),
        actions=rng.uniform(-1, 1, (B, ACT)),
        rewards=rng.normal(size=B),
        masks=np.where(np.arange(B) % 3 == 0, 0.0, 1.0),
        next_observations=rng.normal(size=(B, OBS)),
    )
    if valid:
        b['valid'] = np.where(np.arange(B) % 4 == 1, 0.0, 1.0)
    return {k: jnp.asarray(v, jnp.float32) for k, v in b.items()}


def _np(x):
    return np.asarray(x, np.float64)


def _flow_reference(learner, params, b, rng, valid):
    """Flow matching with the noise and times flow_matching_loss draws from `rng`: mean over batch and action
    dimensions of (v(s, x_t, t) - (a - x0))^2 (released actor_loss; the QAM repo's mean over dims times valid)."""
    x_rng, t_rng = jax.random.split(rng)
    a = b['actions']
    x0 = jax.random.normal(x_rng, a.shape, a.dtype)
    t = jax.random.uniform(t_rng, (a.shape[0], 1), a.dtype)
    x_t = (1 - t) * x0 + t * a
    pred = _np(learner.apply('bc_flow', params, b['observations'], x_t, t))
    per_row = np.mean((pred - (_np(a) - _np(x0))) ** 2, axis=-1)
    return np.mean(per_row * valid)


# ---- IFQL ---------------------------------------------------------------------------------------------------------
FQL_REPO = {}  # the defaults: the FQL repo's ifql.py
QAM_REPO = dict(q_agg='pessimistic', rho=0.5, num_critics=2, critic_head_reduction='mean', mask_value_loss=False)


@pytest.mark.parametrize(
    'overrides, horizon',
    [(FQL_REPO, 1), (QAM_REPO, 2), (dict(QAM_REPO, mask_value_loss=True, expectile=0.7), 2)],
    ids=['fql_repo', 'qam_repo_chunks', 'qam_repo_masked_value'],
)
def test_ifql_losses_match_the_released_formulas(overrides, horizon):
    learner, state = _learner('ifql', horizon_length=horizon, discount=0.9, **overrides)
    cfg = learner.config
    b = _batch(valid=horizon > 1)
    rng = jax.random.PRNGKey(1)
    loss, info = _loss(ifql, learner, state, b, rng)

    obs, act = b['observations'], b['actions']
    valid = _np(b['valid']) if horizon > 1 else np.ones(B)
    q_t = _np(learner.apply('critic', state.target_params, obs, act))
    q_c = _np(learner.apply('critic', state.params, obs, act))
    v = _np(learner.apply('value', state.params, obs))
    next_v = _np(learner.apply('value', state.params, b['next_observations']))
    r, m = _np(b['rewards']), _np(b['masks'])

    # value_loss: expectile of agg(target heads) - V; FQL repo: min of the heads, no chunks; QAM repo: mean - rho std
    # (np.std: ddof 0, as jnp's), no valid factor.
    q_agg = q_t.min(0) if cfg.q_agg == 'min' else q_t.mean(0) - 0.5 * q_t.std(0)
    diff = q_agg - v
    value_rows = np.where(diff >= 0, cfg.expectile, 1 - cfg.expectile) * diff**2
    value_loss = np.mean(value_rows * (valid if cfg.mask_value_loss else 1.0))
    # critic_loss: y = r + gamma^h mask V(s'); FQL repo ((q1 - y)^2 + (q2 - y)^2).mean(); QAM repo
    # (((qs - y)^2) * valid).mean() over heads and batch.
    y = r + 0.9**horizon * m * next_v
    sq = (q_c - y) ** 2 * valid
    critic_loss = np.mean(sq.sum(0)) if cfg.critic_head_reduction == 'sum' else np.mean(sq)
    flow_loss = _flow_reference(learner, state.params, b, rng, valid)

    assert q_c.shape == (cfg.num_critics, B)
    np.testing.assert_allclose(float(info['value/loss']), value_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['critic/loss']), critic_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['critic/target_mean']), y.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(info['actor/loss']), flow_loss, rtol=1e-5)
    np.testing.assert_allclose(float(loss), value_loss + critic_loss + flow_loss, rtol=1e-5)


def test_ifql_gradients_reach_each_network_only_through_its_own_loss():
    """The value's target is the target critic, the critic's target V(s') has no gradient, the flow is BC only: the
    value loss moves only V, the critic loss only Q, the flow loss only the flow (released: grad_params per loss)."""
    learner, state = _learner('ifql')
    b = _batch()
    keys = ('value/loss', 'critic/loss', 'actor/loss')

    @jax.jit
    def grad_norms(params):
        def one(key):
            g = jax.grad(lambda p: ifql.loss(learner, p, state, b, jax.random.PRNGKey(1))[1][key])(params)
            return {n: sum(jnp.abs(x).sum() for x in jax.tree_util.tree_leaves(t)) for n, t in g.items()}

        return [one(k) for k in keys]

    for key, net, norms in zip(keys, ('value', 'critic', 'bc_flow'), grad_norms(state.params)):
        for name, norm in norms.items():
            assert (float(norm) > 0) == (name == net), (key, name, float(norm))


def test_ifql_best_of_n_takes_each_rows_max_q_sample():
    learner, state = _learner('ifql', num_samples=6, flow_steps=3)
    params = state.params
    obs = jnp.asarray(np.random.default_rng(1).normal(size=(5, OBS)), jnp.float32)
    rng = jax.random.PRNGKey(7)
    acts = np.asarray(learner.act(params, obs, rng, 0.0))  # evaluation
    assert acts.shape == (5, ACT) and np.abs(acts).max() <= 1.0

    # The N samples per row: Euler integration of the flow from the noise sample_actions draws, clipped.
    noise = jax.random.normal(rng, (5, 6, ACT))
    x = _np(noise)
    rep = jnp.broadcast_to(obs[:, None, :], (5, 6, OBS))
    apply = jax.jit(learner.apply, static_argnums=0)  # one compilation per network instead of one per operation
    for i in range(3):
        t = jnp.full((5, 6, 1), i / 3, jnp.float32)
        x = x + _np(apply('bc_flow', params, rep, jnp.asarray(x, jnp.float32), t)) / 3
    samples = np.clip(x, -1, 1)
    q = _np(apply('critic', params, rep, jnp.asarray(samples, jnp.float32))).min(0)  # (5, 6): min over heads
    best = np.argmax(q, axis=-1)
    assert len(set(best.tolist())) > 1  # the rows pick different sample indices: a shared index would fail
    np.testing.assert_allclose(acts, samples[np.arange(5), best], rtol=1e-5, atol=1e-6)

    # No temperature in the released code: exploration (temperature 1) selects the same best of N.
    np.testing.assert_array_equal(np.asarray(learner.act(params, obs, rng, 1.0)), acts)

    # Rows are independent: changing the other rows' observations leaves a row's action unchanged.
    other = obs.at[1:].set(obs[1:] * -3.0 + 1.0)
    np.testing.assert_array_equal(np.asarray(learner.act(params, other, rng, 0.0))[0], acts[0])


def test_ifql_defaults_presets_and_validation():
    c = agents.get_config('ifql')
    assert (c.expectile, c.num_samples, c.flow_steps, c.q_agg, c.num_critics) == (0.9, 32, 10, 'min', 2)
    assert (c.critic_head_reduction, c.mask_value_loss, c.horizon_length) == ('sum', True, 1)
    assert ifql.PAPER == 'fav' and ifql.target_networks(c) == ('critic',)

    def resolved(env, preset):
        task = types.SimpleNamespace(name=env, extra={})
        return resolve_config(ifql, agents.get_config('ifql'), task, preset, set())[0]

    # FAV Table 6's N (ifql_n) per task, FAV's discount; the rest the FQL repo's defaults.
    soccer = resolved('antsoccer-arena-navigate-singletask-task1-v0', 'paper')
    assert (soccer.num_samples, soccer.discount, soccer.q_agg, soccer.num_critics) == (64, 0.995, 'min', 2)
    assert isinstance(soccer.num_samples, int)
    assert resolved('cube-single-play-singletask-task2-v0', 'fav').num_samples == 32
    # QAM: reproduce.py's kappa (puzzle-3x3: 0.95), K = 10 pessimistic heads, chunks of 5, the QAM repo's switches.
    puzzle = resolved('puzzle-3x3-play-sparse-singletask-task1-v0', 'qam')
    assert (puzzle.expectile, puzzle.num_critics, puzzle.q_agg, puzzle.rho, puzzle.horizon_length) == (
        0.95,
        10,
        'pessimistic',
        0.5,
        5,
    )
    assert (puzzle.critic_head_reduction, puzzle.mask_value_loss, puzzle.num_samples) == ('mean', False, 32)
    hm = resolved('humanoidmaze-medium-navigate-singletask-task1-v0', 'qam')
    assert (hm.expectile, hm.rho, hm.horizon_length, hm.discount) == (0.7, 0.0, 1, 0.995)
    # reproduce.py's kappa equals QAM Table 4's ifql_kappa in every domain (no REPRODUCE_PY-style exceptions).
    for env in (
        'scene-play-sparse-singletask-task1-v0',
        'cube-triple-play-singletask-task1-v0',
        'antmaze-giant-navigate-singletask-task1-v0',
        'puzzle-4x4-play-100m-sparse-singletask-task1-v0',
    ):
        assert ifql.qam_preset(env)['expectile'] == qam_table4(env, {'k': 'ifql_kappa'})['k']

    for bad, msg in (
        (dict(expectile=1.0), 'expectile'),
        (dict(num_samples=0), 'num_samples'),
        (dict(critic_head_reduction='max'), 'critic_head_reduction'),
    ):
        c = agents.get_config('ifql')
        c.update(bad)
        with pytest.raises(ValueError, match=msg):
            ifql.validate(c)


# ---- BC -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('const_std, horizon', [(True, 1), (False, 2)])
def test_bc_gaussian_loss_is_the_negative_log_likelihood(const_std, horizon):
    learner, state = _learner('bc', const_std=const_std, horizon_length=horizon)
    b = _batch(valid=horizon > 1)
    loss, info = _loss(bc, learner, state, b, jax.random.PRNGKey(0))

    mu, log_std = (_np(x) for x in learner.apply('actor', state.params, b['observations']))
    if const_std:
        assert np.all(log_std == 0.0)
    else:
        assert np.ptp(log_std) > 0.01  # learned, state-independent, moved off its zero initialization
    a = _np(b['actions'])
    log_prob = np.sum(-0.5 * ((a - mu) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), -1)
    valid = _np(b['valid']) if horizon > 1 else 1.0
    np.testing.assert_allclose(float(loss), -np.mean(log_prob * valid), rtol=1e-5)
    np.testing.assert_allclose(float(info['actor/mse']), np.mean((a - mu) ** 2), rtol=1e-5)
    assert set(state.params) == {'actor'} and bc.target_networks(learner.config) == ()  # no critic


def test_bc_gaussian_acts_with_the_clipped_mean_and_samples_with_the_temperature():
    learner, state = _learner('bc', const_std=False)
    obs = jnp.asarray(np.random.default_rng(2).normal(size=(64, OBS)) * 5, jnp.float32)
    mu, log_std = (_np(x) for x in learner.apply('actor', state.params, obs))
    rng = jax.random.PRNGKey(3)
    np.testing.assert_allclose(learner.act(state.params, obs, rng, 0.0), np.clip(mu, -1, 1), rtol=1e-5, atol=1e-6)
    noise = _np(jax.random.normal(rng, mu.shape))
    sampled = learner.act(state.params, obs, rng, 0.5)
    np.testing.assert_allclose(sampled, np.clip(mu + 0.5 * np.exp(log_std) * noise, -1, 1), rtol=1e-5, atol=1e-6)


def test_bc_flow_loss_and_euler_sampling():
    horizon = 2  # chunks, some past an episode end (valid = 0)
    learner, state = _learner('bc_flow', horizon_length=horizon, flow_steps=4)
    assert learner.config.policy == 'flow' and set(state.params) == {'bc_flow'}
    b = _batch(valid=horizon > 1)
    rng = jax.random.PRNGKey(5)
    loss, _ = _loss(bc, learner, state, b, rng)
    valid = _np(b['valid']) if horizon > 1 else np.ones(B)
    np.testing.assert_allclose(float(loss), _flow_reference(learner, state.params, b, rng, valid), rtol=1e-5)

    obs = b['observations']
    acts = _np(learner.act(state.params, obs, rng, 0.0))
    x = _np(jax.random.normal(rng, (B, ACT)))
    for i in range(4):
        t = jnp.full((B, 1), i / 4, jnp.float32)
        x = x + _np(learner.apply('bc_flow', state.params, obs, jnp.asarray(x, jnp.float32), t)) / 4
    np.testing.assert_allclose(acts, np.clip(x, -1, 1), rtol=1e-5, atol=1e-6)


def test_bc_config_presets_and_validation():
    g, f = agents.get_config('bc'), agents.get_config('bc_flow')
    assert (g.policy, g.const_std, g.actor_fc_scale, g.agent_name) == ('gaussian', True, 0.01, 'bc')
    assert (f.policy, f.flow_steps, f.agent_name) == ('flow', 10, 'bc_flow')
    # VGF Table 7's BC row: its OGBench environments, no per-task values.
    assert agents.paper_preset('bc', 'cube-double-play-singletask-task3-v0') == {}
    assert agents.paper_preset('bc_flow', 'puzzle-4x4-play-singletask-v0') == {}
    with pytest.raises(PresetError, match='VGF Table 7 has no BC row'):
        agents.paper_preset('bc', 'hopper-medium-v2')
    with pytest.raises(ValueError, match='no values under the QAM'):
        agents.paper_preset('bc', 'cube-double-play-singletask-task3-v0', protocol='qam')
    with pytest.raises(ValueError, match='Unknown BC variant'):
        bc.get_config('mixture')
    for bad, msg in ((dict(policy='mixture'), 'policy'), (dict(flow_steps=0), 'flow_steps')):
        c = agents.get_config('bc')
        c.update(bad)
        with pytest.raises(ValueError, match=msg):
            bc.validate(c)
