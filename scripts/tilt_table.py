"""The tilt-fidelity benchmark (envs/tilt.py): agents x tasks x betas x seeds, with a learned or an oracle critic;
writes results/tilt_fidelity.md, a TV-vs-beta plot per task and, for the 2-D tasks, a panel of policy samples over
the target density.

    python scripts/tilt_table.py                          # the default grid (about an hour on 2 CPU cores)
    python scripts/tilt_table.py --list                   # the main.py commands it would run
    python scripts/tilt_table.py --agents=fav,qam --tasks=tilt-ring-d2 --modes=oracle --steps=2000 --seeds=3
    python scripts/tilt_table.py --agents=all --tasks=all # every agent with a tilt mapping, every task (hours)

Runs go through scripts/sweep.py (local runner, seeds vmapped in one process, finished runs skipped, interrupted
ones resumed): interrupt and re-run to continue. Temperatures: an agent whose loss has the tilt's inverse temperature
(TEMPERATURE) is run once per beta with that key set to beta; the others are run once per task and read against the
target at every beta (their evaluation reports each beta's metrics), at their default and at a small sweep of their
main knob (KNOBS; the knob rows run with the oracle critic only, where they measure the extraction alone).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import agents as agents_lib  # noqa: E402
from envs import tilt  # noqa: E402

# agent -> (config key set to beta, what it means). With it the agent's own target is pi_beta exp(beta Q).
TEMPERATURE = {
    'iql': ('alpha', 'AWR weight exp(alpha (Q - V)): alpha = beta (acts with its mean action at evaluation)'),
    'fav': ('beta', 'beta of p(a|s) exp(beta Q) (FAV Eq. (1))'),
    'fav_adaptive': ('beta', "beta of FAV Eq. (1), bandwidth by Scott's rule"),
    'qam': ('inv_temp', 'inverse temperature of the tilted flow (QAM Eq. (5))'),
    'qam_fql': ('inv_temp', 'inverse temperature (QAM-FQL)'),
    'qam_edit': ('inv_temp', 'inverse temperature (QAM-EDIT)'),
    'fawac': ('inv_temp', 'advantage weight min(exp(inv_temp (Q - V)), 100) of flow matching'),
    'cgql': ('inv_temp', 'classifier guidance toward pi_beta exp(inv_temp Q) (QAM App. D)'),
}
# Agents without an exact temperature: their default, plus one row per value of their main knob.
KNOBS = {
    'fql': ('alpha', [1.0, 100.0]),  # distillation weight (default 10)
    'rebrac': ('alpha_actor', [0.01, 1.0]),  # actor BC weight (default 0 = TD3; FAV Table 6: 0.003-1)
    # Transport budget at test time, L_test (default: L_test = L_train = 1). On these one-step bandits L_train acts only
    # through the TD target's next action, which the mask zeroes (and the oracle critic is not trained): not a knob.
    'vgf': ('test_vgf_steps', [10]),
    'ifql': ('num_samples', [4, 128]),  # best-of-N (default 32)
    'fbrac': ('alpha', [10.0, 1000.0]),  # Q weight 1 / alpha (default 100)
}
# The default grid (108 runs of 3 vmapped seeds, about an hour on 2 idle CPU cores); `all` takes every agent / task.
DEFAULT_AGENTS = ('iql', 'fql', 'rebrac', 'fav', 'qam', 'vgf')
DEFAULT_TASKS = ('tilt-8gaussians-d2', 'tilt-ctx-ring-d2', 'tilt-gmm-d8')
MODES = ('oracle', 'learned')


def task_name(task: str, beta: float, mode: str) -> str:
    return f'{task}-b{beta:g}' + ('-oracle' if mode == 'oracle' else '')


def sweep_spec(a) -> list[dict]:
    """The runs as scripts/sweep.py sub-sweeps."""
    flags = {
        'offline_steps': a.steps,
        'online_steps': 0,
        'eval_interval': 0,  # one evaluation, at the end
        'log_interval': max(a.steps // 4, 1),
        'save_interval': a.steps,
        'agent.actor_hidden_dims': tuple(a.hidden),
        'agent.value_hidden_dims': tuple(a.hidden),
        'agent.batch_size': a.batch_size,
    }
    subs = []
    for agent in a.agents:
        for mode in a.modes:
            if agent in TEMPERATURE:
                key = TEMPERATURE[agent][0]
                for beta in a.betas:
                    envs = [task_name(t, beta, mode) for t in a.tasks]
                    subs.append(dict(agents=[agent], envs=envs, seeds=a.seeds, flags={**flags, f'agent.{key}': beta}))
            else:
                envs = [task_name(t, 1.0, mode) for t in a.tasks]
                subs.append(dict(agents=[agent], envs=envs, seeds=a.seeds, flags=flags))
                if agent in KNOBS and a.knobs and mode == 'oracle':
                    key, values = KNOBS[agent]
                    for v in values:  # one sub-sweep per value: the row name is known when reading it back
                        subs.append(
                            dict(agents=[agent], envs=envs, seeds=a.seeds, grid={f'agent.{key}': [v]}, flags=flags)
                        )
    return subs


def run_sweep(a, subs, extra: list[str]) -> int:
    os.makedirs(a.save_dir, exist_ok=True)
    path = os.path.join(a.save_dir, '_tilt_sweep.json')
    with open(path, 'w') as f:
        json.dump({'sweep': subs, 'save_dir': a.save_dir, 'name': 'tilt'}, f, indent=1)
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'sweep.py'), path, f'--num_seeds={a.seeds}', *extra]
    print('$ ' + ' '.join(cmd[1:]), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


# ---- reading the runs -----------------------------------------------------------------------------------------------
def _final(path):
    try:
        with open(os.path.join(path, 'final.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def bootstrap_ci(x, n_boot=2000, seed=0):
    """Mean and 95% percentile-bootstrap interval over seeds."""
    from scripts.aggregate import bootstrap_ci as ci

    x = np.asarray(x, float)
    lo, hi = ci(x, n_boot=n_boot, seed=seed)
    return float(x.mean()), lo, hi


def collect(a) -> dict:
    """{(mode, task, row, beta): {'tv': [...], 'ed': [...], 'reward': [...], 'off': [...], 'dirs': [...]}}; a row is
    the agent, or agent@key=value for a knob."""
    from scripts.sweep import expand

    out, a.missing, a.expected = {}, [], 0
    for sub in sweep_spec(a):
        for run in expand([sub], a.save_dir):
            a.expected += 1
            fin = _final(run.path)
            if fin is None:
                a.missing.append(os.path.basename(run.path))
                continue
            spec = tilt.parse_name(run.env)
            mode = 'oracle' if spec.oracle else 'learned'
            task = f'tilt-{spec.family}-d{spec.dim}'
            row = run.agent + ''.join(f'@{k.removeprefix("agent.")}={v[0]:g}' for k, v in sub.get('grid', {}).items())
            ev = fin['last_eval']
            betas = [spec.beta] if run.agent in TEMPERATURE else list(a.betas)
            for b in betas:
                pre = '' if b == spec.beta else f'beta{b:g}/'
                cell = out.setdefault((mode, task, row, b), {'tv': [], 'ed': [], 'reward': [], 'off': [], 'dirs': []})
                cell['tv'].append(float(ev[pre + 'tv_distance']))
                cell['ed'].append(float(ev[pre + 'energy_distance']))
                cell['reward'].append(float(ev['mean_reward']))
                cell['off'].append(float(ev['off_support_fraction']))
                cell['dirs'].append(run.path)
    return out


# ---- the report -----------------------------------------------------------------------------------------------------
def _fmt(vals):
    m, lo, hi = bootstrap_ci(vals)
    return f'{m:.3f}' if np.isnan(lo) else f'{m:.3f} [{lo:.3f}, {hi:.3f}]'


def plot_tv(cells, mode, task, rows, betas, path):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colors = {base: plt.cm.tab10(i % 10) for i, base in enumerate(dict.fromkeys(r.split('@')[0] for r in rows))}
    seen = {}
    for row in rows:
        pts = [(b, bootstrap_ci(cells[(mode, task, row, b)]['tv'])) for b in betas if (mode, task, row, b) in cells]
        if not pts:
            continue
        x = [b for b, _ in pts]
        y = np.array([m for _, (m, _, _) in pts])
        lo = np.array([m - lo if not np.isnan(lo) else 0 for _, (m, lo, _) in pts])
        hi = np.array([hi - m if not np.isnan(hi) else 0 for _, (m, _, hi) in pts])
        base = row.split('@')[0]
        style = ('-', '--', ':', '-.')[seen.setdefault(base, -1) + 1]
        seen[base] += 1
        ax.errorbar(x, y, yerr=[lo, hi], marker='o', ms=3, capsize=2, ls=style, color=colors[base], label=row)
    spec = tilt.parse_name(task)
    beh = tilt._base(spec.family, spec.dim).sample(tilt.NUM_EVAL, np.random.default_rng(5))
    ax.plot(
        betas,
        [tilt.metrics(spec.family, spec.dim, b, beh)['tv_distance'] for b in betas],
        color='grey',
        ls=':',
        marker='x',
        label='behavior data',
    )
    ax.set_xscale('log')
    ax.set_xticks(betas, [f'{b:g}' for b in betas])
    ax.minorticks_off()
    ax.set_xlabel('beta')
    ax.set_ylabel('TV to the exact target')
    ax.set_ylim(0, 1)
    ax.set_title(f'{task} ({mode} critic)')
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples(cells, mode, task, rows, beta, path):
    """Policy samples (seed 0, un-rotated for contextual tasks) over the target density at `beta`, one panel each."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    spec = tilt.parse_name(task_name(task, beta, mode))
    g = tilt.grid_target(spec.family.removeprefix('ctx-'), beta)
    dens = np.sqrt(g.probs.reshape(tilt.GRID, tilt.GRID).T)  # sqrt: the faint modes stay visible
    panels = [r for r in rows if (mode, task, r, beta) in cells]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.2 * (len(panels) + 1), 2.6), squeeze=False)
    axes = axes[0]
    for ax, row in zip(axes, [None, *panels]):
        ax.imshow(dens, origin='lower', extent=(-1, 1, -1, 1), cmap='Greys')
        if row is None:
            ax.set_title(f'target, beta={beta:g}', fontsize=7)
        else:
            samples = np.load(os.path.join(cells[(mode, task, row, beta)]['dirs'][0], 'policy_samples.npy'))
            if spec.contextual:
                obs = tilt.eval_observations(spec).astype(np.float64)
                samples = tilt._rotate(samples.astype(np.float64), obs[:, 0], -obs[:, 1])
            tv = cells[(mode, task, row, beta)]['tv'][0]
            ax.scatter(samples[:2000, 0], samples[:2000, 1], s=0.5, alpha=0.4, color='tab:red')
            ax.set_title(f'{row}\nTV {tv:.2f}', fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(a, cells) -> str:
    figdir = a.out + '_figures'
    os.makedirs(figdir, exist_ok=True)
    rel = os.path.relpath(figdir, os.path.dirname(a.out) or '.')
    cmd = (
        f'python scripts/tilt_table.py --agents={",".join(a.agents)} --tasks={",".join(a.tasks)} '
        f'--betas={",".join(f"{b:g}" for b in a.betas)} --modes={",".join(a.modes)} --seeds={a.seeds} '
        f'--steps={a.steps} --hidden={",".join(map(str, a.hidden))} --batch_size={a.batch_size}'
        + ('' if a.knobs else ' --no-knobs')
        + (f' --notes={os.path.relpath(a.notes, ROOT)}' if getattr(a, 'notes', None) else '')
    )
    lines = [
        "# Tilt fidelity: distance of each agent's policy to the exact Q-tilted target pi_beta exp(beta r)",
        '',
        f'Made by `{cmd}`. {a.steps} offline gradient steps, networks {tuple(a.hidden)}, batch {a.batch_size}, '
        f'{a.seeds} seeds (vmapped); one evaluation at the end on {tilt.NUM_EVAL:,} policy samples (contextual tasks: '
        f'{tilt.NUM_EVAL_STATES} held-out states). Cells: mean over seeds [95% bootstrap interval]. TV: total '
        'variation between region occupancies (lower is better); ED: energy distance to exact target samples; '
        'off-support: the share of policy samples where the behavior density is below its own 0.1% quantile (the '
        "exact target's share in its row). "
        '`oracle`: the critic is the true reward (extraction error alone); `learned`: the agent trains its own '
        'critic on the data.',
        '',
    ]
    if a.missing:  # say so, and what is missing: rerunning the command finishes them (the sweep resumes)
        lines += [
            f'**PARTIAL: {a.expected - len(a.missing)} of {a.expected} runs finished** (the grid was stopped; '
            'rerunning the command above runs only the missing ones). Missing cells are `-`; missing runs: '
            + ', '.join(f'`{m}`' for m in a.missing if m.endswith('seed0'))
            + ' (and their other seeds).',
            '',
        ]
    lines += [
        '**How temperatures map to beta.** '
        + '; '.join(f'`{k}`: `{v[0]}` = beta ({v[1]})' for k, v in TEMPERATURE.items() if k in a.agents)
        + '. Agents without an exact temperature are trained once per task and compared to the target at every '
        'beta: '
        + '; '.join(
            f'`{k}` at its default and `{KNOBS[k][0]}` in {KNOBS[k][1]}' if k in KNOBS and a.knobs else f'`{k}`'
            for k in a.agents
            if k not in TEMPERATURE
        )
        + '.',
        '',
    ]
    for task in a.tasks:
        spec = tilt.parse_name(task)
        lines += [f'## {task}', '']
        for mode in a.modes:
            rows = sorted({r for (m, t, r, _) in cells if (m, t) == (mode, task)}, key=lambda r: (r.split('@')[0], r))
            if not rows:
                continue
            lines += [f'**{mode} critic**', '']
            lines.append(
                '| agent | ' + ' | '.join(f'TV, beta={b:g}' for b in a.betas) + ' | ED, beta=1 | off-support, beta=1 |'
            )
            lines.append('|---|' + '---|' * (len(a.betas) + 2))
            for row in rows:
                tvs = [
                    _fmt(cells[(mode, task, row, b)]['tv']) if (mode, task, row, b) in cells else '-' for b in a.betas
                ]
                c1 = cells.get((mode, task, row, 1.0))
                ed = _fmt(c1['ed']) if c1 else '-'
                # off-support of the run at beta = 1 (an agent without a temperature has one run for every beta)
                c_off = c1 or next(cells[k] for k in cells if k[:3] == (mode, task, row))
                off = f'{np.mean(c_off["off"]):.3f}'
                lines.append(f'| {row} | ' + ' | '.join(tvs) + f' | {ed} | {off} |')
            # references: behavior samples and the exact target
            beh = tilt._base(spec.family, spec.dim).sample(tilt.NUM_EVAL, np.random.default_rng(5))
            ref = [tilt.metrics(spec.family, spec.dim, b, beh)['tv_distance'] for b in a.betas]
            lines.append('| behavior data | ' + ' | '.join(f'{x:.3f}' for x in ref) + ' | | |')
            tgt_off = tilt._target_off_support(spec.family, spec.dim, 1.0)
            lines.append('| exact target | ' + ' | '.join('0' for _ in a.betas) + f' | 0 | {tgt_off:.3f} (beta=1) |')
            png = f'{task}_{mode}_tv.png'
            plot_tv(cells, mode, task, rows, a.betas, os.path.join(figdir, png))
            lines += ['', f'![TV vs beta]({rel}/{png})', '']
            if spec.dim == 2:
                beta = 3.0 if 3.0 in a.betas else a.betas[-1]
                png = f'{task}_{mode}_samples_b{beta:g}.png'
                plot_samples(cells, mode, task, rows, beta, os.path.join(figdir, png))
                lines += [f'![samples at beta={beta:g}]({rel}/{png})', '']
    return '\n'.join(lines) + '\n'


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--agents', default=','.join(DEFAULT_AGENTS), help='Comma-separated, or `all`.')
    p.add_argument('--tasks', default=','.join(DEFAULT_TASKS), help='Base task names, or `all` (BENCHMARK_TASKS).')
    p.add_argument('--betas', default=','.join(f'{b:g}' for b in tilt.BETAS))
    p.add_argument('--modes', default=','.join(MODES))
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--hidden', default='128,128', help='Hidden sizes of every network.')
    p.add_argument('--batch_size', type=int, default=256)
    p.add_argument('--knobs', action=argparse.BooleanOptionalAction, default=True, help='Rows of KNOBS values.')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--list', action='store_true', help='Print the commands that would run, and exit.')
    p.add_argument('--report_only', action='store_true', help='Only write the report from finished runs.')
    p.add_argument('--save_dir', default=os.path.join(ROOT, 'runs', 'tilt'))
    p.add_argument('--out', default=os.path.join(ROOT, 'results', 'tilt_fidelity'))
    p.add_argument('--notes', default=None, help='A Markdown file appended to the report (findings, written by hand).')
    a = p.parse_args()
    a.agents = [*TEMPERATURE, *KNOBS] if a.agents == 'all' else [x for x in a.agents.split(',') if x]
    a.tasks = list(tilt.BENCHMARK_TASKS) if a.tasks == 'all' else [x for x in a.tasks.split(',') if x]
    for agent in a.agents:
        agents_lib.check_name(agent)
    a.betas = [float(x) for x in a.betas.split(',')]
    a.modes = [x for x in a.modes.split(',') if x]
    a.hidden = [int(x) for x in a.hidden.split(',')]
    for t in a.tasks:
        spec = tilt.parse_name(t)
        if spec.beta != 1.0 or spec.oracle or t != f'tilt-{spec.family}-d{spec.dim}':
            raise SystemExit(f'--tasks takes base names (tilt-<family>-d<dim>), got {t!r}: betas and modes are flags.')
    bad = [m for m in a.modes if m not in MODES]
    if bad:
        raise SystemExit(f'Unknown mode(s) {bad}; valid: {", ".join(MODES)}.')
    subs = sweep_spec(a)
    if a.list:
        return run_sweep(a, subs, ['--list'])
    if not a.report_only:
        rc = run_sweep(a, subs, ['--runner=local', f'--workers={a.workers}'])
        if rc != 0:
            print(f'[tilt_table] some runs failed (sweep exit {rc}); the report holds the finished ones', flush=True)
    text = report(a, collect(a))
    if a.notes:
        with open(a.notes) as f:
            text += '\n' + f.read()
    with open(a.out + '.md', 'w') as f:
        f.write(text)
    print(text)
    print(f'[tilt_table] wrote {a.out}.md; figures in {a.out}_figures/', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
