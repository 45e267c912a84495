"""scripts/parity.py without the internet or the released code: its flag mapping, and its comparison on two tiltbench
runs (the same seeds: every row indistinguishable; a changed hyperparameter: flagged)."""

import argparse
import json
import os
import shlex
import shutil

import numpy as np
import pytest

import agents
from configs.common import check_explicit_keys
from scripts import parity
from tests.conftest import TINY, run_main

TOY = ['--agent=fql', '--env_name=toy-8gaussians', '--offline_steps=60', '--log_interval=10', '--eval_interval=30']
TOY += ['--eval_episodes=1', '--updates_per_call=1', '--num_seeds=3', *TINY]


@pytest.mark.parametrize('agent', sorted(parity.AGENT_MAP))
def test_flag_mapping_passes_tiltbench_values_to_both_sides(agent):
    config = parity.tiltbench_config(agent, {'actor_hidden_dims': (64, 32), 'discount': 0.995})
    args = _args('fql')
    released = parity.released_command(args, agent, config, seed=1)
    ours = parity.tiltbench_command(args, agent, config)
    cfg_file, keys, _ = parity.AGENT_MAP[agent]
    assert released[:2] == ['/venv/bin/python', '-c'] and "mode='disabled'" in released[2]
    assert f'--agent={cfg_file}' in released and '--seed=1' in released and '--offline_steps=1000' in released
    assert '--agent.actor_hidden_dims=(64,32)' in released and '--agent.discount=0.995' in released
    assert '--updates_per_call=1' in ours and '--num_seeds=2' in ours and f'--agent={agent}' in ours
    # a row is the logged step's own metrics, also when the steps are fused
    assert '--train_metrics=step' in ours
    fused = parity.tiltbench_command(_args('fql', updates_per_call=20), agent, config)
    assert '--updates_per_call=20' in fused and '--train_metrics=step' in fused
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
    # the heap each tiltbench run measured its time on, as its final.json recorded it (here one seed's is edited)
    final = out / 'tiltbench' / 'fql_seed2' / 'final.json'
    summary = json.loads(final.read_text())
    recorded = summary['glibc_tunables']
    final.write_text(json.dumps(dict(summary, glibc_tunables='glibc.malloc.arena_max=1')))
    table = tmp_path / 'parity.md'
    argv = ['--phase=compare', '--agents=fql', f'--out={out}', '--seeds=3', '--env_name=toy-8gaussians']
    assert parity.main([*argv, f'--table={table}']) == 0
    text = table.read_text()
    assert '### fql' in text and '**differs**' not in text and 'Seeds: 3 / 3' in text
    first = f'`{recorded}`' if recorded else 'unset'
    heap = f'GLIBC_TUNABLES (its final.json): {first} (fql_seed0, fql_seed1); `glibc.malloc.arena_max=1` (fql_seed2)'
    assert heap in text
    # and how many steps each call took (the toy runs: one per call, so a row is one step's metrics)
    assert "- tiltbench side's calls (its config.json): `--updates_per_call=1 --train_metrics=chunk_mean`" in text


# ---- the released QAM, FAV and VGF repositories ----------------------------------------------------------------------
NEW_AGENTS = [(repo, agent) for repo in ('qam', 'fav', 'vgf') for agent in parity.REPOS[repo].agents]
NEW_AGENTS += [('fql', agent) for agent in parity.REPOS['fql'].agents if agent not in parity.AGENT_MAP]
# Names only, read from the released code at the pinned commits (ColinQiyangLi/qam f93efd2, Jaewoopudding/FAV
# 5fd6c80 fav-offrl/, ryanxhr/vgf 3ec8f9b): the keys of each agent file's get_config() and the flags of each main.py,
# so that every flag the harness passes is one the released code defines.
_QAM_COMMON = {'agent_name', 'ob_dims', 'action_dim', 'lr', 'batch_size', 'actor_hidden_dims', 'actor_layer_norm'}
_QAM_COMMON |= {'value_hidden_dims', 'value_layer_norm', 'horizon_length', 'action_chunking', 'num_qs', 'rho'}
_QAM_COMMON |= {'discount', 'tau', 'flow_steps', 'best_of_n', 'inv_temp', 'target_actor', 'residual'}
RELEASED_AGENT_KEYS = {
    ('qam', 'agents/qam.py'): _QAM_COMMON
    | {'fql_alpha', 'edit_scale', 'clip_adj', 'clip_grad', 'use_target_grad', 'edit_target_entropy'}
    | {'edit_target_entropy_multiplier'},
    ('qam', 'agents/bam.py'): _QAM_COMMON,
    ('qam', 'agents/fawac.py'): _QAM_COMMON - {'target_actor', 'residual'},
    ('fql', 'agents/ifql.py'): {'agent_name', 'action_dim', 'lr', 'batch_size', 'actor_hidden_dims'}
    | {'value_hidden_dims', 'layer_norm', 'actor_layer_norm', 'discount', 'tau', 'expectile', 'num_samples'}
    | {'flow_steps', 'encoder'},
    ('fav', 'agents/fav.py'): {'agent_name', 'ob_dims', 'action_dim', 'lr', 'batch_size', 'actor_hidden_dims'}
    | {'value_hidden_dims', 'layer_norm', 'actor_layer_norm', 'discount', 'tau', 'q_agg', 'beta', 'bandwidth'}
    | {'bandwidth_method', 'gen_multiplier', 'encoder'},
    ('vgf', 'agents/vgf.py'): {'agent_name', 'ob_dims', 'action_dim', 'value_lr', 'actor_lr', 'batch_size'}
    | {'activations', 'value_hidden_dims', 'actor_hidden_dims', 'layer_norm', 'actor_layer_norm', 'discount', 'tau'}
    | {'critic_loss', 'expectile', 'train_q_agg', 'vgf_q_agg', 'bc_policy_type', 'bc_flow_steps', 'bc_use_tanh'}
    | {'vgf_particles', 'train_particle_select', 'eval_particle_select', 'train_vgf_steps', 'vgf_lr', 'vgf_alpha'}
    | {'softmax_temp', 'encoder'},
}
_MAIN_COMMON = {'run_group', 'seed', 'env_name', 'save_dir', 'offline_steps', 'online_steps', 'buffer_size'}
_MAIN_COMMON |= {'log_interval', 'eval_interval', 'save_interval', 'eval_episodes', 'video_episodes'}
_MAIN_COMMON |= {'video_frame_skip', 'agent'}
RELEASED_MAIN_FLAGS = {
    'fql': _MAIN_COMMON | {'restore_path', 'restore_epoch', 'p_aug', 'frame_stack', 'balanced_sampling'},
    'qam': _MAIN_COMMON
    | {'tags', 'start_training', 'utd_ratio', 'dataset_proportion', 'dataset_replace_interval', 'horizon_length'}
    | {'ogbench_dataset_dir', 'sparse', 'auto_cleanup', 'balanced_sampling'},
    'fav': _MAIN_COMMON
    | {'restore_path', 'restore_epoch', 'p_aug', 'frame_stack', 'balanced_sampling', 'wandb_project_suffix'},
    'vgf': _MAIN_COMMON
    | {'project_name', 'restore_path', 'restore_epoch', 'start_training', 'p_aug', 'frame_stack', 'off2on_style'}
    | {'normalize_r', 'sparse'},
}


def _args(repo, **kw):
    args = dict(
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
        released_repo=repo,
        updates_per_call=1,
    )
    return argparse.Namespace(**{**args, **kw})


def _flag_names(cmd, prefix):
    return [f.split('=')[0][len(prefix) :] for f in cmd if f.startswith(prefix)]


@pytest.mark.parametrize('repo,agent', NEW_AGENTS)
def test_new_repo_flag_mapping_passes_tiltbench_values_to_both_sides(repo, agent):
    config = parity.tiltbench_config(agent, {'actor_hidden_dims': (64, 32), 'discount': 0.995})
    mapping = parity.check_expressible(repo, agent, config)
    released = parity.released_command(_args(repo), agent, config, seed=1)
    ours = parity.tiltbench_command(_args(repo), agent, config)
    spec = parity.REPOS[repo]
    assert released[:2] == ['/venv/bin/python', '-c'] and "mode='disabled'" in released[2]
    assert f'--agent={mapping.cfg_file}' in released and '--seed=1' in released and '--offline_steps=1000' in released
    assert f'--env_name={spec.env_prefix}cube-single-play-singletask-task2-v0' in released
    assert '--agent.actor_hidden_dims=(64,32)' in released and '--agent.discount=0.995' in released
    assert '--updates_per_call=1' in ours and '--num_seeds=2' in ours and f'--agent={agent}' in ours
    assert '--env_name=cube-single-play-singletask-task2-v0' in ours
    for flag in spec.main_flags:  # the fixed main.py flags (QAM: no chunking, no online phase)
        assert flag in released and flag not in ours
    for k, released_key in mapping.keys.items():
        value = parity.flag_value(config[k])
        assert f'--agent.{released_key}={value}' in released and f'--agent.{k}={value}' in ours
    for released_key, (keys, fn) in mapping.derived.items():
        assert f'--agent.{released_key}={parity.flag_value(fn(config))}' in released
        for k in keys:
            assert f'--agent.{k}={parity.flag_value(config[k])}' in ours
    for released_key, value in mapping.fixed.items():
        assert f'--agent.{released_key}={parity.flag_value(value)}' in released
    for k in mapping.tiltbench_only:
        assert f'--agent.{k}={parity.flag_value(config[k])}' in ours
    # Every tiltbench key is placed: passed, checked, or said not to act.
    assert set(config) == set(mapping.tiltbench_keys()) | set(mapping.allowed) | set(mapping.unused)
    # Both commands are ones their main.py accepts: tiltbench's keys are this agent's, the released ones are in the
    # released get_config() of the agent file, and the released main.py flags exist there.
    assert set(_flag_names(ours, '--agent.')) <= set(agents.get_config(agent))
    assert len(_flag_names(ours, '--agent.')) == len(set(_flag_names(ours, '--agent.')))
    check_explicit_keys(config, set(_flag_names(ours, '--agent.')))  # as tiltbench's main.py checks them
    agents.get_agent(agent).validate(config)
    assert set(_flag_names(released, '--agent.')) <= RELEASED_AGENT_KEYS[(repo, mapping.cfg_file)]
    assert len(_flag_names(released, '--agent.')) == len(set(_flag_names(released, '--agent.')))
    main_flags = {f.split('=')[0][2:] for f in released[3:] if not f.startswith('--agent.')}
    assert main_flags <= RELEASED_MAIN_FLAGS[repo]
    assert shlex.join(released)


@pytest.mark.parametrize(
    'repo,agent,overrides,expected,cfg_file',
    [
        ('qam', 'qam_fql', {'alpha': float('inf')}, ['--agent.fql_alpha=0.0', '--agent.edit_scale=0.0'], None),
        ('qam', 'qam_fql', {'alpha': 300.0}, ['--agent.fql_alpha=300.0', '--agent.edit_scale=0.0'], None),
        ('qam', 'qam_edit', {'sigma_a': 0.3, 'edit_entropy_target': -0.25}, ['--agent.edit_scale=0.3'], None),
        ('qam', 'qam_edit', {'edit_entropy_target': -0.25}, ['--agent.edit_target_entropy_multiplier=0.25'], None),
        ('qam', 'qam', {}, ['--agent.clip_grad=True', '--agent.fql_alpha=0.0', '--agent.edit_scale=0.0'], None),
        ('qam', 'qam', {'grad_clip_norm': 0.0}, ['--agent.clip_grad=False'], None),
        ('qam', 'qam', {'residual': True, 'target_critic_grad': False}, ['--agent.residual=True'], None),
        ('qam', 'qam', {'bc_flow_target': False}, ['--agent.target_actor=False', '--agent.use_target_grad=True'], None),
        ('qam', 'qam_fav', {}, ['--agent.num_qs=2', '--agent.action_chunking=False'], None),
        ('qam', 'qam', {'bam': True}, ['--agent.num_qs=10', '--agent.action_chunking=False'], 'agents/bam.py'),
        ('fav', 'fav', {'bandwidth': 0.05, 'beta': 1.0}, ['--agent.bandwidth_method=fixed', '--agent.beta=1.0'], None),
        (
            'fav',
            'fav_adaptive',
            {'num_particles': 4},
            ['--agent.bandwidth_method=scott', '--agent.gen_multiplier=4'],
            None,
        ),
        ('fav', 'fav', {'q_agg': 'min'}, ['--agent.q_agg=min'], None),
        ('vgf', 'vgf', {'lr': 1e-3}, ['--agent.value_lr=0.001', '--agent.actor_lr=0.001'], None),
        (
            'vgf',
            'vgf',
            {'q_agg': 'mean', 'vgf_step_size': 0.05},
            ['--agent.train_q_agg=mean', '--agent.vgf_lr=0.05'],
            None,
        ),
        (
            'qam',
            'fawac',
            {'inv_temp': 3.0},
            ['--agent.inv_temp=3.0', '--agent.num_qs=10', '--agent.rho=0.5'],
            'agents/fawac.py',
        ),
        (
            'fql',
            'ifql',
            {'num_samples': 8, 'expectile': 0.7},
            ['--agent.num_samples=8', '--agent.expectile=0.7'],
            'agents/ifql.py',
        ),
        (
            'vgf',
            'vgf',
            {'alpha': 0.2, 'train_vgf_steps': 3},
            ['--agent.vgf_alpha=0.2', '--agent.train_vgf_steps=3'],
            None,
        ),
    ],
)
def test_new_repo_switches_reach_the_released_flags(repo, agent, overrides, expected, cfg_file):
    config = parity.tiltbench_config(agent, overrides)
    mapping = parity.check_expressible(repo, agent, config)
    released = parity.released_command(_args(repo), agent, config, seed=0)
    ours = parity.tiltbench_command(_args(repo), agent, config)
    assert all(f in released for f in expected), [f for f in expected if f not in released]
    assert mapping.cfg_file == (cfg_file or f'agents/{repo}.py')
    for k, v in overrides.items():  # every override reaches tiltbench's command too
        assert f'--agent.{k}={parity.flag_value(config[k])}' in ours
    check_explicit_keys(config, set(_flag_names(ours, '--agent.')))
    agents.get_agent(agent).validate(config)
    if cfg_file == 'agents/bam.py':  # agents/bam.py has none of these switches
        assert not any(
            f.startswith(('--agent.use_target_grad', '--agent.clip_grad', '--agent.fql_alpha')) for f in released
        )
        assert '--agent.target_critic_grad=True' not in ours


@pytest.mark.parametrize(
    'repo,agent,overrides,match',
    [
        ('qam', 'qam', {'sde_scheme': 'exact'}, "sde_scheme='exact' cannot be expressed"),
        ('qam', 'qam', {'q_agg': 'mean'}, 'mean - rho'),
        ('qam', 'qam', {'grad_clip_norm': 0.0, 'grad_clip_value': 1.0}, 'element-wise'),
        ('qam', 'qam', {'grad_clip_norm': 10.0}, 'global norm at 1'),
        ('qam', 'qam', {'target_from_old_params': False}, 'before the step'),
        ('qam', 'qam_fql', {'bam': True}, 'no one-step / edit policy'),
        ('qam', 'qam', {'bam': True, 'grad_clip_norm': 0.0}, 'always clips'),
        ('qam', 'qam', {'mix_offline': 0.5}, 'online phase only'),
        ('fav', 'fav', {'unclamped_kde': True}, 'clipped at 1e-6'),
        ('fav', 'fav', {'unclipped_particles': True}, 'clipped to'),
        ('fav', 'fav_adaptive', {'adaptive_bandwidth': 'dataset'}, "'dataset'"),
        ('fav', 'fav', {'num_critics': 4}, 'num_ensembles=2'),
        ('fav', 'fav', {'q_agg': 'pessimistic'}, 'min if'),
        ('fav', 'fav', {'grad_q_agg': 'min'}, 'mean of the critic heads'),
        ('fav', 'fav', {'use_repulsive': False}, 'always on'),
        ('fav', 'fav', {'q_grad': 'zeroth_order'}, 'jax.grad'),
        ('fav', 'fav', {'zo_num_dirs': 8}, 'zeroth_order'),
        ('qam', 'fawac', {'value_target': 'td'}, r'Eq\. \(76\)'),
        ('qam', 'fawac', {'q_agg': 'mean'}, 'mean - rho'),
        ('fql', 'ifql', {'q_agg': 'pessimistic'}, r'min\(q1, q2\)'),
        ('fql', 'ifql', {'critic_head_reduction': 'mean'}, r'\(q2 - y\)'),
        ('fql', 'ifql', {'num_critics': 10}, 'two heads'),
        ('vgf', 'vgf', {'maxent': False}, 'MaxEnt'),
        ('vgf', 'vgf', {'bandwidth': 0.5}, 'median heuristic'),
        ('vgf', 'vgf', {'test_vgf_steps': (0, 5)}, r'\(0, 1, 2, 3\)'),
        ('vgf', 'vgf', {'grad_net': True}, 'a_vgf.py'),
        ('vgf', 'vgf', {'particle_optimizer': 'sgd'}, 'optax.adam'),
        ('vgf', 'vgf', {'ln_first': False}, 'LayerNorm before'),
        ('vgf', 'vgf', {'normalize_r': True, 'normalize_r_scale': 1.0}, 'D4RL rewards only'),
        ('vgf', 'vgf', {'q_agg': 'pessimistic'}, 'train_q_agg'),
    ],
)
def test_switches_the_released_code_cannot_express_are_refused(repo, agent, overrides, match):
    config = parity.tiltbench_config(agent, overrides)
    with pytest.raises(ValueError, match=match):
        parity.check_expressible(repo, agent, config)


def test_harness_refuses_an_unexpressible_switch_before_running(tmp_path, capsys):
    argv = ['--released_repo=qam', '--agents=qam', '--set', 'qam:sde_scheme=exact', f'--out={tmp_path}', '--seeds=2']
    with pytest.raises(SystemExit) as e:
        parity.main([*argv, '--phase=compare'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "sde_scheme='exact' cannot be expressed by the released code" in err and 'Euler-Maruyama' in err
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written
    with pytest.raises(SystemExit):  # an agent the repository has no mapping for
        parity.main(['--released_repo=vgf', '--agents=fav', '--phase=compare', f'--out={tmp_path}'])
    assert 'no flag mapping' in capsys.readouterr().err


def test_every_tiltbench_key_needs_a_decision():
    """A tiltbench config key that a mapping does not place is refused (so a new key cannot slip through)."""
    config = parity.tiltbench_config('fav', {})
    with config.unlocked():
        config.new_switch = True
    with pytest.raises(ValueError, match=r"\['new_switch'\] have no decision"):
        parity.check_expressible('fav', 'fav', config)


def test_released_repo_is_inferred_from_the_checkout(tmp_path):
    layouts = {
        'qam': ['agents/qam.py', 'agents/bam.py', 'agents/fql.py', 'main.py'],
        'fav': ['fav-offrl/agents/fav.py', 'fav-offrl/agents/sac.py', 'fav-offrl/agents/fql.py'],
        'vgf': ['agents/vgf.py', 'agents/a_vgf.py', 'main.py'],
        'fql': ['agents/fql.py', 'agents/iql.py', 'main.py'],
    }
    for kind, files in layouts.items():
        for f in files:
            (tmp_path / kind / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / kind / f).touch()
        assert parity.infer_repo(str(tmp_path / kind)) == kind
    assert parity.infer_repo(str(tmp_path / 'fav' / 'fav-offrl')) == 'fav'  # main.py's own folder
    assert parity.main_dir('fav', str(tmp_path / 'fav')) == str(tmp_path / 'fav' / 'fav-offrl')
    assert parity.main_dir('fav', str(tmp_path / 'fav' / 'fav-offrl')) == str(tmp_path / 'fav' / 'fav-offrl')
    assert parity.infer_repo(None) == 'fql' and parity.infer_repo(str(tmp_path / 'absent')) == 'fql'
    (tmp_path / 'other').mkdir()
    with pytest.raises(ValueError, match='none of the known released repositories'):
        parity.infer_repo(str(tmp_path / 'other'))


def _write(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join([','.join(header)] + [','.join(str(x) for x in r) for r in rows]) + '\n')


def test_released_qam_logs_are_read_in_tiltbench_names(tmp_path):
    # <save_dir>/<project ('' for a disabled wandb run)>/<run_group>/<env_name>/<flags hash>/, as main.py l.75 writes
    # it; offline_agent.csv holds the info dict's own names (the header of a real 100-step run of qam_fql).
    exp = tmp_path / 'Debug' / 'cube-single-play-singletask-task2-v0' / ('0927139c' * 8)
    header = [
        'actor/adj_loss',
        'actor/adj_max',
        'actor/adj_mean',
        'actor/adj_std',
        'actor/fast_loss',
        'actor/flow_loss',
    ]
    header += ['actor/fql_distill_loss', 'actor/fql_q_loss', 'critic/critic_loss', 'critic/q_max', 'critic/q_mean']
    header += ['critic/q_min', 'grad/max', 'grad/min', 'grad/norm', 'step']
    _write(
        exp / 'offline_agent.csv',
        header,
        [[7.3, 0.056, 0.0026, 0.0073, 7.3, 1.34, 0.5, 0.2, 0.025, -0.36, -1.32, -1.92, 72.1, -43.9, 736.0, 50]],
    )
    ev = ['avg_gripper_contact_length', 'num_gripper_contacts', 'success', 'episode.return', 'episode.length', 'step']
    _write(exp / 'eval.csv', ev, [[0.0, 0.0, 0.25, -500.0, 1000.0, 50], [0.0, 0.0, 0.5, -400.0, 1000.0, 100]])
    (exp / 'env.csv').write_text('')
    r = parity.read_released(str(tmp_path), 'qam_fql', 'qam')
    assert r['train'][50] == {
        'actor/am_loss': 7.3,
        'actor/adj_final_max': 0.056,
        'actor/adj_final_abs': 0.0026,
        'actor/adj_final_std': 0.0073,
        'actor/bc_flow_loss': 1.34,
        'actor/distill_loss': 0.5,
        'actor/onestep_q_loss': 0.2,
        'critic/loss': 0.025,
        'critic/q_max': -0.36,
        'critic/q_mean': -1.32,
        'critic/q_min': -1.92,
    }
    assert r['eval'] == {50: 25.0, 100: 50.0} and r['ms'] == {}  # no time column: ms per update n/a


def test_released_fav_logs_are_read_in_tiltbench_names(tmp_path):
    # <save_dir>/<project>/<run_group>/<agent>_<env>_<seed>_<time>/ (main.py l.65): training/ and validation/ rows
    # of the info dict, time/epoch_time in seconds per update, evaluation/ of the flattened episode info.
    exp = tmp_path / 'fav' / 'Debug' / 'fav_cube-single-play-singletask-task2-v0_0_20260101_000000'
    names = ['critic/critic_loss', 'critic/q_mean', 'critic/q_max', 'critic/q_min', 'actor/drift_norm']
    names += ['actor/prior_score_norm', 'actor/nabla_q_norm', 'actor/gen_abs_mean', 'actor/bandwidth']
    names += ['actor/bandwidth_std', 'grad/max', 'grad/min', 'grad/norm']
    header = [f'training/{n}' for n in names] + [f'validation/{n}' for n in names]
    header += ['time/epoch_time', 'time/total_time', 'step']
    row = [0.1, -2.0, -0.5, -3.0, 0.3, 1.5, 0.7, 0.6, 0.02, 0.4, 9.0, -9.0, 50.0] + [99.0] * len(names)
    _write(exp / 'train.csv', header, [row + [0.004, 1.0, 100]])
    ev = ['evaluation/episode.return', 'evaluation/success', 'evaluation/episode.length', 'step']
    _write(exp / 'eval.csv', ev, [[-900.0, 0.1, 200, 1], [-700.0, 0.3, 200, 100]])
    r = parity.read_released(str(tmp_path), 'fav_adaptive', 'fav')
    assert r['train'][100] == {
        'critic/loss': 0.1,
        'critic/q_mean': -2.0,
        'critic/q_max': -0.5,
        'critic/q_min': -3.0,
        'actor/phi_norm': 0.3,
        'actor/prior_norm': 1.5,
        'actor/grad_q_norm': 0.7,
        'actor/abs_mean': 0.6,
        'actor/bandwidth': 0.02,
        'actor/action_std': 0.4,
    }
    assert r['eval'] == {1: 10.0, 100: 30.0} and r['ms'] == {100: 4.0}


def _vgf_released(root, success_by_l):
    """A released VGF run directory: <save_dir>/<project>/<run_group>/sd<seed>_<time>/ (main.py l.59), train.csv
    rows training/<info key> (no 'critic/' prefix in its info dict), eval.csv one evaluation_<L>/ group per L_test."""
    exp = root / 'univr_reproduce' / 'Debug' / 'sd000_20260101_000000'
    header = ['training/critic_loss', 'training/q_mean', 'training/bc_flow_var', 'training/vgf_var']
    header += ['training/bc_loss', 'training/grad/max', 'training/grad/min', 'training/grad/norm']
    header += ['time/epoch_time', 'time/total_time', 'step']
    _write(exp / 'train.csv', header, [[0.8, -5.0, 0.3, 0.2, 0.9, 1.0, -1.0, 3.0, 0.01, 2.0, 100]])
    ev = [f'evaluation_{s}/{k}' for s in range(4) for k in ('episode.return', 'success')] + ['step']
    _write(exp / 'eval.csv', ev, [[x for s in range(4) for x in (-1.0, success_by_l[s])] + [100]])


def test_released_vgf_logs_map_each_l_test_to_tiltbench_columns(tmp_path):
    _vgf_released(tmp_path, [0.1, 0.2, 0.3, 0.4])
    r = parity.read_released(str(tmp_path), 'vgf', 'vgf')  # default config: L_train = 1 is the primary L_test
    assert r['train'][100] == {
        'critic/loss': 0.8,
        'critic/q1_mean': -5.0,
        'vgf/bc_var': 0.3,
        'vgf/var': 0.2,
        'actor/bc_flow_loss': 0.9,
    }
    assert r['eval'] == {100: 20.0} and r['ms'] == {100: 10.0}
    assert r['evals'] == {100: {'L0/score': 10.0, 'L2/score': 30.0, 'L3/score': 40.0}}
    config = parity.tiltbench_config('vgf', {'train_vgf_steps': 3, 'test_vgf_steps': (0, 3)})
    r = parity.read_released(str(tmp_path), 'vgf', 'vgf', config)
    assert r['eval'] == {100: 40.0} and r['evals'] == {100: {'L0/score': 10.0}}


def test_vgf_l_test_columns_are_compared(tmp_path):
    """Each L_test column of tiltbench's eval.csv against the released evaluation_<L>/success, without training."""
    released = []
    for k in range(3):
        _vgf_released(tmp_path / f'r{k}', [0.1 * k, 0.2, 0.3, 0.4 + 0.01 * k])
        released.append(parity.read_released(str(tmp_path / f'r{k}'), 'vgf', 'vgf'))
    tilt = []
    metrics = list(parity.released_mapping('vgf', 'vgf').metrics.values())
    for k in range(3):
        run = tmp_path / f't{k}'
        _write(run / 'train.csv', ['step', 'phase', 'time', *metrics], [[100, 'offline', 1.0, *([0.5] * len(metrics))]])
        ev = ['step', 'phase', 'score', 'L1/score', 'L0/score', 'L2/score', 'L3/score']
        _write(run / 'eval.csv', ev, [[100, 'offline', 20.0, 20.0, 10.0 * k, 30.0 + k, 60.0 + k]])
        tilt.append(parity.read_tiltbench(str(run), 'vgf', 3, metrics))
    extra = [m for m in parity.REPOS['vgf'].eval_columns(parity.tiltbench_config('vgf', {})) if m != 'score']
    result = parity.compare(tilt, released, metrics, extra)
    rows = {r['metric']: r for r in result['rows']}
    assert set(rows) == set(metrics) | {'score', 'L0/score', 'L2/score', 'L3/score'}
    assert rows['score']['indistinguishable'] and rows['L0/score']['indistinguishable']
    assert not rows['L3/score']['indistinguishable'] and rows['L3/score']['a_above_every_seed']
    assert '| L3/score | 100 |' in parity.table_section('vgf', result, 3, 3)
