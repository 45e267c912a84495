"""FAV / FAV-Adaptive: the KDE score (the released clamped one and Eqs. (15)-(16)), the Stein transport and the
zeroth-order gradient against slow references, the released drift on clipped particles, grad Q over the critic heads,
the amortized policy's fixed point on a fixed state, the gradient rule, presets, validation, and main.py end to
end."""

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


def _released_kde_score(x, refs, tau):
    """Released get_drift (fav-offrl/agents/fav.py) in float64 loops: K_m = exp(-||x - r_m||^2 / tau),
    Z_p = max(sum_m K_m, 1e-6), score = 2 (sum_m K_m r_m - Z_p x) / (tau Z_p). x (B, N, d), refs (B, M, d)."""
    out = np.zeros_like(x)
    for s in range(x.shape[0]):
        for i in range(x.shape[1]):
            k = np.array([np.exp(-np.sum((x[s, i] - r) ** 2) / tau) for r in refs[s]])
            z = max(k.sum(), 1e-6)
            out[s, i] = 2 * (sum(km * r for km, r in zip(k, refs[s])) - z * x[s, i]) / (tau * z)
    return out


def test_clamped_kde_score_matches_released_formula_and_its_pull_fades_far_away():
    rng = np.random.default_rng(10)
    tau = 0.1
    x = rng.uniform(-0.5, 0.5, (3, 5, 2))
    refs = x[:, :3] + 0.1 * rng.normal(size=(3, 3, 2))  # state 0, 1: references near the particles
    # state 2: three copies of one reference; particle 0 at squared distance 8 (K = e^-80, far), particle 1 with
    # K = 1e-7 (Z_p = 3e-7, under the floor), particle 2 with K = 1e-5 (over it), particles 3, 4 near it
    refs[2] = [[0.6, 0.6], [0.6, 0.6], [0.6, 0.6]]
    for i, d2 in ((0, 8.0), (1, -tau * np.log(1e-7)), (2, -tau * np.log(1e-5))):
        x[2, i] = refs[2, 0] - np.sqrt(d2 / 2)
    x[2, 3:] = [[0.5, 0.55], [0.65, 0.7]]
    with jax.enable_x64(True):
        got = np.asarray(fav.clamped_kde_score(jnp.asarray(x), jnp.asarray(refs), tau))
        paper = np.asarray(kde_score(jnp.asarray(x), jnp.asarray(refs), tau))
    expected = _released_kde_score(x, refs, tau)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # where Z_p >= 1e-6 it is the self-normalized score of Eqs. (15)-(16) ...
    np.testing.assert_allclose(got[:2], paper[:2], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[2, 2:], paper[2, 2:], rtol=1e-9, atol=1e-12)
    # ... far away the pull toward the reference vanishes, leaving -(2 / tau) x; the paper's keeps pulling to it
    np.testing.assert_allclose(got[2, 0], -(2 / tau) * x[2, 0], rtol=1e-12)
    np.testing.assert_allclose(paper[2, 0], (2 / tau) * (refs[2, 0] - x[2, 0]), rtol=1e-12)
    # under the floor the pull toward the reference is scaled by Z_p / 1e-6 = 0.3
    np.testing.assert_allclose(got[2, 1], (2 / tau) * (0.3 * refs[2, 0] - x[2, 1]), rtol=1e-8)
    # `unclamped_kde` switches the agent's prior score to the paper's
    with jax.enable_x64(True):
        for unclamped, want in ((False, expected), (True, paper)):
            cfg = _tiny_config(**({'unclamped_kde': True} if unclamped else {}))
            score = fav.prior_score(cfg, jnp.asarray(x), jnp.asarray(refs), tau)
            np.testing.assert_allclose(np.asarray(score), want, rtol=1e-9, atol=1e-12)


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


def _released_drift(x, refs, grad_q, tau, beta):
    """Released get_drift (fav-offrl/agents/fav.py), float64 loops: (1/N) sum_j k(x_i, x_j) [score(x_j) + beta
    grad_q(x_j)] - grad_{x_i} sum_{a,b} k(x_a, x_b) / (2N), the score that of `_released_kde_score`."""
    score = _released_kde_score(x, refs, tau)
    b, n, d = x.shape
    phi = np.zeros_like(x)
    for s in range(b):
        for i in range(n):
            grad_k = np.zeros(d)  # d/dx_i of sum_{a,b} exp(-||x_a - x_b||^2 / tau): the (i, j) and (j, i) terms
            for j in range(n):
                k = np.exp(-np.sum((x[s, i] - x[s, j]) ** 2) / tau)
                phi[s, i] += k * (score[s, j] + beta * grad_q[s, j]) / n
                grad_k += 2 * k * (-2 / tau) * (x[s, i] - x[s, j])
            phi[s, i] -= grad_k / (2 * n)
    return phi


@pytest.mark.parametrize('unclipped', [False, True])
def test_particles_clipped_before_the_drift_and_the_loss(unclipped):
    """Released actor_loss: x = clip(pi(s, z), -1, 1); drift at x; loss mean((stopgrad(x + drift) - x)^2) over all
    entries, so a clipped entry sends no gradient. `unclipped_particles` uses the raw outputs throughout."""
    tau, beta, c = 0.3, 0.7, np.array([0.4, -0.8])
    config = _tiny_config(
        num_particles=6, bandwidth=tau, beta=beta, **({'unclipped_particles': True} if unclipped else {})
    )
    learner = Learner(fav, config, 3, 2)
    actor = learner.init(jax.random.PRNGKey(11)).params['actor']
    actor['MLP_0']['Dense_2']['bias'] = jnp.asarray([1.2, -0.3])  # a fair share of outputs beyond +1
    rng = np.random.default_rng(12)
    obs = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    refs = jnp.asarray(rng.uniform(-1, 1, (4, 1, 2)), jnp.float32)
    key = jax.random.PRNGKey(13)

    def q_fn(a):  # Q(a) = -||a - c||^2, grad = -2 (a - c)
        return -jnp.sum((a - c) ** 2, -1)

    def loss_fn(p):
        return fav.actor_loss(learner, {'actor': p}, obs, refs, key, tau, q_fn)[0]

    loss, grads = jax.value_and_grad(loss_fn)(actor)
    raw = np.asarray(fav.policy_particles(learner, {'actor': actor}, obs, jax.random.split(key)[0]), np.float64)
    assert 0.2 < np.mean(np.abs(raw) > 1) < 0.8
    x = raw if unclipped else np.clip(raw, -1, 1)
    phi = _released_drift(x, np.asarray(refs, np.float64), -2 * (x - c), tau, beta)
    np.testing.assert_allclose(float(loss), np.mean(phi**2), rtol=1e-4)
    # d loss / d (output bias)_k = -2 / (B N d) * sum of phi_k over the entries that are not clipped
    live = np.ones_like(raw) if unclipped else (np.abs(raw) < 1).astype(np.float64)
    expected = -2 * (phi * live).sum((0, 1)) / phi.size
    np.testing.assert_allclose(np.asarray(grads['MLP_0']['Dense_2']['bias']), expected, rtol=1e-4, atol=1e-7)


def _np_critic_heads(params, obs, actions):
    """The critic ensemble in float64 numpy (Dense -> GELU (tanh) -> LayerNorm, linear output): (heads, ...)."""
    layers = sorted(k for k in params if k.startswith('Dense'))
    out = []
    for h in range(params[layers[0]]['kernel'].shape[0]):
        x = np.concatenate([obs, actions], -1)
        for i, name in enumerate(layers):
            x = x @ np.asarray(params[name]['kernel'][h], np.float64) + np.asarray(params[name]['bias'][h], np.float64)
            if i + 1 < len(layers):
                x = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
                mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
                ln = params[f'LayerNorm_{i}']
                x = (x - mu) / np.sqrt(var + 1e-6) * np.asarray(ln['scale'][h], np.float64) + np.asarray(
                    ln['bias'][h], np.float64
                )
        out.append(x[..., 0])
    return np.stack(out)


def _np_grad_q(params, obs, x, agg, eps=1e-6):
    """Central differences of agg_heads Q(s, x) w.r.t. each particle x (B, N, d), float64."""
    obs_rep = np.repeat(obs[:, None], x.shape[1], axis=1)
    grad = np.zeros_like(x)
    for k in range(x.shape[-1]):
        e = np.zeros(x.shape[-1])
        e[k] = eps
        qp, qm = agg(_np_critic_heads(params, obs_rep, x + e)), agg(_np_critic_heads(params, obs_rep, x - e))
        grad[..., k] = (qp - qm) / (2 * eps)
    return grad


@pytest.mark.parametrize('q_agg, grad_q_agg', [('min', 'mean'), ('mean', 'mean'), ('mean', 'min')])
def test_value_gradient_is_the_mean_over_critic_heads_whatever_q_agg(q_agg, grad_q_agg):
    """Released get_drift: grad_a mean_k Q_k(s, a) (jnp.mean over the heads), whatever q_agg (which only enters the
    TD target). `grad_q_agg` switches to another aggregation."""
    extra = {} if grad_q_agg == 'mean' else {'grad_q_agg': grad_q_agg}
    config = _tiny_config(q_agg=q_agg, num_critics=3, use_prior=False, use_repulsive=False, **extra)
    learner = Learner(fav, config, 3, 2)
    state = learner.init(jax.random.PRNGKey(14))
    batch, key = _batch(np.random.default_rng(15)), jax.random.PRNGKey(16)
    info = jax.jit(lambda p: fav.loss(learner, p, state, batch, key)[1])(state.params)
    # the particles fav.loss drew: loss -> (next, actor) keys, actor_loss -> (noise, zeroth-order) keys
    noise_key = jax.random.split(jax.random.split(key)[1])[0]
    raw = fav.policy_particles(learner, state.params, batch['observations'], noise_key)
    x = np.clip(np.asarray(raw, np.float64), -1, 1)
    cparams = jax.tree_util.tree_map(np.asarray, state.params['critic']['VmapMLP_0'])
    obs = np.asarray(batch['observations'], np.float64)
    aggs = {'mean': lambda q: q.mean(0), 'min': lambda q: q.min(0)}
    grads = {a: _np_grad_q(cparams, obs, x, f) for a, f in aggs.items()}
    np.testing.assert_allclose(
        float(info['actor/grad_q_norm']), np.linalg.norm(grads[grad_q_agg], axis=-1).mean(), rtol=1e-4
    )
    # with the prior and repulsive terms off the drift is (1/N) K beta grad_q: check it entry by entry
    k = np.exp(-((x[:, :, None] - x[:, None]) ** 2).sum(-1) / config.bandwidth)
    phi = config.beta * k @ grads[grad_q_agg] / x.shape[1]
    np.testing.assert_allclose(float(info['actor/loss']), np.mean(phi**2), rtol=1e-3)
    # the other aggregation's gradient is far from it (so the checks above tell them apart)
    other = grads['min' if grad_q_agg == 'mean' else 'mean']
    assert np.abs(other - grads[grad_q_agg]).max() > 0.2 * np.abs(grads[grad_q_agg]).max()
    # and q_values in float64 matches the reference gradient itself
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), state.params)
        g = jax.grad(lambda a: fav.q_values(learner, p64, jnp.asarray(obs), a).sum())(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(g), grads[grad_q_agg], rtol=1e-5, atol=1e-8)


def test_scott_bandwidth_batch_and_dataset():
    rng = np.random.default_rng(6)
    actions = rng.uniform(-1, 1, (5000, 3)) * np.array([1.0, 0.5, 0.2])
    # 'batch' (FAV-Adaptive's default, the released get_adaptive_bandwidth): Scott's rule on each training batch,
    # h = n^(-1/(d_a+4)) max(mean_j std(a_j), 1e-4), n = the batch's rows
    learner = Learner(fav, _tiny_config('adaptive'), 3, 3)
    assert learner.config.adaptive_bandwidth == 'batch'
    batch = {'actions': jnp.asarray(actions[:256], jnp.float32)}
    hb = 256 ** (-1 / 7) * np.mean(np.std(actions[:256], axis=0))
    np.testing.assert_allclose(float(fav.bandwidth(learner, batch)), 2 * hb**2, rtol=1e-4)
    flat = {'actions': jnp.full((64, 3), 0.3, jnp.float32)}  # zero spread: the std floor 1e-4
    np.testing.assert_allclose(float(fav.bandwidth(learner, flat)), 2 * (64 ** (-1 / 7) * 1e-4) ** 2, rtol=1e-4)
    # 'dataset' (the paper's App. A.2 text): the same rule with the whole dataset's std, once
    config = _tiny_config('adaptive', batch_size=256, adaptive_bandwidth='dataset')
    consts = fav.constants(config, {'actions': actions.astype(np.float32)})
    sigma = np.mean([np.std(actions[:, j]) for j in range(3)])
    h = 256 ** (-1 / 7) * sigma  # Scott's rule, d_a = 3 (App. A.2)
    np.testing.assert_allclose(consts['bandwidth'], 2 * h**2, rtol=1e-5)
    assert fav.constants(_tiny_config(), {'actions': actions}) == {}  # plain FAV: fixed tau, nothing computed
    assert fav.constants(_tiny_config('adaptive'), {'actions': actions}) == {}  # per batch: nothing computed
    assert fav.bandwidth(Learner(fav, _tiny_config(bandwidth=0.3), 3, 3), batch) == 0.3


# ---- configs, presets, validation ------------------------------------------------------------------------------------
def test_configs_and_paper_preset():
    plain, adaptive = agents.get_config('fav'), agents.get_config('fav_adaptive')
    assert plain.agent_name == 'fav' and adaptive.agent_name == 'fav_adaptive'
    # the released get_config: beta 10, bandwidth 1, 8 particles, mean target, clamped KDE, clipped particles
    for c in (plain, adaptive):
        assert (c.beta, c.bandwidth, c.num_particles, c.q_agg, c.grad_q_agg) == (10.0, 1.0, 8, 'mean', 'mean')
        assert not c.unclamped_kde and not c.unclipped_particles and c.ref_actions == 'own'
    assert plain.adaptive_bandwidth == 'off' and adaptive.adaptive_bandwidth == 'batch'
    # FAV Table 6: cube-single (default task2): FAV (tau, beta) = (0.05, 1), FAV-Adaptive beta = 0.5;
    # antmaze-giant task3: (0.5, 1), adaptive beta 1, discount 0.995, q_agg min (the released commands).
    assert fav.paper_preset('cube-single-play-singletask-v0') == {'bandwidth': 0.05, 'beta': 1.0, 'discount': 0.99}
    assert fav.paper_preset('cube-single-play-singletask-v0', 'adaptive') == {'beta': 0.5, 'discount': 0.99}
    assert fav.paper_preset('antmaze-giant-navigate-singletask-task3-v0') == {
        'bandwidth': 0.5,
        'beta': 1.0,
        'discount': 0.995,
        'q_agg': 'min',
    }
    task = type('Task', (), {'name': 'puzzle-4x4-play-singletask-task1-v0', 'extra': {}})()
    config, applied = resolve_config(fav, agents.get_config('fav'), task, 'paper', explicit={'beta'})
    assert config.bandwidth == 1.0 and config.beta == 10.0 and 'beta' not in applied  # explicit flags win


# Per-task values of the released commands (fav-offrl/README.md), one task per environment family:
# (env, FAV {bandwidth, beta}, FAV-Adaptive beta, discount, q_agg).
README_COMMANDS = [
    ('antmaze-large-navigate-singletask-task1-v0', (0.5, 2.0), 1.0, 0.99, 'min'),
    ('antmaze-giant-navigate-singletask-task5-v0', (0.5, 1.0), 1.0, 0.995, 'min'),
    ('humanoidmaze-medium-navigate-singletask-task2-v0', (0.5, 1.0), 2.0, 0.995, 'mean'),
    ('humanoidmaze-large-navigate-singletask-task3-v0', (0.5, 1.0), 2.0, 0.995, 'mean'),
    ('antsoccer-arena-navigate-singletask-task4-v0', (1.0, 1.0), 2.0, 0.995, 'mean'),
    ('cube-single-play-singletask-task1-v0', (0.05, 1.0), 0.5, 0.99, 'mean'),
    ('cube-double-play-singletask-task2-v0', (0.1, 0.5), 0.5, 0.99, 'mean'),
    ('scene-play-singletask-task3-v0', (0.1, 0.5), 0.5, 0.99, 'mean'),
    ('puzzle-3x3-play-singletask-task4-v0', (0.5, 0.5), 2.0, 0.99, 'mean'),
    ('puzzle-4x4-play-singletask-task5-v0', (1.0, 0.5), 0.1, 0.99, 'mean'),
    ('antmaze-umaze-v2', (0.5, 1.0), 3.0, 0.99, 'mean'),
    ('antmaze-medium-play-v2', (1.0, 3.0), 2.0, 0.99, 'mean'),
    ('antmaze-large-diverse-v2', (1.0, 3.0), 5.0, 0.99, 'mean'),
]


@pytest.mark.parametrize('env, fav_values, adaptive_beta, discount, q_agg', README_COMMANDS)
def test_paper_preset_follows_the_released_commands(env, fav_values, adaptive_beta, discount, q_agg):
    """--preset=paper resolves to the released command's flags, q_agg=min on OGBench antmaze-large / giant for
    both variants (the gradient of the drift stays the mean over the heads)."""
    extra = {'q_agg': 'min'} if q_agg == 'min' else {}
    bw, beta = fav_values
    assert agents.paper_preset('fav', env) == {'bandwidth': bw, 'beta': beta, 'discount': discount, **extra}
    assert agents.paper_preset('fav_adaptive', env) == {'beta': adaptive_beta, 'discount': discount, **extra}
    task = type('Task', (), {'name': env, 'extra': {}})()
    for name in ('fav', 'fav_adaptive'):
        config, _ = resolve_config(fav, agents.get_config(name), task, 'paper', explicit=set())
        assert config.q_agg == q_agg and config.grad_q_agg == 'mean' and config.discount == discount
        config, applied = resolve_config(fav, agents.get_config(name), task, 'paper', explicit={'q_agg'})
        assert config.q_agg == 'mean' and 'q_agg' not in applied  # an explicit --agent.q_agg wins


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
        ('grad_q_agg', 'max', 'grad_q_agg must be one of'),
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
    """FAV-Adaptive with Scott's rule on the dataset (the paper's text; logged), here with the black-box gradient,
    all batch actions as references, min aggregation and the other paper-text switches."""
    opts = ['--agent.q_grad=zeroth_order', '--agent.zo_num_dirs=4', '--agent.ref_actions=batch', '--agent.q_agg=min']
    opts += ['--agent.adaptive_bandwidth=dataset', '--agent.unclamped_kde=True', '--agent.unclipped_particles=True']
    opts += ['--agent.grad_q_agg=min']
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


@pytest.mark.parametrize('unclipped', [False, True])
def test_value_gradient_on_the_action_bound_is_the_released_one(unclipped):
    """Particles clipped to exactly +-1: released get_drift differentiates Q at them unclipped (the full gradient;
    jnp.clip's derivative on the bound is 1/2). `unclipped_particles`: Q(s, clip(x)), 1/2 on the bound, 0 beyond."""
    config = _tiny_config(num_critics=2, **({'unclipped_particles': True} if unclipped else {}))
    learner = Learner(fav, config, 3, 2)
    params = learner.init(jax.random.PRNGKey(21)).params
    obs = np.random.default_rng(22).normal(size=(2, 3))
    x = np.array([[[1.0, -1.0], [0.3, 1.0]], [[-1.0, 0.2], [1.5, -0.4]]])  # on the bounds and (last) beyond
    cparams = jax.tree_util.tree_map(np.asarray, params['critic']['VmapMLP_0'])
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params)
        g = np.asarray(jax.grad(lambda a: fav.q_values(learner, p64, jnp.asarray(obs), a).sum())(jnp.asarray(x)))
    ref = _np_grad_q(cparams, obs, x, lambda q: q.mean(0))  # Q at x itself, the released formula
    inside, on, beyond = np.abs(x) < 1, np.abs(x) == 1, np.abs(x) > 1
    if not unclipped:
        np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-8)
        assert np.all(np.abs(ref[on]) > 1e-4)  # so the two cases differ on the bound
    else:  # the gradient of Q(s, clip(x)): full inside, 1/2 on the bound, 0 beyond (Q is flat there)
        ref_c = _np_grad_q(cparams, obs, np.clip(x, -1, 1), lambda q: q.mean(0))
        np.testing.assert_allclose(g[inside], ref_c[inside], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(g[on], 0.5 * ref_c[on], rtol=1e-5, atol=1e-8)
        assert np.all(g[beyond] == 0)


def test_toy_table_floor_note_holds_at_the_worst_case_of_the_action_box():
    """scripts/toy_table.py says FAV's `unclamped_kde` row can differ from the default only by rounding on the 2-D toy;
    at the farthest pair of the box (opposite corners, one reference) the two scores agree there, and not in 4-D."""
    from scripts import toy_table

    tau = fav.get_config().bandwidth
    for d, binds in ((2, False), (4, True)):
        x = -np.ones((1, 1, d))  # particles are clipped to [-1, 1]^d; references (dataset actions) lie in it too
        refs = np.ones((1, 1, d))
        with jax.enable_x64(True):
            clamped = np.asarray(fav.clamped_kde_score(jnp.asarray(x), jnp.asarray(refs), tau))
            paper = np.asarray(kde_score(jnp.asarray(x), jnp.asarray(refs), tau))
        assert np.allclose(clamped, paper, rtol=1e-12) != binds
        assert (toy_table.fav_floor_note(d) == '') == binds
    assert 'cannot bind' in toy_table.fav_floor_note(2)
