"""scripts/benchmark.py: every requested setting becomes a row (updates_per_call, num_seeds), agent config overrides
reach the measured learner, and bad overrides fail before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

import agents
from agents.common.trainer import Learner
from tests.conftest import run_tunables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'scripts', 'benchmark.py')
SETS = ['--set=actor_hidden_dims=(8,8)', '--set=value_hidden_dims=(8,8)', '--set=batch_size=4']


def run(args, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )


def test_rows_overrides_and_table(tmp_path):
    out, js = tmp_path / 'tp.md', tmp_path / 'tp.json'
    proc = run(
        ['--agents=iql', '--upc=2', '--seeds=2', '--repeats=2', '--steps_per_repeat=2', *SETS]
        + [f'--out={out}', f'--json={js}'],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(js.read_text())['rows']
    # --upc=2 gives a one-seed row at 2 updates per call; --seeds=2 a two-seed row at the fused default (20)
    assert [(r['agent'], r['upc'], r['num_seeds']) for r in rows] == [('iql', 2, 1), ('iql', 20, 2)]
    for r in rows:
        assert r['finite'] and r['ms_per_update'] > 0 and len(r['ms_all']) == 2
        assert abs(r['ms_per_seed_update'] * r['num_seeds'] - r['ms_per_update']) < 1e-9
        assert r['overrides'] == {'actor_hidden_dims': [8, 8], 'value_hidden_dims': [8, 8], 'batch_size': 4}
    # the overrides reached the measured networks: same parameter count as a learner built with them here
    config = agents.get_config('iql')
    config.actor_hidden_dims, config.value_hidden_dims = (8, 8), (8, 8)
    learner = Learner(agents.get_agent('iql'), config, 28, 5, {})
    expected = sum(x.size for x in jax.tree_util.tree_leaves(learner.init(jax.random.PRNGKey(0)).params))
    assert [r['num_params'] for r in rows] == [expected, expected]
    table = out.read_text()
    assert '| iql | 2 | 1 |' in table and '| iql | 20 | 2 |' in table
    assert '`actor_hidden_dims=(8,8)`' in table and 'paper networks' not in table


def test_unknown_override_key_fails_before_running(tmp_path):
    proc = run(['--agents=iql,fql', '--seeds=1', '--upc=1', '--set=hiden_dims=(8,8)', '--no-write'], tmp_path)
    assert proc.returncode != 0
    assert "has no config key ['hiden_dims']" in proc.stderr and 'actor_hidden_dims' in proc.stderr
    assert 'ms/update' not in proc.stdout  # nothing was measured


def test_eval_benchmark_times_sequential_and_lockstep_evaluations(tmp_path):
    js, data = tmp_path / 'eval.json', tmp_path / 'data'  # no dataset there: the first worker generates one episode
    proc = run(
        ['--eval', '--eval_envs_names=pointmaze-medium-navigate-singletask-task1-v0', '--eval_agents=fql']
        + ['--episodes=3', '--seq_episodes=1', '--eval_workers=2', f'--dataset_dir={data}', '--generate_episodes=1']
        + [*SETS[:2], '--no-write', f'--json={js}'],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(data / 'pointmaze-medium-navigate-v0.npz') as generated:  # the data only has to exist: 1 episode
        assert int(generated['terminals'].sum()) == 1 and generated['terminals'][-1] == 1
    rows = json.loads(js.read_text())['rows']
    expected_tunables = run_tunables()
    assert [(r['mode'], r['workers'], r['width'], r['episodes']) for r in rows] == [
        ('sequential', 0, 1, 1),
        ('lockstep', 0, 3, 3),
        ('lockstep', 2, 3, 3),
    ]
    for r in rows:  # untrained policies: every episode runs to pointmaze's time limit, one policy call per step
        assert r['mean_length'] == 1000 and r['policy_calls'] == 1000 and r['env_steps'] == 1000 * r['episodes']
        assert r['seconds'] > 0 and r['seconds_50'] == r['seconds'] * 3 / r['episodes']
        assert r['glibc_tunables'] == expected_tunables  # the heap a main.py run would have, as the machine line says
    assert '| pointmaze-medium-navigate | fql | lockstep + 2 workers | 3 |' in proc.stdout


def test_deadline_lists_what_it_did_not_measure(tmp_path):
    out, js = tmp_path / 'tp.md', tmp_path / 'tp.json'
    proc = run(
        ['--agents=iql,fql', '--upc=2', '--seeds=2', '--deadline_s=0.001', *SETS, f'--out={out}', f'--json={js}'],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # a deadline is a planned stop, not a failure
    assert 'ms/update' not in proc.stdout  # no worker was started after the deadline
    saved = json.loads(js.read_text())
    assert saved['rows'] == [] and saved['failed'] == []
    assert saved['skipped'] == [
        f'{a} upc={u} seeds={s} (deadline)' for a in ('iql', 'fql') for u, s in ((2, 1), (20, 2))
    ]
    assert 'Not measured (`--deadline_s=0.001`): iql upc=2 seeds=1 (deadline); iql upc=20 seeds=2' in out.read_text()


def test_a_worker_running_at_the_deadline_is_stopped():
    sys.path.insert(0, os.path.join(ROOT, 'scripts'))
    import eval_benchmark

    t0 = time.monotonic()
    r, why = eval_benchmark.run_result([sys.executable, '-c', 'import time; time.sleep(60)'], None, t0 + 0.5)
    assert (r, why) == (None, 'stopped at the deadline') and time.monotonic() - t0 < 30
    ok = [sys.executable, '-c', 'print("RESULT {\\"x\\": 1}")']
    assert eval_benchmark.run_result(ok, None, time.monotonic() + 60) == ({'x': 1}, '')
    assert eval_benchmark.run_result(ok, None, time.monotonic() - 1) == (None, 'deadline')
    assert eval_benchmark.run_result([sys.executable, '-c', 'raise SystemExit(3)']) == (None, 'failed')
