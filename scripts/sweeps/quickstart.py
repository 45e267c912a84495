"""Quickstart sweep: 2 agents x 2 tasks x 3 seeds at a CPU-sized, REDUCED budget (about 1-3 minutes per run on a
2-core CPU; 12 runs).

    python scripts/sweep.py scripts/sweeps/quickstart.py --runner=local --workers=2   # Ctrl-C, re-run: it continues
    python scripts/aggregate.py --runs=runs/quickstart --out=results/quickstart

The pointmaze dataset is generated locally with 100 episodes (the official one has 1000) into its own directory, so
that it never shadows an official dataset in ~/.ogbench/data. Tables made from these runs are labeled REDUCED.
"""

SWEEP = dict(
    agents=['fql', 'iql'],
    envs=['toy-8gaussians', 'pointmaze-medium-navigate-singletask-task1-v0'],
    seeds=3,
    flags={
        'offline_steps': 2000,  # the papers: 1M
        'eval_interval': 500,  # the last three evaluations (1000, 1500, 2000) make the score
        'eval_episodes': 5,  # the papers: 50
        'log_interval': 500,
        'save_interval': 500,  # checkpoints to resume from after an interruption
        'generate_episodes': 100,  # pointmaze: 100 locally generated episodes (ignored by the toy task)
        'dataset_dir': '~/.ogbench/tiltbench-generated-100ep',
        'agent.actor_hidden_dims': (128, 128),  # the papers: 4 x 512
        'agent.value_hidden_dims': (128, 128),
        'agent.batch_size': 128,  # the papers: 256
    },
)
SAVE_DIR = 'runs/quickstart'
