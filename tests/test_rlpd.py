"""RLPD (agents/rlpd.py) against float64 numpy references of the released formulas (seohongpark/fql agents/sac.py and
utils/networks.py Actor; ColinQiyangLi/qam agents/rlpd.py; ikostrikov/rlpd rlpd/agents/sac/sac_learner.py), its action
sampling, the trainer's update-to-data ratio and separate optimizers, its presets and its validation errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import agents
from agents import rlpd
from agents.common import buffer as buffer_lib
from agents.common.networks import tanh_gaussian
from agents.common.trainer import Learner
from configs.common import check_explicit_keys, validate_common
from configs.presets import PresetError
from tests.test_baselines import _batch, _np
from tests.test_core import _dataset
from tests.test_vgf import _np_mlp


def _learner(act_dim=2, **overrides):
    config = agents.get_config('rlpd')
    config.actor_hidden_dims = config.value_hidden_dims = (16, 16)
    for k, v in overrides.items():
        config[k] = v
    learner = Learner(rlpd, config, 3, act_dim)
    return learner, learner.init(jax.random.PRNGKey(0))


def _moved(state, log_temp=np.log(0.3)):
    """Parameters moved off their initialization (so that targets and current networks differ) and a temperature
    other than 1 (so that a missing alpha factor shows)."""
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), state.params)
    params['alpha'] = {'log_value': jnp.asarray(log_temp, jnp.float32)}
    return state.replace(params=params)


def _log_normal(x, mu, log_std):
    return np.sum(-0.5 * ((x - mu) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), -1)


def _tanh_sample(apply, params, obs, key):
    """The released tanh-Gaussian's sample_and_log_prob in float64, with the naive correction log(1 - tanh(x)^2)."""
    mu, log_std = (_np(v) for v in apply('actor', params, obs))
    x = mu + np.exp(log_std) * _np(jax.random.normal(key, mu.shape))
    return np.tanh(x), _log_normal(x, mu, log_std) - np.sum(np.log(1 - np.tanh(x) ** 2), -1), mu, log_std


def _agg(qs, how, rho=0.5):
    return {'min': qs.min(0), 'mean': qs.mean(0), 'pessimistic': qs.mean(0) - rho * qs.std(0)}[how]


# The FQL code base's sac.py (the defaults): 2 heads, min target, mean actor Q, no entropy backup, no BC.
SAC_PY = {}
# QAM's rlpd.py: mean - rho std in the target and the actor, the BC term, chunks of 2 (of 1-d actions) with a
# `valid` mask and the gamma^h bootstrap.
QAM = dict(num_critics=4, q_agg='pessimistic', actor_q_agg='pessimistic', bc_alpha=0.3, horizon_length=2)
# RLPD's code: the min over a random subset of 2 target heads, the entropy term in the target, ReLU, LayerNorm first.
RLPD_CODE = dict(num_critics=4, num_min_qs=2, backup_entropy=True, activation='relu', ln_first=True)


@pytest.mark.parametrize('overrides', [SAC_PY, QAM, RLPD_CODE], ids=['sac_py', 'qam_rlpd', 'rlpd_code'])
def test_losses_match_the_released_formulas(overrides):
    chunked = overrides.get('horizon_length', 1) > 1
    learner, state = _learner(act_dim=1 if chunked else 2, **overrides)
    cfg = learner.config
    state = _moved(state)
    b = _batch()
    valid = np.ones(12)
    if chunked:  # chunks that run past an episode end count as zeros in the means (QAM's batch['valid'][..., -1])
        valid[[1, 5, 6]] = 0.0
        b['valid'] = jnp.asarray(valid, jnp.float32)
    rng = jax.random.PRNGKey(7)
    apply = jax.jit(learner.apply, static_argnums=0)
    grad_fn = jax.jit(jax.value_and_grad(lambda p: rlpd.loss(learner, p, state, b, rng), has_aux=True))
    (loss, info), grads = grad_fn(state.params)

    next_rng, subset_rng, actor_rng = jax.random.split(rng, 3)
    obs, nobs, r, m = b['observations'], b['next_observations'], _np(b['rewards']), _np(b['masks'])
    temp, gamma = 0.3, 0.99**cfg.horizon_length
    # Critic (sac.py critic_loss; qam rlpd.py critic_loss; sac_learner.py update_critic).
    na, nlogp, _, _ = _tanh_sample(apply, state.params, nobs, next_rng)
    nqs = _np(apply('critic', state.target_params, nobs, jnp.asarray(na, jnp.float32)))
    if cfg.num_min_qs:  # subsample_ensemble: M distinct heads
        heads = np.asarray(jax.random.choice(subset_rng, cfg.num_critics, (cfg.num_min_qs,), replace=False))
        assert len(set(heads.tolist())) == cfg.num_min_qs
        nqs = nqs[heads]
    y = r + gamma * m * _agg(nqs, cfg.q_agg)
    if cfg.backup_entropy:
        y = y - gamma * m * temp * nlogp
    qs = _np(apply('critic', state.params, obs, b['actions']))
    critic_loss = np.mean((qs - y) ** 2 * valid)
    # Actor and temperature (sac.py actor_loss): alpha fixed in the actor term, entropy fixed in the alpha term.
    pi, logp, mu, log_std = _tanh_sample(apply, state.params, obs, actor_rng)
    q = _agg(_np(apply('critic', state.params, obs, jnp.asarray(pi, jnp.float32))), cfg.actor_q_agg)
    actor_loss = np.mean(logp * temp - q)
    entropy = -logp.mean()
    alpha_loss = temp * (entropy - (-0.5 * 2))  # target entropy -0.5 dim(A), A the 2-d action (or chunk)
    total = critic_loss + actor_loss + alpha_loss
    if (
        cfg.bc_alpha
    ):  # qam rlpd.py: -bc_alpha E[valid log pi(clip(a, +-(1 - 1e-5)))] through the tanh change of variables
        a = _np(np.clip(np.asarray(b['actions']), np.float32(-1 + 1e-5), np.float32(1 - 1e-5)))
        assert np.abs(a).max() == np.float32(1 - 1e-5)  # the clip is exercised
        bc = -0.3 * np.mean(valid * (_log_normal(np.arctanh(a), mu, log_std) - np.sum(np.log(1 - a**2), -1)))
        np.testing.assert_allclose(float(info['actor/bc_loss']), bc, rtol=1e-5)
        total += bc
    else:
        assert 'actor/bc_loss' not in info

    np.testing.assert_allclose(float(info['critic/loss']), critic_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['actor/loss']), actor_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['actor/entropy']), entropy, rtol=1e-5)
    np.testing.assert_allclose(float(info['actor/alpha_loss']), alpha_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info['actor/alpha']), temp, rtol=1e-6)
    np.testing.assert_allclose(float(loss), total, rtol=1e-5)
    # d/d log(alpha) of the loss is the temperature loss's alone: alpha (H - H_target).
    np.testing.assert_allclose(float(grads['alpha']['log_value']), alpha_loss, rtol=1e-5)
    if cfg.backup_entropy:  # the released gradient paths: the target (entropy term included) sends none to the actor
        # or the temperature, the actor loss none to the critic (sac.py calls the critic without grad_params there)
        critic_grads = jax.jit(jax.grad(lambda p: rlpd.loss(learner, p, state, b, rng, actor=False)[0]))(state.params)
        assert not any(
            np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves((critic_grads['actor'], critic_grads['alpha']))
        )
        for x, y in zip(*(jax.tree_util.tree_leaves(g['critic']) for g in (grads, critic_grads)), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)


def test_tanh_log_prob_is_the_stable_form_where_float32_tanh_saturates():
    mu = jnp.asarray([[12.0, -0.3]])
    lp = float(tanh_gaussian(mu, jnp.asarray([[-5.0, 0.0]]), jax.random.PRNGKey(0))[1][0])
    x = _np(mu) + np.exp([[-5.0, 0.0]]) * _np(jax.random.normal(jax.random.PRNGKey(0), (1, 2)))
    ref = _log_normal(x, _np(mu), np.asarray([[-5.0, 0.0]]))[0] - np.sum(
        2 * (np.log(2) - x - np.logaddexp(0, -2 * x))  # log(1 - tanh^2) in float64, finite where float32's is -inf
    )
    assert np.isfinite(lp) and np.float32(np.tanh(np.float32(x[0, 0]))) == 1.0
    np.testing.assert_allclose(lp, ref, rtol=1e-5)


def test_actor_has_a_state_dependent_std_and_acts_with_tanh_of_the_mean_at_evaluation():
    learner, state = _learner()
    actor = state.params['actor']
    for layer in ('Dense_0', 'Dense_1'):  # mean and log-std layers, variance scale 1e-2 (sac.py actor_fc_scale)
        w = np.asarray(actor[layer]['kernel'])
        limit = np.sqrt(3 * 1e-2 / ((w.shape[0] + w.shape[1]) / 2))
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.5 * limit
    params = _moved(state).params
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(64, 3)), jnp.float32)
    mu, log_std = (np.asarray(v) for v in learner.apply('actor', params, obs))
    assert log_std.std(axis=0).min() > 1e-3  # depends on the state
    act = lambda p, t, k=0: np.asarray(rlpd.sample_actions(learner, p, obs, jax.random.PRNGKey(k), t))  # noqa: E731
    np.testing.assert_allclose(act(params, 0.0), np.tanh(mu), rtol=1e-6)  # FQL evaluate: temperature 0
    explore = act(params, 1.0)
    assert np.all(np.abs(explore) < 1) and not np.allclose(explore, act(params, 1.0, 1))
    # The log std is clipped to [log_std_min, 2]: scaled up, it saturates at both ends.
    big = jax.tree_util.tree_map(lambda x: x, params)
    big['actor']['Dense_1'] = {'kernel': params['actor']['Dense_1']['kernel'] * 1e4, 'bias': jnp.zeros(2)}
    ls = np.asarray(learner.apply('actor', big, obs)[1])
    assert ls.min() == -5.0 and ls.max() == 2.0
    # QAM's rlpd.py samples at evaluation too.
    learner_q, _ = _learner(stochastic_eval=True, log_std_min=-20.0)
    ev = np.asarray(rlpd.sample_actions(learner_q, params, obs, jax.random.PRNGKey(0), 0.0))
    assert not np.allclose(ev, np.tanh(mu), atol=1e-3)
    assert np.asarray(learner_q.apply('actor', big, obs)[1]).min() == -20.0


def test_rlpd_code_networks_are_relu_mlps_with_layernorm_first_in_the_critic():
    """`activation` and `ln_first` reach both networks (RLPD's code: ReLU; LayerNorm then ReLU in the critic, no
    LayerNorm in the actor), against a numpy forward pass."""
    learner, state = _learner(activation='relu', ln_first=True, log_std_min=-20.0)
    f64 = jax.tree_util.tree_map(_np, state.params)
    rng = np.random.default_rng(0)
    obs, act = rng.normal(size=(4, 3)), rng.uniform(-1, 1, (4, 2))
    qs = np.asarray(learner.apply('critic', state.params, jnp.asarray(obs, jnp.float32), jnp.asarray(act, jnp.float32)))
    c = f64['critic']['VmapMLP_0']
    for h in range(2):
        layers = [
            ({k: v[h] for k, v in c[f'Dense_{i}'].items()}, {k: v[h] for k, v in c[f'LayerNorm_{i}'].items()})
            for i in range(2)
        ]
        layers.append(({k: v[h] for k, v in c['Dense_2'].items()}, None))
        ref = _np_mlp(layers, np.concatenate([obs, act], -1), True, True, 'relu')[:, 0]
        np.testing.assert_allclose(qs[h], ref, rtol=1e-4, atol=1e-5)
    a = f64['actor']
    assert not any(k.startswith('LayerNorm') for k in a['MLP_0'])
    hidden = np.maximum(
        np.maximum(obs @ a['MLP_0']['Dense_0']['kernel'] + a['MLP_0']['Dense_0']['bias'], 0)
        @ a['MLP_0']['Dense_1']['kernel']
        + a['MLP_0']['Dense_1']['bias'],
        0,
    )
    mu, log_std = (np.asarray(v) for v in learner.apply('actor', state.params, jnp.asarray(obs, jnp.float32)))
    np.testing.assert_allclose(mu, hidden @ a['Dense_0']['kernel'] + a['Dense_0']['bias'], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        log_std, np.clip(hidden @ a['Dense_1']['kernel'] + a['Dense_1']['bias'], -20, 2), rtol=1e-4, atol=1e-6
    )


def _online_buffer(n=24):
    ds = _dataset(n=n, episode_len=4)
    transition = {k: v[3] + 0.5 for k, v in _dataset(n=4, seed=1).items()}
    return buffer_lib.make_buffer(ds, capacity=n + 8, keep_offline=True), transition


def test_utd_ratio_takes_that_many_sequential_full_steps_per_environment_step():
    """QAM's main.py batch_update: utd_ratio full updates, each on a fresh 50/50 batch of the buffer with the new
    transition in it, metrics averaged; one joint Adam (sac.py)."""
    learner, state = _learner(utd_ratio=3, batch_size=8)
    assert learner.frozen == () and not isinstance(state.opt_state, dict)
    buf, tr = _online_buffer()
    b = buffer_lib.add_transition(buf, tr)
    update, sample = jax.jit(learner.update), jax.jit(buffer_lib.sample, static_argnums=(2, 3))
    ref, infos = state, []
    for _ in range(3):
        rng, batch_rng = jax.random.split(ref.rng)
        ref, info = update(ref.replace(rng=rng), sample(b, batch_rng, 8, 0.5))
        infos.append(info)
    state3, buf3, info3 = learner.add_and_train(state, buf, tr)
    assert int(state3.step) == int(ref.step) == 3 and int(buf3['size']) == 25
    for x, y in zip(*(jax.tree_util.tree_leaves((t.params, t.target_params)) for t in (state3, ref)), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    for k in ('critic/loss', 'actor/loss', 'actor/alpha_loss'):
        np.testing.assert_allclose(float(info3[k]), np.mean([float(i[k]) for i in infos]), rtol=1e-5)


def test_utd_actor_once_moves_the_actor_and_temperature_once_with_their_own_adam():
    """RLPD's code (sac_learner.py update): utd_ratio critic steps, then one actor and one temperature step, each
    network with its own Adam (three optax.adam). So after one environment step of 3 gradient steps the critic's Adam
    has counted 3 steps, the actor's and the temperature's 1, and every actor / temperature parameter has moved by
    Adam's first step, lr g / (|g| + eps) = lr in size; a joint Adam stepped on the critic-only steps would have moved
    them by 0.64 lr (its bias corrections at count 3)."""
    learner, state = _learner(utd_ratio=3, utd_actor_once=True, batch_size=8)
    assert learner.frozen == ('actor', 'alpha') and set(state.opt_state) == {'critic', 'actor', 'alpha'}
    buf, tr = _online_buffer()
    state3, _, info3 = learner.add_and_train(state, buf, tr)
    assert int(state3.step) == 3 and np.isfinite(float(info3['actor/loss']))
    counts = {k: int(optax.tree_utils.tree_get(v, 'count')) for k, v in state3.opt_state.items()}
    assert counts == {'critic': 3, 'actor': 1, 'alpha': 1}
    for name in ('actor', 'alpha', 'critic'):
        moved = np.concatenate(
            [
                np.abs(_np(a) - _np(b)).ravel()
                for a, b in zip(*(jax.tree_util.tree_leaves(t.params[name]) for t in (state3, state)))
            ]
        )
        if name == 'critic':  # three Adam steps: up to 3 lr, not all equal
            assert moved.max() > 1.5e-4 and moved.std() > 1e-5
        else:
            # lr |g| / (|g| + 1e-8): lr up to float32 rounding, a little less for the odd near-zero gradient
            assert np.all(moved <= 3e-4 * 1.001) and np.mean(np.abs(moved / 3e-4 - 1) < 1e-3) > 0.98


def test_actor_step_is_static_unless_critic_only_steps_are_on():
    assert rlpd.actor_step(_learner()[0].config, jnp.int32(0)) is True
    assert rlpd.actor_step(_learner(utd_actor_once=True)[0].config, jnp.int32(0)) is True  # utd_ratio 1
    config = _learner(utd_ratio=4, utd_actor_once=True)[0].config
    assert [bool(rlpd.actor_step(config, jnp.int32(t))) for t in range(8)] == [False, False, False, True] * 2


def _preset(env, protocol, online=True):
    return agents.paper_preset('rlpd', env, online=online, protocol=protocol)


def test_presets():
    # FAV Table 12 (the FQL README's command): sac.py defaults, the paper discount; offline-to-online domains only.
    assert _preset('humanoidmaze-large-navigate-singletask-task1-v0', 'paper') == {'discount': 0.995}
    assert _preset('cube-double-play-singletask-task2-v0', 'fav') == {'discount': 0.99}
    for env, online in [('cube-single-play-singletask-task2-v0', True), ('scene-play-singletask-task1-v0', False)]:
        with pytest.raises(PresetError, match='only offline-to-online'):
            _preset(env, 'fav', online)
    config = agents.get_config('rlpd')
    assert (config.num_critics, config.q_agg, config.actor_q_agg, config.backup_entropy) == (2, 'min', 'mean', False)
    assert (config.mix_offline, config.utd_ratio, config.target_entropy_multiplier, config.init_temp) == (
        0.5,
        1,
        0.5,
        1,
    )
    # QAM's reproduce_rlpd.py: K = 10 pessimistic, chunks of 5 on manipulation, per-domain bc_alpha (nonzero although
    # the paper's text says RLPD has no behavior constraint), its TanhNormal and stochastic evaluation.
    scene = _preset('scene-play-sparse-singletask-task2-v0', 'qam')
    assert scene == {
        'num_critics': 10,
        'q_agg': 'pessimistic',
        'rho': 0.5,
        'horizon_length': 5,
        'discount': 0.99,
        'actor_q_agg': 'pessimistic',
        'log_std_min': -20.0,
        'actor_fc_scale': 1.0,
        'stochastic_eval': True,
        'bc_alpha': 0.3,
        'start_training': 5000,  # its main.py: 4999 online steps of uniform actions (balanced_sampling) before updates
        'random_before_training': True,
    }
    hum = _preset('humanoidmaze-large-navigate-singletask-task1-v0', 'qam')
    assert (hum['rho'], hum['bc_alpha'], hum['discount'], hum['horizon_length']) == (0.0, 0.0, 0.995, 1)
    assert _preset('humanoidmaze-medium-navigate-singletask-task1-v0', 'qam')['bc_alpha'] == 0.03
    with pytest.raises(PresetError, match='only online'):
        _preset('cube-double-play-singletask-task2-v0', 'qam', online=False)


@pytest.mark.parametrize(
    'overrides, msg',
    [
        ({'num_min_qs': 3}, 'num_min_qs must be an integer in'),
        ({'num_min_qs': 1, 'q_agg': 'pessimistic'}, 'std is 0'),
        ({'actor_q_agg': 'max'}, 'actor_q_agg must be'),
        ({'init_temp': 0.0}, 'init_temp'),
        ({'log_std_min': 2.0}, 'log_std_min'),
        ({'bc_alpha': -1.0}, 'bc_alpha'),
        ({'actor_fc_scale': 0.0}, 'actor_fc_scale'),
        ({'activation': 'tanh'}, 'activation must be one of'),
    ],
)
def test_validate_errors(overrides, msg):
    config = agents.get_config('rlpd')
    config.update(overrides)
    with pytest.raises(ValueError, match=msg):
        rlpd.validate(config)


def test_utd_ratio_and_its_conditional_keys_are_checked():
    config = agents.get_config('rlpd')
    for bad in (0, 1.5, True):
        loose = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
        loose.utd_ratio = bad
        with pytest.raises(ValueError, match='utd_ratio'):
            validate_common(loose)
    config.utd_ratio = 1
    with pytest.raises(ValueError, match='utd_actor_once has no effect unless utd_ratio > 1'):
        check_explicit_keys(config, {'utd_actor_once'})
    config.utd_ratio = 20
    check_explicit_keys(config, {'utd_actor_once'})
    # rho acts through the actor's Q too (QAM's rlpd.py), even with a min target
    config.actor_q_agg = 'pessimistic'
    check_explicit_keys(config, {'rho'})
    config.actor_q_agg = 'mean'
    with pytest.raises(ValueError, match='rho has no effect'):
        check_explicit_keys(config, {'rho'})


def test_start_training_follows_each_released_code_and_is_checked():
    """The online steps before the first gradient step: the QAM code's main.py waits 5000 (every agent whose defaults
    are that code, and every --preset=qam), the VGF code until its 4998th environment step, the FQL / FAV codes not."""
    from configs.common import QAM_CODE_AGENTS

    waits = {name: agents.get_config(name).start_training for name in agents.AGENTS}
    assert {n for n, s in waits.items() if s == 5000} == set(QAM_CODE_AGENTS)
    assert waits['vgf'] == 4998 and {n for n, s in waits.items() if s == 0} == set(waits) - {*QAM_CODE_AGENTS, 'vgf'}
    for name in ('rlpd', 'ifql'):  # their defaults are the FQL code's; QAM's protocol is its main.py's
        assert agents.get_agent(name).PRESETS['qam']('cube-double-play-singletask-task1-v0')['start_training'] == 5000
    qam_rlpd = rlpd.qam_preset('cube-double-play-singletask-task1-v0')
    assert qam_rlpd['random_before_training'] is True  # reproduce_rlpd.py runs --balanced_sampling
    config = agents.get_config('fql')
    for bad in (-1, 1.5, True):
        loose = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
        loose.start_training = bad
        with pytest.raises(ValueError, match='start_training'):
            validate_common(loose)
    with pytest.raises(ValueError, match='random_before_training has no effect unless start_training > 1'):
        check_explicit_keys(config, {'random_before_training'})
    config.start_training = 5000
    check_explicit_keys(config, {'random_before_training'})
