"""FAV / FAV-Adaptive: the KDE score, the Stein transport and the zeroth-order gradient against slow references, the
amortized policy's fixed point on a fixed state, the gradient rule, presets, validation, and main.py end to end."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import agents
from agents import fav
from agents.common.kernels import kde_score
from agents.common.rl import critic_td_loss
from agents.common.trainer import Learner
from runner.experiment import resolve_config
from runner.io import read_csv
from tests.conftest import TINY, read_final, run_main


def _tiny_config(variant=None, **overrides):
    config = agents.get_config('fav_adaptive' if variant == 'adaptive' else 'fav')
    config.actor_hidden_dims = (16, 16)
    config.value_hidden_dims = (16, 16)
    config.batch_size = 8
    for k, v in overrides.items():
        config[k] = v
    return config


# ---- KDE score (Eqs. (15)-(16)) --------------------------------------------------------------------------------------
def _mixture_score(x, weights, means, var):
    """Analytic grad log of sum_k w_k N(x; mu_k, var I), float64."""
    d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    logp = np.log(weights)[None] - d2 / (2 * var)
    r = np.exp(logp - logp.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    return (r[:, :, None] * (means[None] - x[:, None, :])).sum(1) / var


def test_kde_score_matches_gaussian_mixture_score():
    rng = np.random.default_rng(0)
    weights, means, var = np.array([0.3, 0.7]), np.array([[-0.5, 0.2], [0.4, -0.3]]), 0.2**2
    comp = rng.choice(2, 200_000, p=weights)
    refs = means[comp] + np.sqrt(var) * rng.standard_normal((len(comp), 2))
    x = means[rng.choice(2, 16, p=weights)] + 0.2 * rng.standard_normal((16, 2))
    with jax.enable_x64(True):
        for tau, smoothed_tol, true_tol in ((0.02, 0.04, None), (0.004, 0.12, 0.12)):
            score = np.asarray(kde_score(jnp.asarray(x), jnp.asarray(refs), tau))
            assert score.dtype == np.float64
            # The KDE estimates the score of p convolved with N(0, sigma^2 I), sigma^2 = tau / 2 (App. B) ...
            exact = _mixture_score(x, weights, means, var + tau / 2)
            assert np.abs(score - exact).max() < smoothed_tol * np.abs(exact).max()
            # ... which tends to the score of p itself as the bandwidth shrinks.
            if true_tol is not None:
                truth = _mixture_score(x, weights, means, var)
                assert np.abs(score - truth).max() < true_tol * np.abs(truth).max()


# ---- Stein transport (Eq. (6)) ---------------------------------------------------------------------------------------
def _transport_loop(x, refs, grad_q, tau, beta, prior=True, value=True, repulsive=True):
    """phi(x_i) = (1/N) sum_j k(x_j, x_i) [KDE score(x_j) + beta grad_q(x_j) + (x_i - x_j) / sigma^2], by loops."""
    s2 = tau / 2
    b, n, d = x.shape
    phi = np.zeros_like(x)
    for s in range(b):
        for i in range(n):
            for j in range(n):
                k = np.exp(-np.sum((x[s, j] - x[s, i]) ** 2) / tau)
                term = np.zeros(d)
                if prior:
                    w = np.array([np.exp(-np.sum((x[s, j] - r) ** 2) / tau) for r in refs[s]])
                    term += sum(wm * (r - x[s, j]) for wm, r in zip(w / w.sum(), refs[s])) / s2
                if value:
                    term += beta * grad_q[s, j]
                if repulsive:
                    term += (x[s, i] - x[s, j]) / s2
                phi[s, i] += k * term / n
    return phi


@pytest.mark.parametrize(
    'switches', [(True, True, True), (False, True, True), (True, False, True), (True, True, False)]
)
def test_stein_transport_matches_double_loop(switches):
    prior, value, repulsive = switches
    rng = np.random.default_rng(1)
    b, n, m, d, tau, beta = 3, 5, 4, 2, 0.3, 1.7
    x, refs, grad_q = rng.normal(size=(b, n, d)) * 0.4, rng.normal(size=(b, m, d)) * 0.4, rng.normal(size=(b, n, d))
    with jax.enable_x64(True):
        score = kde_score(jnp.asarray(x), jnp.asarray(refs), tau) if prior else None
        phi = fav.stein_transport(jnp.asarray(x), score, jnp.asarray(grad_q) if value else None, tau, beta, repulsive)
    expected = _transport_loop(x, refs, grad_q, tau, beta, prior, value, repulsive)
    np.testing.assert_allclose(np.asarray(phi), expected, rtol=1e-10, atol=1e-12)


# ---- zeroth-order gradient (App. C) ----------------------------------------------------------------------------------
def test_zeroth_order_gradient_matches_autodiff():
    rng = np.random.default_rng(2)
    a = rng.normal(size=3)

    def f(x):  # smooth, (..., d) -> (...)
        return jnp.sin(x @ a) + 0.5 * jnp.sum(x**2, -1) + jnp.prod(x, -1)

    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(4, 3)) * 0.5)
        exact = np.asarray(jax.grad(lambda v: f(v).sum())(x))
        est = np.asarray(fav.zeroth_order_grad(f, x, jax.random.PRNGKey(0), 40_000, 1e-2))
    err = np.linalg.norm(est - exact, axis=-1) / np.linalg.norm(exact, axis=-1)
    assert err.max() < 0.05, err


# ---- the amortized policy's fixed point ------------------------------------------------------------------------------
def _train_actor(use_value, c, refs, tau, beta=1.0, n=128, steps=400, seed=0):
    """Train only the FAV actor loss on one fixed state with a known Q(a) = c . a; return 20k policy samples."""
    config = _tiny_config(actor_hidden_dims=(32, 32), num_particles=n, use_value=use_value, beta=beta, bandwidth=tau)
    learner = Learner(fav, config, 1, 2)
    obs, refs, c = jnp.zeros((1, 1)), jnp.asarray(refs, jnp.float32)[None], jnp.asarray(c, jnp.float32)
    actor = learner.modules['actor'].init(jax.random.PRNGKey(seed), obs, jnp.zeros((1, 2)))['params']
    tx = optax.adam(optax.cosine_decay_schedule(3e-3, steps))
    opt_state = tx.init(actor)

    @jax.jit
    def step(actor, opt_state, key):
        def loss_fn(p):
            return fav.actor_loss(learner, {'actor': p}, obs, refs, key, tau, lambda a: a @ c)[0]

        updates, opt_state = tx.update(jax.grad(loss_fn)(actor), opt_state)
        return optax.apply_updates(actor, updates), opt_state

    for i in range(steps):
        actor, opt_state = step(actor, opt_state, jax.random.PRNGKey(1000 + i))
    z = jax.random.normal(jax.random.PRNGKey(7), (20_000, 2))
    return np.asarray(learner.apply('actor', {'actor': actor}, jnp.zeros((20_000, 1)), z), np.float64)


def test_amortized_policy_reproduces_reference_and_value_term_tilts_it():
    rng = np.random.default_rng(3)
    cov = np.array([[0.04, 0.03], [0.03, 0.09]])
    refs = rng.multivariate_normal([0.3, -0.2], cov, 2000)
    tau, beta, c = 0.05, 1.0, np.array([1.0, -1.0])
    # Target of the KDE-based transport: the reference smoothed by N(0, sigma^2 I), sigma^2 = tau / 2 (Sec. 5.2).
    target_cov = np.cov(refs.T) + tau / 2 * np.eye(2)

    plain = _train_actor(False, c, refs, tau)
    np.testing.assert_allclose(plain.mean(0), refs.mean(0), atol=0.03)
    std, target_std = np.sqrt(np.diag(np.cov(plain.T))), np.sqrt(np.diag(target_cov))
    # finite N biases the amortized fixed point slightly toward the mode (the j = i term of Eq. (6))
    assert np.all((std > 0.75 * target_std) & (std < 1.1 * target_std)), (std, target_std)
    corr = np.corrcoef(plain.T)[0, 1]
    target_corr = target_cov[0, 1] / np.sqrt(target_cov[0, 0] * target_cov[1, 1])
    assert abs(corr - target_corr) < 0.15, (corr, target_corr)

    # With the value term, p_sigma(a) exp(beta c.a) is Gaussian with mean mu + beta Sigma_sigma c: Q rises by
    # beta c' Sigma_sigma c.
    tilted = _train_actor(True, c, refs, tau, beta)
    gain, expected_gain = (tilted @ c).mean() - (plain @ c).mean(), beta * c @ target_cov @ c
    assert 0.8 * expected_gain < gain < 1.3 * expected_gain, (gain, expected_gain)
    np.testing.assert_allclose(tilted.mean(0), refs.mean(0) + beta * target_cov @ c, atol=0.04)


# ---- gradient rule, bandwidths ---------------------------------------------------------------------------------------
def _batch(rng, n=8, obs_dim=3, act_dim=2):
    return dict(
        observations=jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
        actions=jnp.asarray(rng.uniform(-1, 1, (n, act_dim)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=n), jnp.float32),
        masks=jnp.ones(n, jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
    )


@pytest.mark.parametrize('q_grad', ['autodiff', 'zeroth_order'])
def test_actor_loss_sends_no_gradient_into_the_critic(q_grad):
    config = _tiny_config(q_grad=q_grad)
    learner = Learner(fav, config, 3, 2)
    state = learner.init(jax.random.PRNGKey(0))
    batch, key = _batch(np.random.default_rng(4)), jax.random.PRNGKey(5)
    grads = jax.jit(jax.grad(lambda p: fav.loss(learner, p, state, batch, key)[0]))(state.params)
    # the critic's gradient is that of the TD loss alone (same next actions: the loss's first sub-key)
    next_actions = fav.sample_actions(learner, state.params, batch['next_observations'], jax.random.split(key)[0])
    td_grads = jax.jit(jax.grad(lambda p: critic_td_loss(learner, p, state, batch, next_actions)[0]))(state.params)
    for g, t in zip(jax.tree_util.tree_leaves(grads['critic']), jax.tree_util.tree_leaves(td_grads['critic'])):
        np.testing.assert_allclose(np.asarray(g), np.asarray(t), rtol=1e-5, atol=1e-7)
    assert any(np.abs(np.asarray(g)).max() > 0 for g in jax.tree_util.tree_leaves(grads['actor']))


def test_scott_bandwidth_dataset_and_batch():
    rng = np.random.default_rng(6)
    actions = rng.uniform(-1, 1, (5000, 3)) * np.array([1.0, 0.5, 0.2])
    config = _tiny_config('adaptive', batch_size=256)
    consts = fav.constants(config, {'actions': actions.astype(np.float32)})
    sigma = np.mean([np.std(actions[:, j]) for j in range(3)])
    h = 256 ** (-1 / 7) * sigma  # Scott's rule, d_a = 3 (App. A.2)
    np.testing.assert_allclose(consts['bandwidth'], 2 * h**2, rtol=1e-5)
    assert fav.constants(_tiny_config(), {'actions': actions}) == {}  # plain FAV: fixed tau, nothing computed
    # 'batch': the same rule on each training batch (the authors' released code)
    learner = Learner(fav, _tiny_config(adaptive_bandwidth='batch'), 3, 3)
    batch = {'actions': jnp.asarray(actions[:256], jnp.float32)}
    hb = 256 ** (-1 / 7) * np.mean(np.std(actions[:256], axis=0))
    np.testing.assert_allclose(float(fav.bandwidth(learner, batch)), 2 * hb**2, rtol=1e-4)
    assert fav.bandwidth(Learner(fav, _tiny_config(bandwidth=0.3), 3, 3), batch) == 0.3


# ---- configs, presets, validation ------------------------------------------------------------------------------------
def test_configs_and_paper_preset():
    assert agents.get_config('fav').agent_name == 'fav'
    adaptive = agents.get_config('fav_adaptive')
    assert adaptive.agent_name == 'fav_adaptive' and adaptive.adaptive_bandwidth == 'dataset'
    assert agents.get_config('fav').adaptive_bandwidth == 'off'
    # FAV Table 6: cube-single (default task2): FAV (tau, beta) = (0.05, 1), FAV-Adaptive beta = 0.5;
    # antmaze-giant task3: (0.5, 1), adaptive beta 1, discount 0.995.
    assert fav.paper_preset('cube-single-play-singletask-v0') == {'bandwidth': 0.05, 'beta': 1.0, 'discount': 0.99}
    assert fav.paper_preset('cube-single-play-singletask-v0', 'adaptive') == {'beta': 0.5, 'discount': 0.99}
    assert fav.paper_preset('antmaze-giant-navigate-singletask-task3-v0') == {
        'bandwidth': 0.5,
        'beta': 1.0,
        'discount': 0.995,
    }
    task = type('Task', (), {'name': 'puzzle-4x4-play-singletask-task1-v0', 'extra': {}})()
    config, applied = resolve_config(fav, agents.get_config('fav'), task, 'paper', explicit={'beta'})
    assert config.bandwidth == 1.0 and config.beta == 1.0 and 'beta' not in applied  # explicit flags win


@pytest.mark.parametrize(
    'key,value,match',
    [
        ('beta', 0.0, 'beta must be positive'),
        ('beta', -1.0, 'beta must be positive'),
        ('bandwidth', 0.0, 'bandwidth must be positive'),
        ('bandwidth', -0.5, 'bandwidth must be positive'),
        ('num_particles', 0, 'num_particles must be positive'),
        ('zo_eta', 0.0, 'zo_eta must be positive'),
        ('adaptive_bandwidth', 'scott', 'adaptive_bandwidth must be one of'),
        ('q_grad', 'fd', 'q_grad must be one of'),
        ('ref_actions', 'all', 'ref_actions must be one of'),
    ],
)
def test_validate_rejects_bad_hyperparameters(key, value, match):
    fav.validate(_tiny_config())
    with pytest.raises(ValueError, match=match):
        fav.validate(_tiny_config(**{key: value}))


def test_main_rejects_non_positive_bandwidth(tmp_path):
    proc = run_main(['--agent=fav', '--env_name=toy-8gaussians', '--agent.bandwidth=0', *TINY], tmp_path, check=False)
    assert proc.returncode == 2 and 'bandwidth must be positive' in proc.stderr


# ---- main.py end to end ----------------------------------------------------------------------------------------------
# intervals that cut the offline phase into equal chunks, so the fused train step compiles once
STEPS = ['--offline_steps=40', '--online_steps=20', '--eval_interval=20', '--log_interval=20', '--save_interval=40']


def _check_run(run_dir, name):
    final = read_final(run_dir)
    assert final['agent'] == name and final['steps'] == 60
    assert np.isfinite(final['last_eval']['tv_distance']) and 0 <= final['last_eval']['tv_distance'] <= 1
    assert np.isfinite(final['offline_score']) and np.isfinite(final['online_score'])
    with open(os.path.join(run_dir, 'train.csv')) as f:
        header = f.readline().strip().split(',')
    assert {'actor/loss', 'actor/phi_norm', 'critic/loss', 'actor/bandwidth'} <= set(header)
    return final


def test_main_fav_offline_and_online(tmp_path):
    run_main(['--agent=fav', '--env_name=toy-8gaussians', *STEPS, *TINY], tmp_path)
    final = _check_run(tmp_path / 'fav_toy-8gaussians_seed0', 'fav')
    assert final['constants'] == {}


def test_main_fav_adaptive_offline_and_online_with_options(tmp_path):
    """FAV-Adaptive (Scott's rule on the dataset, logged), here with the black-box gradient, all batch actions as
    references and min aggregation."""
    opts = ['--agent.q_grad=zeroth_order', '--agent.zo_num_dirs=4', '--agent.ref_actions=batch', '--agent.q_agg=min']
    run_main(['--agent=fav_adaptive', '--env_name=toy-8gaussians', *STEPS, *opts, *TINY], tmp_path)
    run_dir = tmp_path / 'fav_adaptive_toy-8gaussians_seed0'
    final = _check_run(run_dir, 'fav_adaptive')
    from envs import toy

    actions = toy.make_task(0).train_dataset['actions'].astype(np.float64)
    n = 32  # TINY batch size
    tau = 2 * (n ** (-1 / 6) * actions.std(axis=0).mean()) ** 2
    np.testing.assert_allclose(final['constants']['bandwidth'], tau, rtol=1e-6)
    with open(run_dir / 'config.json') as f:
        assert json.load(f)['config']['adaptive_bandwidth'] == 'dataset'
    rows = read_csv(run_dir / 'train.csv')
    np.testing.assert_allclose([float(r['actor/bandwidth']) for r in rows], tau, rtol=1e-5)
