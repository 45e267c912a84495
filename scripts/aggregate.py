"""Aggregate run directories into result tables (Markdown + CSV) beside the published numbers, and learning curves.

    python scripts/aggregate.py --runs=runs --out=results/NAME

Every directory under --runs holding a config.json is a run (main.py's layout); only finished runs count. Runs are
split into tables by evaluation protocol, and a table never mixes protocols or budgets:

- full protocol (the papers'): OGBench offline 1M steps, score = mean of the evaluations at 800K, 900K and 1M steps;
  D4RL antmaze offline 500K steps, mean of 300K/400K/500K; D4RL at 1M steps (VGF's budget), mean of 800K/900K/1M;
  OGBench offline-to-online 1M + 1M steps, scores = the evaluation at the end of each phase (FAV Table 12).
  A run is full-protocol only if it has that budget, the official data (no --generate_episodes), >= 50 evaluation
  episodes and evaluations at those steps.
- reduced: anything else (fewer steps, smaller locally generated data, fewer evaluation episodes, the toy task).
  Score = mean of the last three evaluations (of each phase, offline-to-online). One table per budget; the table
  header says REDUCED and lists the budget and the exact commands from config.json.

`--final_evals=N` scores every run instead by the mean of its final N evaluations (of each phase): the VGF paper's
protocol with N = 10 ("averaged over the final 10 evaluations", Tables 1-2). The tables (full / reduced) stay as
above; their titles say the rule.

Per task: mean over seeds and a 95% percentile-bootstrap confidence interval over seeds (10,000 resamples). Per
environment family: mean over tasks of the per-task means, with a stratified bootstrap (seeds resampled within each
task). Published numbers are read from results/reference/ (see its README) and joined on task and method name.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import datetime
import json
import math
import os
import re
import shlex
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # runnable as `python scripts/...py` from anywhere
    sys.path.insert(0, ROOT)

N_BOOT = 10_000
CI_LEVEL = 0.95
MIN_EVAL_EPISODES = 50  # evaluation episodes of the FQL/FAV protocol (main.py's default)
K = 1000


# ---- statistics -----------------------------------------------------------------------------------------------------
def bootstrap_ci(x, n_boot: int = N_BOOT, seed: int = 0, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `x` (resample the seeds with replacement). NaNs for fewer than 2."""
    return stratified_bootstrap_ci([x], n_boot, seed, level)


def stratified_bootstrap_ci(groups, n_boot: int = N_BOOT, seed: int = 0, level: float = CI_LEVEL):
    """Percentile bootstrap CI of mean_t(mean(groups[t])): each replicate resamples every group (a task's seeds)
    with replacement, independently, and averages the group means."""
    groups = [np.asarray(g, np.float64) for g in groups]
    if not groups or any(len(g) == 0 for g in groups) or all(len(g) < 2 for g in groups):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    reps = np.zeros(n_boot)
    for g in groups:
        reps += g[rng.integers(0, len(g), size=(n_boot, len(g)))].mean(axis=1)
    reps /= len(groups)
    alpha = 100 * (1 - level) / 2
    lo, hi = np.percentile(reps, [alpha, 100 - alpha])
    return float(lo), float(hi)


# ---- environments and protocols -------------------------------------------------------------------------------------
def canonical_task(env: str) -> str:
    from configs.presets import canonical_task as canon

    return canon(env)


def env_kind(env: str) -> str:
    from envs import TOY_NAMES
    from envs.d4rl import is_d4rl_name, is_minari_name
    from envs.ogbench_env import is_ogbench_name

    if env in TOY_NAMES:
        return 'toy'
    if is_ogbench_name(env):
        return 'ogbench'
    if is_d4rl_name(env) or is_minari_name(env):
        return 'd4rl_antmaze' if 'antmaze' in env else 'd4rl'
    return 'other'


def family(env: str) -> str:
    """OGBench: the env id without -singletask-taskN-v0 (cube-single-play); D4RL: 'antmaze (D4RL)', 'hopper (D4RL)'."""
    task = canonical_task(env)
    kind = env_kind(env)
    if kind == 'ogbench':
        return task.split('-singletask')[0]
    if kind.startswith('d4rl'):
        base = task.split('/')[1] if task.startswith(('D4RL/', 'mujoco/')) else task.split('-')[0]
        return f'{base} (D4RL)'
    return task


@dataclasses.dataclass(frozen=True)
class Protocol:
    key: str
    title: str
    kinds: tuple  # env kinds it applies to
    offline_steps: int
    online_steps: int
    steps: tuple = ()  # offline evaluation steps averaged (offline protocols)


PROTOCOLS = (
    Protocol(
        'ogbench_offline',
        "OGBench offline RL, the papers' protocol: 1M gradient steps; score = mean of the "
        'evaluations at 800K, 900K and 1M steps (FQL protocol, used by FAV Table 11)',
        ('ogbench',),
        1000 * K,
        0,
        (800 * K, 900 * K, 1000 * K),
    ),
    Protocol(
        'd4rl_antmaze_offline',
        "D4RL antmaze offline RL, the FAV paper's protocol: 500K gradient steps; score = "
        'mean of the evaluations at 300K, 400K and 500K steps',
        ('d4rl_antmaze',),
        500 * K,
        0,
        (300 * K, 400 * K, 500 * K),
    ),
    Protocol(
        'd4rl_offline_1M',
        "D4RL offline RL at VGF's budget of 1M gradient steps; score = mean of the "
        'evaluations at 800K, 900K and 1M steps (VGF Table 1 itself averages its final 10 evaluations)',
        ('d4rl', 'd4rl_antmaze'),
        1000 * K,
        0,
        (800 * K, 900 * K, 1000 * K),
    ),
    Protocol(
        'ogbench_o2o',
        "OGBench offline-to-online RL, the papers' protocol (FAV Table 12): 1M offline steps, "
        'then 1M online steps; scores = the evaluation at the end of each phase (1M and 2M steps)',
        ('ogbench',),
        1000 * K,
        1000 * K,
    ),
)
REDUCED_RULE = 'score = mean of the last three evaluations{phase} (the FQL rule for runs without the protocol steps)'
FINAL_EVALS_RULE = (
    'score = mean of the final {n} evaluations{phase} (the VGF paper: "averaged over the final 10 evaluations"; a run '
    'with fewer has the mean of all of its own)'
)


@dataclasses.dataclass
class RunData:
    path: str
    agent: str
    env: str
    task: str
    seed: int
    flags: dict
    config: dict
    argv: list
    evals: list  # [(step, phase, score)] in file order
    wall_time: float | None = None
    protocol: Protocol | None = None  # None: reduced
    reasons: tuple = ()  # why not full protocol
    scores: dict = dataclasses.field(default_factory=dict)  # metric -> score under the table's rule
    n_final: int = 0  # evaluations of the shortest phase (for the final-N rule)

    @property
    def o2o(self) -> bool:
        return int(self.flags.get('online_steps') or 0) > 0


def classify(r: RunData) -> tuple[Protocol | None, tuple]:
    """The full protocol a run satisfies, else (None, reasons it is reduced)."""
    f = r.flags
    kind = env_kind(r.env)
    offline = {s for s, ph, _ in r.evals if ph == 'offline'}
    reasons = []
    for p in PROTOCOLS:
        if kind not in p.kinds or (p.online_steps > 0) != r.o2o:
            continue
        why = []
        if int(f.get('offline_steps', -1)) != p.offline_steps:
            why.append(f'offline_steps={f.get("offline_steps")} (protocol {p.offline_steps})')
        if r.o2o and int(f.get('online_steps', -1)) != p.online_steps:
            why.append(f'online_steps={f.get("online_steps")} (protocol {p.online_steps})')
        if f.get('generate_episodes') is not None:
            why.append(f'smaller dataset generated locally ({f["generate_episodes"]} episodes)')
        if int(f.get('eval_episodes', 0)) < MIN_EVAL_EPISODES:
            why.append(f'eval_episodes={f.get("eval_episodes")} (protocol {MIN_EVAL_EPISODES})')
        missing = [s for s in p.steps if s not in offline]
        if p.online_steps:  # the evaluations at the end of each phase
            ends = {(s, ph) for s, ph, _ in r.evals}
            missing = [
                s
                for s, ph in ((p.offline_steps, 'offline'), (p.offline_steps + p.online_steps, 'online'))
                if (s, ph) not in ends
            ]
        if missing and not why:
            why.append(f'no evaluation at steps {missing} (eval_interval={f.get("eval_interval")})')
        if not why:
            return p, ()
        reasons = reasons or why
    if not reasons:
        reasons = [f'no published protocol for {kind} tasks' if kind in ('toy', 'other') else 'no matching protocol']
    return None, tuple(reasons)


def protocol_scores(evals, protocol: Protocol | None, o2o: bool, final_evals: int = 0) -> dict:
    """{metric: score}: offline tables have 'score'; offline-to-online tables 'offline' and 'online'. With
    final_evals = N > 0: the mean of the final N evaluations of each phase (VGF protocol, N = 10), whatever the
    protocol."""
    by_phase = collections.defaultdict(list)
    for step, phase, score in evals:
        by_phase[phase].append((step, score))

    def last(phase, k=3):
        s = [sc for _, sc in by_phase[phase]]
        return float(np.mean(s[-k:])) if s else math.nan

    def last3(phase):
        return last(phase, 3)

    if final_evals > 0:
        phases = {'offline': 'offline', 'online': 'online'} if o2o else {'score': 'offline'}
        return {metric: last(phase, final_evals) for metric, phase in phases.items()}
    if not o2o:
        if protocol is None:
            return {'score': last3('offline')}
        at = dict(by_phase['offline'])
        return {'score': float(np.mean([at[s] for s in protocol.steps]))}
    if protocol is None:
        return {'offline': last3('offline'), 'online': last3('online')}
    off, on = dict(by_phase['offline']), dict(by_phase['online'])
    return {'offline': off[protocol.offline_steps], 'online': on[protocol.offline_steps + protocol.online_steps]}


# ---- reading runs ---------------------------------------------------------------------------------------------------
def find_run_dirs(root: str) -> list[str]:
    out = []
    for d, subdirs, files in os.walk(root):
        if 'config.json' in files:
            out.append(d)
            subdirs[:] = []  # do not descend into a run (checkpoints/)
        else:
            subdirs[:] = sorted(s for s in subdirs if not s.startswith('.'))
    return sorted(out)


def read_evals(path: str) -> list:
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            try:
                rows.append((int(float(row['step'])), row['phase'], float(row['score'])))
            except (KeyError, ValueError):
                continue
    return rows


def load_run(path: str, final_evals: int = 0) -> tuple[RunData | None, str]:
    """(run, '') or (None, reason it is excluded)."""

    def read(name):
        with open(os.path.join(path, name)) as f:
            return json.load(f)

    try:
        cfg = read('config.json')
        status = read('status.json').get('status') if os.path.exists(os.path.join(path, 'status.json')) else None
    except (OSError, ValueError) as e:
        return None, f'unreadable ({type(e).__name__}: {e})'
    if status != 'finished':
        return None, f'status {status or "missing"}'
    evals = read_evals(os.path.join(path, 'eval.csv'))
    if not evals:
        return None, 'no evaluations in eval.csv'
    final = read('final.json') if os.path.exists(os.path.join(path, 'final.json')) else {}
    flags = cfg.get('flags', {})
    env = flags.get('env_name') or final.get('env')
    r = RunData(
        path=path,
        agent=cfg['agent'],
        env=env,
        task=canonical_task(env),
        seed=int(flags.get('seed', 0)),
        flags=flags,
        config=cfg.get('config', {}),
        argv=list(cfg.get('argv', [])),
        evals=evals,
        wall_time=final.get('wall_time_s'),
    )
    r.protocol, r.reasons = classify(r)
    r.scores = protocol_scores(r.evals, r.protocol, r.o2o, final_evals)
    r.n_final = min((sum(ph == p for _, ph, _ in r.evals) for p in (('offline', 'online') if r.o2o else ('offline',))))
    return r, ''


# ---- tables ---------------------------------------------------------------------------------------------------------
BUDGET_KEYS = ('offline_steps', 'online_steps', 'eval_interval', 'eval_episodes', 'generate_episodes')


def group_key(r: RunData) -> tuple:
    if r.protocol is not None:
        return ('full', r.protocol.key)
    return ('reduced', 'o2o' if r.o2o else 'offline', *(r.flags.get(k) for k in BUDGET_KEYS))


def group_id(key: tuple) -> str:
    if key[0] == 'full':
        return key[1]
    _, kind, off, on, interval, episodes, gen = key
    s = f'reduced_{kind}_{_short(off)}off' + (f'_{_short(on)}on' if on else '') + f'_eval{_short(interval)}x{episodes}'
    return s + (f'_data{gen}ep' if gen is not None else '')


def _short(n) -> str:
    n = int(n or 0)
    for unit, v in (('M', 1_000_000), ('K', 1000)):
        if n >= v and n % v == 0:
            return f'{n // v}{unit}'
    return str(n)


def variant_labels(runs: list[RunData]) -> dict:
    """path -> 'agent' or 'agent (key=value, ...)', from the config keys that vary between runs of the same agent
    on the same task (a hyperparameter grid). Per-task preset values do not count as variants."""
    by = collections.defaultdict(list)
    for r in runs:
        by[(r.agent, r.task)].append(r)
    varying = collections.defaultdict(set)
    for (agent, _), rs in by.items():
        for k in set().union(*(r.config for r in rs)):
            if len({json.dumps(r.config.get(k), sort_keys=True) for r in rs}) > 1:
                varying[agent].add(k)
    out = {}
    for r in runs:
        keys = sorted(varying[r.agent])
        out[r.path] = r.agent + (f' ({", ".join(f"{k}={_fmt_cfg(r.config.get(k))}" for k in keys)})' if keys else '')
    return out


def _fmt_cfg(v) -> str:
    if isinstance(v, list):
        return '(' + ','.join(map(str, v)) + ')'
    return f'{v:g}' if isinstance(v, float) else str(v)


# ---- published numbers ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Source:
    key: str
    title: str  # column header
    file: str
    kind: str  # 'offline' | 'o2o' | 'family'
    methods: dict  # tiltbench agent -> the paper's method name
    spread: str  # what the ± is
    values: dict = dataclasses.field(default_factory=dict)  # (task or family, method) -> {metric: (mean, spread)}


# The papers' method names for tiltbench agents. FAV's "QAM" is its own reproduction (2-head critic, FAV Table 6
# temperatures) = agent qam_fav; QAM Table 1's QAM is agent qam.
FAV_METHODS = {
    'iql': 'IQL',
    'rebrac': 'ReBRAC',
    'fql': 'FQL',
    'qam_fav': 'QAM',
    'fav_adaptive': 'FAV-Adaptive',
    'fav': 'FAV',
    'ifql': 'IFQL',
    'fawac': 'FAWAC',
    'dsrl': 'DSRL',
    'rlpd': 'RLPD',
}
QAM_METHODS = {
    'rebrac': 'ReBRAC',
    'fql': 'FQL',
    'qam': 'QAM',
    'qam_fql': 'QAM-FQL',
    'qam_edit': 'QAM-EDIT',
    'fbrac': 'FBRAC',
    'fawac': 'FAWAC',
    'cgql': 'CGQL',
    'cgql_mse': 'CGQL-MSE',
    'cgql_linex': 'CGQL-Linear',
    'dsrl': 'DSRL',
    'fedit': 'FEdit',
    'ifql': 'IFQL',
}
VGF_METHODS = {'bc': 'BC', 'iql': 'IQL', 'rebrac': 'ReBRAC', 'fql': 'FQL', 'fbrac': 'FBRAC', 'vgf': 'VGF'}
# QAM Table 1 domains <- tiltbench OGBench families. QAM Table 1 is put beside runs made under its protocol only
# (`--preset=qam`, or `paper` for the QAM agents: K = 10 critics, chunks of 5 on manipulation, the sparse scene /
# puzzle variants) and, for puzzle-4x4 / cube-quadruple, on the 100M-transition datasets (the -100m names).
QAM_DOMAINS = {
    'antmaze-large-navigate': 'antmaze-large',
    'antmaze-giant-navigate': 'antmaze-giant',
    'humanoidmaze-medium-navigate': 'humanoidmaze-medium',
    'humanoidmaze-large-navigate': 'humanoidmaze-large',
    'scene-play-sparse': 'scene',
    'puzzle-3x3-play-sparse': 'puzzle-3x3',
    'puzzle-4x4-play-100m-sparse': 'puzzle-4x4',
    'cube-double-play': 'cube-double',
    'cube-triple-play': 'cube-triple',
    'cube-quadruple-play-100m': 'cube-quadruple',
}


def load_sources(ref_dir: str) -> list[Source]:
    sources = [
        Source('fav_t11', 'FAV Table 11', 'fav_table11_offline_results.csv', 'offline', FAV_METHODS, '95% CI'),
        Source('vgf_t7', 'VGF Table 7', 'vgf_table7_ogbench_results.csv', 'offline', VGF_METHODS, 'std, 5 seeds'),
        Source('vgf_t1', 'VGF Table 1', 'vgf_table1_d4rl_results.csv', 'offline', VGF_METHODS, ''),
        Source('fav_t12', 'FAV Table 12', 'fav_table12_offline_to_online_results.csv', 'o2o', FAV_METHODS, '95% CI'),
        Source('qam_t1', 'QAM Table 1', 'qam_table1_offline_domain_averages.csv', 'family', QAM_METHODS, ''),
    ]
    out = []
    for s in sources:
        path = os.path.join(ref_dir, s.file)
        if not os.path.exists(path):
            continue
        with open(path, newline='') as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            if s.key in ('fav_t11', 'vgf_t7'):
                spread = row.get('ci95') or row.get('std')
                s.values[(row['task'], row['method'])] = {'score': (_num(row['mean']), _num(spread))}
            elif s.key == 'fav_t12':
                s.values[(row['task'], row['method'])] = {
                    'offline': (_num(row['offline_mean']), _num(row['offline_ci95'])),
                    'online': (_num(row['online_mean']), _num(row['online_ci95'])),
                }
            elif s.key == 'vgf_t1':
                for method, v in row.items():
                    if method != 'dataset':
                        s.values[(row['dataset'], method)] = {'score': (_num(v), math.nan)}
            elif s.key == 'qam_t1':
                for domain, v in row.items():
                    if domain != 'method':
                        s.values[(domain, row['method'])] = {'score': (_num(v), math.nan)}
        out.append(s)
    return out


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


# ---- building the tables --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Table:
    key: tuple
    id: str
    runs: list
    metrics: tuple
    task_rows: list = dataclasses.field(default_factory=list)
    family_rows: list = dataclasses.field(default_factory=list)
    ref_task_cols: list = dataclasses.field(default_factory=list)  # sources with a match
    ref_family_cols: list = dataclasses.field(default_factory=list)
    final_evals: int = 0  # > 0: scores are the mean of the final N evaluations (--final_evals)

    @property
    def full(self) -> bool:
        return self.key[0] == 'full'


def run_protocol(r: RunData) -> str | None:
    """The paper protocol a run's preset reproduced ('fav', 'qam', 'vgf'), or None (defaults, or an unknown agent)."""
    import agents

    try:
        return agents.protocol_of(r.agent, r.flags.get('preset') or 'default')
    except (KeyError, AttributeError, ModuleNotFoundError):
        return None


def build_table(key, runs: list[RunData], sources: list[Source], n_boot: int, final_evals: int = 0) -> Table:
    o2o = runs[0].o2o
    t = Table(key, group_id(key), runs, ('offline', 'online') if o2o else ('score',), final_evals=final_evals)
    labels = variant_labels(runs)
    cells = collections.defaultdict(list)  # (task, label) -> runs
    for r in runs:
        cells[(r.task, labels[r.path])].append(r)
    for (task, label), rs in sorted(cells.items()):
        rs = sorted(rs, key=lambda r: r.seed)
        row = dict(
            task=task,
            family=family(task),
            method=label,
            agent=rs[0].agent,
            n_seeds=len(rs),
            seeds=' '.join(str(r.seed) for r in rs),
            per_seed={},
            qam_protocol=all(run_protocol(r) == 'qam' for r in rs),
        )
        for m in t.metrics:
            x = [r.scores[m] for r in rs if not math.isnan(r.scores[m])]
            row['per_seed'][m] = x
            row[f'{m}_mean'] = float(np.mean(x)) if x else math.nan
            row[f'{m}_ci_low'], row[f'{m}_ci_high'] = bootstrap_ci(x, n_boot) if x else (math.nan, math.nan)
        t.task_rows.append(row)
    # published per-task numbers
    task_sources = [s for s in sources if s.kind == ('o2o' if o2o else 'offline')]
    for s in task_sources:
        hit = False
        for row in t.task_rows:
            method = s.methods.get(row['agent'])
            v = s.values.get((row['task'], method)) if method else None
            for m in t.metrics:
                row[f'{s.key}_{m}'] = v[m] if v else (math.nan, math.nan)
            hit |= v is not None
        if hit:
            t.ref_task_cols.append(s)
    # families: mean over tasks of the per-task means
    fam = collections.defaultdict(list)
    for row in t.task_rows:
        fam[(row['family'], row['method'])].append(row)
    for (fname, label), rows in sorted(fam.items()):
        frow = dict(
            family=fname,
            method=label,
            agent=rows[0]['agent'],
            n_tasks=len(rows),
            tasks=' '.join(r['task'] for r in rows),
            n_seeds=sorted({r['n_seeds'] for r in rows}),
        )
        for m in t.metrics:
            groups = [r['per_seed'][m] for r in rows if r['per_seed'][m]]
            frow[f'{m}_mean'] = float(np.mean([np.mean(g) for g in groups])) if len(groups) == len(rows) else math.nan
            frow[f'{m}_ci_low'], frow[f'{m}_ci_high'] = (
                stratified_bootstrap_ci(groups, n_boot) if len(groups) == len(rows) else (math.nan, math.nan)
            )
        for s in t.ref_task_cols:  # the same source, averaged over the same tasks (only if it has all of them)
            for m in t.metrics:
                vals = [r[f'{s.key}_{m}'][0] for r in rows]
                frow[f'{s.key}_{m}'] = (float(np.mean(vals)) if not any(map(math.isnan, vals)) else math.nan, math.nan)
        t.family_rows.append(frow)
    t.ref_family_cols = list(t.ref_task_cols)
    if not o2o:
        for s in (s for s in sources if s.kind == 'family'):
            hit = False
            for frow in t.family_rows:
                domain, method = QAM_DOMAINS.get(frow['family']), s.methods.get(frow['agent'])
                tasks = {r.split('-singletask-')[-1] for r in frow['tasks'].split()}
                complete = tasks >= {f'task{i}-v0' for i in range(1, 6)}  # QAM averages all five tasks
                same = all(
                    r['qam_protocol']
                    for r in t.task_rows
                    if (r['family'], r['method']) == (frow['family'], frow['method'])
                )
                v = s.values.get((domain, method)) if domain and method and complete and same else None
                frow[f'{s.key}_score'] = v['score'] if v else (math.nan, math.nan)
                hit |= v is not None
            if hit:
                t.ref_family_cols.append(s)
    return t


# ---- output ---------------------------------------------------------------------------------------------------------
def fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return '-'
    return f'{x:.1f}' if abs(x) >= 1 or x == 0 else f'{x:.3g}'


def fmt_ci(mean, lo, hi) -> str:
    if math.isnan(mean):
        return '-'
    return fmt(mean) + (f' [{fmt(lo)}, {fmt(hi)}]' if not math.isnan(lo) else ' (1 seed)')


def fmt_ref(v) -> str:
    mean, spread = v
    if math.isnan(mean):
        return '-'
    return fmt(mean) + (f' ± {fmt(spread)}' if not math.isnan(spread) else '')


def commands(runs: list[RunData]) -> list[str]:
    """The exact main.py commands of the runs (from config.json argv): one-seed runs collapsed into a loop over
    seeds; a `--num_seeds=N` process (seeds --seed .. --seed+N-1, vmapped) once, exactly as it was run."""
    drop = ('save_dir', 'run_name', 'progress', 'resume', 'overwrite')
    loops, processes = collections.defaultdict(list), collections.defaultdict(list)
    for r in runs:
        args = tuple(a for a in r.argv[1:] if a[2:].split('=', 1)[0] not in drop)
        if int(r.flags.get('num_seeds', 1) or 1) > 1:
            processes[args].append(r.seed)
        else:
            loops[tuple('--seed=$seed' if a.startswith('--seed=') else a for a in args)].append(r.seed)
    out = []
    for args, seeds in sorted(loops.items()):
        cmd = ' '.join(shlex.quote(a) if a != '--seed=$seed' else a for a in args)
        out.append(f'for seed in {" ".join(map(str, sorted(seeds)))}; do python main.py {cmd}; done')
    for args, seeds in sorted(processes.items()):
        out.append(f'python main.py {shlex.join(args)}  # seeds {", ".join(map(str, sorted(seeds)))} in one process')
    return out


def table_title(t: Table) -> str:
    if t.final_evals:
        o2o = t.runs[0].o2o
        rule = FINAL_EVALS_RULE.format(n=t.final_evals, phase=' of each phase' if o2o else '')
        short = sum(r.n_final < t.final_evals for r in t.runs)
        rule += f'; {short} of {len(t.runs)} runs have fewer than {t.final_evals}' if short else ''
    if t.full:
        title = next(p.title for p in PROTOCOLS if p.key == t.key[1])
        return (
            f"{re.split('; scores? =', title)[0]}; {rule} (instead of the protocol's rule)" if t.final_evals else title
        )
    _, kind, off, on, interval, episodes, gen = t.key
    budget = f'offline_steps={off}, online_steps={on}, eval_interval={interval}, eval_episodes={episodes}, ' + (
        f'generate_episodes={gen} (smaller dataset generated locally)' if gen is not None else 'no --generate_episodes'
    )
    if not t.final_evals:
        rule = REDUCED_RULE.format(phase=' of each phase' if kind == 'o2o' else ' of the offline phase')
    return (
        f"REDUCED budget, {'offline-to-online' if kind == 'o2o' else 'offline'}: NOT the papers' protocol, "
        f'numbers are not comparable to the published ones. Budget (from config.json): {budget}. {rule}.'
    )


def write_csv(path: str, rows: list[dict], cols: list[str]) -> None:
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in rows:
            w.writerow([_csv_cell(row.get(c)) for c in cols])


def _csv_cell(v):
    if isinstance(v, float):
        return '' if math.isnan(v) else round(v, 6)
    if isinstance(v, list):
        return ' '.join(map(str, v))
    return v


def table_csvs(t: Table, out: str) -> tuple[str, str]:
    meta = dict(table=t.id, protocol='full' if t.full else 'reduced')
    meta['score_rule'] = f'final{t.final_evals}' if t.final_evals else ('protocol' if t.full else 'last3')
    meta.update({k: t.runs[0].flags.get(k) for k in BUDGET_KEYS if not t.full})  # constant within a reduced table
    paths = []
    for level, rows, srcs in (('tasks', t.task_rows, t.ref_task_cols), ('families', t.family_rows, t.ref_family_cols)):
        cols = list(meta) + (['task'] if level == 'tasks' else []) + ['family', 'method', 'agent']
        cols += ['n_seeds', 'seeds'] if level == 'tasks' else ['n_tasks', 'n_seeds', 'tasks']
        flat = []
        for row in rows:
            d = {**meta, **row}
            for m in t.metrics:
                cols_m = [f'{m}_mean', f'{m}_ci_low', f'{m}_ci_high']
                for s in srcs:
                    mean, spread = row.get(f'{s.key}_{m}', (math.nan, math.nan))
                    d[f'{s.key}_{m}_mean'], d[f'{s.key}_{m}_spread'] = mean, spread
                    cols_m += [f'{s.key}_{m}_mean', f'{s.key}_{m}_spread']
                for c in cols_m:
                    if c not in cols:
                        cols.append(c)
            flat.append(d)
        path = os.path.join(out, f'{t.id}_{level}.csv')
        write_csv(path, flat, cols)
        paths.append(path)
    return tuple(paths)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines)


def table_markdown(t: Table, n: int, plots: dict, out: str) -> str:
    md = [f'## Table {n}: `{t.id}`' + ('' if t.full else ' (REDUCED)'), '', f'**{table_title(t)}**', '']
    if not t.full:
        reasons = sorted({why for r in t.runs for why in r.reasons})
        md += [f'Why reduced: {"; ".join(reasons)}.', '']
    wall = [r.wall_time for r in t.runs if r.wall_time is not None]
    notes = sorted({n for r in t.runs for n in _task_notes(r)})
    md += [f'{len(t.runs)} runs; mean wall time per run {np.mean(wall):.0f} s.' if wall else f'{len(t.runs)} runs.']
    if notes:
        md += ['', 'Task notes recorded by the runs: ' + '; '.join(notes) + '.']
    cmds = commands(t.runs)
    cmd_file = f'{t.id}_commands.sh'
    with open(os.path.join(out, cmd_file), 'w') as f:
        f.write('# The exact commands of the runs in table ' + t.id + " (from each run's config.json).\n")
        f.writelines(c + '\n' for c in cmds)
    md += ['', f'Commands ({len(cmds)}; all in [{cmd_file}]({cmd_file})):', '', '```']
    md += cmds[:12] + ([f'# ... {len(cmds) - 12} more in {cmd_file}'] if len(cmds) > 12 else []) + ['```', '']
    ours = 'ours: mean [95% CI]'
    for level in ('task', 'family'):
        rows_src = t.task_rows if level == 'task' else t.family_rows
        srcs = t.ref_task_cols if level == 'task' else t.ref_family_cols
        header = [level, 'method', 'seeds' if level == 'task' else 'tasks']
        for m in t.metrics:
            header.append(f'{ours}' if m == 'score' else f'{m} {ours}')
            for s in srcs:
                sub = '' if m == 'score' else f' {m}'
                what = f' (mean ± {s.spread})' if s.spread else ''
                if level == 'family' and s.kind != 'family':
                    what = ' (mean over the same tasks)'
                elif s.kind == 'family':
                    what = ' (5-task domain average, QAM protocol)'
                header.append(f'{s.title}{sub}{what}')
        rows = []
        for row in rows_src:
            cells = [row[level], row['method'], str(row['n_seeds']) if level == 'task' else str(row['n_tasks'])]
            for m in t.metrics:
                cells.append(fmt_ci(row[f'{m}_mean'], row[f'{m}_ci_low'], row[f'{m}_ci_high']))
                cells += [fmt_ref(row.get(f'{s.key}_{m}', (math.nan, math.nan))) for s in srcs]
            rows.append(cells)
        md += [f'### Per {"task" if level == "task" else "environment family"}', '', markdown_table(header, rows), '']
    if plots:
        md += ['### Learning curves (mean over seeds, 95% bootstrap CI band)', '']
        md += [f'![{task}]({p})' for task, p in sorted(plots.items())] + ['']
    return '\n'.join(md)


def _task_notes(r: RunData) -> list[str]:
    try:
        with open(os.path.join(r.path, 'config.json')) as f:
            return list(json.load(f).get('task_notes', []))
    except (OSError, ValueError):
        return []


def plot_table(t: Table, out: str, labels: dict, n_boot: int = 2000) -> dict:
    """One PNG per task: score against gradient steps, a line per method, its 95% bootstrap CI band over seeds."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    plots = {}
    by_task = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in t.runs:
        by_task[r.task][labels[r.path]].append(r)
    d = os.path.join(out, 'plots', t.id)
    os.makedirs(d, exist_ok=True)
    for task, methods in sorted(by_task.items()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, rs in sorted(methods.items()):
            steps = sorted({s for r in rs for s, _, _ in r.evals})
            per = [[sc for r in rs for s2, _, sc in r.evals if s2 == s] for s in steps]
            mean = np.array([np.mean(p) for p in per])
            ci = np.array([bootstrap_ci(p, n_boot) for p in per])
            (line,) = ax.plot(steps, mean, marker='.', label=f'{label} ({len(rs)} seeds)')
            if len(rs) > 1:
                ax.fill_between(steps, ci[:, 0], ci[:, 1], alpha=0.2, color=line.get_color())
        if t.runs[0].o2o:
            ax.axvline(int(t.runs[0].flags['offline_steps']), color='gray', ls='--', lw=1)
            ax.text(int(t.runs[0].flags['offline_steps']), ax.get_ylim()[1], ' online ', va='top', color='gray')
        ax.set_title(f'{task}' + ('' if t.full else ' (REDUCED budget)'), fontsize=9)
        ax.set_xlabel('steps (offline, then online)' if t.runs[0].o2o else 'gradient steps')
        ax.set_ylabel('score')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = re.sub(r'[^A-Za-z0-9._-]+', '_', task) + '.png'
        fig.savefig(os.path.join(d, name), dpi=100)
        plt.close(fig)
        plots[task] = f'plots/{t.id}/{name}'
    return plots


def dedupe(runs: list[RunData]) -> tuple[list[RunData], list[tuple[str, str]]]:
    """The same configuration and seed found twice (e.g. a copied run directory) counts once."""
    seen, keep, dropped = {}, [], []
    for r in runs:
        k = (group_key(r), r.agent, r.task, r.seed, json.dumps(r.config, sort_keys=True))
        if k in seen:
            dropped.append((r.path, f'duplicate of {seen[k]}'))
        else:
            seen[k] = r.path
            keep.append(r)
    return keep, dropped


def aggregate(
    runs_dir: str,
    out: str,
    ref_dir: str,
    n_boot: int = N_BOOT,
    plots: bool = True,
    cmdline: str = '',
    final_evals: int = 0,
) -> dict:
    os.makedirs(out, exist_ok=True)
    runs, excluded = [], []
    for path in find_run_dirs(runs_dir):
        r, why = load_run(path, final_evals)
        (runs.append(r) if r else excluded.append((path, why)))
    runs, dup = dedupe(runs)
    excluded += dup
    sources = load_sources(ref_dir)
    groups = collections.defaultdict(list)
    for r in runs:
        groups[group_key(r)].append(r)
    rank = {p.key: i for i, p in enumerate(PROTOCOLS)}
    order = sorted(groups, key=lambda k: (k[0] != 'full', rank.get(k[1], 0), str(k)))
    tables = [build_table(k, groups[k], sources, n_boot, final_evals) for k in order]
    md = [
        f'# tiltbench results: {os.path.basename(os.path.normpath(out))}',
        '',
        f'Made by `{cmdline or "python scripts/aggregate.py"}` on '
        f'{datetime.datetime.now().isoformat(timespec="minutes")} from {len(runs)} finished runs in `{runs_dir}` '
        f'({len(excluded)} excluded, listed at the end).',
        '',
        'Scores: OGBench success rate (%), D4RL normalized score (x100), toy-8gaussians mean true reward. "ours" = '
        f'mean over seeds [{int(CI_LEVEL * 100)}% percentile-bootstrap CI over seeds, {n_boot} resamples]; families: '
        'mean over tasks of the per-task means, CI by a stratified bootstrap. Tables never mix protocols or budgets; '
        'REDUCED tables are not comparable to the published numbers and are labeled so.',
        '',
        'Published numbers (results/reference/README.md says which paper and table): methods are joined by name, '
        'tiltbench agent -> paper: FAV tables '
        + ', '.join(f'{a}={m}' for a, m in FAV_METHODS.items())
        + '; QAM Table 1 '
        + ', '.join(f'{a}={m}' for a, m in QAM_METHODS.items())
        + '; VGF tables '
        + ', '.join(f'{a}={m}' for a, m in VGF_METHODS.items())
        + '. VGF reports mean ± std over 5 seeds (average of its final 10 evaluations); QAM Table 1 gives 5-task '
        'domain averages under its own protocol (K=10 critics, action chunks of 5 and sparse rewards on manipulation '
        'domains, 100M-transition data for puzzle-4x4 / cube-quadruple).',
        '',
    ]
    if not tables:
        md += ['No finished runs found.', '']
    written = []
    for i, t in enumerate(tables, 1):
        labels = variant_labels(t.runs)
        pl = plot_table(t, out, labels) if plots else {}
        written += table_csvs(t, out)
        md.append(table_markdown(t, i, pl, out))
    if excluded:
        md += ['## Excluded runs', '']
        md += [f'- `{os.path.relpath(p, runs_dir)}`: {why}' for p, why in excluded] + ['']
    with open(os.path.join(out, 'README.md'), 'w') as f:
        f.write('\n'.join(md))
    return dict(tables=tables, excluded=excluded, csvs=written, markdown=os.path.join(out, 'README.md'))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--runs', default='runs', help='Directory searched (recursively) for run directories.')
    p.add_argument('--out', required=True, help='Output directory (README.md, CSVs, plots/).')
    p.add_argument(
        '--reference',
        default=os.path.join(ROOT, 'results', 'reference'),
        help='Directory of the published numbers (default results/reference).',
    )
    p.add_argument('--n_boot', type=int, default=N_BOOT, help='Bootstrap resamples.')
    p.add_argument('--no_plots', action='store_true', help='Skip the learning-curve PNGs.')
    p.add_argument(
        '--final_evals',
        type=int,
        default=0,
        help='Score = mean of the final N evaluations of each phase (the VGF paper: 10); 0 = the protocol rules.',
    )
    args = p.parse_args(argv)
    if args.final_evals < 0:
        p.error(f'--final_evals must be >= 0, got {args.final_evals}.')
    if not os.path.isdir(args.runs):
        print(f'error: --runs={args.runs} is not a directory.', file=sys.stderr)
        return 2
    cmdline = 'python scripts/aggregate.py ' + ' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    res = aggregate(args.runs, args.out, args.reference, args.n_boot, not args.no_plots, cmdline, args.final_evals)
    for t in res['tables']:
        print(
            f'{t.id}: {"full protocol" if t.full else "REDUCED"}, {len(t.runs)} runs, {len(t.task_rows)} '
            f'task rows, {len(t.family_rows)} family rows'
        )
    print(f'{len(res["excluded"])} runs excluded. Wrote {res["markdown"]} and {len(res["csvs"])} CSV files.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
