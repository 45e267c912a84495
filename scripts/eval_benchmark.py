"""Evaluation benchmark (`python scripts/benchmark.py --eval`): wall time of one evaluation, sequential vs lockstep,
beside the official FQL code's evaluate() on the same task, measured one after another in one run.

    python scripts/benchmark.py --eval                      # pointmaze-medium + cube-single, FQL + VGF, writes
                                                            # a section of results/throughput.md
    python scripts/benchmark.py --eval --eval_envs_names=pointmaze-medium-navigate-singletask-task1-v0 \\
        --eval_agents=fql --released_fql=/path/to/fql --released_python=/path/to/fql-venv/bin/python --no-write

Modes, each in a fresh subprocess (its own compilation and memory):
- sequential: the variants (VGF's 4 L_test) one after another, each episode one after another, one policy call per
  environment step: what an evaluation cost before lockstep (`--eval_envs=1` runs seeds and variants side by side).
- lockstep: every episode of every variant at once (`--eval_envs` default: as many as 2 GiB of environments allow),
  one policy call per step for all of them; `lockstep+W workers`: the same with `--eval_workers=W`.
- official: seohongpark/fql's utils/evaluation.py evaluate() with its FQL agent, run in its own virtualenv.
Policies are freshly initialized (paper networks, 4 x 512): no episode succeeds, so every episode runs to the time
limit (pointmaze 1000 steps, cube 200), the most an evaluation can cost. Sequential and official runs play
--seq_episodes episodes and are scaled to --episodes (every episode has the same length; the table says so).
Environment creation is timed apart. The data only has to exist: missing OGBench datasets are generated
(--generate_episodes, default 100) into --dataset_dir (default ~/.ogbench/data, where the official code reads them).
--deadline_s starts no mode after that many seconds and stops one still running then; the table lists what was not
measured, and --json is rewritten after every row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = time.monotonic()  # --deadline_s counts from here: the benchmark process's start


def deadline_at(seconds: float) -> float | None:
    """The time.monotonic() value `seconds` after the process started (--deadline_s), None for 0 (no limit)."""
    return T0 + seconds if seconds > 0 else None


ENVS = ('pointmaze-medium-navigate-singletask-task1-v0', 'cube-single-play-singletask-task2-v0')

OFFICIAL = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import jax, numpy as np
from agents import agents
from agents.fql import get_config
from envs.env_utils import make_env_and_datasets
from utils.evaluation import evaluate
env_name, episodes = sys.argv[2], int(sys.argv[3])
config = get_config()
_, eval_env, train, _ = make_env_and_datasets(env_name)
agent = agents['fql'].create(0, train['observations'][:1], train['actions'][:1], config)
evaluate(agent, eval_env, config=config, num_eval_episodes=1)  # compile
t = time.perf_counter()
stats, _, _ = evaluate(agent, eval_env, config=config, num_eval_episodes=episodes)
print('RESULT ' + json.dumps(dict(seconds=time.perf_counter() - t, episodes=episodes, jax=jax.__version__)))
"""


def worker(
    env_name: str,
    agent: str,
    mode: str,
    episodes: int,
    workers: int,
    dataset_dir: str,
    overrides: dict,
    generate_episodes: int = 100,
) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import agents
    import envs
    from agents.common.trainer import Learner
    from envs.evaluation import EnvPool, run_episodes

    task = envs.make_task(env_name, dataset_dir=dataset_dir, download=False, generate_episodes=generate_episodes)
    mod = agents.get_agent(agent)
    config = agents.get_config(agent)
    for k, v in overrides.items():  # --set KEY=VALUE (checked by benchmark.py before anything runs)
        config[k] = v
    learner = Learner(mod, config, task.obs_dim, task.action_dim)
    params = learner.init(jax.random.PRNGKey(0)).params
    variants = mod.eval_variants(config) if hasattr(mod, 'eval_variants') else [('', {})]
    V, key = len(variants), jax.random.PRNGKey(1)
    kws = [tuple(sorted(kw.items())) for _, kw in variants]

    def act_for(vs):
        def act(obs, ep, calls):  # groups = the variants vs
            return np.stack(
                [
                    np.asarray(learner.act_episodes(params, obs[i], key, ep[i], calls[i], 0.0, kws[v]))
                    for i, v in enumerate(vs)
                ]
            )

        return act

    pool = EnvPool(task.make_env, 0, workers)
    if mode == 'sequential':
        width, passes = 1, [[v] for v in range(V)]
    else:
        width, passes = pool.width(V, episodes), [list(range(V))]
    t0 = time.perf_counter()
    pool.size(len(passes[0]) * width)
    make_s = time.perf_counter() - t0
    for vs in passes:  # compile every variant's call at this width
        obs = jnp.zeros((width, task.obs_dim))
        for v in vs:
            jax.block_until_ready(
                learner.act_episodes(
                    params, obs, key, jnp.zeros(width, jnp.int32), jnp.zeros(width, jnp.int32), 0.0, kws[v]
                )
            )
    calls, steps = [0], [0]

    def counted(act):
        def f(obs, ep, c):
            calls[0] += obs.shape[0]
            return act(obs, ep, c)

        return f

    class Count:  # counts environment steps around the pool
        def __getattr__(self, name):
            return getattr(pool, name)

        def step(self, items):
            steps[0] += len(items)
            return pool.step(items)

    t0 = time.perf_counter()
    lengths = []
    for vs in passes:
        outs = run_episodes(
            Count(), counted(act_for(vs)), len(vs), episodes, [10_000] * len(vs), task.score, 1, False, width=width
        )
        lengths += [o['length'] for o in outs]
    seconds = time.perf_counter() - t0
    pool.close()
    out = dict(
        env=env_name,
        agent=agent,
        mode=mode,
        workers=workers,
        episodes=episodes,
        variants=V,
        width=width,
        seconds=seconds,
        make_s=make_s,
        policy_calls=calls[0],
        env_steps=steps[0],
        mean_length=float(np.mean(lengths)),
        bytes_per_env=pool.bytes_per_env,
        jax=jax.__version__,
        platform=jax.devices()[0].platform,
        device=str(jax.devices()[0].device_kind),
        glibc_tunables=os.environ.get('GLIBC_TUNABLES', ''),  # the heap it ran on (benchmark.WORKER_ENV)
    )
    print('RESULT ' + json.dumps(out))


def task_name(env_name: str) -> str:
    """The table's task column: the env name without its single-task suffix."""
    return env_name.split('-singletask')[0]


def run_result(cmd, env=None, deadline: float | None = None) -> tuple[dict | None, str]:
    """Run one measuring subprocess and read its `RESULT {json}` line: (result, '') or (None, why), why being
    'failed' (its stderr's tail is printed), 'deadline' (not started: the deadline, a time.monotonic() value, had
    passed) or 'stopped at the deadline' (killed when it came)."""
    timeout = None
    if deadline is not None:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return None, 'deadline'
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f'STOPPED at the deadline: {" ".join(cmd[:6])} ...', file=sys.stderr)
        return None, 'stopped at the deadline'
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode != 0 or not line:
        print(f'FAILED: {" ".join(cmd[:6])} ...\n{proc.stderr[-2000:]}', file=sys.stderr)
        return None, 'failed'
    return json.loads(line[0][7:]), ''


def write_json(path: str | None, payload: dict) -> None:
    """The rows measured so far (rewritten after every row, so a run stopped from outside keeps them)."""
    if path:
        with open(path, 'w') as f:
            json.dump(payload, f, indent=1)


def run(a, machine, env: dict | None = None) -> None:
    """`machine(row)`: the machine line from a worker's row; `env`: the workers' environment (benchmark.py passes a
    main.py run's, huge pages included); None: this one."""
    base = dict(os.environ if env is None else env)
    env_names = [x for x in a.eval_envs_names.split(',') if x]
    agent_names = [x for x in a.eval_agents.split(',') if x]
    workers = [int(w) for w in a.eval_workers.split(',') if w]
    deadline = deadline_at(a.deadline_s)
    rows, missing = [], []
    for env_name in env_names:
        for agent in agent_names:
            modes = [('sequential', 0, a.seq_episodes), ('lockstep', 0, a.episodes)]
            modes += [('lockstep', w, a.episodes) for w in workers if w > 0]
            for mode, w, n in modes:
                cmd = [
                    sys.executable,
                    os.path.join(ROOT, 'scripts', 'benchmark.py'),
                    '--eval_worker',
                    env_name,
                    agent,
                    mode,
                    str(n),
                    str(w),
                    f'--dataset_dir={a.dataset_dir}',
                    f'--generate_episodes={a.generate_episodes}',
                    *[f'--set={x}' for x in a.set],
                ]
                path = os.pathsep.join(x for x in (ROOT, base.get('PYTHONPATH')) if x)  # keep packages put there
                r, why = run_result(cmd, dict(base, PYTHONPATH=path), deadline)
                if why:
                    missing.append(
                        f'{task_name(env_name)} {agent} {mode}' + (f' + {w} workers' if w else '') + f' ({why})'
                    )
                if r:
                    r['seconds_50'] = r['seconds'] * a.episodes / n
                    rows.append(r)
                    write_json(a.json, {'rows': rows, 'missing': missing})
                    print(
                        f'{env_name} {agent} {mode} workers={w}: {r["seconds_50"]:.1f} s per {a.episodes} episodes '
                        f'(width {r["width"]}, make {r["make_s"]:.1f} s)',
                        flush=True,
                    )
            if agent == 'fql' and a.released_fql:
                cmd = [a.released_python, '-c', OFFICIAL, a.released_fql, env_name, str(a.seq_episodes)]
                gl = dict(base, MUJOCO_GL=base.get('MUJOCO_GL', 'egl'))  # it reads ~/.ogbench/data
                r, why = run_result(cmd, gl, deadline)
                if why:
                    missing.append(f'{task_name(env_name)} fql official ({why})')
                if r:
                    rows.append(
                        dict(
                            env=env_name,
                            agent='fql',
                            mode='official',
                            workers=0,
                            episodes=r['episodes'],
                            variants=1,
                            width=1,
                            seconds=r['seconds'],
                            seconds_50=r['seconds'] * a.episodes / r['episodes'],
                            make_s=None,
                            mean_length=None,
                            jax=r['jax'],
                        )
                    )
                    write_json(a.json, {'rows': rows, 'missing': missing})
                    print(f'{env_name} fql official: {rows[-1]["seconds_50"]:.1f} s', flush=True)
    write_json(a.json, {'rows': rows, 'missing': missing})
    desc = machine(next((r for r in rows if r['mode'] != 'official'), None))
    lines = [
        f'## Evaluation: one {a.episodes}-episode evaluation, sequential vs lockstep ({desc})',
        '',
        f'Command: `python scripts/benchmark.py --eval --eval_agents={a.eval_agents} --episodes={a.episodes} '
        f'--seq_episodes={a.seq_episodes} --eval_workers={a.eval_workers}'
        + ''.join(f" --set '{x}'" for x in a.set)
        + '`'
        + (' with `--released_fql=<checkout> --released_python=<its venv>`' if a.released_fql else '')
        + '. Freshly initialized policies ('
        + ('agent configs overridden as in the command' if a.set else 'paper networks, 4 x 512')
        + '), so every episode runs to the time limit; sequential and '
        f'official rows played {a.seq_episodes} episodes, scaled to {a.episodes}. Seconds exclude compilation and '
        'environment creation (its own column). VGF evaluates its L_test variants (default 0, 1, 2, 3) together.',
        '',
        '| task | agent | mode | envs in lockstep | seconds | speed-up vs sequential | policy calls '
        '| env creation (s) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        base = [x for x in rows if x['env'] == r['env'] and x['agent'] == r['agent'] and x['mode'] == 'sequential']
        speed = f'{base[0]["seconds_50"] / r["seconds_50"]:.1f}x' if base else '-'
        mode = r['mode'] + (f' + {r["workers"]} workers' if r['workers'] else '')
        if r['mode'] == 'official':
            mode = f'official FQL evaluate() (jax {r["jax"]})'
        calls = f'{r["policy_calls"] * a.episodes // r["episodes"]:,}' if r.get('policy_calls') else '-'
        lock = r['width'] * r['variants'] if r['mode'] == 'lockstep' else 1
        make = '-' if r['make_s'] is None else f'{r["make_s"]:.1f}'
        task = task_name(r['env'])
        lines.append(
            f'| {task} | {r["agent"]} | {mode} | {lock} | {r["seconds_50"]:.1f} | {speed} | {calls} | {make} |'
        )
    if missing:
        lines += ['', 'Not measured: ' + '; '.join(missing) + '.']
    text = '\n'.join(lines) + '\n'
    print(text)
    if a.write:
        with open(a.out, 'a') as f:
            f.write('\n' + text)
