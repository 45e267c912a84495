"""Expand a sweep (agents x envs x seeds x hyperparameter grid) into main.py commands and run them.

A sweep file is a small Python (or JSON) file defining SWEEP, a dict or a list of dicts (sub-sweeps):

    SWEEP = dict(
        agents=['fql', 'iql'],                       # registry names (agents/__init__.py)
        envs=['toy-8gaussians'],                     # --env_name values
        seeds=3,                                     # an int n (seeds 0..n-1) or a list of seeds
        grid={'agent.alpha': [1, 3, 10]},            # optional: cartesian product, values go into the run name
        flags={'offline_steps': 10_000, 'agent.batch_size': 64},  # optional: fixed main.py flags
    )
    SAVE_DIR = 'runs/my_sweep'                       # optional (default runs/<file stem>)

(a list of such dicts runs each sub-sweep with its own grid and flags; a .json file holds the same dict or list, or
{"sweep": ..., "save_dir": ..., "name": ...}). Flags and grid keys are main.py flags (`offline_steps`) or agent
hyperparameters (`agent.alpha`); agents, keys, flags and --preset=paper availability are checked before launching.

or inline, without a file:

    python scripts/sweep.py --agents=fql,iql --envs=toy-8gaussians --seeds=3 --grid agent.alpha=1,3 \
        --name=alpha_sweep -- --offline_steps=10000 --preset=paper

Run names are deterministic: {agent}_{env}[_{key}{value}...]_seed{seed} (grid keys without their `agent.` prefix;
without a grid this is main.py's default name). Every run gets --save_dir and --run_name; runs whose status.json
says finished are skipped, runs that exist but are unfinished (interrupted, failed) continue with main.py --resume.
With --num_seeds=N, consecutive seeds of one configuration share one main.py process (vmapped, main.py --num_seeds);
the run directories are the same.

    python scripts/sweep.py SWEEP_FILE                  # dry run: what would run (same as --list)
    python scripts/sweep.py SWEEP_FILE --list --all     # every command, finished ones as comments
    python scripts/sweep.py SWEEP_FILE --runner=local --workers=2
    python scripts/sweep.py SWEEP_FILE --runner=slurm --partition=gpu --time=12:00:00 --gres=gpu:1 \
        --cpus-per-task=4 --mem=32G [--submit]

Logs, the SLURM array script and its commands file live in <save_dir>/_sweeps/<name>/.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # runnable as `python scripts/...py` from anywhere
    sys.path.insert(0, ROOT)

SWEEP_KEYS = ('agents', 'envs', 'seeds', 'grid', 'flags')
# Flags the sweep sets itself; a sweep may not set them in `flags` or `grid`.
RESERVED_FLAGS = ('agent', 'env_name', 'seed', 'save_dir', 'run_name', 'resume', 'overwrite', 'num_seeds')
MAIN = 'main.py'


class SweepError(ValueError):
    pass


# ---- sweep definition -> runs ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    name: str
    agent: str
    env: str
    seed: int
    argv: list[str]  # main.py arguments without --resume / --overwrite
    save_dir: str  # as passed to main.py (relative to ROOT, or absolute)
    base: str = ''  # the name without _seed{seed} (main.py --num_seeds names its directories {base}_seed{seed})
    state: str = 'new'  # 'new' | 'unfinished' | 'finished' | 'running' (live elsewhere)
    mismatch: str = ''  # for finished runs: how the recorded command differs from this one

    @property
    def path(self) -> str:
        return os.path.join(ROOT, self.save_dir, self.name)


def load_sweep_file(path: str) -> tuple[list[dict], dict]:
    """Read SWEEP (and optional SAVE_DIR, NAME) from a .py or .json file."""
    if not os.path.exists(path):
        raise SweepError(f'Sweep file {path} does not exist.')
    if path.endswith('.json'):
        with open(path) as f:
            obj = json.load(f)
        meta = {}
        if isinstance(obj, dict) and 'sweep' in obj:
            meta = {k.upper(): obj[k] for k in ('save_dir', 'name') if k in obj}
            obj = obj['sweep']
    else:
        import runpy

        ns = runpy.run_path(path)
        if 'SWEEP' not in ns:
            raise SweepError(f'{path} defines no SWEEP (a dict, or a list of dicts, with keys {SWEEP_KEYS}).')
        obj = ns['SWEEP']
        meta = {k: ns[k] for k in ('SAVE_DIR', 'NAME') if k in ns}
    subs = obj if isinstance(obj, (list, tuple)) else [obj]
    return [dict(s) for s in subs], meta


def _seeds(value) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SweepError(f'seeds must be a positive count or a list of seeds, got {value}.')
        return list(range(value))
    seeds = [int(s) for s in value]
    if len(set(seeds)) != len(seeds) or not seeds:
        raise SweepError(f'seeds must be a non-empty list without repeats, got {value}.')
    return seeds


def _flag_name(key: str) -> str:
    key = key.removeprefix('--')
    if key in RESERVED_FLAGS:
        raise SweepError(
            f'--{key} is set by the sweep itself (one of {", ".join(RESERVED_FLAGS)}); use the agents, '
            'envs and seeds entries instead (runs are named and placed by the sweep).'
        )
    return key


def argv_value(v) -> str:
    """A Python value as main.py (absl / ml_collections) parses it: True -> true, (32, 32) -> (32,32)."""
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return '(' + ','.join(argv_value(x) for x in v) + (',' if len(v) == 1 else '') + ')'
    return str(v)


def name_value(v) -> str:
    """A value as it appears in a run name: 0.3 -> 0.3, (32, 32) -> 32-32, True -> true."""
    if isinstance(v, bool):
        s = 'true' if v else 'false'
    elif isinstance(v, float):
        s = f'{v:g}'
    elif isinstance(v, (list, tuple)):
        s = '-'.join(name_value(x) for x in v)
    else:
        s = str(v)
    return '-'.join(p for p in re.split(r'[^A-Za-z0-9.+-]+', s) if p) or 'x'  # keeps a minus sign: -1 != 1


def run_name(agent: str, env: str, seed: int, grid_point: dict) -> str:
    parts = [agent, env.replace('/', '_')]
    parts += [f'{k.split(".")[-1]}{name_value(v)}' for k, v in grid_point.items()]
    return '_'.join(parts) + f'_seed{seed}'  # main.py's own default name when there is no grid


def expand(subs: list[dict], save_dir: str) -> list[Run]:
    """All runs of the sweep, in a deterministic order (sub-sweep, agent, env, grid point, seed)."""
    runs, seen = [], {}
    for i, sub in enumerate(subs):
        unknown = set(sub) - set(SWEEP_KEYS)
        if unknown:
            raise SweepError(
                f'Sweep entry {i} has unknown keys {sorted(unknown)}; valid keys: {", ".join(SWEEP_KEYS)}.'
            )
        for key in ('agents', 'envs'):
            if not sub.get(key) or isinstance(sub[key], str):
                raise SweepError(f'Sweep entry {i} needs `{key}`: a non-empty list of names.')
        seeds = _seeds(sub.get('seeds', 1))
        grid = {_flag_name(k): list(v) for k, v in (sub.get('grid') or {}).items()}
        flags = {_flag_name(k): v for k, v in (sub.get('flags') or {}).items()}
        for k, v in grid.items():
            if not v:
                raise SweepError(f'grid[{k!r}] is empty.')
            if k in flags:
                raise SweepError(f'{k!r} is both a grid key and a fixed flag.')
        if 'progress' not in flags:
            flags['progress'] = False  # tqdm bars do not belong in log files
        for agent, env in itertools.product(sub['agents'], sub['envs']):
            for values in itertools.product(*grid.values()):
                point = dict(zip(grid, values))
                for seed in seeds:
                    name = run_name(agent, env, seed, point)
                    argv = [f'--agent={agent}', f'--env_name={env}', f'--seed={seed}']
                    argv += [f'--{k}={argv_value(v)}' for k, v in {**point, **flags}.items()]
                    argv += [f'--save_dir={save_dir}', f'--run_name={name}']
                    if name in seen:
                        raise SweepError(
                            f'Two runs of the sweep get the same name {name!r}:\n  {seen[name]}\n  '
                            f'{shlex.join(argv)}\nMake the grid values distinct.'
                        )
                    seen[name] = shlex.join(argv)
                    runs.append(Run(name, agent, env, seed, argv, save_dir, name.removesuffix(f'_seed{seed}')))
    return runs


# ---- validation against main.py and the agent registry --------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def main_flag_names() -> frozenset:
    """Names of the flags main.py defines (imported in a child process: absl flags are process-global)."""
    code = 'import json, main; print(json.dumps(sorted(main.FLAGS)))'
    proc = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT)
    )
    if proc.returncode != 0:
        raise SweepError(f'Could not read the flags of main.py:\n{proc.stderr[-2000:]}')
    return frozenset(json.loads(proc.stdout.strip().splitlines()[-1]))


def resume_supported() -> bool:
    return 'resume' in main_flag_names()


def validate(runs: list[Run]) -> None:
    """Unknown agents, agent config keys and main.py flags fail here, before anything is launched."""
    import agents

    names = main_flag_names()
    checked = set()
    for r in runs:
        for a in r.argv[3:]:
            key = a[2:].split('=', 1)[0]
            if (r.agent, key) in checked:
                continue
            checked.add((r.agent, key))
            if key.startswith('agent.'):
                config = agents.get_config(r.agent)
                top = key.split('.')[1]
                if top not in config:
                    raise SweepError(
                        f'Unknown config key --{key} for agent {r.agent!r}.'
                        f'{agents.closest(top, config.keys())} Valid keys: {", ".join(sorted(config))}.'
                    )
            elif key not in names and key.removeprefix('no') not in names:
                raise SweepError(f'main.py has no flag --{key}.{agents.closest(key, names)}')
        if (r.agent, None) not in checked:
            checked.add((r.agent, None))
            agents.check_name(r.agent)
    # --preset=...: every (agent, task) must have values under that preset (main.py would fail at start-up otherwise)
    bad = {}
    for r in runs:
        presets = [a.split('=', 1)[1] for a in r.argv if a.startswith('--preset=')]
        preset = presets[-1] if presets else 'default'
        if preset != 'default' and (r.agent, r.env, preset) not in bad:
            try:
                agents.paper_preset(r.agent, r.env, protocol=preset)
                bad[(r.agent, r.env, preset)] = None
            except ValueError as e:
                bad[(r.agent, r.env, preset)] = str(e)
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        lines = [f'  {a} on {e} (--preset={p}): {msg[:200]}' for (a, e, p), msg in list(bad.items())[:10]]
        raise SweepError(f'the preset is not available for {len(bad)} agent/task pair(s):\n' + '\n'.join(lines))


# ---- state of the runs on disk --------------------------------------------------------------------------------------
_IGNORED_IN_COMPARISON = ('resume', 'overwrite', 'progress', 'save_dir', 'seed', 'num_seeds', 'run_name')


def _normalized(argv: list[str]) -> list[str]:
    return sorted(a for a in argv if a.startswith('--') and a[2:].split('=')[0] not in _IGNORED_IN_COMPARISON)


def run_state(path: str) -> str:
    """'running' (a live process holds its lock), 'new', 'finished' or 'unfinished'."""
    from runner.io import run_dir_holder, run_dir_is_empty

    if os.path.isdir(path) and run_dir_holder(path):
        return 'running'
    if run_dir_is_empty(path):
        return 'new'
    try:
        with open(os.path.join(path, 'status.json')) as f:
            status = json.load(f).get('status')
    except (OSError, ValueError):
        status = None
    return 'finished' if status == 'finished' else 'unfinished'


def refresh_states(runs: list[Run]) -> None:
    for r in runs:
        r.state = run_state(r.path)
        r.mismatch = ''
        if r.state == 'finished':
            try:
                with open(os.path.join(r.path, 'config.json')) as f:
                    recorded = json.load(f).get('argv', [])[1:]
            except (OSError, ValueError):
                continue
            want, got = set(_normalized(r.argv)), set(_normalized(recorded))
            if want != got:
                r.mismatch = f'recorded {sorted(got - want)} vs sweep {sorted(want - got)}'


@dataclasses.dataclass
class Job:
    """One main.py process: one run, or several consecutive seeds of one configuration (main.py --num_seeds)."""

    runs: list[Run]

    @property
    def name(self) -> str:
        r = self.runs
        return r[0].name if len(r) == 1 else f'{r[0].base}_seed{r[0].seed}-{r[-1].seed}'

    @property
    def state(self) -> str:
        return 'unfinished' if any(r.state == 'unfinished' for r in self.runs) else 'new'

    def argv(self) -> list[str]:
        r = self.runs
        if len(r) == 1:
            return list(r[0].argv)
        argv = [a for a in r[0].argv if not a.startswith('--run_name=')]
        return argv + [f'--num_seeds={len(r)}', f'--run_name={r[0].base}']


def make_jobs(runs: list[Run], num_seeds: int) -> list[Job]:
    """Group the runs still to do into jobs of at most `num_seeds` consecutive seeds of one configuration."""
    jobs, by_base = [], {}
    for r in runs:
        by_base.setdefault(r.base, []).append(r)
    for rs in by_base.values():
        rs = sorted(rs, key=lambda r: r.seed)
        cur = [rs[0]]
        for r in rs[1:]:
            if len(cur) < num_seeds and r.seed == cur[-1].seed + 1:
                cur.append(r)
            else:
                jobs.append(Job(cur))
                cur = [r]
        jobs.append(Job(cur))
    return jobs


def command(job: Job, python: str, resume: bool, restart_unfinished: bool = False) -> list[str]:
    """The main.py command of a job. With main.py --resume available every command carries it (a re-submitted or
    requeued job then continues instead of failing on the existing directory)."""
    extra = []
    if job.state == 'unfinished' and restart_unfinished:
        extra = ['--overwrite']  # deletes only unfinished directories: finished runs are never in a job
    elif resume:
        extra = ['--resume']
    elif job.state == 'unfinished':
        raise SweepError(
            f'{job.runs[0].path} exists but is unfinished and this main.py has no --resume flag; re-run with '
            '--restart_unfinished to delete and restart unfinished runs.'
        )
    return [python, MAIN, *job.argv(), *extra]


def summary(runs: list[Run]) -> str:
    n = {s: sum(r.state == s for r in runs) for s in ('finished', 'unfinished', 'new', 'running')}
    return (
        f'{len(runs)} runs: {n["finished"]} finished (skipped), {n["unfinished"]} unfinished (will resume), '
        f'{n["new"]} new' + (f', {n["running"]} live in another process (skipped)' if n['running'] else '')
    )


# ---- local runner ---------------------------------------------------------------------------------------------------
def _dataset_key(job: Job) -> tuple | None:
    """(dataset dir, dataset name) of an OGBench run whose dataset files are missing, else None. Runs sharing a
    missing dataset are started one at a time, so the dataset is generated (or downloaded) once."""
    from envs.ogbench_env import DEFAULT_DATASET_DIR, _paths, is_ogbench_name
    from envs.ogbench_gen import dataset_name_for

    r = job.runs[0]
    if not is_ogbench_name(r.env):
        return None
    d = DEFAULT_DATASET_DIR
    for a in r.argv:
        if a.startswith('--dataset_dir='):
            d = a.split('=', 1)[1]
    d = os.path.join(ROOT, os.path.expanduser(d))
    name = dataset_name_for(r.env)
    if all(os.path.exists(p) for p in _paths(d, name)):
        return None
    return d, name


def run_local(jobs: list[Job], cmds: list[list[str]], workers: int, log_dir: str, out=sys.stderr) -> int:
    """Run the commands with at most `workers` at a time; one log file per job; exit code 1 if any failed."""
    os.makedirs(log_dir, exist_ok=True)
    todo = list(zip(jobs, cmds))
    total, done, failed = len(todo), [], []
    running = {}  # Popen -> (job, log file, start time)
    t_start = time.time()

    def say(msg):
        print(f'[sweep {time.strftime("%H:%M:%S")}] {msg}', file=out, flush=True)

    def start_next() -> bool:
        busy = {k for k in (_dataset_key(r) for r, _, _ in running.values()) if k}
        for i, (r, cmd) in enumerate(todo):
            key = _dataset_key(r)
            if key is None or key not in busy:
                todo.pop(i)
                log = open(os.path.join(log_dir, f'{r.name}.log'), 'a')
                log.write(f'=== {datetime.datetime.now().isoformat(timespec="seconds")} {shlex.join(cmd)}\n')
                log.flush()
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)
                running[proc] = (r, log, time.time())
                say(f'started {r.name} ({"resume" if r.state == "unfinished" else "new"}, pid {proc.pid})')
                return True
        return False

    def finish(proc):
        r, log, t0 = running.pop(proc)
        log.close()
        rc = proc.returncode
        ok = rc == 0 and all(run_state(x.path) == 'finished' for x in r.runs)
        (done if ok else failed).append(r)
        msg = f'[{len(done) + len(failed)}/{total}] {"ok    " if ok else "FAILED"} {r.name} ({time.time() - t0:.0f}s)'
        if not ok:
            msg += f' exit {rc}; log: {os.path.join(log_dir, r.name + ".log")}: {_last_error(log.name)}'
        say(f'{msg} | {len(done)} ok, {len(failed)} failed, {len(running)} running, {len(todo)} waiting')

    prev = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while todo or running:
            while len(running) < workers and todo and start_next():
                pass
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                finish(proc)
    except KeyboardInterrupt:
        say(f'interrupted: stopping {len(running)} running run(s) (their checkpoints are kept)')
        _stop(list(running))
        for proc in list(running):
            r, log, _ = running.pop(proc)
            log.close()
        say(
            f'{len(done)} ok, {len(failed)} failed, {total - len(done) - len(failed)} not finished. Re-run the same '
            'command to continue: finished runs are skipped, interrupted ones resume.'
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, prev)
    say(
        f'done in {time.time() - t_start:.0f}s: {len(done)} ok, {len(failed)} failed'
        + (f' ({", ".join(r.name for r in failed)})' if failed else '')
    )
    return 1 if failed else 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _default_sigint():
    """In the child: Ctrl-C / SIGINT interrupts main.py even when the sweep was started in the background (where
    SIGINT is ignored and the ignore is inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(procs, grace: float = 30.0) -> None:
    """SIGINT the runs we started (by pid), then SIGTERM / SIGKILL whatever is still alive after `grace` s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.time() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        except KeyboardInterrupt:
            p.kill()


def _last_error(path: str) -> str:
    try:
        with open(path, errors='replace') as f:
            lines = [ln.strip() for ln in f.readlines()[-200:] if ln.strip()]
    except OSError:
        return ''
    errs = [ln for ln in lines if ln.startswith('error:') or 'Error' in ln.split(':')[0]]
    return (errs or lines or [''])[-1][:300]


# ---- SLURM ----------------------------------------------------------------------------------------------------------
def slurm_script(name: str, sweep_dir: str, n: int, args, note: str) -> str:
    sb = [
        f'#SBATCH --job-name={name}',
        f'#SBATCH --array=0-{n - 1}' + (f'%{args.max_parallel}' if args.max_parallel else ''),
        f'#SBATCH --output={sweep_dir}/logs/slurm-%A_%a.out',
    ]
    for opt in ('partition', 'time', 'gres', 'cpus_per_task', 'mem', 'account', 'qos'):
        v = getattr(args, opt)
        if v:
            sb.append(f'#SBATCH --{opt.replace("_", "-")}={v}')
    sb += [f'#SBATCH {x}' for x in args.sbatch]
    setup = '\n'.join(args.setup)
    return f"""#!/bin/bash
{chr(10).join(sb)}
# Generated by scripts/sweep.py ({note}).
# Each array index runs one line of slurm_commands.txt (line SLURM_ARRAY_TASK_ID + 1); its output is appended to
# logs/<run name>.log. Submit with: sbatch {sweep_dir}/slurm_array.sh
# Test one index without SLURM: SLURM_ARRAY_TASK_ID=0 bash {sweep_dir}/slurm_array.sh
set -uo pipefail
SWEEP_DIR={shlex.quote(sweep_dir)}
: "${{SLURM_ARRAY_TASK_ID:?is not set: submit with sbatch, or set it to test one index}}"
cd {shlex.quote(ROOT)} || exit 2
{setup}
LINE=$((SLURM_ARRAY_TASK_ID + 1))
CMD=$(sed -n "${{LINE}}p" "$SWEEP_DIR/slurm_commands.txt")
NAME=$(sed -n "${{LINE}}p" "$SWEEP_DIR/slurm_run_names.txt")
if [ -z "$CMD" ] || [ -z "$NAME" ]; then
  echo "error: no command for array index $SLURM_ARRAY_TASK_ID in $SWEEP_DIR/slurm_commands.txt" >&2
  exit 2
fi
LOG="$SWEEP_DIR/logs/$NAME.log"
mkdir -p "$SWEEP_DIR/logs"
echo "=== $(date -Iseconds) array task ${{SLURM_ARRAY_JOB_ID:-local}}_$SLURM_ARRAY_TASK_ID on $(hostname): $CMD" \\
  | tee -a "$LOG"
eval "$CMD" >> "$LOG" 2>&1
rc=$?
echo "=== $(date -Iseconds) exit $rc ($NAME)" | tee -a "$LOG"
exit $rc
"""


def write_slurm(jobs, cmds, sweep_dir, name, args, note) -> str:
    os.makedirs(os.path.join(sweep_dir, 'logs'), exist_ok=True)
    with open(os.path.join(sweep_dir, 'slurm_commands.txt'), 'w') as f:
        f.writelines(shlex.join(c) + '\n' for c in cmds)
    with open(os.path.join(sweep_dir, 'slurm_run_names.txt'), 'w') as f:
        f.writelines(j.name + '\n' for j in jobs)
    path = os.path.join(sweep_dir, 'slurm_array.sh')
    with open(path, 'w') as f:
        f.write(slurm_script(name, sweep_dir, len(cmds), args, note))
    os.chmod(path, 0o755)
    return path


# ---- command line ---------------------------------------------------------------------------------------------------
def _split_values(s: str) -> list:
    """'1,3,(32,32),abc' -> [1, 3, '(32,32)', 'abc'] (commas inside parentheses do not split)."""
    out, depth, cur = [], 0, ''
    for ch in s:
        if ch == ',' and depth == 0:
            out.append(cur)
            cur = ''
            continue
        if ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        cur += ch
    out.append(cur)
    return [_parse_scalar(x.strip()) for x in out if x.strip()]


def _parse_scalar(s: str):
    for t in (int, float):
        try:
            return t(s)
        except ValueError:
            pass
    return s


def _parse_main_flags(rest: list[str]) -> dict:
    flags = {}
    for a in rest:
        if not a.startswith('--'):
            raise SweepError(f'Expected main.py flags of the form --key=value after --, got {a!r}.')
        if '=' in a:
            k, v = a[2:].split('=', 1)
        elif a.startswith('--no') and a[2:] not in main_flag_names() and a[4:] in main_flag_names():
            k, v = a[4:], 'false'  # absl's --noFLAG
        else:
            k, v = a[2:], 'true'
        flags[k] = v
    return flags


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('sweep_file', nargs='?', help='Sweep definition (.py defining SWEEP, or .json).')
    g = p.add_argument_group('inline sweep (instead of a file); main.py flags for every run go after --')
    g.add_argument('--agents', help='Comma-separated agent names.')
    g.add_argument('--envs', help='Comma-separated env names.')
    g.add_argument('--seeds', default='1', help='A count n (seeds 0..n-1) or a comma-separated list (default 1).')
    g.add_argument(
        '--grid',
        action='append',
        default=[],
        metavar='KEY=V1,V2',
        help='A grid axis, e.g. agent.alpha=1,3,10 (repeatable).',
    )
    p.add_argument('--name', help='Sweep name (default: the sweep file stem).')
    p.add_argument('--save_dir', help='Parent of the run directories (default: SAVE_DIR of the file, else runs/NAME).')
    p.add_argument('--list', action='store_true', help='Print the commands that would run, and exit.')
    p.add_argument('--all', action='store_true', help='With --list: also finished runs (as comments).')
    p.add_argument('--runner', choices=('local', 'slurm'), help='Run locally, or write a SLURM array script.')
    p.add_argument('--workers', type=int, default=1, help='Local runner: runs in parallel.')
    p.add_argument('--python', default=sys.executable, help='Python interpreter for main.py (default: this one).')
    p.add_argument(
        '--num_seeds',
        type=int,
        default=1,
        help='Seeds per main.py process (vmapped, main.py --num_seeds): consecutive seeds of one configuration share '
        'a process; run directories are the same as with one process per seed.',
    )
    p.add_argument(
        '--restart_unfinished',
        action='store_true',
        help='Delete unfinished runs and start them over (--overwrite) instead of resuming them.',
    )
    p.add_argument('--no_validate', action='store_true', help='Skip checking agents, keys and flags up front.')
    s = p.add_argument_group('SLURM (--runner=slurm)')
    s.add_argument('--partition')
    s.add_argument('--time', help='Per-run time limit, e.g. 12:00:00.')
    s.add_argument('--gres', help='e.g. gpu:1')
    s.add_argument('--cpus-per-task', '--cpus_per_task', dest='cpus_per_task')
    s.add_argument('--mem', help='e.g. 32G')
    s.add_argument('--account')
    s.add_argument('--qos')
    s.add_argument('--max_parallel', type=int, help='At most this many array tasks at once (--array=0-N%%M).')
    s.add_argument('--sbatch', action='append', default=[], help='Extra #SBATCH line, e.g. --sbatch="--requeue".')
    s.add_argument(
        '--setup',
        action='append',
        default=[],
        help='Shell line run before the command, e.g. --setup="source ~/venv/bin/activate".',
    )
    s.add_argument('--submit', action='store_true', help='Call sbatch on the written script.')
    return p


def resolve(args) -> tuple[list[dict], str, str]:
    """(sub-sweeps, sweep name, save_dir as passed to main.py)."""
    if args.sweep_file:
        if args.agents or args.envs or args.grid:
            raise SweepError('Give either a sweep file or --agents/--envs/--grid, not both.')
        subs, meta = load_sweep_file(args.sweep_file)
        name = args.name or meta.get('NAME') or os.path.splitext(os.path.basename(args.sweep_file))[0]
        save_dir = args.save_dir or meta.get('SAVE_DIR') or os.path.join('runs', name)
        if args.main_flags:
            for s in subs:
                s['flags'] = {**(s.get('flags') or {}), **_parse_main_flags(args.main_flags)}
    else:
        if not (args.agents and args.envs):
            raise SweepError('Give a sweep file, or --agents and --envs (see --help).')
        seeds = int(args.seeds) if ',' not in args.seeds else _split_values(args.seeds)
        grid = {}
        for g in args.grid:
            if '=' not in g:
                raise SweepError(f'--grid expects KEY=V1,V2,..., got {g!r}.')
            k, v = g.split('=', 1)
            grid[k] = _split_values(v)
        subs = [
            dict(
                agents=args.agents.split(','),
                envs=args.envs.split(','),
                seeds=seeds,
                grid=grid,
                flags=_parse_main_flags(args.main_flags),
            )
        ]
        name = args.name or 'sweep'
        save_dir = args.save_dir or os.path.join('runs', name)
    save_dir = os.path.expanduser(save_dir)
    # Commands run from the repository root: keep paths inside it relative (readable), others absolute.
    absolute = os.path.abspath(save_dir)
    rel = os.path.relpath(absolute, ROOT)
    return subs, name, (absolute if rel.startswith('..') else rel)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    main_flags = []
    if '--' in argv:
        i = argv.index('--')
        argv, main_flags = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    args.main_flags = main_flags
    try:
        subs, name, save_dir = resolve(args)
        runs = expand(subs, save_dir)
        if not args.no_validate:
            validate(runs)
        refresh_states(runs)
        resume = resume_supported()
        if args.num_seeds < 1:
            raise SweepError('--num_seeds must be >= 1.')
        # A run whose directory another live process holds (main.py's lock) is left to that process.
        pending = [r for r in runs if r.state not in ('finished', 'running')]
        jobs = make_jobs(pending, args.num_seeds)
        cmds = [command(j, args.python, resume, args.restart_unfinished) for j in jobs]
    except (SweepError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    sweep_dir = os.path.join(ROOT, save_dir, '_sweeps', name)
    per = f' in {len(jobs)} processes of up to {args.num_seeds} seeds' if args.num_seeds > 1 else ''
    print(f'[sweep] {name}: {summary(runs)}{per}; run directories in {save_dir}', file=sys.stderr)
    mism = [r for r in runs if r.mismatch]
    if mism:
        print(
            f'[sweep] warning: {len(mism)} finished run(s) were made with a different command than this sweep now '
            f'gives (they are skipped, not re-run; delete them or change --save_dir to redo them):',
            file=sys.stderr,
        )
        for r in mism[:10]:
            print(f'  {r.name}: {r.mismatch}', file=sys.stderr)
    if not resume:
        print('[sweep] note: this main.py has no --resume flag; commands are given without it.', file=sys.stderr)

    if args.list or not args.runner:
        if args.all:
            for r in runs:
                if r.state == 'finished':
                    print(f'# finished: {shlex.join([args.python, MAIN, *r.argv])}')
        for c in cmds:
            print(shlex.join(c))
        return 0
    if not jobs:
        print('[sweep] nothing to do: every run is finished or live in another process.', file=sys.stderr)
        return 0
    if args.runner == 'local':
        if args.workers < 1:
            print('error: --workers must be >= 1.', file=sys.stderr)
            return 2
        print(
            f'[sweep] running {len(jobs)} process(es), {args.workers} at a time; logs in {sweep_dir}/logs/',
            file=sys.stderr,
        )
        return run_local(jobs, cmds, args.workers, os.path.join(sweep_dir, 'logs'))
    note = (
        f'sweep {name}, {datetime.datetime.now().isoformat(timespec="seconds")}: {len(pending)} of {len(runs)} '
        f'runs in {len(jobs)} array tasks; finished runs were left out'
    )
    path = write_slurm(jobs, cmds, sweep_dir, name, args, note)
    print(
        f'[sweep] wrote {path} (array 0-{len(jobs) - 1}) and {sweep_dir}/slurm_commands.txt.\n'
        f'  submit:     sbatch {path}\n  test one:   SLURM_ARRAY_TASK_ID=0 bash {path}',
        file=sys.stderr,
    )
    if args.submit:
        proc = subprocess.run(['sbatch', path], text=True)
        return proc.returncode
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BrokenPipeError:  # --list | head
        sys.exit(0)
