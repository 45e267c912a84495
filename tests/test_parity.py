"""scripts/parity.py without the internet or the released code: its flag mapping, and its comparison on two tiltbench
runs (the same seeds: every row indistinguishable; a changed hyperparameter: flagged)."""

import argparse
import os
import shlex
import shutil

import numpy as np
import pytest

import agents
from scripts import parity
from tests.conftest import TINY, run_main

TOY = ['--agent=fql', '--env_name=toy-8gaussians', '--offline_steps=60', '--log_interval=10', '--eval_interval=30']
TOY += ['--eval_episodes=1', '--updates_per_call=1', '--num_seeds=3', *TINY]


@pytest.mark.parametrize('agent', sorted(parity.AGENT_MAP))
def test_flag_mapping_passes_tiltbench_values_to_both_sides(agent):
    config = parity.tiltbench_config(agent, {'actor_hidden_dims': (64, 32), 'discount': 0.995})
    args = argparse.Namespace(
        released_python='/venv/bin/python',
        env_name='cube-single-play-singletask-task2-v0',
        steps=1000,
        log_interval=100,
        eval_interval=500,
        eval_episodes=5,
        out='/tmp/parity',
        seeds=2,
        seed0=0,
        tiltbench_flag=[],
    )
    released = parity.released_command(args, agent, config, seed=1)
    ours = parity.tiltbench_command(args, agent, config)
    cfg_file, keys, _ = parity.AGENT_MAP[agent]
    assert released[:2] == ['/venv/bin/python', '-c'] and "mode='disabled'" in released[2]
    assert f'--agent={cfg_file}' in released and '--seed=1' in released and '--offline_steps=1000' in released
    assert '--agent.actor_hidden_dims=(64,32)' in released and '--agent.discount=0.995' in released
    assert '--updates_per_call=1' in ours and '--num_seeds=2' in ours and f'--agent={agent}' in ours
    for k, released_key in keys.items():
        assert k in config  # every mapped key is a real tiltbench key
        value = parity.flag_value(config[k])
        assert f'--agent.{released_key}={value}' in released and f'--agent.{k}={value}' in ours
    # The tiltbench command is one main.py accepts: its config keys are this agent's.
    for flag in ours:
        if flag.startswith('--agent.'):
            assert flag.split('=')[0][len('--agent.') :] in agents.get_config(agent)
    assert shlex.join(released)  # printable as one command line


def test_unknown_override_key_is_an_error():
    with pytest.raises(ValueError, match="Unknown config key 'alpah'"):
        parity.tiltbench_config('fql', {'alpah': 3})


def test_released_logs_are_read_in_tiltbench_names(tmp_path):
    exp = tmp_path / 'fql' / 'Debug' / 'sd000_x'
    exp.mkdir(parents=True)
    (exp / 'train.csv').write_text(
        'training/critic/critic_loss,training/critic/q_mean,training/actor/q,time/epoch_time,step\n'
        '0.5,-3.0,-2.5,0.02,100\n0.25,-4.0,-3.5,0.03,200\n'
    )
    (exp / 'eval.csv').write_text('evaluation/success,step\n0.0,1\n0.4,200\n')
    r = parity.read_released(str(tmp_path), 'fql')
    assert r['train'][200] == {'critic/loss': 0.25, 'critic/q_mean': -4.0, 'actor/q': -3.5}
    assert r['eval'] == {1: 0.0, 200: 40.0} and r['ms'] == {100: 20.0, 200: 30.0}


def test_statistics_against_slow_references():
    from scipy import stats

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 5), rng.normal(1, 2, 7)
    d, lo, hi = parity.diff_ci(a, b)
    welch = stats.ttest_ind(a, b, equal_var=False)
    ci = welch.confidence_interval(0.95)
    np.testing.assert_allclose([d, lo, hi], [a.mean() - b.mean(), ci.low, ci.high], rtol=1e-10)
    m, h = parity.mean_ci(a)
    ci1 = stats.t.interval(0.95, 4, loc=a.mean(), scale=stats.sem(a))
    np.testing.assert_allclose([m - h, m + h], ci1, rtol=1e-10)
    assert parity.spread_test(a, b * 100)[1] and not parity.spread_test(a, a + 1)[1]


def _side(run_dir, n):
    return [parity.read_tiltbench(str(run_dir / f'run_seed{k}'), 'fql', n) for k in range(n)]


@pytest.fixture(scope='module')
def toy_runs(tmp_path_factory):
    """Three 3-seed FQL runs on the toy: a and b with the same flags, c with alpha 1000 instead of 10."""
    root = tmp_path_factory.mktemp('parity_runs')
    run_main([*TOY, '--run_name=run'], root / 'a')
    run_main([*TOY, '--run_name=run'], root / 'b')
    run_main([*TOY, '--run_name=run', '--agent.alpha=1000'], root / 'c')
    return root


def test_two_tiltbench_runs_same_seeds_indistinguishable_changed_alpha_flagged(toy_runs):
    a, b, c = (_side(toy_runs / x, 3) for x in 'abc')
    metrics = list(parity.AGENT_MAP['fql'][2].values())

    same = parity.compare(a, b, metrics)
    assert {r['metric'] for r in same['rows']} == set(metrics) | {'score'}
    assert {r['step'] for r in same['rows'] if r['metric'] == 'critic/loss'} == {10, 20, 30, 40, 50, 60}
    assert all(r['indistinguishable'] and not r['spread_differs'] for r in same['rows'])
    assert np.isfinite(same['ms_a']) and same['ms_a'] > 0

    changed = parity.compare(a, c, metrics)
    flagged = {r['metric'] for r in changed['rows'] if not r['indistinguishable']}
    assert 'actor/loss' in flagged  # alpha * distill_loss: 100x the weight
    text = parity.table_section('fql', changed, 3, 3)
    assert '**differs**' in text and '| actor/loss | 60 |' in text


def test_harness_compare_phase_writes_the_table(toy_runs, tmp_path):
    """The command-line compare phase on existing logs (tiltbench runs standing in for both sides)."""
    out = tmp_path / 'out'
    for k in range(3):
        shutil.copytree(toy_runs / 'a' / f'run_seed{k}', out / 'tiltbench' / f'fql_seed{k}')
    # A released-side layout (train.csv / eval.csv under <save_dir>/<project>/<group>/<exp>/), as the released code
    # writes it, made from the tiltbench logs.
    names = {v: k for k, v in parity.AGENT_MAP['fql'][2].items()}
    for k in range(3):
        rows = parity._rows(os.path.join(out, 'tiltbench', f'fql_seed{k}', 'train.csv'))
        exp = out / 'released' / 'fql' / f'seed{k}' / 'fql' / 'Debug' / 'sd'
        exp.mkdir(parents=True)
        cols = [f'training/{names[m]}' for m in names]
        lines = [','.join(cols + ['step'])] + [','.join([r[m] for m in names] + [r['step']]) for r in rows]
        (exp / 'train.csv').write_text('\n'.join(lines) + '\n')
        ev = parity._rows(os.path.join(out, 'tiltbench', f'fql_seed{k}', 'eval.csv'))
        ev_lines = ['evaluation/success,step'] + [f'{float(r["score"]) / 100},{r["step"]}' for r in ev]
        (exp / 'eval.csv').write_text('\n'.join(ev_lines) + '\n')
    table = tmp_path / 'parity.md'
    argv = ['--phase=compare', '--agents=fql', f'--out={out}', '--seeds=3', '--env_name=toy-8gaussians']
    assert parity.main([*argv, f'--table={table}']) == 0
    text = table.read_text()
    assert '### fql' in text and '**differs**' not in text and 'Seeds: 3 / 3' in text
