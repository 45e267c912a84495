"""Tilt-fidelity bandits (envs/tilt.py): every exact target against brute-force Monte Carlo importance weights of the
behavior, the metrics at their known values, the contextual rotation, the oracle critic, and one main.py run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents.common.trainer import Learner
from envs import make_task, tilt, toy
from tests.conftest import TINY, read_final, run_main


def _importance(family, dim, beta, n=400_000, seed=0):
    """Behavior samples and their self-normalized importance weights exp(beta r) / sum: a brute-force target."""
    fam = tilt._base(family, dim)
    rng = np.random.default_rng(seed)
    k = None
    if family == 'gmm':  # keep the component labels: the weights' brute-force estimate
        k = rng.integers(0, len(fam.means), n)
        a = fam.means[k] + fam.std * rng.standard_normal((n, dim))
    else:
        a = fam.sample(n, rng)
    r = np.asarray(fam.reward(a), np.float64)
    w = np.exp(beta * (r - r.max()))
    return a, w / w.sum(), k


@pytest.mark.parametrize('family', tilt.FAMILIES_2D)
def test_grid_targets_match_importance_weighted_behavior_samples(family):
    g = tilt.grid_target(family, 3.0)
    a, w, _ = _importance(family, 2, 3.0)
    occ = np.bincount(tilt.FAMILIES[family].region(a), weights=w, minlength=8)
    np.testing.assert_allclose(g.occupancy, occ, atol=0.01)
    np.testing.assert_allclose(g.mean_reward, w @ np.asarray(tilt.FAMILIES[family].reward(a)), atol=0.01)
    assert g.occupancy.sum() == pytest.approx(1.0) and abs(g.behavior_occupancy - 1 / 8).max() < 0.005


def test_the_8gaussians_family_is_the_fav_toy():
    np.testing.assert_allclose(tilt.grid_target('8gaussians', 1.0).occupancy, toy.target_occupancy(), atol=2e-4)
    a = toy.sample_behavior(1000, np.random.default_rng(0))
    np.testing.assert_allclose(tilt.FAMILIES['8gaussians'].reward(a), toy.reward(a), rtol=1e-12)


@pytest.mark.parametrize('dim, beta', [(8, 1.0), (8, 3.0), (21, 0.3)])
def test_gmm_closed_form_matches_importance_weights(dim, beta):
    task = tilt.gmm_task(dim)
    tgt = tilt.gmm_target(task, beta)
    a, w, k = _importance('gmm', dim, beta)
    np.testing.assert_allclose(tgt.weights, np.bincount(k, weights=w, minlength=8), atol=0.01)
    top = int(np.argmax(tgt.weights))  # the mean of the heaviest target component
    mean_mc = (w[k == top, None] * a[k == top]).sum(0) / w[k == top].sum()
    np.testing.assert_allclose(tgt.means[top], mean_mc, atol=0.01)
    assert tilt.gmm_target_mean_reward(task, tgt) == pytest.approx(w @ task.reward(a), abs=0.01)
    # regions (nearest behavior mean) hold their component's target samples: occupancy = weights
    s = tgt.sample(100_000, np.random.default_rng(1))
    occ = np.bincount(tilt.region('gmm', dim, s), minlength=8) / len(s)
    np.testing.assert_allclose(occ, tgt.weights, atol=0.006)


def test_energy_distance_against_a_brute_force_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(1.0, 1.0, size=(5, 3))

    def mean_dist(p, q):
        return np.mean([np.linalg.norm(u - v) for u in p for v in q])

    ref = 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)
    # distances come from |a|^2 + |b|^2 - 2 a.b: a zero distance reads as sqrt(rounding error) ~ 1e-8
    assert tilt.energy_distance(x, y) == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize('name', ['tilt-spiral-d2-b3', 'tilt-checker-d2-b1', 'tilt-gmm-d8-b3'])
def test_metrics_are_zero_on_exact_target_samples_and_analytic_on_behavior_samples(name):
    spec = tilt.parse_name(name)
    tgt = tilt.exact_target(spec.family, spec.dim, spec.beta)
    fam = tilt._base(spec.family, spec.dim)
    exact = tilt.metrics(spec.family, spec.dim, spec.beta, tgt.sample(10_000, np.random.default_rng(3)))
    behavior = tilt.metrics(spec.family, spec.dim, spec.beta, fam.sample(10_000, np.random.default_rng(4)))
    assert exact['tv_distance'] < 0.02 and exact['energy_distance'] < 0.2 * behavior['energy_distance']
    assert exact['mean_reward'] == pytest.approx(tgt.mean_reward, abs=0.03)
    tv = 0.5 * np.abs(tgt.behavior_occupancy - tgt.occupancy).sum()
    assert behavior['tv_distance'] == pytest.approx(tv, abs=0.02) and tv > 0.1
    assert behavior['off_support_fraction'] == pytest.approx(tilt.SUPPORT_QUANTILE, abs=0.002)
    # one set of samples read against every other beta: the same numbers as metrics() at that beta
    for b in tilt.BETAS:
        if b != spec.beta:
            at_b = tilt.metrics(spec.family, spec.dim, b, fam.sample(10_000, np.random.default_rng(4)))
            for k in ('tv_distance', 'energy_distance', 'target_mean_reward'):
                assert behavior[f'beta{b:g}/{k}'] == pytest.approx(at_b[k], rel=1e-9), (b, k)


def test_contextual_targets_are_the_base_target_rotated_by_the_state():
    spec = tilt.parse_name('tilt-ctx-8gaussians-d2-b3')
    obs = tilt.eval_observations(spec).astype(np.float64)
    assert len(np.unique(obs.round(6), axis=0)) == tilt.NUM_EVAL_STATES
    base = tilt.exact_target('8gaussians', 2, 3.0).sample(len(obs), np.random.default_rng(0))
    rotated = tilt._rotate(base, obs[:, 0], obs[:, 1])
    good = tilt.evaluate_samples(spec, obs, rotated)
    ignores_state = tilt.evaluate_samples(spec, obs, base)
    assert good['tv_distance'] < 0.05 and ignores_state['tv_distance'] > 0.3
    # the data: the reward of a rotated behavior action is the base reward of the un-rotated one
    o, a = tilt.sample_dataset(spec, 500, np.random.default_rng(1))
    back = tilt._rotate(a, o[:, 0], -o[:, 1])
    np.testing.assert_allclose(tilt.true_reward(spec, o, a), toy.reward(back), rtol=1e-9)
    # training angles are continuous: no evaluation angle occurs in the data
    theta = np.arctan2(o[:, 1], o[:, 0]) % (2 * np.pi)
    assert np.min(np.abs(theta[:, None] - tilt.EVAL_ANGLES[None] % (2 * np.pi))) > 1e-6


@pytest.mark.parametrize('name', ['tilt-ctx-ring-d2', 'tilt-checker-d2', 'tilt-gmm-d8'])
def test_oracle_critic_is_the_true_reward_in_jax(name):
    """The `-oracle` switch: the Learner's critic returns r(s, a) for every head (float32 jax == float64 numpy), and
    its action gradient is finite."""
    task = make_task(name + '-b3-oracle')
    config = agents.get_config('fql')
    config.actor_hidden_dims = config.value_hidden_dims = (8,)
    learner = Learner(agents.get_agent('fql'), config, task.obs_dim, task.action_dim, oracle_q=task.extra['oracle_q'])
    state = learner.init(jax.random.PRNGKey(0))
    obs, act = task.train_dataset['observations'][:64], task.train_dataset['actions'][:64]
    qs = learner.apply('critic', state.params, jnp.asarray(obs), jnp.asarray(act))
    assert qs.shape == (config.num_critics, 64)
    np.testing.assert_allclose(np.asarray(qs[1]), task.train_dataset['rewards'][:64], rtol=2e-5, atol=2e-5)
    grad = jax.grad(lambda a: learner.apply('critic', state.params, jnp.asarray(obs), a).sum())(jnp.asarray(act))
    assert np.all(np.isfinite(np.asarray(grad))) and np.abs(np.asarray(grad)).max() > 0
    if name == 'tilt-checker-d2':
        assert 'oracle_q' not in make_task(name + '-b3').extra  # the plain task trains its critic


def test_names_and_errors():
    assert tilt.parse_name('tilt-gmm-d21-b0.3-oracle') == tilt.Spec('gmm', 21, 0.3, True)
    assert tilt.parse_name('tilt-ring-d2') == tilt.Spec('ring', 2, 1.0, False)
    with pytest.raises(ValueError, match='2-D actions'):
        tilt.parse_name('tilt-ring-d3')
    with pytest.raises(ValueError, match='Unknown tilt task'):
        make_task('tilt-rings-d2')
    # the data do not depend on beta or the oracle switch
    a, b = make_task('tilt-spiral-d2-b10'), make_task('tilt-spiral-d2-oracle')
    np.testing.assert_array_equal(a.train_dataset['actions'], b.train_dataset['actions'])


def test_main_trains_on_a_contextual_oracle_task_and_reports_fidelity(tmp_path):
    run_main(
        [
            '--agent=fql',
            '--env_name=tilt-ctx-ring-d2-b3-oracle',
            '--offline_steps=40',
            '--eval_interval=0',
            '--log_interval=20',
            '--save_interval=40',
            *TINY,
        ],
        tmp_path,
    )
    final = read_final(tmp_path / 'fql_tilt-ctx-ring-d2-b3-oracle_seed0')
    last = final['last_eval']
    assert 0.0 <= last['tv_distance'] <= 1.0 and last['energy_distance'] > 0
    assert last['target_mean_reward'] == pytest.approx(tilt.exact_target('ring', 2, 3.0).mean_reward)
    samples = np.load(tmp_path / 'fql_tilt-ctx-ring-d2-b3-oracle_seed0' / 'policy_samples.npy')
    assert samples.shape == (tilt.NUM_EVAL, 2)


def _table_args(**kw):
    import argparse

    base = dict(
        agents=['iql', 'fql'],
        tasks=['tilt-ring-d2'],
        betas=[0.3, 1.0],
        modes=['oracle', 'learned'],
        seeds=2,
        steps=20,
        hidden=[8, 8],
        batch_size=16,
        knobs=True,
    )
    return argparse.Namespace(**{**base, **kw})


def test_tilt_table_sets_each_temperature_to_beta_and_sweeps_the_knobs_of_the_others_with_the_oracle():
    from scripts import tilt_table

    subs = tilt_table.sweep_spec(_table_args())
    iql = [s for s in subs if s['agents'] == ['iql']]
    assert sorted((s['flags']['agent.alpha'], s['envs'][0]) for s in iql) == [
        (0.3, 'tilt-ring-d2-b0.3'),
        (0.3, 'tilt-ring-d2-b0.3-oracle'),
        (1.0, 'tilt-ring-d2-b1'),
        (1.0, 'tilt-ring-d2-b1-oracle'),
    ]
    fql = [s for s in subs if s['agents'] == ['fql']]
    assert all('agent.alpha' not in s['flags'] for s in fql)  # no temperature: trained once, read at every beta
    knobs = [(s['envs'][0], s['grid']) for s in fql if 'grid' in s]
    assert knobs == [('tilt-ring-d2-b1-oracle', {'agent.alpha': [v]}) for v in tilt_table.KNOBS['fql'][1]]
    assert len(fql) == 2 + len(knobs)


def test_tilt_table_knobs_and_temperatures_are_config_keys_that_take_their_values():
    import agents
    from scripts import tilt_table

    for agent, (key, _) in tilt_table.TEMPERATURE.items():
        assert key in agents.get_config(agent), (agent, key)
    for agent, (key, values) in tilt_table.KNOBS.items():
        config = agents.get_config(agent)
        assert key in config, (agent, key)
        for v in values:
            with config.unlocked():  # a tuple-typed key (VGF's L_test list) takes one value as a 1-tuple
                config[key] = (v,) if isinstance(config[key], tuple) else v
            agents.get_agent(agent).validate(config)
    # On a one-step bandit VGF's L_train acts only through the TD target's masked next action: its knob is L_test.
    assert tilt_table.KNOBS['vgf'][0] == 'test_vgf_steps'


def test_tilt_table_runs_a_tiny_grid_and_writes_its_tables_and_figures(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    cmd = [
        sys.executable,
        'scripts/tilt_table.py',
        '--agents=fav',
        '--tasks=tilt-8gaussians-d2',
        '--betas=3',
        '--modes=oracle',
        '--seeds=2',
        '--steps=20',
        '--hidden=8,8',
        '--batch_size=16',
        '--workers=1',
        f'--save_dir={tmp_path / "runs"}',
        f'--out={tmp_path / "report"}',
    ]
    env = {**__import__('os').environ, 'JAX_PLATFORMS': 'cpu'}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / 'report.md').read_text()
    # fav has a temperature: its run at beta 3 sets agent.beta=3 and is read at beta 3; two vmapped seeds
    finals = [read_final(tmp_path / 'runs' / f'fav_tilt-8gaussians-d2-b3-oracle_seed{s}') for s in (0, 1)]
    config = json.loads((tmp_path / 'runs' / 'fav_tilt-8gaussians-d2-b3-oracle_seed0' / 'config.json').read_text())
    assert config['config']['beta'] == 3.0
    tv = np.mean([f['last_eval']['tv_distance'] for f in finals])
    row = next(line for line in text.splitlines() if line.startswith('| fav |'))
    assert row.startswith(f'| fav | {tv:.3f} [')
    assert '`fav`: `beta` = beta' in text and '| behavior data |' in text and 'PARTIAL' not in text
    for png in ('tilt-8gaussians-d2_oracle_tv.png', 'tilt-8gaussians-d2_oracle_samples_b3.png'):
        assert (tmp_path / 'report_figures' / png).stat().st_size > 1000 and png in text


def test_tilt_table_report_says_when_runs_are_missing(tmp_path):
    from scripts import tilt_table

    a = _table_args(agents=['iql'], modes=['oracle'], betas=[1.0], save_dir=str(tmp_path / 'runs'))
    a.out = str(tmp_path / 'report')
    cells = tilt_table.collect(a)  # nothing has run
    assert cells == {} and a.expected == 2 and len(a.missing) == 2  # 2 seeds of one run
    text = tilt_table.report(a, cells)
    assert '**PARTIAL: 0 of 2 runs finished**' in text and '`iql_tilt-ring-d2-b1-oracle_seed0`' in text
