"""QAM: the discretized memoryless SDE, lean / basic adjoints and matching loss against float64 references, the
variants end to end through main.py, presets and validation."""

import csv
import math
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

import agents
from agents import qam
from agents.common import buffer as buffer_lib
from agents.common.trainer import Learner
from configs.presets import PresetError
from runner.experiment import resolve_config
from tests.conftest import TINY, read_final, run_main

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


# ---- schedule ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('T', [1, 2, 10, 100, 1000])
def test_schedule_is_finite_and_tends_to_the_memoryless_sde(T):
    co = qam.sde_coefficients(T)
    for k in ('u', 'decay', 'drift', 'noise', 'sigma', 'adj_weight', 'cost'):
        assert np.all(np.isfinite(co[k])), k
    assert np.all(co['sigma'] > 0) and np.all(co['cost'] > 0) and np.all(co['drift'] > 0)
    h = 1.0 / T
    # step i integrates d(u a) = 2 u f du + u sigma_u dB exactly over [u_i, u_i + h] (f frozen), by quadrature
    for i in range(T - 1):
        s = np.linspace(i * h, (i + 1) * h, 20001)
        un = (i + 1) * h
        np.testing.assert_allclose(co['decay'][i], i * h / un, rtol=1e-12)
        np.testing.assert_allclose(co['drift'][i], np.trapezoid(2 * s, s) / un, rtol=1e-9)
        np.testing.assert_allclose(co['noise'][i] ** 2, np.trapezoid(2 * s * (1 - s), s) / un**2, rtol=1e-6)
    assert (co['decay'][-1], co['drift'][-1], co['noise'][-1]) == (1.0, h, 0.0)  # final plain ODE step
    if T == 1000:  # away from u = 0 the loss sigma is sigma_u = sqrt(2 (1 - u)/u) at the step midpoint
        u = co['u'][100:-100] + h / 2
        np.testing.assert_allclose(co['sigma'][100:-100], np.sqrt(2 * (1 - u) / u), rtol=1e-3)
        np.testing.assert_allclose(co['cost'], 2 * h / co['sigma'] ** 2, rtol=1e-12)


# ---- lean adjoint: linear f_beta against the analytic solution ------------------------------------------------------
def _linear_problem(seed=0, dim=3, batch=4):
    rng = np.random.default_rng(seed)
    A = 0.7 * rng.normal(size=(dim, dim))
    b = rng.normal(size=dim)
    g1 = rng.normal(size=(batch, dim))
    return A, b, g1, rng


def _analytic(A, g1, u):
    """Lean adjoint ODE dg/du = -(2A - I/u)^T g, g(1) = g1: g(u) = u expm(2 A^T (1 - u)) g1 (row vectors)."""
    return u * g1 @ expm(2 * A.T * (1 - u)).T


def test_lean_adjoint_linear_field_matches_discrete_recursion_and_analytic_solution():
    A, b, g1, rng = _linear_problem()
    with jax.enable_x64(True):

        def base(a, u):
            return a @ jnp.asarray(A).T + jnp.asarray(b) + 0.0 * u

        errors = {}
        for T in (10, 100, 1000):
            co = qam.sde_coefficients(T)
            traj = jnp.asarray(rng.normal(size=(T + 1, *g1.shape)))  # a linear field's adjoint ignores the states
            g = np.asarray(qam.lean_adjoint(base, traj, jnp.asarray(g1), co))
            assert g.dtype == np.float64 and g.shape == (T, *g1.shape) and np.all(np.isfinite(g))
            # slow reference of the same recursion: double loop over steps and samples, float64
            ref = np.zeros((T + 1, *g1.shape))
            ref[T] = g1
            for i in range(T - 1, 0, -1):
                for n in range(len(g1)):
                    ref[i, n] = co['decay'][i] * ref[i + 1, n] + co['drift'][i] * A.T @ ref[i + 1, n]
            np.testing.assert_allclose(g, ref[1:], rtol=1e-12, atol=1e-12)
            # the analytic solution of the continuous lean adjoint ODE (Eq. (22)) at every grid time u_i = i/T
            exact = np.stack([_analytic(A, g1, i / T) for i in range(1, T + 1)])
            errors[T] = np.abs(g - exact).max() / np.abs(exact).max()
            # the adjoint paired with step i's control, g~_i = drift_i/(2h) g_{i+1}, tends to g(u_i)
            paired = co['adj_weight'][:, None, None] * g
            exact_paired = np.stack([_analytic(A, g1, i / T) for i in range(T)])
            errors[('paired', T)] = np.abs(paired - exact_paired).max() / np.abs(exact).max()
            # the u = 0 matching target -sigma_0^2 g~_0/2 is finite and tends to -lim g(u)/u = -expm(2A^T) g1
            target0 = -0.5 * co['sigma'][0] ** 2 * paired[0]
            errors[('u=0', T)] = np.abs(target0 + g1 @ expm(2 * A.T).T).max() / np.abs(g1 @ expm(2 * A.T).T).max()
        for key in (lambda T: T, lambda T: ('paired', T), lambda T: ('u=0', T)):
            assert errors[key(1000)] < 0.01, errors
            assert errors[key(1000)] < errors[key(100)] / 3 < errors[key(10)] / 3, errors  # ~first-order convergence


def test_basic_adjoint_is_the_gradient_of_the_discrete_control_objective():
    """BAM's adjoint g_i equals d/da_i [sum_{j >= i} KL_j - tau Q(a_T)] through the sampled discrete dynamics (noise
    fixed), by autodiff; with f_theta = 0 it equals the lean adjoint."""
    T, dim, tau = 6, 3, 2.0
    rng = np.random.default_rng(1)
    W1, W2, c = (jnp.asarray(rng.normal(size=s)) for s in [(dim, dim), (dim, dim), (dim,)])
    with jax.enable_x64(True):

        def base(a, u):
            return jnp.tanh(a @ W1 + u)

        def residual(a, u):
            return 0.5 * jnp.sin(a @ W2 - u)

        def q(a):
            return -jnp.sum((a - c) ** 2, axis=-1)

        co = qam.sde_coefficients(T)
        a0 = jnp.asarray(rng.normal(size=(5, dim)))
        z = jnp.asarray(rng.normal(size=(T, 5, dim)))
        traj = qam.memoryless_sde(lambda a, u: base(a, u) + residual(a, u), a0, z, co)
        g_final = -tau * jax.grad(lambda a: q(a).sum())(traj[-1])
        g = qam.basic_adjoint(base, residual, traj, g_final, co)

        def objective(a, start):
            total = 0.0
            for i in range(start, T):
                t = jnp.full((*a.shape[:-1], 1), co['u'][i])
                res = residual(a, t)
                total = total + co['cost'][i] * jnp.sum(res**2)
                a = co['decay'][i] * a + co['drift'][i] * (base(a, t) + res) + co['noise'][i] * z[i]
            return total - tau * q(a).sum()

        for start in (1, 3, T - 1):
            np.testing.assert_allclose(g[start - 1], jax.grad(objective)(traj[start], start), rtol=1e-10, atol=1e-12)
        lean = qam.lean_adjoint(base, traj, g_final, co)
        assert np.abs(np.asarray(lean - g)).max() > 1e-3  # f_theta's Jacobian and running cost matter
        zero = qam.basic_adjoint(base, lambda a, u: 0.0 * a, traj, g_final, co)
        np.testing.assert_allclose(zero, lean, rtol=1e-12, atol=1e-14)


# ---- memoryless SDE: marginal preservation with the exact field of a Gaussian ----------------------------------------
MU, STD = np.array([0.3, -0.5]), np.array([0.5, 0.2])


def _gaussian_field(a, u):
    """Exact flow-matching velocity of the linear path x_u = (1-u) x0 + u x1, x0 ~ N(0, I), x1 ~ N(MU, STD^2)."""
    var = (1 - u) ** 2 + u**2 * STD**2
    k = (u * STD**2 - (1 - u)) / var
    return MU + k * (a - u * MU)


def _moments(T, sde=True):
    """Exact mean/variance of the discretized process (float64; linear field => Gaussian recursion)."""
    co = qam.sde_coefficients(T)
    m, v = np.zeros(2), np.ones(2)
    for i in range(T):
        u = co['u'][i]
        k = (u * STD**2 - (1 - u)) / ((1 - u) ** 2 + u**2 * STD**2)
        decay, drift, noise = (co['decay'][i], co['drift'][i], co['noise'][i]) if sde else (1.0, 1.0 / T, 0.0)
        lin = decay + drift * k
        m, v = lin * m + drift * (MU - k * u * MU), lin**2 * v + noise**2
    return m, v


def test_memoryless_sde_with_exact_behavior_field_preserves_the_marginal():
    n = 100_000
    for T in (10, 100):
        co = qam.sde_coefficients(T)
        k0, k1 = jax.random.split(jax.random.PRNGKey(T))
        a0, z = jax.random.normal(k0, (n, 2)), jax.random.normal(k1, (T, n, 2))
        traj = np.asarray(jax.jit(lambda a0, z: qam.memoryless_sde(_gaussian_field, a0, z, co))(a0, z))
        assert traj.shape == (T + 1, n, 2) and np.all(np.isfinite(traj))
        m, v = _moments(T)
        # samples follow the float64 law of the scheme (Monte Carlo error only)
        assert np.all(np.abs(traj[-1].mean(0) - m) <= 5 * np.sqrt(v / n))
        np.testing.assert_allclose(traj[-1].var(0), v, rtol=0.03)
        # the scheme keeps the mean and is no less accurate in variance than the policy's own Euler ODE
        m_ode, v_ode = _moments(T, sde=False)
        np.testing.assert_allclose(m, MU, atol=1e-6)
        assert np.all(np.abs(v / STD**2 - 1) <= np.abs(v_ode / STD**2 - 1) + 0.01)
    m, v = _moments(2000)
    np.testing.assert_allclose(v, STD**2, rtol=0.01)  # converges to the data marginal


def test_adjoint_matching_loss_is_finite_and_zero_at_the_analytic_optimum():
    T = 10
    co = qam.sde_coefficients(T)
    rng = np.random.default_rng(2)
    g = jnp.asarray(rng.normal(size=(T, 8, 2)) * 100, jnp.float32)
    f = jnp.asarray(rng.normal(size=(T, 8, 2)), jnp.float32)
    loss = qam.adjoint_matching_loss(f, g, co)
    w, s = co['adj_weight'][:, None, None], co['sigma'][:, None, None]
    ref = np.mean(np.sum((2 * np.asarray(f, np.float64) / s + s * w * np.asarray(g, np.float64)) ** 2, axis=(0, 2)))
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    optimum = jnp.asarray(-0.5 * s**2 * w * np.asarray(g, np.float64), jnp.float32)  # f_theta* = -sigma^2 g~/2
    assert np.all(np.isfinite(np.asarray(optimum)))
    assert float(qam.adjoint_matching_loss(optimum, g, co)) < 1e-6 * ref


# ---- main.py end to end ---------------------------------------------------------------------------------------------
TOY = ['--env_name=toy-8gaussians', '--eval_episodes=1', '--log_interval=20', '--save_interval=40']


@pytest.mark.parametrize('agent', ['qam', 'qam_fql', 'qam_edit'])
def test_main_offline_then_online_on_toy(agent, tmp_path, monkeypatch):
    monkeypatch.setenv('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')  # halves XLA compile time of this plumbing test
    run_main(
        [f'--agent={agent}', *TOY, '--offline_steps=40', '--online_steps=10', '--eval_interval=40', *TINY], tmp_path
    )
    run = tmp_path / f'{agent}_toy-8gaussians_seed0'
    final = read_final(run)
    assert final['steps'] == 50 and final['agent'] == agent
    assert np.isfinite(final['offline_score']) and np.isfinite(final['final_score'])
    assert 0.0 <= final['last_eval']['tv_distance'] <= 1.0
    samples = np.load(run / 'policy_samples.npy')
    assert samples.shape == (10_000, 2) and np.all(np.abs(samples) <= 1)
    with open(run / 'train.csv') as f:
        rows = list(csv.DictReader(f))
    assert {r['phase'] for r in rows} == {'offline', 'online'}
    key = {'qam_fql': 'actor/distill_loss', 'qam_edit': 'actor/edit_entropy'}.get(agent, 'actor/bc_flow_loss')
    assert all(math.isfinite(float(r['actor/am_loss'])) and math.isfinite(float(r[key])) for r in rows)


def test_bam_and_fav_setup_train_in_process():
    """The BAM switch and the FAV paper's 2-head setup through the shared trainer: finite, f_theta moves."""
    config = agents.get_config('qam_fav')
    config.actor_hidden_dims = config.value_hidden_dims = (16,)
    config.batch_size, config.bam = 8, True
    learner = Learner(agents.get_agent('qam_fav'), config, 3, 2)
    rng = np.random.default_rng(0)
    data = dict(
        observations=rng.normal(size=(32, 3)),
        actions=rng.uniform(-1, 1, (32, 2)),
        rewards=rng.normal(size=32),
        masks=np.ones(32),
        terminals=np.zeros(32),
        next_observations=rng.normal(size=(32, 3)),
    )
    buf = buffer_lib.make_buffer({k: v.astype(np.float32) for k, v in data.items()})
    state = learner.init(jax.random.PRNGKey(0))
    new, info = learner.train_steps(state, buf, 3)
    assert float(info['finite']) == 1.0 and np.isfinite(float(info['actor/am_loss']))
    assert learner.apply('critic', new.params, jnp.zeros((1, 3)), jnp.zeros((1, 2))).shape == (2, 1)
    moved = jax.tree_util.tree_map(
        lambda a, b: float(jnp.abs(a - b).max()), new.params['residual'], state.params['residual']
    )
    assert max(jax.tree_util.tree_leaves(moved)) > 0


# ---- presets and validation -----------------------------------------------------------------------------------------
def _table(name, key):
    with open(os.path.join(CONFIGS, name)) as f:
        return {r[key]: r for r in csv.DictReader(f)}


def _resolve(agent, env, explicit=()):
    task = types.SimpleNamespace(name=env, extra={})
    config, _ = resolve_config(agents.get_agent(agent), agents.get_config(agent), task, 'paper', set(explicit))
    return config


def test_paper_presets_resolve_per_domain():
    t4, t6 = _table('qam_table4_hyperparameters.csv', 'domain'), _table('fav_table6_hyperparameters.csv', 'task')
    cases = [
        ('cube-triple-play-singletask-task2-v0', 'cube-triple'),
        ('scene-play-singletask-v0', 'scene-sparse'),
        ('humanoidmaze-large-navigate-singletask-task1-v0', 'humanoidmaze-large'),
        ('antmaze-giant-navigate-singletask-task3-v0', 'antmaze-giant'),
        ('puzzle-4x4-play-singletask-task4-v0', 'puzzle-4x4-100M-sparse'),
        ('cube-double-play-singletask-task2-v0', 'cube-double'),
    ]
    for env, domain in cases:
        row = t4[domain]
        c = _resolve('qam', env)
        assert c.inv_temp == float(row['qam_tau']) and c.num_critics == 10 and c.q_agg == 'pessimistic'
        assert c.rho == (0.0 if domain.startswith('humanoidmaze') else 0.5)
        assert c.discount == (0.995 if domain.startswith(('humanoidmaze', 'antmaze-giant')) else 0.99)
        c = _resolve('qam_fql', env)
        alpha = float(row['qam_fql_alpha'])
        assert c.inv_temp == float(row['qam_fql_tau']) and c.alpha == (math.inf if alpha == 0 else alpha)
        c = _resolve('qam_edit', env)
        assert c.inv_temp == float(row['qam_edit_tau']) and c.sigma_a == float(row['qam_edit_sigma_a'])
    # alpha = inf / sigma_a = 0 are plain QAM: no one-step or edit network, the flow acts
    assert not qam.uses_onestep(_resolve('qam_fql', 'scene-play-singletask-task1-v0'))
    assert not qam.uses_edit(_resolve('qam_edit', 'cube-double-play-singletask-task2-v0'))
    assert set(qam.networks(_resolve('qam_fql', 'scene-play-singletask-task1-v0'), 3, 2)) == {
        'critic',
        'bc_flow',
        'residual',
    }
    # the FAV paper's reproduction: 2 heads, FAV Table 6 tau per task
    for env in ('cube-double-play-singletask-task1-v0', 'antsoccer-arena-navigate-singletask-task4-v0'):
        c = _resolve('qam_fav', env)
        assert c.num_critics == 2 and c.inv_temp == float(t6[env]['qam_tau'])
    # explicit flags win over the preset
    assert _resolve('qam', 'cube-triple-play-singletask-task2-v0', explicit=['inv_temp']).inv_temp == 3.0
    for agent, env in [
        ('qam', 'antsoccer-arena-navigate-singletask-task1-v0'),
        ('qam', 'antmaze-large-play-v2'),
        ('qam_fav', 'toy-8gaussians'),
    ]:
        with pytest.raises(PresetError, match='No paper preset'):
            _resolve(agent, env)


@pytest.mark.parametrize(
    'agent, key, value, msg',
    [
        ('qam', 'inv_temp', -1.0, 'inv_temp'),
        ('qam', 'inv_temp', math.inf, 'inv_temp'),
        ('qam', 'flow_steps', 0, 'flow_steps'),
        ('qam_fql', 'alpha', 0.0, r'alpha .* \(0, inf\]'),
        ('qam_edit', 'sigma_a', -0.1, r'sigma_a .* \[0, 2\]'),
        ('qam_edit', 'edit_entropy_target', math.nan, 'entropy'),
    ],
)
def test_validation_errors(agent, key, value, msg):
    config = agents.get_config(agent)
    agents.get_agent(agent).validate(config)
    config[key] = value
    with pytest.raises(ValueError, match=msg):
        agents.get_agent(agent).validate(config)


def test_bad_hyperparameter_through_main(tmp_path):
    proc = run_main(
        ['--agent=qam_fql', '--env_name=toy-8gaussians', '--offline_steps=1', '--agent.alpha=0'], tmp_path, check=False
    )
    assert proc.returncode == 2 and 'alpha (QAM-FQL BC coefficient) must be in (0, inf]' in proc.stderr
    proc = run_main(['--agent=qam', '--agent.alpha=3'], tmp_path, check=False)
    assert proc.returncode == 2 and 'Unknown config key --agent.alpha' in proc.stderr
