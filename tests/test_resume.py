"""Runs survive SIGKILL: resume continues bit-for-bit (offline and online phases), logs have each step once,
finished runs are never overwritten, multi-seed runs equal separate runs."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from runner import checkpoint as ckpt_lib
from tests.conftest import ROOT, TINY, read_final, run_main

ARGS = [
    '--agent=fql',
    '--env_name=toy-8gaussians',
    '--offline_steps=600',
    '--online_steps=400',
    '--eval_interval=200',
    '--log_interval=50',
    '--save_interval=50',
    '--updates_per_call=25',
    '--eval_episodes=1',
    *TINY,
]


def _ckpt_steps(run):
    return [int(os.path.basename(p)[5:14]) for p in ckpt_lib.list_checkpoints(os.path.join(run, 'checkpoints'))]


def _start(args, save_dir):
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), f'--save_dir={save_dir}', '--progress=false', *args]
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after_checkpoint(args, save_dir, run, min_step):
    """Start a run and SIGKILL it as soon as a checkpoint at step >= min_step exists."""
    proc = _start(args, save_dir)
    deadline = time.time() + 600
    while time.time() < deadline:
        if os.path.isdir(os.path.join(run, 'checkpoints')) and any(s >= min_step for s in _ckpt_steps(run)):
            break
        if proc.poll() is not None:
            raise AssertionError(f'run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}')
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return max(_ckpt_steps(run))


def _final_params(run):
    raw = ckpt_lib.read(ckpt_lib.latest(os.path.join(run, 'checkpoints')))
    return raw['state']


def _eval_rows(run):
    with open(os.path.join(run, 'eval.csv')) as f:
        return list(csv.DictReader(f))


def test_sigkill_offline_and_online_then_resume_is_bit_exact(tmp_path):
    ref_dir, ref = tmp_path / 'ref', tmp_path / 'ref' / 'fql_toy-8gaussians_seed0'
    run_main(ARGS, ref_dir)

    save, run = tmp_path / 'killed', str(tmp_path / 'killed' / 'fql_toy-8gaussians_seed0')
    killed_at = _kill_after_checkpoint(ARGS, save, run, 200)  # mid offline phase
    assert killed_at < 600
    assert json.load(open(os.path.join(run, 'status.json')))['status'] == 'running'
    proc = run_main(ARGS, save, check=False)  # without --resume: refuse, change nothing
    assert proc.returncode == 2 and '--resume' in proc.stderr
    killed_at = _kill_after_checkpoint([*ARGS, '--resume'], save, run, 700)  # mid online phase
    assert 600 < killed_at < 1000
    run_main([*ARGS, '--resume'], save)

    a, b = _final_params(str(ref)), _final_params(run)
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))
    fa, fb = read_final(ref), read_final(run)
    for k in ('final_score', 'offline_score', 'online_score', 'steps', 'last_eval'):
        assert fa[k] == fb[k], k
    steps = [r['step'] for r in _eval_rows(run)]
    assert steps == [r['step'] for r in _eval_rows(str(ref))] and len(steps) == len(set(steps))
    train_steps = [r['step'] for r in csv.DictReader(open(os.path.join(run, 'train.csv')))]
    assert len(train_steps) == len(set(train_steps)) == 20
    assert len(_ckpt_steps(run)) == 2  # the last two are kept

    # a finished run: --resume is a no-op (exit 0), without it an error; nothing changes either way
    before = open(os.path.join(run, 'final.json')).read()
    assert run_main([*ARGS, '--resume'], save).returncode == 0
    assert run_main(ARGS, save, check=False).returncode == 2
    assert open(os.path.join(run, 'final.json')).read() == before


def test_resume_refuses_a_different_command(tmp_path):
    args = [
        '--agent=fql',
        '--env_name=toy-8gaussians',
        '--offline_steps=40',
        '--eval_interval=20',
        '--eval_episodes=1',
        '--save_interval=20',
        *TINY,
    ]
    run_main(args, tmp_path)
    os.remove(tmp_path / 'fql_toy-8gaussians_seed0' / 'final.json')
    proc = run_main([*args, '--resume', '--agent.alpha=3'], tmp_path, check=False)
    assert proc.returncode == 2 and 'agent.alpha' in proc.stderr
    # a run made before start_training existed (its config.json without it) updated from the first online step: it
    # resumes as it ran, and a run that would now wait is refused with the key named
    cfg_path = tmp_path / 'fql_toy-8gaussians_seed0' / 'config.json'
    cfg = json.loads(cfg_path.read_text())
    del cfg['config']['start_training'], cfg['config']['random_before_training']
    cfg_path.write_text(json.dumps(cfg))
    proc = run_main([*args, '--resume', '--agent.start_training=5'], tmp_path, check=False)
    assert proc.returncode == 2 and 'agent.start_training: 0 -> 5' in proc.stderr
    assert run_main([*args, '--resume'], tmp_path).returncode == 0


def test_num_seeds_equals_separate_runs(tmp_path):
    args = [
        '--agent=fql',
        '--env_name=toy-8gaussians',
        '--offline_steps=60',
        '--online_steps=10',
        '--eval_interval=30',
        '--log_interval=10',
        '--eval_episodes=1',
        '--buffer_size=1000',
        *TINY,
    ]
    run_main([*args, '--num_seeds=2'], tmp_path / 'multi')
    run_main([*args, '--seed=1'], tmp_path / 'single')
    m = tmp_path / 'multi' / 'fql_toy-8gaussians_seed1'
    s = tmp_path / 'single' / 'fql_toy-8gaussians_seed1'
    assert (tmp_path / 'multi' / 'fql_toy-8gaussians_seed0' / 'final.json').exists()
    la, lb = jax.tree_util.tree_leaves(_final_params(str(m))), jax.tree_util.tree_leaves(_final_params(str(s)))
    for x, y in zip(la, lb):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4)
    rm, rs = list(csv.DictReader(open(m / 'train.csv'))), list(csv.DictReader(open(s / 'train.csv')))
    assert [r['step'] for r in rm] == [r['step'] for r in rs]
    for a, b in zip(rm, rs):
        np.testing.assert_allclose(float(a['critic/loss']), float(b['critic/loss']), rtol=1e-3, atol=1e-5)
    assert read_final(m)['seed'] == 1
    # re-running the finished multi-seed command with --resume is a no-op, not a config mismatch
    proc = run_main([*args, '--num_seeds=2', '--resume'], tmp_path / 'multi')
    assert 'already finished' in proc.stderr


def test_sigkill_mid_episode_on_ogbench_then_resume_is_bit_exact(pointmaze_dir, tmp_path):
    """Multi-step episodes: the checkpoint keeps the episode in progress (its reset seed, the actions since, the
    open-loop chunk queue), and a resumed run replays it, so the result equals an uninterrupted run byte for byte."""
    data = pointmaze_dir
    args = [
        '--agent=fql',
        '--env_name=pointmaze-medium-navigate-singletask-task1-v0',
        f'--dataset_dir={data}',
        '--download=false',
        '--offline_steps=30',
        '--online_steps=150',
        '--eval_interval=0',
        '--eval_episodes=1',
        '--log_interval=30',
        '--save_interval=30',
        '--updates_per_call=5',
        '--agent.horizon_length=4',  # 30 is not a multiple of 4: checkpoints fall inside a chunk
        '--buffer_size=5000',
        *TINY,
    ]
    name = 'fql_pointmaze-medium-navigate-singletask-task1-v0_seed0'
    run_main(args, tmp_path / 'ref')
    save, run = tmp_path / 'killed', str(tmp_path / 'killed' / name)
    killed_at = _kill_after_checkpoint(args, save, run, 60)  # inside the online phase, inside the first episode
    assert 30 < killed_at < 180
    proc = run_main([*args, '--resume'], save)
    assert f'resuming from the online checkpoint at step {killed_at}' in proc.stderr and 'warning' not in proc.stderr
    ref = str(tmp_path / 'ref' / name)
    a, b = jax.tree_util.tree_leaves(_final_params(ref)), jax.tree_util.tree_leaves(_final_params(run))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    for f in ('train.csv', 'eval.csv'):
        ra, rb = list(csv.DictReader(open(os.path.join(ref, f)))), list(csv.DictReader(open(os.path.join(run, f))))
        assert [{k: v for k, v in r.items() if k != 'time'} for r in ra] == [
            {k: v for k, v in r.items() if k != 'time'} for r in rb
        ]
    fa, fb = read_final(ref), read_final(run)
    for k in ('final_score', 'offline_score', 'online_score', 'steps', 'last_eval'):
        assert fa[k] == fb[k], k


def test_episode_replay_checks_where_it_arrives(capsys):
    """The replay of an episode in progress arrives at the checkpoint's observation in a reproducible env, and an
    env that is not reproducible from its reset seed (ogbench's raw pointmaze: its reset draws from numpy's global
    RNG) is detected: a warning, and the episode restarts."""
    import types

    import ogbench

    from envs.ogbench_env import SeededReset
    from runner.loop import Loop, _new_episode

    name = 'pointmaze-medium-navigate-singletask-task1-v0'
    loop = Loop.__new__(Loop)
    loop.seeds = [types.SimpleNamespace(seed=3)]
    loop.online_counters = {'episodes': [2], 'recent': [[]]}
    loop.episodes = [_new_episode()]
    actions = list(np.random.default_rng(0).uniform(-1, 1, (25, 2)).astype(np.float32))

    def played(env):
        o = loop._start_episode(0, env)
        for a in actions:
            o = env.step(a)[0]
        return {'actions': list(actions), 'return': 0.0, 'queue': [], 'obs': np.asarray(o, np.float32)}

    saved = played(SeededReset(ogbench.make_env_and_datasets(name, env_only=True), 3))
    loop.episodes = [dict(saved)]
    o = loop._start_episode(0, SeededReset(ogbench.make_env_and_datasets(name, env_only=True), 3))
    np.testing.assert_array_equal(np.asarray(o, np.float32), saved['obs'])
    assert loop.episodes[0]['actions'] and 'warning' not in capsys.readouterr().err

    loop.episodes = [_new_episode()]
    saved = played(ogbench.make_env_and_datasets(name, env_only=True))
    loop.episodes = [dict(saved)]
    loop._start_episode(0, ogbench.make_env_and_datasets(name, env_only=True))
    assert 'did not reproduce' in capsys.readouterr().err and loop.episodes[0]['actions'] == []
