"""Every agent on the FAV toy bandit `toy-8gaussians` with the same steps and seeds, tilted with beta = 1 where the
agent has a temperature; writes results/toy_8gaussians.md (and .csv).

    python scripts/toy_table.py                      # all agents, 20k updates, 3 seeds (vmapped in one process each)
    python scripts/toy_table.py --agents=fav,fql --steps=5000 --seeds=2 --out=/tmp/toy

Runs go to --save_dir (finished runs are reused: main.py --resume). The exact target is p(a) exp(r(a)); TV is the
total-variation distance between the cluster occupancies (nearest center) of 10,000 policy samples and the target.
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

FAV_PRIOR = (
    "; default ref_actions='own' (one KDE reference action per state): on this single-state bandit the prior score "
    'is that of one broad Gaussian, so samples spread between the clusters (high outlier fraction); '
    '`--agent.ref_actions=batch` uses every batch action'
)
# Agent -> (extra main.py flags, what the temperature means). beta = 1 makes the exact target p(a) exp(r(a)).
AGENT_ARGS = {
    'iql': (['--agent.alpha=1'], 'AWR inverse temperature alpha = 1: pi ∝ pi_beta exp(Q - V), exactly the target'),
    'rebrac': ([], 'no temperature (deterministic actor, paper defaults)'),
    'fql': ([], 'alpha = 10 (default); no exact temperature'),
    'fav': (['--agent.beta=1'], 'beta = 1' + FAV_PRIOR),
    'fav_adaptive': (['--agent.beta=1'], "beta = 1, bandwidth by Scott's rule" + FAV_PRIOR),
    'qam': (['--agent.inv_temp=1'], 'inverse temperature 1: the target is exactly the tilted distribution'),
    'qam_fql': (['--agent.inv_temp=1'], 'inverse temperature 1'),
    'qam_edit': (['--agent.inv_temp=1'], 'inverse temperature 1'),
    'qam_fav': (['--agent.inv_temp=1'], "inverse temperature 1; the FAV paper's 2-head QAM"),
    'vgf': ([], 'L_train from --vgf_train_steps; best-of-N after L_test steps'),
    'bc': ([], 'Gaussian BC (std 1), its mean action at evaluation: a point mass'),
    'bc_flow': ([], 'flow BC: should match the behavior data, not the target'),
    'ifql': ([], 'best of N = 32 flow samples by Q; no temperature'),
    'fawac': (['--agent.inv_temp=1'], 'AWR inverse temperature 1 (weights clipped at 100): exactly the target'),
    'fbrac': ([], 'alpha (Q weight 1 / alpha) at its default; no exact temperature'),
    'dsrl': ([], 'SAC in the noise space at its default entropy target; no temperature'),
    'fedit': ([], 'edit within sigma_a at its default; no temperature'),
    'cgql': (['--agent.inv_temp=1'], 'guidance inverse temperature 1'),
    'cgql_mse': (['--agent.inv_temp=1'], 'guidance inverse temperature 1'),
    'cgql_linex': (['--agent.inv_temp=1'], 'guidance inverse temperature 1'),
    'rlpd': (
        [],
        'SAC (RLPD recipe) trained offline on the bandit data, no behavior term (its papers run it online); '
        'tanh of its mean action at evaluation: a point mass',
    ),
}
# Paper-text switches (README's switch table), one extra row each beside the agent's released-code default row:
# agent -> [(row name, extra flags added to the agent's, what the row is)].
SWITCH_ROWS = {
    'qam': [('qam_exact', ['--agent.sde_scheme=exact'], 'exact SDE integrator (`sde_scheme=exact`)')],
    'fav': [('fav_unclamped', ['--agent.unclamped_kde=True'], 'self-normalized KDE of Eq. (6) (`unclamped_kde`)')],
    'vgf': [('vgf_L{L}_nomaxent', ['--agent.maxent=False'], 'w/o MaxEnt (`maxent=False`, the paper text)')],
}


def fav_floor_note(action_dim: int = 2) -> str:
    """Why the FAV `unclamped_kde` row can equal the default here: the released floor of the KDE normalizer Z_p binds
    only where every kernel value is below it, and particles and reference actions both lie in [-1, 1]^d, where
    ||x - r||^2 <= 4 d, so Z_p >= exp(-4 d / tau) whatever the reference set."""
    from agents import fav

    tau = fav.get_config().bandwidth
    smallest = float(np.exp(-4.0 * action_dim / tau))
    if smallest <= fav.KDE_FLOOR:
        return ''
    return (
        f'. On this toy the floor cannot bind: in [-1, 1]^{action_dim} every kernel value is at least '
        f'exp(-{4 * action_dim} / tau) = {smallest:.1e} > {fav.KDE_FLOOR:g} (tau = {tau:g}), so this row can differ '
        'from `fav` only by float rounding'
    )


def run(agent, extra, name, a):
    cmd = [
        sys.executable,
        os.path.join(ROOT, 'main.py'),
        f'--agent={agent}',
        '--env_name=toy-8gaussians',
        f'--offline_steps={a.steps}',
        '--online_steps=0',
        f'--eval_interval={a.steps // 2}',
        '--eval_episodes=50',  # the toy evaluates 10,000 samples whatever this says
        f'--num_seeds={a.seeds}',
        f'--save_dir={a.save_dir}',
        f'--run_name={name}',
        '--resume',
        '--progress=false',
        *extra,
    ]
    print('$ ' + ' '.join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return None
    out = []
    for k in range(a.seeds):
        d = os.path.join(a.save_dir, f'{name}_seed{k}' if a.seeds > 1 else name)
        if not os.path.exists(os.path.join(d, 'final.json')):
            return None
        with open(os.path.join(d, 'final.json')) as f:
            out.append(json.load(f))
    return out, ' '.join(cmd[2:])


def ci95(x):
    x = np.asarray(x, float)
    if len(x) < 2:
        return float('nan')  # printed as '-'
    return float(1.96 * x.std(ddof=1) / np.sqrt(len(x)))


def pm(ci):
    return '' if ci != ci else f' ± {ci:.3f}'


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--agents', default=','.join(AGENT_ARGS))
    p.add_argument('--steps', type=int, default=20_000)
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--vgf_train_steps', default='1,3,5', help='L_train values for VGF (one run each)')
    p.add_argument(
        '--switches',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='Also a row per paper-text switch of SWITCH_ROWS (QAM exact scheme, FAV unclamped KDE, VGF w/o MaxEnt).',
    )
    p.add_argument('--save_dir', default=os.path.join(ROOT, 'runs', 'toy'))
    p.add_argument('--out', default=os.path.join(ROOT, 'results', 'toy_8gaussians'))
    p.add_argument('--notes', default=None, help='A Markdown file appended to the table (findings, written by hand).')
    a = p.parse_args()

    from envs import toy

    rows, commands = [], []
    for agent in [x for x in a.agents.split(',') if x]:
        extra, meaning = AGENT_ARGS[agent]
        variants = [(extra, agent, meaning)]
        if agent == 'vgf':
            variants = [
                (
                    [f'--agent.train_vgf_steps={L}', '--agent.test_vgf_steps=(0,1,2,3,5,10)'],
                    f'vgf_L{L}',
                    f'L_train = {L}; best-of-N after L_test steps',
                )
                for L in a.vgf_train_steps.split(',')
            ]
        if a.switches:  # one switch row per default row (per L_train for VGF)
            switched = []
            for row, more, how in SWITCH_ROWS.get(agent, []):
                how += fav_floor_note() if row == 'fav_unclamped' else ''
                for (flags, name, what), L in zip(variants, a.vgf_train_steps.split(',')):
                    switched.append((flags + more, row.format(L=L), f'{what}; {how}'))
            variants += switched
        for flags, name, what in variants:
            res = run(agent, flags, name, a)
            if res is None:
                rows.append(dict(method=name, note=f'FAILED ({what})'))
                continue
            finals, cmd = res
            commands.append(cmd)
            ev = [f['last_eval'] for f in finals]
            row = dict(
                method=name,
                note=what,
                seeds=len(finals),
                tv=np.mean([float(e['tv_distance']) for e in ev]),
                tv_ci=ci95([float(e['tv_distance']) for e in ev]),
                reward=np.mean([float(e['mean_reward']) for e in ev]),
                reward_ci=ci95([float(e['mean_reward']) for e in ev]),
                outliers=np.mean([float(e['outlier_fraction']) for e in ev]),
            )
            lcurve = {k.split('/')[0]: np.mean([float(e[k]) for e in ev]) for k in ev[0] if k.endswith('/mean_reward')}
            if lcurve:
                tvs = {k.split('/')[0]: np.mean([float(e[k]) for e in ev]) for k in ev[0] if k.endswith('/tv_distance')}
                row['note'] += '; L_test curve (mean reward / TV): ' + ', '.join(
                    f'{k}: {lcurve[k]:.3f} / {tvs[k]:.3f}' for k in sorted(lcurve, key=lambda s: int(s[1:]))
                )
            rows.append(row)
            print(f'{name}: TV {row["tv"]:.3f} ± {row["tv_ci"]:.3f}, reward {row["reward"]:.3f}', flush=True)

    # references: the behavior data and the exact target
    beh = toy.metrics(toy.sample_behavior(10_000, np.random.default_rng(1)))
    tgt_occ = toy.target_occupancy()
    grid = np.linspace(-4.5, 4.5, 401)
    x = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    w = toy.behavior_density(x) * np.exp(toy.reward(x / toy.SCALE))
    tgt_reward = float(np.sum(w * toy.reward(x / toy.SCALE)) / np.sum(w))

    lines = [
        '# toy-8gaussians: distance to the exact tilted target p(a) exp(r(a)) (beta = 1)',
        '',
        f'Reduced CPU budget: {a.steps} offline gradient steps, {a.seeds} seed(s) (vmapped in one process), '
        'toy networks (3 x 256), batch 256, evaluation on 10,000 policy samples. Actions are drawn as at '
        'evaluation (temperature 0: IQL, Gaussian BC and RLPD act with their mean action and ReBRAC is deterministic, '
        'so these are point masses here; the flow, particle and noise-space agents sample their noise). On this '
        'one-step bandit the TD target never uses the next action (mask 0), so VGF L_train has no effect; the '
        'primary VGF row is L_test = L_train. Lower TV is better; the target '
        f'has mean reward {tgt_reward:.3f}. Made by `python scripts/toy_table.py --agents={a.agents} '
        f'--steps={a.steps} --seeds={a.seeds} --vgf_train_steps={a.vgf_train_steps}'
        f'{"" if a.switches else " --no-switches"}'
        f'{f" --notes={os.path.relpath(a.notes, ROOT)}" if a.notes else ""}`. '
        'Rows without a suffix are the released-code defaults; a '
        "suffixed row is one paper-text switch of the README's switch table.",
        '',
        '| method | TV to target ↓ (± 95% CI) | mean reward (± 95% CI) | outlier fraction | setting |',
        '|---|---|---|---|---|',
        f'| behavior data | {beh["tv_distance"]:.3f} | {beh["mean_reward"]:.3f} | {beh["outlier_fraction"]:.3f} | '
        'samples of p(a) |',
        f'| exact target | 0 | {tgt_reward:.3f} | - | occupancy {np.round(tgt_occ, 3).tolist()} |',
    ]
    for r in rows:
        if 'tv' not in r:
            lines.append(f'| {r["method"]} | - | - | - | {r["note"]} |')
            continue
        lines.append(
            f'| {r["method"]} | {r["tv"]:.3f}{pm(r["tv_ci"])} | {r["reward"]:.3f}{pm(r["reward_ci"])} | '
            f'{r["outliers"]:.3f} | {r["note"]} |'
        )
    lines += ['', 'Commands (run from the repository root):', '']
    lines += [f'- `python main.py {c}`' for c in commands]
    if a.notes:
        with open(a.notes) as f:
            lines += ['', f.read().rstrip('\n')]
    os.makedirs(os.path.dirname(a.out) or '.', exist_ok=True)
    with open(a.out + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(a.out + '.csv', 'w') as f:
        f.write('method,tv,tv_ci95,mean_reward,mean_reward_ci95,outlier_fraction,seeds,steps\n')
        for r in rows:
            if 'tv' in r:
                f.write(
                    f'{r["method"]},{r["tv"]:.4f},{r["tv_ci"]:.4f},{r["reward"]:.4f},{r["reward_ci"]:.4f},'
                    f'{r["outliers"]:.4f},{r["seeds"]},{a.steps}\n'
                )
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
