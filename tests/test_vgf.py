"""VGF (agents/vgf.py): Eq. (7) against numpy float64 double loops, the median heuristic, the particle optimizers, the
monotone flow on a known quadratic Q, best-of-N at L = 0, the learned gradient field, presets, validation, and
main.py end to end with an L_test sweep."""

import csv
import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import vgf
from agents.common.kernels import median_bandwidth
from agents.common.trainer import Learner, TrainState
from configs.presets import PresetError, read_table
from tests.conftest import TINY, read_final, run_main

jax.config.update('jax_platforms', 'cpu')


def _config(**kw):
    config = agents.get_config('vgf')
    config.actor_hidden_dims = (16, 16)
    config.value_hidden_dims = (16, 16)
    config.update(kw)
    return config


# ---------------------------------------------------------------------------------------------- slow references
def _median_tau_ref(x):
    """Median heuristic, written out: median of all N*N squared pairwise distances (diagonal included, as in the
    official code / paper App. C) over log(N + 1): tau = 2 sigma^2 with sigma^2 = med / (2 log(N + 1))."""
    n = len(x)
    d2 = [sum((float(x[i][c]) - float(x[j][c])) ** 2 for c in range(len(x[i]))) for i in range(n) for j in range(n)]
    return statistics.median(d2) / math.log(n + 1)


def _phi_ref(x, g, tau, maxent=False, alpha=1.0):
    """Eq. (7) for one state with explicit loops; grad_{a_j} k(a_j, x_i) by central finite differences."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    n, d = x.shape
    kern = lambda a, b: math.exp(-float(np.sum((a - b) ** 2)) / tau)  # noqa: E731
    phi = np.zeros((n, d))
    for i in range(n):
        for j in range(n):
            k = kern(x[j], x[i])
            phi[i] += k * g[j] / (alpha if maxent else 1.0)
            if maxent:
                for c in range(d):
                    e = np.zeros(d)
                    e[c] = 1e-6
                    phi[i, c] += (kern(x[j] + e, x[i]) - kern(x[j] - e, x[i])) / 2e-6
    return phi / n


# ---------------------------------------------------------------------------------------------- Eq. (7) and kernel
@pytest.mark.parametrize('n', [5, 4, 1])
def test_median_bandwidth_matches_slow_reference(n):
    x = np.random.default_rng(n).uniform(-1, 1, (3, n, 2)).astype(np.float32)
    taus = np.asarray(median_bandwidth(jnp.asarray(x)))
    for b in range(3):
        ref = max(_median_tau_ref(x[b]), 1e-6)
        np.testing.assert_allclose(taus[b], ref, rtol=1e-5)
        # The official kernel exp(-d2 / (2 sigma^2)), sigma^2 = median / (2 log(N + 1)), is exp(-d2 / tau).
        if n > 1:
            sigma2 = np.median(((x[b][:, None] - x[b][None]) ** 2).sum(-1)) / (2 * np.log(n + 1))
            np.testing.assert_allclose(2 * sigma2, taus[b], rtol=1e-5)


@pytest.mark.parametrize('maxent', [False, True])
def test_phi_matches_double_loop(maxent):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, 5, 2)).astype(np.float32)
    g = rng.normal(size=(3, 5, 2)).astype(np.float32)
    for tau in (None, 0.3):
        t = median_bandwidth(jnp.asarray(x)) if tau is None else tau
        phi = np.asarray(vgf.vgf_direction(jnp.asarray(x), jnp.asarray(g), t, maxent=maxent, alpha=0.5))
        for b in range(3):
            tb = _median_tau_ref(x[b]) if tau is None else tau
            np.testing.assert_allclose(phi[b], _phi_ref(x[b], g[b], tb, maxent, 0.5), rtol=1e-4, atol=1e-5)


def _adam_ref(x, grad_fn, steps, lr, tau=None, b1=0.9, b2=0.999, eps=1e-8):
    """Fresh Adam (optax defaults) on -phi per flow, clip to [-1, 1] after each step; float64."""
    x = np.asarray(x, np.float64).copy()
    m, v = np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        phi = np.stack([_phi_ref(xb, gb, tau or _median_tau_ref(xb)) for xb, gb in zip(x, grad_fn(x))])
        m = b1 * m + (1 - b1) * (-phi)
        v = b2 * v + (1 - b2) * phi**2
        upd = -lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        x = np.clip(x + upd, -1, 1)
    return x


@pytest.mark.parametrize('optimizer', ['adam', 'sgd'])
def test_flow_steps_match_reference_optimizer(optimizer):
    a_star = np.array([0.3, -0.2])
    grad_np = lambda x: -2.0 * (x - a_star)  # noqa: E731  Q = -||a - a*||^2
    x0 = np.random.default_rng(1).uniform(-1, 1, (2, 5, 2)).astype(np.float32)
    cfg = _config(particle_optimizer=optimizer, vgf_step_size=0.1)
    out = np.asarray(vgf.run_flow(lambda x: -2.0 * (x - jnp.asarray(a_star, jnp.float32)), jnp.asarray(x0), 3, cfg))
    if optimizer == 'adam':
        ref = _adam_ref(x0, grad_np, 3, 0.1)
    else:
        ref = np.asarray(x0, np.float64)
        for _ in range(3):
            phi = np.stack([_phi_ref(xb, gb, _median_tau_ref(xb)) for xb, gb in zip(ref, grad_np(ref))])
            ref = np.clip(ref + 0.1 * phi, -1, 1)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    # Adam's first step moves every coordinate by the step size in the direction of phi (sign step).
    one = np.asarray(vgf.run_flow(lambda x: -2.0 * (x - jnp.asarray(a_star, jnp.float32)), jnp.asarray(x0), 1, cfg))
    if optimizer == 'adam':
        np.testing.assert_allclose(np.abs(one - x0), 0.1, atol=1e-5)


@pytest.mark.parametrize('optimizer', ['adam', 'sgd'])
def test_particles_move_monotonically_toward_the_maximizer(optimizer):
    """Q(s, a) = -||a - a*||^2, particles starting on one side of a*: every particle's distance to a* (and its Q)
    improves at every step l = 0..L."""
    a_star = jnp.asarray([0.6, -0.4])
    x0 = jnp.asarray([-0.5, 0.5]) + 0.05 * jax.random.normal(jax.random.PRNGKey(0), (4, 5, 2))
    cfg = _config(particle_optimizer=optimizer, vgf_step_size=0.05)
    grad_fn = jax.grad(lambda x: -jnp.sum((x - a_star) ** 2))
    dists = np.stack(
        [np.linalg.norm(np.asarray(vgf.run_flow(grad_fn, x0, L, cfg)) - np.asarray(a_star), axis=-1) for L in range(7)]
    )  # (L, B, N)
    assert np.all(np.diff(dists, axis=0) < 0), np.diff(dists, axis=0).max()
    assert np.all(dists[-1] < dists[0] - 0.1)


def test_single_particle_sgd_is_gradient_ascent():
    """N = 1: k = 1 and Eq. (7) is plain gradient ascent: a* + (1 - 2 eps)^L (a0 - a*)."""
    a_star = np.array([0.2, 0.1])
    x0 = np.array([[[-0.7, 0.9]]])
    cfg = _config(particle_optimizer='sgd', vgf_step_size=0.1, num_particles=1)
    grad_fn = jax.grad(lambda x: -jnp.sum((x - jnp.asarray(a_star, jnp.float32)) ** 2))
    for L in (1, 4):
        out = np.asarray(vgf.run_flow(grad_fn, jnp.asarray(x0, jnp.float32), L, cfg))
        np.testing.assert_allclose(out, a_star + (1 - 2 * 0.1) ** L * (x0 - a_star), rtol=1e-5)


def test_particles_stay_in_the_action_box():
    cfg = _config(vgf_step_size=0.5, particle_optimizer='sgd', bandwidth=0.2)
    x = vgf.run_flow(lambda x: 100.0 * jnp.ones_like(x), jnp.zeros((2, 5, 3)), 4, cfg)
    assert float(jnp.max(jnp.abs(x))) <= 1.0 and float(jnp.max(x)) == 1.0


# ---------------------------------------------------------------------------------------------- agent functions
def _learner(config, obs_dim=3, action_dim=2, seed=0):
    learner = Learner(vgf, config, obs_dim, action_dim)
    return learner, learner.init(jax.random.PRNGKey(seed))


def _act(learner, steps):
    return jax.jit(lambda p, o, r: vgf.sample_actions(learner, p, o, r, temperature=0.0, test_steps=steps))


def test_l0_action_is_best_of_n_bc_samples():
    learner, state = _learner(_config())
    obs = jax.random.normal(jax.random.PRNGKey(1), (7, 3))
    rng = jax.random.PRNGKey(2)
    actions = np.asarray(_act(learner, 0)(state.params, obs, rng))
    # The same BC samples (the first half of the key split feeds the flow), ranked by a numpy loop.
    obs_rep, bc = vgf.bc_particles(learner, state.params, obs, jax.random.split(rng)[0])
    qs = np.asarray(learner.apply('critic', state.params, obs_rep, bc).mean(axis=0))  # q_agg 'mean'
    bc = np.asarray(bc)
    for b in range(7):
        best = max(range(5), key=lambda j: qs[b, j])
        np.testing.assert_allclose(actions[b], bc[b, best], atol=1e-6)
    moved = np.asarray(_act(learner, 2)(state.params, obs, rng))
    assert np.min(np.abs(moved[:, None] - bc).sum(-1)) > 1e-4  # L > 0 actions are no longer BC samples


def _exact_field(learner):
    """Make f(s, a) exact: 'grad_field' returns the autodiff gradient of the critic."""
    orig = learner.apply

    def apply(name, params, *args, **kw):
        if name == 'grad_field':
            return vgf.q_grads(learner, params, *args)
        return orig(name, params, *args, **kw)

    learner.apply = apply
    return learner


def test_grad_net_path_equals_autodiff_when_f_is_exact():
    cfg = _config(train_vgf_steps=2, maxent=True, alpha=0.7)
    learner_gn, state = _learner(_config(grad_net=True, train_vgf_steps=2, maxent=True, alpha=0.7))
    assert 'grad_field' in state.params
    learner_gn = _exact_field(learner_gn)
    learner_ad = Learner(vgf, cfg, 3, 2)
    params_ad = {k: v for k, v in state.params.items() if k != 'grad_field'}
    state_ad = TrainState(params_ad, state.target_params, None, state.rng, state.step)
    obs = jax.random.normal(jax.random.PRNGKey(3), (6, 3))
    rng = jax.random.PRNGKey(4)
    a_gn = _act(learner_gn, 3)(state.params, obs, rng)
    np.testing.assert_allclose(a_gn, _act(learner_ad, 3)(params_ad, obs, rng), atol=1e-6)
    batch = dict(
        observations=obs,
        actions=jnp.tanh(obs[:, :2]),
        rewards=jnp.ones(6),
        masks=jnp.ones(6),
        next_observations=obs[::-1],
    )
    _, info_gn = jax.jit(lambda st: vgf.loss(learner_gn, st.params, st, batch, rng))(state)
    _, info_ad = jax.jit(lambda st: vgf.loss(learner_ad, st.params, st, batch, rng))(state_ad)
    np.testing.assert_allclose(info_gn['critic/loss'], info_ad['critic/loss'], rtol=1e-6)
    assert float(info_gn['grad_net/loss']) == 0.0  # f exact: the regression onto grad_a Q has zero error


def test_grad_net_regression_learns_the_critic_gradient():
    """Jitted training with grad_net: the relative error of f against grad_a Q (which moves as the critic learns)
    falls (toy data, tiny nets, 120 steps)."""
    from agents.common import buffer as buffer_lib
    from envs import toy

    learner, state = _learner(_config(grad_net=True, batch_size=64, lr=3e-3), obs_dim=1)
    buffer = buffer_lib.make_buffer({k: v[:2000] for k, v in toy.make_task(0).train_dataset.items()})
    errors = []
    for _ in range(6):
        state, info = learner.train_steps(state, buffer, 20)
        assert info['finite'] == 1.0
        errors.append(float(info['grad_net/rel_error']))
    assert errors[-1] < 0.6 * errors[0], errors


def test_eval_variants_put_the_primary_first():
    cfg = _config(train_vgf_steps=2, test_vgf_steps=(0, 1, 2, 3))
    assert vgf.eval_variants(cfg) == [
        ('L2', {'test_steps': 2}),
        ('L0', {'test_steps': 0}),
        ('L1', {'test_steps': 1}),
        ('L3', {'test_steps': 3}),
    ]
    cfg = _config(train_vgf_steps=5, test_vgf_steps=(0, 3), primary_test_steps=3)
    assert [label for label, _ in vgf.eval_variants(cfg)] == ['L3', 'L0']
    cfg = _config(train_vgf_steps=5, test_vgf_steps=(0, 3))  # L_train not listed: evaluated as well, first
    assert [label for label, _ in vgf.eval_variants(cfg)] == ['L5', 'L0', 'L3']


# ---------------------------------------------------------------------------------------------- presets, validation
def test_presets_resolve_for_every_table_row():
    rows = read_table('vgf_hyperparameters.csv')
    assert len(rows) == 25
    for r in rows:
        names = [r['env']]
        if 'singletask' in r['env']:
            names += [r['env'].replace('-v0', f'-task{t}-v0') for t in range(1, 6)]
        for name in names:
            p = vgf.paper_preset(name)
            assert p['train_vgf_steps'] == int(r['train_vgf_steps']) and p['vgf_step_size'] == float(r['vgf_step_size'])
            d4rl_or_antmaze = r['env'].endswith('-v2') or r['env'].startswith('antmaze')
            assert p['q_agg'] == ('min' if d4rl_or_antmaze else 'mean')
    assert vgf.paper_preset('antmaze-giant-navigate-singletask-task3-v0')['discount'] == 0.995
    assert vgf.paper_preset('puzzle-4x4-play-singletask-task4-v0') == {
        'train_vgf_steps': 5,
        'vgf_step_size': 0.1,
        'q_agg': 'mean',
        'discount': 0.99,
    }
    assert vgf.paper_preset('hopper-medium-v2')['q_agg'] == 'min'
    with pytest.raises(PresetError, match='cube-single-play-singletask-v0'):
        vgf.paper_preset('toy-8gaussians')


def test_preset_applies_through_resolve_config():
    from types import SimpleNamespace

    from runner.experiment import resolve_config

    task = SimpleNamespace(name='cube-double-play-singletask-task2-v0', extra={})
    config, applied = resolve_config(vgf, agents.get_config('vgf'), task, 'paper', {'vgf_step_size'})
    assert config.train_vgf_steps == 1 and isinstance(config.train_vgf_steps, int)
    assert config.vgf_step_size == 0.05 and 'vgf_step_size' not in applied  # explicit flag wins
    assert config.q_agg == 'mean' and config.discount == 0.99


@pytest.mark.parametrize(
    'key, value, msg',
    [
        ('num_particles', 0, 'num_particles must be positive'),
        ('train_vgf_steps', -1, 'train_vgf_steps must be an integer >= 0'),
        ('test_vgf_steps', (0, -1), 'test_vgf_steps must be integers >= 0'),
        ('test_vgf_steps', (), 'test_vgf_steps must be integers >= 0'),
        ('vgf_step_size', 0.0, 'vgf_step_size must be positive'),
        ('particle_optimizer', 'rmsprop', "particle_optimizer must be one of 'adam', 'sgd'"),
        ('bandwidth', -0.1, 'bandwidth must be >= 0'),
        ('train_select', 'min', "train_select must be one of 'mean', 'max'"),
        ('eval_select', 'mean', "eval_select must be one of 'max', 'random'"),
        ('primary_test_steps', -2, 'primary_test_steps must be -1'),
        ('alpha', 0.0, 'alpha must be positive'),
    ],
)
def test_validation_errors(key, value, msg):
    cfg = agents.get_config('vgf')
    cfg[key] = value
    with pytest.raises(ValueError, match=msg):
        vgf.validate(cfg)
    vgf.validate(agents.get_config('vgf'))


# ---------------------------------------------------------------------------------------------- main.py end to end
def test_main_offline_online_with_test_time_sweep(tmp_path):
    run_main(
        [
            '--agent=vgf',
            '--env_name=toy-8gaussians',
            '--offline_steps=40',
            '--online_steps=10',
            '--eval_interval=40',
            '--log_interval=20',
            '--save_interval=40',
            '--updates_per_call=20',
            '--eval_episodes=1',
            '--agent.train_vgf_steps=1',
            '--agent.test_vgf_steps=(0,3)',
            *TINY,
        ],
        tmp_path,
    )
    run = tmp_path / 'vgf_toy-8gaussians_seed0'
    with open(run / 'eval.csv') as f:
        rows = list(csv.DictReader(f))
    assert [(r['step'], r['phase']) for r in rows] == [('40', 'offline'), ('50', 'online')]
    # Every L_test writes 'L<n>/' columns; the primary (L_test = L_train = 1) also the unprefixed ones.
    for r in rows:
        for prefix in ('L1/', 'L0/', 'L3/'):
            assert np.isfinite(float(r[f'{prefix}score'])) and 0 <= float(r[f'{prefix}tv_distance']) <= 1
        assert r['score'] == r['L1/score']
    final = read_final(run)
    assert final['steps'] == 50 and np.isfinite(final['offline_score']) and np.isfinite(final['online_score'])
    assert final['offline_score'] == pytest.approx(float(rows[0]['score']))  # primary = L_train
    train = list(csv.DictReader(open(run / 'train.csv')))
    assert float(train[-1]['vgf/move']) > 0 and 'online/episodes' in train[-1]


def test_main_rejects_bad_vgf_hyperparameters(tmp_path):
    proc = run_main(
        ['--agent=vgf', '--offline_steps=1', '--agent.particle_optimizer=rmsprop', *TINY], tmp_path, check=False
    )
    assert proc.returncode == 2 and "particle_optimizer must be one of 'adam', 'sgd'" in proc.stderr
