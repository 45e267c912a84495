"""Generate an OGBench dataset locally (no download) with the real environment and its scripted oracle.

Example:
    python scripts/generate_dataset.py --env_name=pointmaze-medium-navigate-singletask-task1-v0 \
        --num_episodes=50 --seed=0 --dataset_dir=~/.ogbench/data

--env_name takes a dataset name (cube-single-play-v0) or a single-task env name (cube-single-play-singletask-task2-v0).

D4RL antmaze (antmaze-umaze-v2, ...): a file in the layout of the D4RL v2 hdf5 files, made by running
envs/d4rl_antmaze.py with a smoothed random policy, for smoke runs and tests without the real data (the file is
labeled as such, and runs on it say so; its scores mean nothing next to the real data's):
    python scripts/generate_dataset.py --env_name=antmaze-umaze-v2 --num_episodes=20 --dataset_path=umaze_random.hdf5
    python main.py --agent=fql --env_name=antmaze-umaze-v2 --dataset_path=umaze_random.hdf5
"""

import argparse
import os
import sys
import time

if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from envs.ogbench_gen import GENERATABLE, generate_dataset, parse_env_name

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--env_name', required=True, help=f'Dataset or single-task env name; one of {GENERATABLE}.')
    parser.add_argument('--dataset_dir', default='~/.ogbench/data', help='Directory to write the .npz files to.')
    parser.add_argument('--num_episodes', type=int, default=None, help='Training episodes (default: official).')
    parser.add_argument('--episode_length', type=int, default=None, help='Transitions per episode (default: official).')
    parser.add_argument('--val_fraction', type=float, default=0.1, help='Validation episodes per training episode.')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no_progress', action='store_true', help='Hide the progress bar.')
    parser.add_argument('--dataset_path', default=None, help='D4RL antmaze only: the hdf5 file to write.')
    args = parser.parse_args(argv)

    from envs.d4rl_antmaze import ANTMAZE_NAMES, write_dataset

    if args.env_name in ANTMAZE_NAMES:
        if not args.dataset_path:
            print(
                "error: --dataset_path=FILE.hdf5 is required for D4RL antmaze (never the real file's path)",
                file=sys.stderr,
            )
            return 2
        start = time.time()
        write_dataset(args.dataset_path, args.env_name, args.num_episodes or 20, args.episode_length or 1000, args.seed)
        print(f'Wrote {args.dataset_path} in {time.time() - start:.1f}s (random policy: not the D4RL data).')
        return 0

    try:
        dataset_name = parse_env_name(args.env_name)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    start = time.time()
    train_path, val_path = generate_dataset(
        dataset_name,
        args.dataset_dir,
        num_episodes=args.num_episodes,
        seed=args.seed,
        val_fraction=args.val_fraction,
        progress=not args.no_progress,
        episode_length=args.episode_length,
    )
    print(f'Wrote {train_path} and {val_path} in {time.time() - start:.1f}s.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
