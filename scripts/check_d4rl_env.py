"""Replay check of tiltbench's D4RL v2 antmaze env against a D4RL antmaze hdf5 file.

For N transitions (i, i+1) inside episodes of the file, put the simulator in the logged state, apply the logged
action, and compare the next observation with the file's row i+1: median and 99th percentile of the absolute error
per observation group. Also checks that the file's goals lie in the goal region of a free maze cell, that its
sparse rewards agree with the goals and the next positions, and how long its episodes are (timeouts).

    python scripts/check_d4rl_env.py --env_name=antmaze-large-play-v2 \
        --dataset_path=~/.d4rl/datasets/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5

Prints a verdict; exits 0 when every check passes, 1 on a mismatch, 2 on bad input. The one-step error of a real
file measures MuJoCo 3 (here) against the MuJoCo 2 of mujoco-py that collected it; errors compound over an episode.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from envs import d4rl_antmaze as am  # noqa: E402


def _read(path: str) -> dict:
    import h5py

    out = {}
    with h5py.File(path, 'r') as f:
        for k in (
            'observations',
            'actions',
            'rewards',
            'terminals',
            'timeouts',
            'infos/goal',
            'infos/qpos',
            'infos/qvel',
        ):
            if k in f:
                out[k] = np.asarray(f[k][()])
    missing = [k for k in ('observations', 'actions') if k not in out]
    if missing:
        raise ValueError(f'{path} lacks {missing}: not a D4RL dataset file')
    return out


def replay_errors(env, data: dict, idx: np.ndarray) -> np.ndarray:
    """|env step from logged state i with logged action i - logged observation i+1|, shape (len(idx), 29)."""
    obs, act = data['observations'], data['actions']
    exact = 'infos/qpos' in data and 'infos/qvel' in data
    err = np.empty((len(idx), am.OBS_DIM))
    for n, i in enumerate(idx):
        if exact:  # the logged simulator state (float64), not the float32 observation
            env.set_state(data['infos/qpos'][i], data['infos/qvel'][i])
        else:
            am.set_state_from_obs(env, obs[i])
        next_obs = env.step(np.asarray(act[i], np.float64))[0]
        err[n] = np.abs(next_obs - obs[i + 1])
    return err


def goal_region_fraction(name: str, goals: np.ndarray) -> float:
    """Fraction of goals inside [c, c + 1.5]^2 (the d4rl goal noise, maze_env.py:232-254) of some free cell c."""
    maze_map = am.TASKS[name][0]
    free = [am.cell_to_xy(maze_map, (i, j)) for i, row in enumerate(maze_map) for j, c in enumerate(row) if c != 1]
    free = np.asarray(free)
    d = goals[:, None, :] - free[None, :, :]
    inside = np.all((d >= -1e-4) & (d <= am.GOAL_NOISE_MAX + 1e-4), axis=-1).any(axis=1)
    return float(inside.mean())


def check(args) -> tuple[bool, list[str]]:
    data = _read(os.path.expanduser(args.dataset_path))
    n = len(data['observations'])
    if data['observations'].shape[-1] != am.OBS_DIM:
        raise ValueError(f'{data["observations"].shape[-1]}-D observations; D4RL v2 antmaze has {am.OBS_DIM}')
    ends = np.zeros(n, dtype=bool)
    for k in ('terminals', 'timeouts'):
        if k in data:
            ends |= data[k].reshape(n) > 0
    ends[-1] = True
    valid = np.flatnonzero(~ends)
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(valid, size=min(args.num_transitions, len(valid)), replace=False))
    env = am.AntMazeEnv(args.env_name, seed=args.seed)
    err = replay_errors(env, data, idx)
    lines, ok = [], True
    state = 'infos/qpos + infos/qvel' if 'infos/qpos' in data else 'the observation (qpos[:15], qvel[:14])'
    lines.append(f'{len(idx)} transitions of {n} rows; state set from {state}; one step each')
    lines.append(
        f'{"group":<14} {"median |err|":>13} {"p99 |err|":>11}  (limits {args.tol_median:g} / {args.tol_p99:g})'
    )
    for g, sl in am.OBS_GROUPS.items():
        med, p99 = float(np.median(err[:, sl])), float(np.percentile(err[:, sl], 99))
        bad = med > args.tol_median or p99 > args.tol_p99
        ok &= not bad
        lines.append(f'{g:<14} {med:13.3g} {p99:11.3g}{"  MISMATCH" if bad else ""}')
    if 'infos/goal' in data:
        goals = data['infos/goal'].reshape(n, 2).astype(np.float64)
        frac = goal_region_fraction(args.env_name, goals)
        ok &= frac == 1.0
        lines.append(f'goals in the goal region of a free cell: {100 * frac:.2f}%{"" if frac == 1.0 else "  MISMATCH"}')
        if 'rewards' in data:
            xy = data['observations'][valid + 1, :2].astype(np.float64)
            sparse = np.linalg.norm(xy - goals[valid], axis=-1) <= am.SUCCESS_RADIUS
            agree = float(np.mean(sparse == (data['rewards'].reshape(n)[valid] > 0.5)))
            ok &= agree >= 0.999
            lines.append(
                f'sparse rewards that agree with goal and next position: {100 * agree:.2f}%'
                + ('' if agree >= 0.999 else '  MISMATCH')
            )
    else:
        lines.append('no infos/goal in the file: goal checks skipped')
    if 'timeouts' in data:
        t = np.flatnonzero(data['timeouts'].reshape(n) > 0)
        lengths = np.diff(np.concatenate([[-1], t]))
        horizon = am.HORIZONS[args.env_name]
        lines.append(
            f'episodes (timeouts): {len(t)}, lengths {sorted(set(lengths.tolist()))[:5]}'
            f'{" ..." if len(set(lengths.tolist())) > 5 else ""}; evaluation horizon of {args.env_name}: {horizon}'
        )
    return ok, lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--env_name', required=True, choices=am.ANTMAZE_NAMES)
    p.add_argument('--dataset_path', required=True, help='A D4RL antmaze v2 hdf5 file.')
    p.add_argument('--num_transitions', type=int, default=2000)
    p.add_argument('--tol_median', type=float, default=1e-3, help='Largest allowed median |error| of a group.')
    p.add_argument('--tol_p99', type=float, default=5e-2, help='Largest allowed 99th percentile |error| of a group.')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    try:
        ok, lines = check(args)
    except (OSError, ValueError, KeyError) as e:
        print(f'error: {args.dataset_path}: {e}', file=sys.stderr)
        return 2
    print('\n'.join(lines))
    print(f'verdict: {"PASS" if ok else "FAIL"}: the env {"matches" if ok else "does NOT match"} the file')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
