"""One run from resolved flags: task, config (defaults < task defaults < paper preset < explicit flags), learner,
the offline and online phases, and the run directory's files."""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback

import numpy as np

import agents
from configs.common import validate_common
from envs.base import DatasetError

FLAG_NAMES = ('env_name', 'seed', 'offline_steps', 'online_steps', 'eval_interval', 'eval_episodes', 'log_interval',
              'save_interval', 'updates_per_call', 'buffer_size', 'save_dir', 'run_name', 'dataset_dir',
              'dataset_path', 'download', 'generate', 'generate_episodes', 'preset', 'overwrite', 'wandb')


def resolve_config(agent_mod, config, task, preset: str, explicit: set[str]):
    """Apply the task's default sizes and the paper preset to every key not set explicitly on the command line."""
    config = config.copy_and_resolve_references()
    applied = {}
    with config.unlocked():
        for k, v in task.extra.get('config_defaults', {}).items():
            if k in config and k not in explicit:
                config[k] = v
                applied[k] = v
        if preset == 'paper':
            if not hasattr(agent_mod, 'paper_preset'):
                raise ValueError(f'Agent {config.agent_name!r} has no paper preset.')
            for k, v in agent_mod.paper_preset(task.name).items():
                if k not in explicit:
                    config[k] = type(config[k])(v) if isinstance(config[k], (int, float)) and not isinstance(
                        config[k], bool) and v != float('inf') else v
                    applied[k] = config[k]
    return config, applied


def validate(agent_mod, config, task, f) -> None:
    validate_common(config)
    if hasattr(agent_mod, 'validate'):
        agent_mod.validate(config)
    n = len(task.train_dataset['observations'])
    if config.batch_size > n:
        raise ValueError(f'batch_size {config.batch_size} is larger than the dataset ({n} transitions).')
    for name in ('offline_steps', 'online_steps', 'eval_episodes', 'log_interval', 'eval_interval', 'save_interval'):
        if getattr(f, name) < 0:
            raise ValueError(f'--{name} must be non-negative, got {getattr(f, name)}.')
    if f.updates_per_call < 1:
        raise ValueError(f'--updates_per_call must be >= 1, got {f.updates_per_call}.')
    if f.online_steps > 0 and task.make_env is None:
        raise ValueError(f'{task.name} has no environment for the online phase: {"; ".join(task.notes)}')


def run_name_for(f, agent_name: str) -> str:
    return f.run_name or f'{agent_name}_{f.env_name.replace("/", "_")}_seed{f.seed}'


def run_experiment(f, config, agent_name: str, explicit: set[str]) -> int:
    """Returns the process exit code (0 ok, 1 failed during training, 2 bad input)."""
    from runner.io import RunDir, atomic_write_json

    agent_mod = agents.get_agent(agent_name)
    try:
        import envs

        task = envs.make_task(f.env_name, seed=f.seed, dataset_dir=f.dataset_dir, dataset_path=f.dataset_path,
                              download=f.download, generate=f.generate, generate_episodes=f.generate_episodes)
        config, applied = resolve_config(agent_mod, config, task, f.preset, explicit)
        validate(agent_mod, config, task, f)
    except (ValueError, DatasetError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2

    path = os.path.join(f.save_dir, run_name_for(f, agent_name))
    if os.path.exists(path) and os.listdir(path):
        if f.overwrite:
            shutil.rmtree(path)
        else:
            st = (RunDir(path).status() or {}).get('status', 'unknown')
            print(f'error: run directory {path} already exists (status: {st}). Nothing was changed. Use a different '
                  '--run_name, or --overwrite to delete it and start over.', file=sys.stderr)
            return 2
    run = RunDir(path)
    flags_dict = {k: getattr(f, k) for k in FLAG_NAMES}
    atomic_write_json(run.file('config.json'), {'agent': agent_name, 'flags': flags_dict, 'config': config.to_dict(),
                                                'preset_applied': applied, 'task_notes': task.notes,
                                                'argv': sys.argv})
    run.set_status('running', pid=os.getpid())
    for note in task.notes:
        print(f'[tiltbench] note: {note}', file=sys.stderr)

    wandb_run = None
    if f.wandb:
        import wandb

        os.environ.setdefault('WANDB_MODE', 'offline')
        wandb_run = wandb.init(project=f.wandb_project, name=os.path.basename(path), config=config.to_dict(),
                               dir=path)
    t0 = time.time()
    try:
        summary = _train(agent_mod, config, task, f, run, wandb_run)
    except Exception as e:  # keep the run directory and the last checkpoint; say what went wrong
        from runner.loop import NonFiniteError

        msg = f'{type(e).__name__}: {e}'
        run.set_status('failed', error=msg, traceback=traceback.format_exc())
        print(f'error: {msg}\nRun directory: {path} (status failed; the last checkpoint is kept)', file=sys.stderr)
        if not isinstance(e, NonFiniteError):
            traceback.print_exc()
        return 1
    summary.update(agent=agent_name, env=f.env_name, seed=f.seed, wall_time_s=round(time.time() - t0, 2),
                   run_dir=path, task_notes=task.notes, preset=f.preset)
    atomic_write_json(run.file('final.json'), summary)
    run.set_status('finished')
    if wandb_run is not None:
        wandb_run.finish()
    print(f'[tiltbench] finished: final_score={summary.get("final_score")} -> {path}/final.json', file=sys.stderr)
    return 0


def _train(agent_mod, config, task, f, run, wandb_run) -> dict:
    import jax

    from agents.common import buffer as buffer_lib
    from agents.common.trainer import Learner
    from runner.loop import Loop, make_online_buffer

    consts = agent_mod.constants(config, task.train_dataset) if hasattr(agent_mod, 'constants') else {}
    learner = Learner(agent_mod, config, task.obs_dim, task.action_dim, consts)
    variants = agent_mod.eval_variants(config) if hasattr(agent_mod, 'eval_variants') else [('', {})]
    loop = Loop(learner, task, f, run, variants, wandb_run)
    state = learner.init(loop.init_key)
    if f.offline_steps > 0:
        buffer = buffer_lib.make_buffer(task.train_dataset)
        state = loop.offline(state, buffer)
        del buffer
    if f.online_steps > 0:
        buffer = make_online_buffer(task, f, config)
        state, buffer = loop.online(state, buffer)
    if f.offline_steps == 0 and f.online_steps == 0:
        loop.evaluate(state, 0, 'offline')
    summary = dict(offline_steps=f.offline_steps, online_steps=f.online_steps, steps=int(jax.device_get(state.step)),
                   protocol=task.protocol + '; final score = mean of the last three evaluations (FQL protocol)',
                   eval_episodes=f.eval_episodes, constants={k: np.asarray(v).tolist() for k, v in consts.items()})
    summary.update(loop.final_scores())
    summary['last_eval'] = loop.last_eval
    if getattr(loop, 'last_samples', None) is not None:
        np.save(run.file('policy_samples.npy'), loop.last_samples)
        summary['policy_samples'] = 'policy_samples.npy'
    return summary
