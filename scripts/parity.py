"""Parity harness: tiltbench's main.py beside an author's released main.py, same data, seeds, budget and
hyperparameters, compared metric by metric at matched steps.

    python scripts/parity.py --released=/path/to/fql --released_python=/path/to/venv/bin/python \
        --agents=fql,iql,rebrac --env_name=pointmaze-medium-navigate-singletask-task1-v0 --seeds=4 --steps=10000 \
        --out=runs/parity/pointmaze --table=results/parity/fql_repo.md

Nothing of the released code is imported or installed here: it runs in its own Python (`--released_python`, a
virtual environment that can run it) from its own checkout (`--released`), unedited. Its wandb logging needs a
network, so the harness starts its main.py through a two-line launcher that calls wandb.init with
mode='disabled' and then runs main.py as __main__ (said in the table header). MuJoCo rendering, which ogbench 1.1
does when it builds a maze, gets MUJOCO_GL=egl unless it is set.

Both sides read the same OGBench files from ~/.ogbench/data (the released main.py has no dataset-directory flag;
their SHA-256 goes into the table). Both sides log at every --log_interval step the metrics of that one gradient
step (tiltbench with --updates_per_call=1, so a row is not an average over a fused chunk), and evaluate at every
--eval_interval. For each metric both sides log (names mapped below), at each matched step: the mean and 95% t-CI per
side over seeds, and Welch's 95% CI of the difference; a row is indistinguishable when that CI holds 0. The seed-to-
seed spread is compared with the F test of the two variances (95%). ms per update: the median over log intervals
without an evaluation of wall time / steps (the released code's own time/epoch_time; tiltbench's train.csv time
column divided by the number of seeds trained in the process).

Runs already finished (their eval.csv has the last step) are not run again, so an interrupted harness resumes.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# tiltbench agent -> (released agent config file, {tiltbench config key: released config key}, {released metric:
# tiltbench metric}). Only these keys are passed, to both sides, with tiltbench's resolved values.
_COMMON_KEYS = ['lr', 'batch_size', 'actor_hidden_dims', 'value_hidden_dims', 'layer_norm', 'actor_layer_norm']
_COMMON_KEYS += ['discount', 'tau']
AGENT_MAP = {
    'fql': (
        'agents/fql.py',
        {k: k for k in _COMMON_KEYS + ['q_agg', 'alpha', 'flow_steps', 'normalize_q_loss']},
        {
            'critic/critic_loss': 'critic/loss',
            'critic/q_mean': 'critic/q_mean',
            'critic/q_max': 'critic/q_max',
            'critic/q_min': 'critic/q_min',
            'actor/actor_loss': 'actor/loss',
            'actor/bc_flow_loss': 'actor/bc_flow_loss',
            'actor/distill_loss': 'actor/distill_loss',
            'actor/q_loss': 'actor/q_loss',
            'actor/q': 'actor/q',
        },
    ),
    'iql': (
        'agents/iql.py',
        {k: k for k in _COMMON_KEYS + ['expectile', 'alpha', 'const_std']},
        {
            'value/value_loss': 'value/loss',
            'value/v_mean': 'value/v_mean',
            'critic/critic_loss': 'critic/loss',
            'critic/q_mean': 'critic/target_mean',  # the released IQL logs the TD target's mean under q_mean
            'actor/actor_loss': 'actor/loss',
            'actor/adv': 'actor/adv',
            'actor/mse': 'actor/mse',
        },
    ),
    'rebrac': (
        'agents/rebrac.py',
        {
            k: k
            for k in _COMMON_KEYS
            + ['alpha_actor', 'alpha_critic', 'actor_freq', 'actor_noise', 'actor_noise_clip', 'actor_fc_scale']
        },
        {
            'critic/critic_loss': 'critic/loss',
            'critic/q_mean': 'critic/q_mean',
            'actor/total_loss': 'actor/loss',
            'actor/actor_loss': 'actor/q_loss',  # the released ReBRAC's actor_loss is the normalized -Q term
            'actor/mse': 'actor/bc_loss',  # the released bc_loss is alpha_actor * mse; tiltbench's is the mse
        },
    ),
}
SCORE = 'score'  # tiltbench's eval.csv column; the released evaluation/success x 100

LAUNCHER = (
    'import runpy, sys, wandb; _init = wandb.init; '
    "wandb.init = lambda *a, **k: _init(*a, **dict(k, mode='disabled')); "
    "sys.argv = ['main.py'] + sys.argv[1:]; runpy.run_path('main.py', run_name='__main__')"
)


# ---- configs and commands -----------------------------------------------------------------------------------------
def tiltbench_config(agent: str, overrides: dict):
    """tiltbench's default config of `agent` with `overrides` (config key -> value) applied and checked."""
    import agents

    config = agents.get_config(agent)
    for k, v in overrides.items():
        if k not in config:
            raise ValueError(f'Unknown config key {k!r} for agent {agent!r}. Valid keys: {", ".join(sorted(config))}.')
        with config.unlocked():
            config[k] = type(config[k])(v) if isinstance(config[k], (bool, int, float, str)) else v
    return config


def flag_value(v) -> str:
    if isinstance(v, (tuple, list)):
        return '(' + ','.join(str(x) for x in v) + (',)' if len(v) == 1 else ')')
    return str(v)


def agent_flags(agent: str, config, released: bool) -> list[str]:
    """--agent.KEY=VALUE for every mapped key, with tiltbench's resolved value, in either side's key names."""
    _, keys, _ = AGENT_MAP[agent]
    return [f'--agent.{keys[k] if released else k}={flag_value(config[k])}' for k in keys]


def released_command(args, agent: str, config, seed: int) -> list[str]:
    cfg_file, _, _ = AGENT_MAP[agent]
    return [
        args.released_python,
        '-c',
        LAUNCHER,
        f'--env_name={args.env_name}',
        f'--seed={seed}',
        f'--offline_steps={args.steps}',
        f'--log_interval={args.log_interval}',
        f'--eval_interval={args.eval_interval}',
        f'--eval_episodes={args.eval_episodes}',
        f'--save_interval={10 * args.steps}',
        f'--save_dir={os.path.abspath(side_dir(args, "released", agent, seed))}',
        f'--agent={cfg_file}',
        *agent_flags(agent, config, released=True),
    ]


def tiltbench_command(args, agent: str, config) -> list[str]:
    return [
        sys.executable,
        os.path.join(ROOT, 'main.py'),
        f'--agent={agent}',
        f'--env_name={args.env_name}',
        f'--seed={args.seed0}',
        f'--num_seeds={args.seeds}',
        f'--offline_steps={args.steps}',
        f'--log_interval={args.log_interval}',
        f'--eval_interval={args.eval_interval}',
        f'--eval_episodes={args.eval_episodes}',
        f'--save_interval={args.steps}',
        '--updates_per_call=1',
        '--generate=false',
        '--progress=false',
        f'--save_dir={os.path.abspath(os.path.join(args.out, "tiltbench"))}',
        f'--run_name={agent}',
        *agent_flags(agent, config, released=False),
        *args.tiltbench_flag,
    ]


def side_dir(args, side: str, agent: str, seed: int) -> str:
    return os.path.join(args.out, side, agent, f'seed{seed}')


# ---- reading logs (both sides in tiltbench's metric names) --------------------------------------------------------
def _rows(path: str) -> list[dict]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _float(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_released(run_dir: str, agent: str) -> dict | None:
    """{'train': {step: {metric: v}}, 'eval': {step: score}, 'ms': [ms per update per interval]} of one released
    run (its save_dir holds <project>/<group>/<exp>/), or None when it has not written logs."""
    found = sorted(glob.glob(os.path.join(run_dir, '**', 'train.csv'), recursive=True))
    if not found:
        return None
    exp = os.path.dirname(found[-1])
    names = AGENT_MAP[agent][2]
    train, ms = {}, {}
    for r in _rows(os.path.join(exp, 'train.csv')):
        step = int(float(r['step']))
        train[step] = {names[k]: _float(r[f'training/{k}']) for k in names if f'training/{k}' in r}
        if _float(r.get('time/epoch_time')) is not None:
            ms[step] = 1000.0 * float(r['time/epoch_time'])
    ev = {}
    if os.path.exists(os.path.join(exp, 'eval.csv')):
        for r in _rows(os.path.join(exp, 'eval.csv')):
            ev[int(float(r['step']))] = 100.0 * float(r['evaluation/success'])
    return {'train': train, 'eval': ev, 'ms': ms}


def read_tiltbench(run_dir: str, agent: str, num_seeds_in_process: int = 1) -> dict | None:
    if not os.path.exists(os.path.join(run_dir, 'train.csv')):
        return None
    names = set(AGENT_MAP[agent][2].values()) if agent in AGENT_MAP else None
    train, ms, last = {}, {}, None
    for r in _rows(os.path.join(run_dir, 'train.csv')):
        if r.get('phase', 'offline') != 'offline':
            continue
        step = int(float(r['step']))
        train[step] = {k: _float(v) for k, v in r.items() if (names is None or k in names) and k not in ('step',)}
        t = _float(r.get('time'))
        if last is not None and t is not None:
            ms[step] = 1000.0 * (t - last[1]) / (step - last[0]) / num_seeds_in_process
        last = (step, t) if t is not None else None
    ev = {}
    if os.path.exists(os.path.join(run_dir, 'eval.csv')):
        for r in _rows(os.path.join(run_dir, 'eval.csv')):
            ev[int(float(r['step']))] = float(r[SCORE])
    return {'train': train, 'eval': ev, 'ms': ms}


# ---- statistics ---------------------------------------------------------------------------------------------------
def mean_ci(x) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval."""
    from scipy import stats

    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return float(x.mean()), float('nan')
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def diff_ci(a, b) -> tuple[float, float, float]:
    """Welch's 95% CI of mean(a) - mean(b): (difference, low, high)."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a.mean() - b.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return float(d), float(d), float(d)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    h = stats.t.ppf(0.975, dof) * se
    return float(d), float(d - h), float(d + h)


def spread_test(a, b) -> tuple[float, bool]:
    """Ratio of the seed-to-seed standard deviations std(a)/std(b) and whether the two-sided 95% F test of equal
    variances rejects."""
    from scipy import stats

    sa, sb = np.std(a, ddof=1), np.std(b, ddof=1)
    if sa == 0.0 and sb == 0.0:
        return 1.0, False
    if sb == 0.0 or sa == 0.0:
        return (float('inf') if sb == 0.0 else 0.0), True
    f = (sa / sb) ** 2
    lo, hi = stats.f.ppf([0.025, 0.975], len(a) - 1, len(b) - 1)
    return float(sa / sb), bool(f < lo or f > hi)


def compare(side_a: list[dict], side_b: list[dict], metrics: list[str]) -> dict:
    """Compare two sides (lists of per-seed logs in tiltbench names). Returns {'rows': per (metric, step), 'ms': ...}.
    Steps are those logged by every seed of both sides."""
    rows = []
    for m in metrics + [SCORE]:
        key = 'eval' if m == SCORE else 'train'

        def values(side, step, key=key, m=m):
            out = []
            for run in side:
                v = run[key].get(step)
                v = v if key == 'eval' else (v or {}).get(m)
                out.append(v)
            return out

        steps = set.intersection(*[set(r[key]) for r in side_a + side_b]) if side_a and side_b else set()
        for step in sorted(steps):
            a, b = values(side_a, step), values(side_b, step)
            if any(v is None for v in a + b):
                continue
            (ma, ha), (mb, hb) = mean_ci(a), mean_ci(b)
            d, lo, hi = diff_ci(a, b)
            ratio, spread_differs = spread_test(a, b)
            rows.append(
                dict(
                    metric=m,
                    step=step,
                    a_mean=ma,
                    a_ci=ha,
                    b_mean=mb,
                    b_ci=hb,
                    diff=d,
                    diff_lo=lo,
                    diff_hi=hi,
                    indistinguishable=bool(lo <= 0.0 <= hi),
                    a_below_every_seed=bool(max(a) < min(b)),
                    a_above_every_seed=bool(min(a) > max(b)),
                    std_ratio=ratio,
                    spread_differs=spread_differs,
                )
            )

    def ms(side):
        vals = [v for run in side for s, v in run['ms'].items() if s not in run['eval']]
        return float(np.median(vals)) if vals else float('nan')

    return {'rows': rows, 'ms_a': ms(side_a), 'ms_b': ms(side_b)}


# ---- running ------------------------------------------------------------------------------------------------------
def _finished_released(args, agent, seed) -> bool:
    r = read_released(side_dir(args, 'released', agent, seed), agent)
    return r is not None and args.steps in r['eval']


def _finished_tiltbench(args, agent) -> bool:
    return all(os.path.exists(os.path.join(p, 'final.json')) for p in tiltbench_dirs(args, agent))


def _run(cmd: list[str], cwd: str, log_path: str, env: dict) -> None:
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, 'w') as log:
        log.write(shlex.join(cmd) + '\n')
        log.flush()
        t = time.time()
        proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f'command failed ({proc.returncode}), see {log_path}:\n{shlex.join(cmd)}')
    print(f'  done in {time.time() - t:.0f}s ({log_path})', flush=True)


def tiltbench_dirs(args, agent) -> list[str]:
    base = os.path.join(args.out, 'tiltbench')
    if args.seeds == 1:
        return [os.path.join(base, agent)]
    return [os.path.join(base, f'{agent}_seed{args.seed0 + k}') for k in range(args.seeds)]


def run_sides(args, agent: str, config) -> None:
    pin = ['taskset', '-c', args.cpu] if args.cpu else []
    if 'released' in args.sides:
        env = dict(os.environ)
        env.setdefault('MUJOCO_GL', 'egl')
        env.pop('PYTHONPATH', None)
        for k in range(args.seeds):
            seed = args.seed0 + k
            if _finished_released(args, agent, seed):
                continue
            print(f'[parity] released {agent} seed {seed}', flush=True)
            _run(
                pin + released_command(args, agent, config, seed),
                args.released,
                os.path.join(side_dir(args, 'released', agent, seed), 'stdout.log'),
                env,
            )
    if 'tiltbench' in args.sides and not _finished_tiltbench(args, agent):
        print(f'[parity] tiltbench {agent} seeds {args.seed0}..{args.seed0 + args.seeds - 1}', flush=True)
        cmd = tiltbench_command(args, agent, config)
        if os.path.exists(tiltbench_dirs(args, agent)[0]):
            cmd.append('--resume')
        _run(pin + cmd, ROOT, os.path.join(args.out, 'tiltbench', f'{agent}.log'), dict(os.environ))


def load_sides(args, agent: str) -> tuple[list[dict], list[dict]]:
    released = [read_released(side_dir(args, 'released', agent, args.seed0 + k), agent) for k in range(args.seeds)]
    tilt = [read_tiltbench(d, agent, args.seeds) for d in tiltbench_dirs(args, agent)]
    return [r for r in tilt if r], [r for r in released if r]


# ---- the table ----------------------------------------------------------------------------------------------------
def _fmt(x: float, h: float | None = None) -> str:
    if x is None or not math.isfinite(x):
        return 'n/a'
    digits = 4 if abs(x) < 10 else 2
    return f'{x:.{digits}f}' if h is None else f'{x:.{digits}f} ± {h:.{digits}f}'


def table_section(agent: str, result: dict, n_a: int, n_b: int, names=('tiltbench', 'released')) -> str:
    rows = result['rows']
    if not rows:
        return f'### {agent}\n\nNo matched steps (a side has no logs).\n'
    last = {}
    for r in rows:
        last[r['metric']] = r  # rows are sorted by step within a metric
    out = [
        f'### {agent}',
        '',
        f'ms per update: {names[0]} {_fmt(result["ms_a"])}, {names[1]} {_fmt(result["ms_b"])} '
        f'(median over log intervals without an evaluation). Seeds: {n_a} / {n_b}.',
        '',
        f'| metric | step | {names[0]} (mean ± 95% CI) | {names[1]} | difference [95% CI] | verdict | '
        'steps indistinguishable | std ratio | spread |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for m, r in last.items():
        per = [x for x in rows if x['metric'] == m]
        n_ok = sum(x['indistinguishable'] for x in per)
        below = sum(x['a_below_every_seed'] for x in per)
        above = sum(x['a_above_every_seed'] for x in per)
        side = f'; {names[0]} below every seed at {below}' if below else ''
        side += f'; above every seed at {above}' if above else ''
        verdict = 'indistinguishable' if r['indistinguishable'] else '**differs**'
        out.append(
            f'| {m} | {r["step"]} | {_fmt(r["a_mean"], r["a_ci"])} | {_fmt(r["b_mean"], r["b_ci"])} | '
            f'{_fmt(r["diff"])} [{_fmt(r["diff_lo"])}, {_fmt(r["diff_hi"])}] | {verdict} | {n_ok}/{len(per)}{side} | '
            f'{_fmt(r["std_ratio"])} | {"**differs**" if r["spread_differs"] else "same"} |'
        )
    return '\n'.join(out) + '\n'


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()[:16]


def dataset_files(env_name: str) -> list[str]:
    from envs.ogbench_gen import dataset_name_for

    base = os.path.expanduser(os.path.join('~/.ogbench/data', dataset_name_for(env_name)))
    return [base + '.npz', base + '-val.npz']


def released_commit(path: str) -> str:
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=path, capture_output=True, text=True).stdout.strip()
    except OSError:
        return 'unknown'


def released_versions(python: str) -> str:
    """The versions of the packages that decide the released side's numerics (they matter: see fql_repo.md)."""
    code = (
        'import importlib.metadata as m\n'
        "print(', '.join(f'{p} {m.version(p)}' for p in ('jax', 'flax', 'optax', 'distrax', 'numpy', 'ogbench')))"
    )
    try:
        out = subprocess.run([python, '-c', code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return 'unknown'
    return out.stdout.strip() or 'unknown'


def _literal(v: str):
    """A --set value: a Python literal (3, 0.1, True, (256, 256)) or else the string itself ('min')."""
    import ast

    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--released', help='Checkout of the released repository (e.g. seohongpark/fql).')
    p.add_argument('--released_python', help='A Python that can run the released code (its own virtualenv).')
    p.add_argument('--agents', default='fql,iql,rebrac')
    p.add_argument('--env_name', default='pointmaze-medium-navigate-singletask-task1-v0')
    p.add_argument('--seeds', type=int, default=4)
    p.add_argument('--seed0', type=int, default=0)
    p.add_argument('--steps', type=int, default=10_000)
    p.add_argument('--log_interval', type=int, default=1000)
    p.add_argument('--eval_interval', type=int, default=5000)
    p.add_argument('--eval_episodes', type=int, default=50)
    p.add_argument('--hidden', default='256,256', help='Hidden sizes of every network, both sides.')
    p.add_argument('--set', action='append', default=[], help='AGENT:KEY=VALUE config override, both sides.')
    p.add_argument('--tiltbench_flag', action='append', default=[], help='Extra flag for tiltbench main.py only.')
    p.add_argument('--sides', default='released,tiltbench')
    p.add_argument('--cpu', default='', help='Pin every run to these CPUs (taskset -c), e.g. 1.')
    p.add_argument('--phase', choices=('all', 'run', 'compare'), default='all')
    p.add_argument('--out', default='runs/parity')
    p.add_argument('--table', default=None, help='Write the Markdown table here (default: OUT/parity.md).')
    p.add_argument('--notes', default=None, help='A Markdown file appended to the table (findings, caveats).')
    args = p.parse_args(argv)
    args.sides = args.sides.split(',')
    agents_ = args.agents.split(',')
    unknown = [a for a in agents_ if a not in AGENT_MAP]
    if unknown:
        p.error(f'no flag mapping for {unknown}; mapped agents: {", ".join(AGENT_MAP)}')
    if args.phase != 'compare' and 'released' in args.sides and not (args.released and args.released_python):
        p.error('--released and --released_python are needed to run the released side')
    hidden = tuple(int(x) for x in args.hidden.split(','))
    overrides = {a: {'actor_hidden_dims': hidden, 'value_hidden_dims': hidden} for a in agents_}
    for s in args.set:
        agent, kv = s.split(':', 1)
        k, v = kv.split('=', 1)
        overrides[agent][k] = _literal(v)
    configs = {a: tiltbench_config(a, overrides[a]) for a in agents_}

    if args.phase in ('all', 'run'):
        for a in agents_:
            run_sides(args, a, configs[a])

    sections, summary = [], {}
    for a in agents_:
        tilt, rel = load_sides(args, a)
        metrics = list(AGENT_MAP[a][2].values())
        result = compare(tilt, rel, metrics)
        summary[a] = result
        sections.append(table_section(a, result, len(tilt), len(rel)))
    header = [
        '# Parity: tiltbench vs the released code',
        '',
        f'Made by `python scripts/parity.py {shlex.join(argv if argv is not None else sys.argv[1:])}`.',
        '',
        f'- Task `{args.env_name}`, {args.steps} offline steps, seeds {args.seed0}..{args.seed0 + args.seeds - 1} '
        f'per side, networks {hidden}, metrics at every {args.log_interval} steps (one gradient step each), '
        f'{args.eval_episodes} evaluation episodes every {args.eval_interval} steps.',
    ]
    if args.released:
        header.append(
            f'- Released code: `{args.released}` at commit {released_commit(args.released)}, run unedited through a '
            "launcher that sets wandb.init(mode='disabled') (its wandb needs a network), MUJOCO_GL=egl."
        )
    if args.released_python:
        versions = released_versions(args.released_python)
        header.append(f"- Released side's packages (`{args.released_python}`): {versions}")
    try:
        files = dataset_files(args.env_name)
        header.append('- Data (both sides): ' + ', '.join(f'`{os.path.basename(f)}` sha256 {sha256(f)}' for f in files))
    except (OSError, ValueError):
        pass
    for a in agents_:
        header.append(f'- `{a}` flags (both sides): `{" ".join(agent_flags(a, configs[a], released=False))}`')
    header += [
        '',
        'Verdict at the last logged step: indistinguishable when the 95% CI of the difference (Welch) holds 0. '
        '"steps indistinguishable" counts every logged step (at 95% about 1 in 20 is flagged by chance). '
        'std ratio = tiltbench / released seed-to-seed std; spread: two-sided 95% F test.',
        '',
    ]
    text = '\n'.join(header) + '\n' + '\n'.join(sections)
    if args.notes:
        with open(args.notes) as f:
            text += '\n' + f.read()
    table = args.table or os.path.join(args.out, 'parity.md')
    os.makedirs(os.path.dirname(os.path.abspath(table)), exist_ok=True)
    with open(table, 'w') as f:
        f.write(text)
    with open(os.path.splitext(table)[0] + '.json', 'w') as f:
        json.dump(summary, f, indent=1)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
