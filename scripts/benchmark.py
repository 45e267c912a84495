"""Throughput benchmark: ms per gradient update at batch 256 with the paper networks (4 x 512 GELU), median of
repeats after compilation, compile time, peak host / device memory; for --updates_per_call=1, the fused default, and
--num_seeds=1,4,8 (ms per seed-update).

    python scripts/benchmark.py                              # all agents, writes results/throughput.md
    python scripts/benchmark.py --agents=fql,iql --repeats=5 --upc=1,20 --seeds=1 --no-write
    python scripts/benchmark.py --agents=fql --seeds=1 --upc=20 --set 'actor_hidden_dims=(256,256)' \
        --set 'value_hidden_dims=(256,256)' --no-write     # a reduced configuration (agent config overrides)
    python scripts/benchmark.py --eval                       # evaluation: sequential vs lockstep (eval_benchmark.py)

Each (agent, setting) runs in a fresh subprocess so compile time and peak memory are its own. Data: random
transitions with the shapes of cube-single-play (observation 28, action 5); speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'scripts'))

import eval_benchmark  # noqa: E402

from runner.hugepages import glibc_version, hugepage_env, thp_mode  # noqa: E402

DEFAULT_UPC = 20  # keep in sync with main.py --updates_per_call


def parse_overrides(items: list[str]) -> dict:
    """`KEY=VALUE` agent config overrides (VALUE a Python literal, else a string), as main.py's --agent.KEY=VALUE."""
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise SystemExit(f'--set expects KEY=VALUE, got {item!r}')
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def overridden_config(agent: str, overrides: dict):
    """The agent's default config with `overrides` applied; unknown keys are an error that lists the valid ones."""
    import agents

    config = agents.get_config(agent)
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise SystemExit(f'--set: {agent} has no config key {unknown}; its keys: {", ".join(sorted(config))}')
    for key, value in overrides.items():
        config[key] = value  # ConfigDict checks the type
    return config


def worker(
    agent: str,
    upc: int,
    num_seeds: int,
    repeats: int,
    obs_dim: int,
    act_dim: int,
    steps_per_repeat: int,
    overrides: dict,
):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import agents
    from agents.common import buffer as buffer_lib
    from agents.common.trainer import Learner

    config = overridden_config(agent, overrides)
    mod = agents.get_agent(agent)
    n = 100_000
    rng = np.random.default_rng(0)
    ds = dict(
        observations=rng.normal(size=(n, obs_dim)),
        actions=rng.uniform(-1, 1, (n, act_dim)),
        rewards=-rng.uniform(size=n),
        masks=np.ones(n),
        terminals=(np.arange(n) % 1000 == 999),
        next_observations=rng.normal(size=(n, obs_dim)),
    )
    ds = {k: np.asarray(v, np.float32) for k, v in ds.items()}
    consts = mod.constants(config, ds) if hasattr(mod, 'constants') else {}
    learner = Learner(mod, config, obs_dim, act_dim, consts)
    buf = buffer_lib.make_buffer(ds)
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    if num_seeds == 1:
        state = learner.init(keys[0])

        def call(s):
            return learner.train_steps(s, buf, upc)
    else:
        state = learner.init_seeds(keys)

        def call(s):
            return learner.train_steps_seeds(s, buf, upc)

    calls = max(1, steps_per_repeat // upc)
    t0 = time.perf_counter()
    state, info = call(state)
    jax.block_until_ready(info)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            state, info = call(state)
        jax.block_until_ready((state, info))
        times.append((time.perf_counter() - t0) / (calls * upc))
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, 'memory_stats') else None
    peak_dev = (stats or {}).get('peak_bytes_in_use')
    ms = 1000 * float(np.median(times))
    out = dict(
        agent=agent,
        upc=upc,
        num_seeds=num_seeds,
        ms_per_update=ms,
        ms_per_seed_update=ms / num_seeds,
        ms_all=[1000 * t for t in times],
        compile_s=compile_s,
        steps_timed=calls * upc,
        peak_host_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_device_mb=None if peak_dev is None else peak_dev / 2**20,
        device=str(dev.device_kind),
        platform=dev.platform,
        jax=jax.__version__,
        finite=bool(float(jnp.min(info['finite'])) == 1.0),
        num_params=int(sum(x.size for x in jax.tree_util.tree_leaves(state.params)) // num_seeds),
        overrides=overrides,
        glibc_tunables=os.environ.get('GLIBC_TUNABLES', ''),
    )
    print('RESULT ' + json.dumps(out))


# seohongpark/fql's own training step, timed as its main.py runs it: a numpy batch sampled on the host, then the
# jitted agent.update (ReBRAC: full_update on every actor_freq-th step, counted from 1).
OFFICIAL_AGENTS = ('fql', 'iql', 'rebrac')
OFFICIAL_UPDATE = r"""
import importlib, json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import jax, numpy as np
from agents import agents
from utils.datasets import Dataset
name = sys.argv[2]
repeats, steps, obs_dim, act_dim = (int(x) for x in sys.argv[3:7])
overrides = json.loads(sys.argv[7])
config = importlib.import_module('agents.' + name).get_config()
for k, v in overrides.items():
    config[k] = v
n, rng = 100_000, np.random.default_rng(0)
ds = Dataset.create(
    observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
    actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
    rewards=-rng.uniform(size=n).astype(np.float32),
    masks=np.ones(n, np.float32),
    terminals=(np.arange(n) % 1000 == 999).astype(np.float32),
    next_observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
)
ds.return_next_actions = name == 'rebrac'
agent = agents[name].create(0, ds['observations'][:1], ds['actions'][:1], config)
i = 0
def step():
    global agent, i
    i += 1
    batch = ds.sample(config['batch_size'])
    if name == 'rebrac':
        agent, info = agent.update(batch, full_update=(i % config['actor_freq'] == 0))
    else:
        agent, info = agent.update(batch)
    return info
t = time.perf_counter()
jax.block_until_ready((step(), step()))
compile_s = time.perf_counter() - t
times = []
for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(steps):
        info = step()
    jax.block_until_ready((agent, info))
    times.append((time.perf_counter() - t) / steps)
print('RESULT ' + json.dumps(dict(ms_per_update=1000 * float(np.median(times)), ms_all=[1000 * x for x in times],
    compile_s=compile_s, jax=jax.__version__, peak_host_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def official_update(a, name: str, overrides: dict, deadline: float | None) -> tuple[dict | None, str]:
    """ms per update of seohongpark/fql's `name` agent (its own loop), same shapes, batch and networks."""
    cmd = [a.released_python, '-c', OFFICIAL_UPDATE, a.released_fql, name, str(a.repeats), str(a.steps_per_repeat)]
    cmd += [str(a.obs_dim), str(a.act_dim), json.dumps(overrides)]
    r, why = eval_benchmark.run_result(cmd, WORKER_ENV, deadline)  # the same heap as tiltbench's workers
    if r is not None:
        r.update(agent=name, official=True, upc=1, num_seeds=1, ms_per_seed_update=r['ms_per_update'])
    return r, why


def machine_description(row: dict | None) -> str:
    """The machine line: this host's CPU, and the jax version and device a worker reported in `row` (this process
    never starts jax's backend: on an accelerator it would hold device memory the workers need)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = [ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')]
        if names:
            cpu = names[0]
    except OSError:
        pass
    tunables = (WORKER_ENV or os.environ).get('GLIBC_TUNABLES')
    jax_line = f'jax {row["jax"]} on {row["platform"]} ({row["device"]})' if row else 'no worker reported a device'
    return (
        f'{cpu}, {os.cpu_count()} cores; {jax_line}; '
        f'Python {platform.python_version()}; transparent huge pages {thp_mode()}, '
        + (f'GLIBC_TUNABLES={tunables}' if tunables else 'GLIBC_TUNABLES unset')
    )


# The workers' environment: a main.py run's (main.py re-executes itself with glibc's heap on huge pages where that
# helps, runner/hugepages.py), so the figures are a run's. None: this process's environment as it is.
WORKER_ENV = hugepage_env(os.environ, glibc_version(), thp_mode())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--agents', default='iql,rebrac,fql,fav,fav_adaptive,qam,qam_fql,qam_edit,vgf')
    p.add_argument('--upc', default=f'1,{DEFAULT_UPC}', help='updates_per_call values (num_seeds=1)')
    p.add_argument('--seeds', default='1,4,8', help='num_seeds values (with the default updates_per_call)')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--steps_per_repeat', type=int, default=40, help='gradient steps timed per repeat')
    p.add_argument('--obs_dim', type=int, default=28)
    p.add_argument('--act_dim', type=int, default=5)
    p.add_argument('--out', default=os.path.join(ROOT, 'results', 'throughput.md'))
    p.add_argument('--title', default=None, help='table title (default: the device)')
    p.add_argument('--append', action='store_true', help='append the table to --out instead of replacing it')
    p.add_argument('--no-write', dest='write', action='store_false')
    p.add_argument('--json', default=None, help='also write the rows (every measured figure) to this JSON file')
    p.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help="agent config override, repeatable (e.g. --set 'actor_hidden_dims=(256,256)' --set batch_size=128)",
    )
    p.add_argument('--worker', nargs=3, metavar=('AGENT', 'UPC', 'SEEDS'), help=argparse.SUPPRESS)
    p.add_argument(
        '--released_fql',
        default=None,
        help='checkout of seohongpark/fql: also time its update() for fql, iql, rebrac (with --eval: its evaluate())',
    )
    p.add_argument('--released_python', default=None, help="the official code's virtualenv python")
    p.add_argument('--rounds', type=int, default=1, help='measure everything this many times, interleaved')
    p.add_argument(
        '--deadline_s',
        type=float,
        default=0,
        help='seconds from the start after which no setting starts and one still running is stopped (0: no limit); '
        'the table lists the settings not measured, and --json is rewritten after every row',
    )
    e = p.add_argument_group('evaluation benchmark (--eval; scripts/eval_benchmark.py)')
    e.add_argument('--eval', action='store_true', help='time evaluations (sequential vs lockstep) instead of updates')
    e.add_argument('--eval_envs_names', default=','.join(eval_benchmark.ENVS))
    e.add_argument('--eval_agents', default='fql,vgf')
    e.add_argument('--eval_workers', default='2', help='worker-process counts measured besides in-process lockstep')
    e.add_argument('--episodes', type=int, default=50, help='episodes of one evaluation')
    e.add_argument('--seq_episodes', type=int, default=10, help='episodes played by sequential and official runs')
    e.add_argument('--dataset_dir', default='~/.ogbench/data')
    e.add_argument(
        '--generate_episodes',
        type=int,
        default=100,
        help='episodes generated for a missing dataset (only the env matters)',
    )
    e.add_argument('--eval_worker', nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.eval_worker:
        env_name, agent, mode, episodes, workers = a.eval_worker
        eval_benchmark.worker(
            env_name,
            agent,
            mode,
            int(episodes),
            int(workers),
            os.path.expanduser(a.dataset_dir),
            parse_overrides(a.set),
            a.generate_episodes,
        )
        return
    if a.eval:
        for name in a.eval_agents.split(','):
            overridden_config(name, parse_overrides(a.set))  # fail before measuring anything
        if a.released_fql and not a.released_python:
            raise SystemExit('--released_fql needs --released_python (a virtualenv that runs the official code).')
        eval_benchmark.run(a, machine_description, WORKER_ENV)
        return
    if a.worker:
        worker(
            a.worker[0],
            int(a.worker[1]),
            int(a.worker[2]),
            a.repeats,
            a.obs_dim,
            a.act_dim,
            a.steps_per_repeat,
            parse_overrides(a.set),
        )
        return

    import agents

    names = [x for x in a.agents.split(',') if x]
    overrides = parse_overrides(a.set)
    for name in names:
        agents.check_name(name)
        overridden_config(name, overrides)  # fail before measuring anything
    settings = [(int(u), 1) for u in a.upc.split(',') if u]
    settings += [(DEFAULT_UPC, int(s)) for s in a.seeds.split(',') if s and int(s) > 1]
    if a.released_fql and not a.released_python:
        raise SystemExit('--released_fql needs --released_python (a virtualenv that runs the official code).')
    deadline = eval_benchmark.deadline_at(a.deadline_s)
    rows, failed, skipped = [], [], []

    def record(label: str, r: dict | None, why: str) -> bool:
        if why == 'failed':
            failed.append(label)
        elif why:
            skipped.append(f'{label} ({why})')
        else:
            rows.append(r)
            eval_benchmark.write_json(a.json, dict(command=sys.argv, rows=rows, failed=failed, skipped=skipped))
        return r is not None

    for name in [n for _ in range(a.rounds) for n in names]:
        if a.released_fql and name in OFFICIAL_AGENTS:
            if record(f'{name} official', *official_update(a, name, overrides, deadline)):
                r = rows[-1]
                print(f'{name:13s} official     {r["ms_per_update"]:8.2f} ms/update  (jax {r["jax"]})', flush=True)
        for upc, seeds in settings:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                '--worker',
                name,
                str(upc),
                str(seeds),
                f'--repeats={a.repeats}',
                f'--steps_per_repeat={a.steps_per_repeat}',
                f'--obs_dim={a.obs_dim}',
                f'--act_dim={a.act_dim}',
                *[f'--set={x}' for x in a.set],
            ]
            if not record(f'{name} upc={upc} seeds={seeds}', *eval_benchmark.run_result(cmd, WORKER_ENV, deadline)):
                continue
            r = rows[-1]
            print(
                f'{name:13s} upc={upc:3d} seeds={seeds}  {r["ms_per_update"]:8.2f} ms/update  '
                f'{r["ms_per_seed_update"]:8.2f} ms/seed-update  compile {r["compile_s"]:.1f}s  '
                f'host {r["peak_host_mb"]:.0f} MB',
                flush=True,
            )
    desc = machine_description(next((r for r in rows if not r.get('official')), None))
    nets = (
        'paper networks (4 x 512 GELU, 2-head LayerNorm critic unless the agent config says otherwise)'
        if not a.set
        else 'agent config defaults overridden by ' + ', '.join(f'`{x}`' for x in a.set)
    )
    sets = ''.join(f" --set '{x}'" for x in a.set)
    table = [
        f'## {a.title or desc}',
        '',
        f'Machine: {desc}. Batch 256 (unless overridden), {nets}, observation {a.obs_dim}, action {a.act_dim}; '
        f'median of {a.repeats} repeats of '
        f'{a.steps_per_repeat} gradient steps after compilation.',
        '',
        f'Command: `python scripts/benchmark.py --agents={a.agents} --upc={a.upc} --seeds={a.seeds} '
        f'--repeats={a.repeats} --steps_per_repeat={a.steps_per_repeat}{sets}'
        + (f' --rounds={a.rounds}' if a.rounds > 1 else '')
        + (' --released_fql=<checkout> --released_python=<its venv>`' if a.released_fql else '`'),
        '',
        '| agent | updates/call | seeds | ms / update | ms / seed-update | compile (s) | peak host (MB) | '
        'peak device (MB) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        if r.get('official'):
            table.append(
                f'| {r["agent"]} (official code, jax {r["jax"]}) | 1 | 1 | {r["ms_per_update"]:.2f} | '
                f'{r["ms_per_update"]:.2f} | {r["compile_s"]:.1f} | {r["peak_host_mb"]:.0f} | - |'
            )
            continue
        dev = '-' if r['peak_device_mb'] is None else f'{r["peak_device_mb"]:.0f}'
        table.append(
            f'| {r["agent"]} | {r["upc"]} | {r["num_seeds"]} | {r["ms_per_update"]:.2f} | '
            f'{r["ms_per_seed_update"]:.2f} | {r["compile_s"]:.1f} | {r["peak_host_mb"]:.0f} | {dev} |'
        )
    if failed:
        table += ['', 'FAILED (see the error printed by the benchmark): ' + '; '.join(failed)]
    if skipped:
        table += ['', f'Not measured (`--deadline_s={a.deadline_s:g}`): ' + '; '.join(skipped)]
    text = '\n'.join(table) + '\n'
    print('\n' + text)
    if a.write:
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        header = '# Throughput\n\nMade by `scripts/benchmark.py`.\n\n'
        if a.append and os.path.exists(a.out):
            with open(a.out) as f:
                old = f.read()
            text = old.rstrip('\n') + '\n\n' + text
        else:
            text = header + text
        with open(a.out, 'w') as f:
            f.write(text)
    eval_benchmark.write_json(a.json, dict(machine=desc, command=sys.argv, rows=rows, failed=failed, skipped=skipped))
    if failed:
        sys.exit(f'{len(failed)} setting(s) failed: {"; ".join(failed)}')


if __name__ == '__main__':
    main()
