"""Environment registry: one `make_task(name, ...)` for every family (toy, OGBench, D4RL hdf5, Minari)."""

from __future__ import annotations

from envs.base import DatasetError, Task  # noqa: F401

TOY_NAMES = ('toy-8gaussians',)


def valid_names_help() -> str:
    return (
        'toy-8gaussians; tilt-fidelity bandits tilt-<family>-d<dim>[-b<beta>][-oracle] (families 8gaussians, ring, '
        'spiral, checker, ctx-ring, ctx-8gaussians with d2; gmm with any d, e.g. tilt-gmm-d21-b3); '
        'OGBench single-task ids such as cube-single-play-singletask-task2-v0, '
        'pointmaze-medium-navigate-singletask-task1-v0 (or without -taskN for the default task), sparse-reward '
        'manipulation variants such as scene-play-sparse-singletask-task2-v0; D4RL v2 names '
        'such as hopper-medium-v2 or antmaze-large-play-v2 (original hdf5 files); Minari ids such as '
        'D4RL/antmaze/large-play-v1 or mujoco/hopper/medium-v0'
    )


def known_names() -> list[str]:
    """Names with published hyperparameters or generatable data, for suggestions (not an exhaustive whitelist)."""
    from configs.presets import read_table
    from envs.d4rl import D4RL_NAMES
    from envs.ogbench_gen import GENERATABLE
    from envs.tilt import BENCHMARK_TASKS

    names = (
        set(TOY_NAMES)
        | set(BENCHMARK_TASKS)
        | set(D4RL_NAMES)
        | {r['task'] for r in read_table('fav_table6_hyperparameters.csv')}
    )
    for ds in GENERATABLE:  # e.g. pointmaze-medium-navigate-v0 -> pointmaze-medium-navigate-singletask-task1-v0
        names |= {ds.replace('-v0', f'-singletask-task{i}-v0') for i in range(1, 6)} | {
            ds.replace('-v0', '-singletask-v0')
        }
    return sorted(names)


def make_task(
    env_name: str,
    seed: int = 0,
    dataset_dir: str | None = None,
    dataset_path: str | None = None,
    download: bool = True,
    generate: bool = True,
    generate_episodes: int | None = None,
) -> Task:
    """Build the Task for `env_name`. Raises ValueError for unknown names and DatasetError for missing data."""
    if env_name in TOY_NAMES:
        from envs import toy

        return toy.make_task()  # the same data for every run seed
    if env_name.startswith('tilt-'):
        from envs import tilt

        return tilt.make_task(env_name)  # the same data for every run seed and beta
    from envs import ogbench_env

    if ogbench_env.is_ogbench_name(env_name):
        if not ogbench_env.is_registered(env_name):
            raise unknown_env_error(env_name)
        return ogbench_env.make_ogbench_task(
            env_name,
            dataset_dir or ogbench_env.DEFAULT_DATASET_DIR,
            download=download,
            generate=generate,
            generate_episodes=generate_episodes,
        )
    from envs import d4rl

    if d4rl.is_minari_name(env_name):
        return d4rl.make_minari_task(env_name)
    if d4rl.is_d4rl_name(env_name):
        return d4rl.make_d4rl_task(env_name, dataset_path=dataset_path)
    raise unknown_env_error(env_name)


def unknown_env_error(env_name: str) -> ValueError:
    from agents import closest

    return ValueError(
        f'Unknown environment {env_name!r}.{closest(env_name, known_names())} Valid: {valid_names_help()}.'
    )
