"""scripts/sweep.py: expansion into main.py commands, skipping finished runs, resuming unfinished ones, the SLURM
array script run the way SLURM runs it, and the local runner."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import types

import pytest

from runner.experiment import run_name_for
from scripts import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = dict(offline_steps=50, online_steps=0, eval_interval=25, eval_episodes=1, log_interval=25, save_interval=50)
TOY_AGENT = {'agent.actor_hidden_dims': (32, 32), 'agent.value_hidden_dims': (32, 32), 'agent.batch_size': 32}


def write_sweep(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_expand_names_flags_and_order():
    subs = [
        dict(
            agents=['fql', 'iql'],
            envs=['toy-8gaussians', 'D4RL/antmaze/large-play-v1'],
            seeds=2,
            grid={'agent.alpha': [1, 0.3]},
            flags={'offline_steps': 10, 'agent.actor_hidden_dims': (32, 32)},
        )
    ]
    runs = sweep.expand(subs, 'runs/x')
    assert len(runs) == 2 * 2 * 2 * 2
    assert [r.name for r in runs] == [r.name for r in sweep.expand(subs, 'runs/x')]  # deterministic
    assert len({r.name for r in runs}) == len(runs)
    r = runs[3]  # fql, toy, alpha=0.3, seed 1 (order: agent, env, grid point, seed)
    assert r.name == 'fql_toy-8gaussians_alpha0.3_seed1'
    assert r.argv == [
        '--agent=fql',
        '--env_name=toy-8gaussians',
        '--seed=1',
        '--agent.alpha=0.3',
        '--offline_steps=10',
        '--agent.actor_hidden_dims=(32,32)',
        '--progress=false',
        '--save_dir=runs/x',
        '--run_name=fql_toy-8gaussians_alpha0.3_seed1',
    ]
    assert runs[4].name == 'fql_D4RL_antmaze_large-play-v1_alpha1_seed0'
    # without a grid the name is main.py's own default run name
    plain = sweep.expand([dict(agents=['rebrac'], envs=['D4RL/antmaze/large-play-v1'], seeds=[7])], 'runs')[0]
    f = types.SimpleNamespace(run_name=None, env_name='D4RL/antmaze/large-play-v1', seed=7, num_seeds=1)
    assert plain.name == run_name_for(f, 'rebrac', 7)


def test_num_seeds_groups_consecutive_seeds_with_main_py_names():
    runs = sweep.expand(
        [dict(agents=['fql'], envs=['toy-8gaussians'], seeds=[0, 1, 2, 3, 5], grid={'agent.alpha': [3]})], 'runs'
    )
    jobs = sweep.make_jobs(runs, 3)
    assert [[r.seed for r in j.runs] for j in jobs] == [[0, 1, 2], [3], [5]]
    argv = jobs[0].argv()
    assert argv[2] == '--seed=0' and argv[-2:] == ['--num_seeds=3', '--run_name=fql_toy-8gaussians_alpha3']
    f = types.SimpleNamespace(run_name='fql_toy-8gaussians_alpha3', env_name='toy-8gaussians', seed=0, num_seeds=3)
    assert [run_name_for(f, 'fql', s) for s in (0, 1, 2)] == [r.name for r in jobs[0].runs]  # main.py's directories
    assert jobs[1].argv() == runs[3].argv  # a single seed runs under its own name
    runs[1].state = 'finished'  # only unfinished seeds are grouped
    assert [[r.seed for r in j.runs] for j in sweep.make_jobs([r for r in runs if r.state != 'finished'], 3)] == [
        [0],
        [2, 3],
        [5],
    ]


def test_bad_sweeps_fail_before_launch(tmp_path, capsys):
    with pytest.raises(sweep.SweepError, match='same name'):
        sweep.expand([dict(agents=['fql'], envs=['toy-8gaussians'], grid={'agent.alpha': [1, 1.0]})], 'runs')
    with pytest.raises(sweep.SweepError, match='set by the sweep'):
        sweep.expand([dict(agents=['fql'], envs=['toy-8gaussians'], flags={'seed': 3})], 'runs')
    with pytest.raises(sweep.SweepError, match='unknown keys'):
        sweep.expand([dict(agents=['fql'], envs=['toy-8gaussians'], seed=[1])], 'runs')
    f = write_sweep(
        tmp_path / 's.py', "SWEEP = dict(agents=['fql'], envs=['toy-8gaussians'], flags={'agent.alpah': 3})\n"
    )
    assert sweep.main([f, '--list', f'--save_dir={tmp_path}/runs']) == 2
    f = write_sweep(
        tmp_path / 's.py', "SWEEP = dict(agents=['fql'], envs=['toy-8gaussians'], flags={'offline_step': 3})\n"
    )
    assert sweep.main([f, '--list', f'--save_dir={tmp_path}/runs']) == 2
    # --preset=paper for a task without paper values fails up front, not in 40 jobs on the cluster
    f = write_sweep(
        tmp_path / 's.py',
        "SWEEP = dict(agents=['fql'], envs=['cube-triple-play-singletask-task1-v0', "
        "'cube-single-play-singletask-task1-v0'], flags={'preset': 'paper'})\n",
    )
    assert sweep.main([f, '--list', f'--save_dir={tmp_path}/runs']) == 2
    err = capsys.readouterr().err
    assert 'not available for 1 agent/task pair' in err and 'fql on cube-triple-play-singletask-task1-v0' in err


def _fake_run(path, status, argv=None):
    os.makedirs(path)
    with open(os.path.join(path, 'status.json'), 'w') as f:
        json.dump({'status': status}, f)
    with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump({'argv': ['main.py', *(argv or [])]}, f)


def test_list_skips_finished_and_resumes_unfinished(tmp_path, capsys, monkeypatch):
    f = write_sweep(
        tmp_path / 'grid.py',
        "SWEEP = dict(agents=['fql'], envs=['toy-8gaussians'], seeds=3, "
        "flags={'offline_steps': 50})\nSAVE_DIR = " + repr(str(tmp_path / 'runs')) + '\n',
    )
    runs = sweep.expand(sweep.load_sweep_file(f)[0], str(tmp_path / 'runs'))
    _fake_run(runs[0].path, 'finished', runs[0].argv)  # finished: skipped
    _fake_run(runs[1].path, 'running')  # interrupted: resumed
    monkeypatch.setattr(sweep, 'resume_supported', lambda: True)
    assert sweep.main([f, '--list', '--no_validate']) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert [shlex.split(ln)[-2].split('=')[1] for ln in lines] == [runs[1].name, runs[2].name]
    assert all(shlex.split(ln)[-1] == '--resume' for ln in lines)  # every command carries --resume
    assert '3 runs: 1 finished (skipped), 1 unfinished (will resume), 1 new' in err
    # --all shows the finished run as a comment; a finished run made with other flags is reported
    with open(os.path.join(runs[0].path, 'config.json'), 'w') as fh:
        json.dump({'argv': ['main.py', *runs[0].argv[:-3], '--offline_steps=99', *runs[0].argv[-2:]]}, fh)
    assert sweep.main([f, '--list', '--all', '--no_validate']) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith('# finished: ') and runs[0].name in out.splitlines()[0]
    assert 'different command' in err and '--offline_steps=99' in err
    # without main.py --resume: new runs go without it, an unfinished one needs --restart_unfinished (--overwrite)
    monkeypatch.setattr(sweep, 'resume_supported', lambda: False)
    assert sweep.main([f, '--list', '--no_validate']) == 2
    assert 'restart_unfinished' in capsys.readouterr().err
    assert sweep.main([f, '--list', '--no_validate', '--restart_unfinished']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert shlex.split(lines[0])[-1] == '--overwrite' and shlex.split(lines[1])[-1].startswith('--run_name=')


def _status(path):
    with open(os.path.join(path, 'status.json')) as f:
        return json.load(f)['status']


def test_slurm_array_script_and_local_runner(tmp_path):
    """The SLURM script run by bash with SLURM_ARRAY_TASK_ID (as SLURM does) runs exactly that run; the local runner
    then runs only what is left, reports the failure, and leaves the finished run untouched."""
    save = tmp_path / 'runs'
    f = write_sweep(
        tmp_path / 'toy.py',
        f"""
SWEEP = [
    dict(agents=['fql'], envs=['toy-8gaussians'], seeds=2, flags={{**{TOY!r}, **{TOY_AGENT!r}}}),
    # lr < 0 fails main.py's validation: a failed run
    dict(agents=['fql'], envs=['toy-8gaussians'], seeds=[0], grid={{'agent.lr': [-1.0]}}, flags={TOY!r}),
]
SAVE_DIR = {str(save)!r}
""",
    )
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
    opts = ['--partition=debug', '--time=00:20:00', '--gres=gpu:1', '--cpus-per-task=2', '--mem=8G']
    proc = subprocess.run(
        [sys.executable, 'scripts/sweep.py', f, '--runner=slurm', *opts],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    sweep_dir = save / '_sweeps' / 'toy'
    script = (sweep_dir / 'slurm_array.sh').read_text()
    for line in (
        '#SBATCH --array=0-2',
        '#SBATCH --partition=debug',
        '#SBATCH --time=00:20:00',
        '#SBATCH --gres=gpu:1',
        '#SBATCH --cpus-per-task=2',
        '#SBATCH --mem=8G',
    ):
        assert line + '\n' in script
    names = (sweep_dir / 'slurm_run_names.txt').read_text().split()
    assert names == ['fql_toy-8gaussians_seed0', 'fql_toy-8gaussians_seed1', 'fql_toy-8gaussians_lr-1_seed0']
    assert len((sweep_dir / 'slurm_commands.txt').read_text().splitlines()) == 3

    def array_task(i):
        return subprocess.run(
            ['bash', str(sweep_dir / 'slurm_array.sh')],
            env={**env, 'SLURM_ARRAY_TASK_ID': str(i)},
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=600,
        )

    out = array_task(1)
    assert out.returncode == 0, out.stdout + out.stderr + (sweep_dir / 'logs' / f'{names[1]}.log').read_text()
    assert _status(save / names[1]) == 'finished'
    assert not (save / names[0]).exists() and not (save / names[2]).exists()  # only index 1 ran
    log1 = (sweep_dir / 'logs' / f'{names[1]}.log').read_text()
    assert '--run_name=fql_toy-8gaussians_seed1' in log1 and 'exit 0' in log1
    assert array_task(3).returncode == 2  # no such index
    assert subprocess.run(['bash', str(sweep_dir / 'slurm_array.sh')], env=env, capture_output=True).returncode != 0

    # the local runner skips the finished run; the failed one makes the exit code non-zero
    stamp = os.stat(save / names[1] / 'eval.csv').st_mtime_ns
    proc = subprocess.run(
        [sys.executable, 'scripts/sweep.py', f, '--runner=local', '--workers=2', '--no_validate'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    assert '3 runs: 1 finished (skipped), 0 unfinished (will resume), 2 new' in proc.stderr
    assert f'ok     {names[0]}' in proc.stderr and f'FAILED {names[2]}' in proc.stderr
    assert 'lr must be positive' in proc.stderr  # the failure's message is shown
    assert '[2/2]' in proc.stderr and names[1] not in proc.stderr.split('2 new')[1]
    assert _status(save / names[0]) == 'finished'
    assert os.stat(save / names[1] / 'eval.csv').st_mtime_ns == stamp  # the finished run was not touched
    assert (sweep_dir / 'logs' / f'{names[0]}.log').exists() and (sweep_dir / 'logs' / f'{names[2]}.log').exists()
    # re-running lists only the failed run
    proc = subprocess.run(
        [sys.executable, 'scripts/sweep.py', f, '--list', '--no_validate'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert [shlex.split(ln)[-1 if '--resume' not in ln else -2] for ln in proc.stdout.splitlines()] == [
        f'--run_name={names[2]}'
    ]
