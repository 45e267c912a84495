"""scripts/aggregate.py on synthetic run directories: bootstrap CIs against slow references, the papers' evaluation
steps, reduced-run labeling, and the join with the published numbers in results/reference/."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import shlex

import numpy as np
import pytest

from scripts import aggregate as agg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.join(ROOT, 'results', 'reference')
K = 1000


def make_run(
    root,
    agent,
    env,
    seed,
    offline_steps,
    evals,
    online_steps=0,
    eval_interval=100 * K,
    eval_episodes=50,
    generate_episodes=None,
    config=None,
    status='finished',
    name=None,
    extra_argv=(),
    preset='default',
):
    """A run directory as main.py writes it. evals: [(step, phase, score)]."""
    root = str(root)
    name = name or f'{agent}_{env.replace("/", "_")}_seed{seed}' + ''.join(
        a.replace('--agent.', '_').replace('=', '') for a in extra_argv
    )
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, 'checkpoints'), exist_ok=True)
    flags = dict(
        env_name=env,
        seed=seed,
        offline_steps=offline_steps,
        online_steps=online_steps,
        eval_interval=eval_interval,
        eval_episodes=eval_episodes,
        generate_episodes=generate_episodes,
        preset=preset,
        save_dir=root,
        run_name=None,
    )
    argv = [
        'main.py',
        f'--agent={agent}',
        f'--env_name={env}',
        f'--seed={seed}',
        f'--offline_steps={offline_steps}',
        f'--online_steps={online_steps}',
        f'--eval_interval={eval_interval}',
        f'--eval_episodes={eval_episodes}',
        *([f'--generate_episodes={generate_episodes}'] if generate_episodes is not None else []),
        *extra_argv,
        f'--save_dir={root}',
    ]
    cfg = {**dict(agent_name=agent, alpha=10.0, batch_size=256), **(config or {})}
    with open(os.path.join(d, 'config.json'), 'w') as f:
        json.dump(dict(agent=agent, flags=flags, config=cfg, preset_applied={}, task_notes=[], argv=argv), f)
    with open(os.path.join(d, 'eval.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['step', 'phase', 'score', 'length'])
        w.writerows([s, ph, sc, 100] for s, ph, sc in evals)
    with open(os.path.join(d, 'final.json'), 'w') as f:
        json.dump(dict(agent=agent, env=env, seed=seed, wall_time_s=12.5), f)
    with open(os.path.join(d, 'status.json'), 'w') as f:
        json.dump(dict(status=status), f)
    return d


def offline_evals(total, interval, fn):
    return [(s, 'offline', fn(s)) for s in range(interval, total + 1, interval)]


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def num(v):
    return float(v) if v not in ('', None) else math.nan


# ---- bootstrap -------------------------------------------------------------------------------------------------------
def test_bootstrap_ci_matches_exact_bootstrap_distribution():
    """Monte-Carlo percentile CI equals the quantiles of the exact bootstrap distribution (all n^n resamples)."""
    x = [0.3, 1.7, 2.2, 5.0]
    n = len(x)
    means = []
    for idx in itertools.product(range(n), repeat=n):  # every resample, equally likely
        total = 0.0
        for i in idx:
            total += x[i]
        means.append(total / n)
    means.sort()
    lo_exact = means[math.ceil(0.025 * len(means)) - 1]
    hi_exact = means[math.ceil(0.975 * len(means)) - 1]
    lo, hi = agg.bootstrap_ci(x, n_boot=200_000, seed=1)
    assert lo == pytest.approx(lo_exact, abs=1e-12) and hi == pytest.approx(hi_exact, abs=1e-12)
    assert lo <= np.mean(x) <= hi
    assert all(math.isnan(v) for v in agg.bootstrap_ci([3.0]))  # one seed: no interval


def test_stratified_bootstrap_matches_exact_distribution_and_slow_loop():
    groups = [[10.0, 30.0], [0.0, 5.0, 40.0]]
    # exact: every pair of resamples (2^2 x 3^3 combinations), the average of the two resample means
    values = []
    for a in itertools.product(range(2), repeat=2):
        for b in itertools.product(range(3), repeat=3):
            ma = sum(groups[0][i] for i in a) / 2
            mb = sum(groups[1][i] for i in b) / 3
            values.append((ma + mb) / 2)
    values.sort()
    lo_exact = values[math.ceil(0.025 * len(values)) - 1]
    hi_exact = values[math.ceil(0.975 * len(values)) - 1]
    lo, hi = agg.stratified_bootstrap_ci(groups, n_boot=200_000, seed=2)
    assert lo == pytest.approx(lo_exact, abs=1e-12) and hi == pytest.approx(hi_exact, abs=1e-12)

    # the same random draws, replicate by replicate in plain Python loops
    n_boot = 400
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(g), size=(n_boot, len(g))) for g in groups]
    reps = []
    for b in range(n_boot):
        total = 0.0
        for g, d in zip(groups, draws):
            s = 0.0
            for i in d[b]:
                s += g[i]
            total += s / len(g)
        reps.append(total / len(groups))
    want = np.percentile(np.array(reps, np.float64), [2.5, 97.5])
    np.testing.assert_allclose(agg.stratified_bootstrap_ci(groups, n_boot=n_boot, seed=0), want, rtol=0, atol=1e-12)


# ---- protocol steps ----------------------------------------------------------------------------------------------
def test_protocol_step_selection(tmp_path):
    def sc(s):
        return s / 10_000  # a distinct score at every step

    ogb = 'cube-single-play-singletask-task2-v0'
    full = make_run(tmp_path, 'fql', ogb, 0, 1000 * K, offline_evals(1000 * K, 100 * K, sc))
    antmaze = make_run(tmp_path, 'fql', 'antmaze-large-play-v2', 0, 500 * K, offline_evals(500 * K, 100 * K, sc))
    red = make_run(tmp_path, 'fql', ogb, 1, 5 * K, offline_evals(5 * K, K, sc), eval_interval=K, eval_episodes=5)
    sparse = make_run(tmp_path, 'iql', ogb, 0, 1000 * K, offline_evals(1000 * K, 200 * K, sc), eval_interval=200 * K)
    o2o_ev = offline_evals(1000 * K, 100 * K, sc) + [
        (s, 'online', sc(s) + 7) for s in range(1100 * K, 2001 * K, 100 * K)
    ]
    o2o = make_run(tmp_path, 'fql', ogb, 2, 1000 * K, o2o_ev, online_steps=1000 * K)
    o2o_red_ev = offline_evals(3 * K, K, sc) + [(s, 'online', sc(s) + 7) for s in (3500, 4 * K, 4500, 5 * K)]
    o2o_red = make_run(tmp_path, 'fql', ogb, 3, 3 * K, o2o_red_ev, online_steps=2 * K, eval_interval=500)

    def load(d):
        r, why = agg.load_run(d)
        assert r is not None, why
        return r

    def at(evals, steps, phase='offline'):
        vals = [score for s, ph, score in evals if ph == phase and s in steps]
        assert len(vals) == len(steps)
        return sum(vals) / len(vals)

    r = load(full)
    assert r.protocol.key == 'ogbench_offline'
    assert r.scores['score'] == pytest.approx(at(r.evals, (800 * K, 900 * K, 1000 * K)))
    r = load(antmaze)
    assert r.protocol.key == 'd4rl_antmaze_offline'
    assert r.scores['score'] == pytest.approx(at(r.evals, (300 * K, 400 * K, 500 * K)))
    r = load(red)
    assert r.protocol is None and any('offline_steps=5000' in w for w in r.reasons)
    assert r.scores['score'] == pytest.approx(at(r.evals, (3 * K, 4 * K, 5 * K)))  # the last three
    r = load(sparse)  # 1M steps but no evaluation at 900K: cannot follow the protocol
    assert r.protocol is None and any('900000' in w for w in r.reasons)
    r = load(o2o)
    assert r.protocol.key == 'ogbench_o2o'
    assert r.scores['offline'] == pytest.approx(sc(1000 * K))
    assert r.scores['online'] == pytest.approx(sc(2000 * K) + 7)
    r = load(o2o_red)
    assert r.protocol is None
    assert r.scores['offline'] == pytest.approx(at(r.evals, (K, 2 * K, 3 * K)))
    assert r.scores['online'] == pytest.approx(at(r.evals, (4 * K, 4500, 5 * K), 'online'))


def test_final_evals_option_is_the_vgf_protocol(tmp_path):
    """--final_evals=10: every score is the mean of the run's final 10 evaluations of each phase (VGF Tables 1-2),
    whatever the table's protocol; a run with fewer evaluations averages all of its own."""

    def sc(s):
        return s / 10_000

    def final_mean(evals, n, phase='offline'):  # the slow way: walk back from the end
        picked = []
        for s, ph, score in reversed(evals):
            if ph == phase and len(picked) < n:
                picked.append(score)
        return sum(picked) / len(picked)

    runs = tmp_path / 'runs'
    task = 'hopper-medium-v2'
    full_evals = {seed: offline_evals(1000 * K, 50 * K, lambda s, seed=seed: sc(s) + seed) for seed in range(2)}
    for seed, ev in full_evals.items():  # D4RL at 1M steps, an evaluation every 50K (the VGF scripts)
        make_run(runs, 'vgf', task, seed, 1000 * K, ev, eval_interval=50 * K)
    short = offline_evals(4 * K, K, sc)  # 4 evaluations only
    make_run(runs, 'vgf', task, 5, 4 * K, short, eval_interval=K, eval_episodes=5)
    o2o_ev = offline_evals(1000 * K, 50 * K, sc) + [(s, 'online', sc(s) + 7) for s in range(1050 * K, 2001 * K, 50 * K)]
    o2o = make_run(runs, 'vgf', 'cube-single-play-singletask-task2-v0', 0, 1000 * K, o2o_ev, online_steps=1000 * K)

    r, _ = agg.load_run(o2o, final_evals=10)
    assert r.protocol.key == 'ogbench_o2o'
    assert r.scores['offline'] == pytest.approx(final_mean(o2o_ev, 10))
    assert r.scores['online'] == pytest.approx(final_mean(o2o_ev, 10, 'online'))
    assert agg.load_run(o2o)[0].scores['online'] == pytest.approx(sc(2000 * K) + 7)  # default: the protocol's rule

    out = tmp_path / 'out'
    agg.aggregate(str(runs), str(out), REF, n_boot=200, plots=False, final_evals=10)
    rows = read_csv(out / 'd4rl_offline_1M_tasks.csv')
    assert rows[0]['score_rule'] == 'final10'
    expected = np.mean([final_mean(ev, 10) for ev in full_evals.values()])
    assert num(rows[0]['score_mean']) == pytest.approx(expected)
    assert expected != pytest.approx(
        np.mean([np.mean([sc(s) + k for s in (800 * K, 900 * K, 1000 * K)]) for k in (0, 1)])
    )
    reduced = [f for f in os.listdir(out) if f.startswith('reduced_offline') and f.endswith('_tasks.csv')]
    assert num(read_csv(out / reduced[0])[0]['score_mean']) == pytest.approx(final_mean(short, 10))  # all 4
    md = (out / 'README.md').read_text()
    assert 'score = mean of the final 10 evaluations' in md and '1 of 1 runs have fewer than 10' in md
    assert 'mean of the evaluations at 800K' not in md
    with pytest.raises(SystemExit):
        agg.main([f'--runs={runs}', f'--out={out}', '--final_evals=-1'])


# ---- tables --------------------------------------------------------------------------------------------------------
def test_reduced_runs_are_labeled_and_never_mixed_with_full_ones(tmp_path):
    runs = tmp_path / 'runs'
    task = 'cube-single-play-singletask-task2-v0'
    full_scores = {0: 80.0, 1: 90.0, 2: 70.0}
    for seed, s in full_scores.items():
        make_run(runs, 'fql', task, seed, 1000 * K, offline_evals(1000 * K, 100 * K, lambda _, s=s: s))
    for seed in range(3):
        make_run(
            runs / 'small',
            'fql',
            task,
            seed,
            2 * K,
            offline_evals(2 * K, 500, lambda _: 1.0),
            eval_interval=500,
            eval_episodes=5,
            generate_episodes=100,
            extra_argv=['--agent.batch_size=64'],
        )
    make_run(runs, 'fql', task, 9, 2 * K, offline_evals(2 * K, 500, lambda _: 1.0), status='running')
    out = tmp_path / 'out'
    res = agg.aggregate(str(runs), str(out), REF, n_boot=500, plots=True)
    ids = [t.id for t in res['tables']]
    assert ids == ['ogbench_offline', 'reduced_offline_2Koff_eval500x5_data100ep']
    full = read_csv(out / 'ogbench_offline_tasks.csv')
    assert len(full) == 1 and full[0]['protocol'] == 'full' and full[0]['n_seeds'] == '3'
    assert num(full[0]['score_mean']) == pytest.approx(np.mean(list(full_scores.values())))
    reduced = read_csv(out / 'reduced_offline_2Koff_eval500x5_data100ep_tasks.csv')
    assert reduced[0]['protocol'] == 'reduced' and num(reduced[0]['score_mean']) == pytest.approx(1.0)
    assert reduced[0]['offline_steps'] == '2000' and reduced[0]['generate_episodes'] == '100'

    md = (out / 'README.md').read_text()
    full_sec, red_sec = md.split('## Table 2')
    full_sec = full_sec.split('## Table 1')[1]
    assert 'REDUCED' not in full_sec and '--generate_episodes' not in full_sec
    assert 'REDUCED' in red_sec.splitlines()[0] and 'NOT the papers' in red_sec
    # the exact commands from config.json, seeds collapsed
    assert (
        'for seed in 0 1 2; do python main.py --agent=fql --env_name=cube-single-play-singletask-task2-v0 '
        '--seed=$seed --offline_steps=2000 --online_steps=0 --eval_interval=500 --eval_episodes=5 '
        '--generate_episodes=100 --agent.batch_size=64; done'
    ) in red_sec
    assert 'status running' in md.split('## Excluded runs')[1]  # the unfinished run is listed, not counted
    pngs = list((out / 'plots').rglob('*.png'))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' for p in pngs)


def test_join_with_published_numbers(tmp_path):
    runs = tmp_path / 'runs'

    def ref(file, task, method, col='mean'):
        with open(os.path.join(REF, file), newline='') as f:
            for row in csv.DictReader(f):
                if row['task'] == task and row['method'] == method:
                    return float(row[col])
        raise KeyError((task, method))

    t1, t2 = 'cube-single-play-singletask-task1-v0', 'cube-single-play-singletask-task2-v0'
    for seed in range(2):
        for agent in ('fql', 'qam_fav'):
            make_run(runs, agent, t1, seed, 1000 * K, offline_evals(1000 * K, 100 * K, lambda _: 50.0))
            # the default-task alias resolves to task2
            make_run(
                runs,
                agent,
                'cube-single-play-singletask-v0',
                seed,
                1000 * K,
                offline_evals(1000 * K, 100 * K, lambda _: 60.0),
            )
        # a grid over alpha: two method variants
        for alpha in (3.0, 30.0):
            make_run(
                runs,
                'iql',
                t1,
                seed,
                1000 * K,
                offline_evals(1000 * K, 100 * K, lambda _: alpha),
                config={'alpha': alpha},
                extra_argv=[f'--agent.alpha={alpha}'],
            )
        for i in range(1, 6):  # all five cube-double tasks: QAM Table 1 has a domain average for them
            for agent, preset in (('qam', 'paper'), ('rebrac', 'qam'), ('fql', 'default')):
                make_run(
                    runs,
                    agent,
                    f'cube-double-play-singletask-task{i}-v0',
                    seed,
                    1000 * K,
                    offline_evals(1000 * K, 100 * K, lambda _, i=i: 10.0 * i),
                    preset=preset,
                )
        for i in range(1, 5):  # only four of five tasks: no QAM domain average
            make_run(
                runs,
                'qam',
                f'scene-play-sparse-singletask-task{i}-v0',
                seed,
                1000 * K,
                offline_evals(1000 * K, 100 * K, lambda _: 1.0),
                preset='qam',
            )
    out = tmp_path / 'out'
    agg.aggregate(str(runs), str(out), REF, n_boot=200, plots=False)
    rows = {(r['task'], r['method']): r for r in read_csv(out / 'ogbench_offline_tasks.csv')}
    f11 = 'fav_table11_offline_results.csv'
    for task in (t1, t2):
        assert num(rows[(task, 'fql')]['fav_t11_score_mean']) == ref(f11, task, 'FQL')
        assert num(rows[(task, 'fql')]['fav_t11_score_spread']) == ref(f11, task, 'FQL', 'ci95')
        assert num(rows[(task, 'fql')]['vgf_t7_score_mean']) == ref('vgf_table7_ogbench_results.csv', task, 'FQL')
        assert num(rows[(task, 'qam_fav')]['fav_t11_score_mean']) == ref(f11, task, 'QAM')  # FAV's reproduction
        assert math.isnan(num(rows[(task, 'qam_fav')]['vgf_t7_score_mean']))  # VGF has no QAM
    assert num(rows[(t2, 'fql')]['score_mean']) == pytest.approx(60.0)
    assert {m for (task, m) in rows if task == t1} == {'fql', 'qam_fav', 'iql (alpha=3)', 'iql (alpha=30)'}
    assert num(rows[(t1, 'iql (alpha=30)')]['score_mean']) == pytest.approx(30.0)
    assert num(rows[(t1, 'iql (alpha=3)')]['fav_t11_score_mean']) == ref(f11, t1, 'IQL')

    fams = {(r['family'], r['method']): r for r in read_csv(out / 'ogbench_offline_families.csv')}
    fql = fams[('cube-single-play', 'fql')]
    assert fql['n_tasks'] == '2'
    assert num(fql['score_mean']) == pytest.approx(55.0)
    assert num(fql['fav_t11_score_mean']) == pytest.approx((ref(f11, t1, 'FQL') + ref(f11, t2, 'FQL')) / 2)
    with open(os.path.join(REF, 'qam_table1_offline_domain_averages.csv'), newline='') as f:
        qam_t1 = {r['method']: r for r in csv.DictReader(f)}
    assert num(fams[('cube-double-play', 'qam')]['qam_t1_score_mean']) == float(qam_t1['QAM']['cube-double'])
    assert num(fams[('cube-double-play', 'rebrac')]['qam_t1_score_mean']) == float(qam_t1['ReBRAC']['cube-double'])
    assert num(fams[('cube-double-play', 'qam')]['score_mean']) == pytest.approx(30.0)
    # QAM Table 1 sits only beside runs made under its protocol: FQL with the defaults gets none
    assert math.isnan(num(fams[('cube-double-play', 'fql')]['qam_t1_score_mean']))
    assert math.isnan(num(fams[('scene-play-sparse', 'qam')]['qam_t1_score_mean']))  # 4 of 5 tasks: no average
    md = (out / 'README.md').read_text()
    assert 'FAV Table 11 (mean ± 95% CI)' in md and 'QAM Table 1 (5-task domain average, QAM protocol)' in md


def test_commands_of_a_multi_seed_process_are_the_command_that_ran(tmp_path):
    """Runs made by one `main.py --num_seeds=2 --seed=3` process are listed as that one command (not as a loop over
    seeds, which would run seeds 3, 4, 4, 5); read from the config.json that main.py really writes."""
    from tests.conftest import TINY, run_main

    runs = tmp_path / 'runs'
    flags = ['--env_name=toy-8gaussians', '--offline_steps=40', '--eval_interval=20', '--eval_episodes=1', *TINY]
    run_main(['--agent=iql', '--seed=3', '--num_seeds=2', *flags], runs)
    run_main(['--agent=iql', '--seed=7', '--run_name=single', *flags], runs)
    res = agg.aggregate(str(runs), str(tmp_path / 'out'), REF, n_boot=200, plots=False)
    assert [len(t.runs) for t in res['tables']] == [3]
    md = (tmp_path / 'out' / 'README.md').read_text()
    tail = shlex.join(flags)  # the commands are shell-quoted: '--agent.actor_hidden_dims=(32,32)'
    assert f'python main.py --agent=iql --seed=3 --num_seeds=2 {tail}  # seeds 3, 4 in one process' in md
    assert f'for seed in 7; do python main.py --agent=iql --seed=$seed {tail}; done' in md
    assert md.count('python main.py') == 2


def test_every_joined_agent_is_registered_and_every_method_is_in_a_published_table():
    """The name joins (tiltbench agent -> paper method) point at real agents and at methods that one of the reference
    tables using that join holds (FAV: Tables 11 and 12, e.g. RLPD only in 12; VGF: Tables 7 and 1)."""
    import agents

    ref = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'results', 'reference')
    sources = agg.load_sources(ref)
    assert len(sources) == 5
    for methods in (agg.FAV_METHODS, agg.QAM_METHODS, agg.VGF_METHODS):
        published = {m for s in sources if s.methods is methods for (_, m) in s.values}
        for agent, method in methods.items():
            assert agent in agents.AGENTS and method in published, (agent, method)
