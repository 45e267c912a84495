"""Shared test helpers. Tests run on CPU with tiny networks and few steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--agent.actor_hidden_dims=(32,32)', '--agent.value_hidden_dims=(32,32)', '--agent.batch_size=32']


def run_main(args: list[str], save_dir, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python main.py ARGS` the way a user does (a fresh process, flags parsed by absl)."""
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), f'--save_dir={save_dir}', '--progress=false', *args]
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'main.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}')
    return proc


def read_final(run_dir) -> dict:
    with open(os.path.join(run_dir, 'final.json')) as f:
        return json.load(f)


def run_tunables() -> str:
    """The GLIBC_TUNABLES a main.py run started from this environment has: main.py re-executes itself with glibc's
    heap on huge pages where that helps (runner/hugepages.py), and benchmark.py gives its workers the same."""
    from runner.hugepages import glibc_version, hugepage_env, thp_mode

    return (hugepage_env(os.environ, glibc_version(), thp_mode()) or os.environ).get('GLIBC_TUNABLES', '')


@pytest.fixture
def tiny_args():
    return list(TINY)


@pytest.fixture(scope='session')
def pointmaze_dir(tmp_path_factory):
    """A tiny locally generated pointmaze-medium dataset (real environment and oracle: 2 episodes of 300 steps),
    shared by the whole session; tests only read it."""
    from envs.ogbench_gen import generate_dataset

    d = tmp_path_factory.mktemp('ogbench')
    generate_dataset('pointmaze-medium-navigate-v0', str(d), num_episodes=2, episode_length=300, progress=False)
    return d


def _collect(env, episodes, max_steps):
    for ep in range(episodes):
        env.reset(seed=ep)
        for _ in range(max_steps + 5):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break


@pytest.fixture(scope='session')
def minari_root(tmp_path_factory):
    """A local Minari root with tiny datasets collected with the real environments (random actions): hopper episodes
    of at most 15 steps, with and without reference scores, and a 20-step antmaze. Set MINARI_DATASETS_PATH to it."""
    import gymnasium as gym
    import minari

    root = tmp_path_factory.mktemp('minari')
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        mp.setenv('MINARI_DATASETS_PATH', str(root))
        env = minari.DataCollector(gym.make('Hopper-v5', max_episode_steps=15))
        env.action_space.seed(0)
        _collect(env, 3, 15)
        env.create_dataset(
            dataset_id='mujoco/hopper/tiny-v0', algorithm_name='random', ref_min_score=-10.0, ref_max_score=90.0
        )
        env = minari.DataCollector(gym.make('Hopper-v5', max_episode_steps=15))
        _collect(env, 2, 15)
        env.create_dataset(dataset_id='mujoco/hopper/noref-v0', algorithm_name='random')

        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
        env = minari.DataCollector(gym.make('AntMaze_UMaze-v4', max_episode_steps=20, continuing_task=True))
        env.action_space.seed(0)
        _collect(env, 2, 20)
        env.create_dataset(
            dataset_id='D4RL/antmaze/tiny-v1',
            algorithm_name='random',
            eval_env=gym.make('AntMaze_UMaze-v4', max_episode_steps=20, continuing_task=True),
        )
    return str(root)
