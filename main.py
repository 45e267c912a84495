"""tiltbench: one command per run, offline phase then online phase.

    python main.py --agent=fql --env_name=cube-single-play-singletask-task2-v0 --seed=0 \
        --offline_steps=1000000 --online_steps=0 --agent.alpha=300

Agent hyperparameters are `--agent.KEY=VALUE` (ml_collections); `--preset=paper` loads the per-task values of the
agent's own paper, `--preset=fav|qam|vgf` the values and settings of that paper's tables (explicit --agent.KEY flags
still win). Everything a run writes goes to --save_dir/<run_name>/.
"""

from __future__ import annotations

import os
import re
import sys

if __name__ == '__main__':  # before anything else runs: glibc reads its tunables at process start
    from runner.hugepages import reexec_with_hugepages

    reexec_with_hugepages()

from absl import app, flags  # noqa: E402

import agents  # noqa: E402
from agents.common.trainer import METRICS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('env_name', 'toy-8gaussians', 'Environment / dataset name.')
flags.DEFINE_integer('seed', 0, 'Random seed (network init, batches, exploration, evaluation).')
flags.DEFINE_integer('offline_steps', 1_000_000, 'Offline gradient steps.')
flags.DEFINE_integer('online_steps', 0, 'Online environment steps (one gradient step each).')
flags.DEFINE_integer('eval_interval', 100_000, 'Evaluate every this many gradient steps (0: only at phase ends).')
flags.DEFINE_integer('eval_episodes', 50, 'Evaluation episodes.')
flags.DEFINE_integer(
    'eval_envs',
    0,
    'Evaluation environments stepped in lockstep, over all seeds and evaluation variants (one policy call per step for '
    'all of them; scores do not depend on it). 0: as many as 2 GiB of environment memory allows; 1: one environment '
    'per seed and variant, episodes one after another.',
)
flags.DEFINE_integer(
    'eval_workers',
    0,
    'Worker processes that step the evaluation environments in parallel (0: in this process). Helps where stepping '
    'the environments costs more than the policy and there are spare cores (results/throughput.md).',
)
flags.DEFINE_integer('log_interval', 5_000, 'Write a train.csv row every this many gradient steps.')
flags.DEFINE_integer('save_interval', 100_000, 'Checkpoint every this many gradient steps (and at phase ends).')
flags.DEFINE_integer('updates_per_call', 20, 'Offline gradient steps fused into one jitted call (lax.scan).')
flags.DEFINE_enum(
    'train_metrics',
    'chunk_mean',
    list(METRICS),
    "Offline train.csv rows: 'chunk_mean', the mean over the fused call that ends at the logged step; 'step', the "
    'logged step alone, as the released codes log (the steps taken are the same).',
)
flags.DEFINE_integer(
    'buffer_size',
    2_000_000,
    'Online replay buffer rows (pre-filled with the offline data: max(buffer_size, offline + 1) rows; with'
    ' --agent.mix_offline > 0, offline + buffer_size rows, the offline ones kept).',
)
flags.DEFINE_string('save_dir', 'runs', 'Parent directory of run directories.')
flags.DEFINE_string('run_name', None, 'Run directory name (default: {agent}_{env_name}_seed{seed}).')
flags.DEFINE_string('dataset_dir', None, 'OGBench dataset directory (default ~/.ogbench/data).')
flags.DEFINE_string('dataset_path', None, 'Explicit dataset file (D4RL hdf5).')
flags.DEFINE_bool('download', True, 'Try to download missing OGBench datasets.')
flags.DEFINE_bool('generate', True, 'Generate missing OGBench datasets locally when they cannot be downloaded.')
flags.DEFINE_integer('generate_episodes', None, 'Episodes to generate (default: the official dataset size).')
flags.DEFINE_integer(
    'dataset_replace_interval',
    1000,
    'Sharded datasets (the -100m variants): move on to the next shard every this many gradient steps (the released '
    'main.py default; 0 = keep the first shard).',
)
flags.DEFINE_enum(
    'preset',
    'default',
    ['default', 'paper', 'fav', 'qam', 'vgf'],
    "Per-task hyperparameters: 'paper' = the agent's own paper; 'fav' / 'qam' / 'vgf' = the protocol of that paper's "
    'tables (e.g. qam: K = 10 critics, action chunks of 5 on manipulation, sparse scene / puzzle).',
)
flags.DEFINE_bool('overwrite', False, 'Delete an existing run directory of the same name and start over.')
flags.DEFINE_bool(
    'resume',
    False,
    'Continue an interrupted run from its last checkpoint (a finished run: exit 0, '
    'nothing changed). Without it, an existing run directory is an error.',
)
flags.DEFINE_integer('num_seeds', 1, 'Train seeds seed..seed+N-1 in one process (vmapped); one run dir per seed.')
flags.DEFINE_bool('progress', True, 'Show tqdm progress bars.')
flags.DEFINE_bool('wandb', False, 'Also log to Weights & Biases (offline mode unless WANDB_MODE is set).')
flags.DEFINE_string('wandb_project', 'tiltbench', 'wandb project.')


def parse_agent_argv(argv: list[str]) -> tuple[str, list[str], set[str]]:
    """Take `--agent=NAME` out of argv (ml_collections owns `--agent.KEY=VALUE`) and validate the keys.
    Returns (agent name, remaining argv, explicitly set config keys)."""
    name, rest, keys = 'fql', [], set()
    it = iter(range(len(argv)))
    for i in it:
        a = argv[i]
        if a == '--agent' and i + 1 < len(argv):
            name = argv[i + 1]
            next(it)
        elif a.startswith('--agent='):
            name = a.split('=', 1)[1]
        else:
            rest.append(a)
            m = re.match(r'--agent\.([A-Za-z0-9_.]+)', a)
            if m:
                keys.add(m.group(1).split('.')[0])
    agents.check_name(name)
    config = agents.get_config(name)
    for k in sorted(keys):
        if k not in config:
            raise ValueError(
                f'Unknown config key --agent.{k} for agent {name!r}.{agents.closest(k, config.keys())} '
                f'Valid keys: {", ".join(sorted(config.keys()))}.'
            )
    return name, rest, keys


def _die(msg: str) -> None:
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(2)


def main(_):
    from runner.experiment import run_experiment

    sys.exit(run_experiment(FLAGS, FLAGS.agent, AGENT_NAME, EXPLICIT_KEYS))


if __name__ == '__main__':
    try:
        AGENT_NAME, argv, EXPLICIT_KEYS = parse_agent_argv(sys.argv)
    except ValueError as e:
        _die(str(e))
    from ml_collections import config_flags

    config_flags.DEFINE_config_dict(
        'agent', agents.get_config(AGENT_NAME), 'Agent hyperparameters.', lock_config=True, sys_argv=argv
    )
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    app.run(main, argv=argv)
