"""One run from resolved flags: task, config (defaults < task defaults < paper preset < explicit flags), learner,
the offline and online phases, and the run directory's files."""

from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

import agents
from configs.common import check_explicit_keys, validate_common
from envs.base import DatasetError

FLAG_NAMES = (
    'env_name',
    'seed',
    'offline_steps',
    'online_steps',
    'eval_interval',
    'eval_episodes',
    'log_interval',
    'save_interval',
    'updates_per_call',
    'train_metrics',
    'buffer_size',
    'save_dir',
    'run_name',
    'dataset_dir',
    'dataset_path',
    'download',
    'generate',
    'generate_episodes',
    'dataset_replace_interval',
    'preset',
    'overwrite',
    'resume',
    'wandb',
    'num_seeds',
)


def resolve_config(agent_mod, config, task, preset: str, explicit: set[str], online: bool = False):
    """Apply the task's default sizes and the preset (`paper`, or a paper's protocol `fav` / `qam` / `vgf`; of an
    offline-to-online run when `online`) to every key not set explicitly on the command line."""
    config = config.copy_and_resolve_references()
    applied = {}
    with config.unlocked():
        for k, v in task.extra.get('config_defaults', {}).items():
            if k in config and k not in explicit:
                config[k] = v
                applied[k] = v
        if preset != 'default':
            for k, v in agents.paper_preset(config.agent_name, task.name, online, protocol=preset).items():
                if k not in explicit:
                    config[k] = _cast(config[k], v)
                    applied[k] = config[k]
    return config, applied


def _cast(old, v):
    """Keep the config's type (int stays int) unless the preset value is inf or of another kind."""
    if isinstance(old, bool) or not isinstance(old, (int, float)) or not isinstance(v, (int, float)):
        return v
    if isinstance(old, int) and float(v).is_integer():
        return int(v)
    return float(v)


def validate(agent_mod, config, task, f) -> None:
    validate_common(config)
    if hasattr(agent_mod, 'validate'):
        agent_mod.validate(config)
    n = len(task.train_dataset['observations'])
    if config.batch_size > n:
        raise ValueError(f'batch_size {config.batch_size} is larger than the dataset ({n} transitions).')
    for name in (
        'offline_steps',
        'online_steps',
        'eval_episodes',
        'log_interval',
        'eval_interval',
        'save_interval',
        'dataset_replace_interval',
    ):
        if getattr(f, name) < 0:
            raise ValueError(f'--{name} must be non-negative, got {getattr(f, name)}.')
    if f.updates_per_call < 1:
        raise ValueError(f'--updates_per_call must be >= 1, got {f.updates_per_call}.')
    if config.horizon_length > 1 and (task.make_env is None or task.evaluate is not None):
        raise ValueError(
            f'horizon_length={config.horizon_length} needs multi-step episodes to execute action chunks in; '
            f'{task.name} has {"no environment" if task.make_env is None else "one-step episodes"} (use '
            'horizon_length=1).'
        )
    if config.horizon_length > n:
        raise ValueError(f'horizon_length {config.horizon_length} is longer than the dataset ({n} transitions).')
    if f.online_steps > 0 and task.make_env is None:
        raise ValueError(f'{task.name} has no environment for the online phase: {"; ".join(task.notes)}')


def run_name_for(f, agent_name: str, seed: int) -> str:
    if f.run_name:
        return f.run_name if f.num_seeds == 1 else f'{f.run_name}_seed{seed}'
    return f'{agent_name}_{f.env_name.replace("/", "_")}_seed{seed}'


# eval_envs / eval_workers: how evaluation episodes are spread; the scores do not depend on them (envs/evaluation.py).
RESUME_IGNORED = (
    'resume',
    'overwrite',
    'progress',
    'wandb',
    'save_dir',
    'run_name',
    'num_seeds',
    'eval_envs',
    'eval_workers',
)
# Flags added after runs were made: a config.json without them ran with these values (their defaults).
FLAGS_ADDED = {'dataset_replace_interval': 1000, 'eval_envs': 0, 'eval_workers': 0, 'train_metrics': 'chunk_mean'}
# Agent config keys added after runs were made, likewise: those runs updated from the first online step.
CONFIG_ADDED = {'start_training': 0, 'random_before_training': False}


def _prepare_run_dirs(f, agent_name, config, flags_dict):
    """Returns (list of RunDir, resume?) or raises RunDirError. Never deletes or overwrites without --overwrite."""
    from runner.io import RunDir, RunLockedError, clear_run_dir, lock_run_dir, read_json, run_dir_is_empty

    paths = [os.path.join(f.save_dir, run_name_for(f, agent_name, f.seed + k)) for k in range(f.num_seeds)]
    for p in paths:  # one live process per run directory, before anything in it is read or changed
        try:
            lock_run_dir(p)
        except RunLockedError as e:
            raise RunDirError(str(e)) from None
    existing = [p for p in paths if not run_dir_is_empty(p)]
    if existing and f.overwrite:
        for p in existing:
            clear_run_dir(p)
        existing = []
    if not existing:
        return [RunDir(p) for p in paths], False
    statuses = {p: (RunDir(p).status() or {}).get('status', 'unknown') for p in existing}
    if not f.resume:
        desc = ', '.join(f'{p} ({st})' for p, st in statuses.items())
        raise RunDirError(
            f'run directory already exists: {desc}. Nothing was changed. Use --resume to continue an '
            'interrupted run, a different --run_name, or --overwrite to delete it and start over.'
        )
    for p in existing:
        seed = f.seed + paths.index(p)
        flags_dict = {**flags_dict, 'seed': seed}
        old = read_json(os.path.join(p, 'config.json')) if os.path.exists(os.path.join(p, 'config.json')) else {}
        old_config = {
            **{k: v for k, v in CONFIG_ADDED.items() if k not in old.get('config', {})},
            **old.get('config', {}),
        }
        diffs = [
            f'agent.{k}: {old_config.get(k)!r} -> {v!r}'
            for k, v in config.to_dict().items()
            if _norm(old_config.get(k)) != _norm(v)
        ]
        old_flags = {**{k: v for k, v in FLAGS_ADDED.items() if k not in old.get('flags', {})}, **old.get('flags', {})}
        diffs += [
            f'--{k}: {old_flags.get(k)!r} -> {v!r}'
            for k, v in flags_dict.items()
            if k not in RESUME_IGNORED and _norm(old_flags.get(k)) != _norm(v)
        ]
        if diffs:
            raise RunDirError(
                f'cannot resume {p}: the command differs from the one that started it ({"; ".join(diffs)}). '
                'Run it with the original flags, or use --overwrite / another --run_name.'
            )
    if len(existing) == len(paths) and all(st == 'finished' for st in statuses.values()):
        raise RunFinished(', '.join(existing))
    return [RunDir(p) for p in paths], True


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


class RunDirError(ValueError):
    pass


class RunFinished(Exception):
    pass


def run_experiment(f, config, agent_name: str, explicit: set[str]) -> int:
    """Returns the process exit code (0 ok, 1 failed during training, 2 bad input)."""
    from runner.io import atomic_write_json

    agent_mod = agents.get_agent(agent_name)
    flags_dict = {k: getattr(f, k) for k in FLAG_NAMES}
    try:
        if f.num_seeds < 1:
            raise ValueError(f'--num_seeds must be >= 1, got {f.num_seeds}.')
        import envs

        task = envs.make_task(
            f.env_name,
            seed=f.seed,
            dataset_dir=f.dataset_dir,
            dataset_path=f.dataset_path,
            download=f.download,
            generate=f.generate,
            generate_episodes=f.generate_episodes,
        )
        config, applied = resolve_config(agent_mod, config, task, f.preset, explicit, online=f.online_steps > 0)
        check_explicit_keys(config, explicit)
        validate(agent_mod, config, task, f)
        runs, resume = _prepare_run_dirs(f, agent_name, config, flags_dict)
    except RunFinished as e:
        print(f'[tiltbench] already finished, nothing to do: {e}', file=sys.stderr)
        return 0
    except (ValueError, DatasetError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2

    for k, run in enumerate(runs):
        cfg_file = {
            'agent': agent_name,
            'flags': {**flags_dict, 'seed': f.seed + k},
            'config': config.to_dict(),
            'preset_applied': applied,
            'protocol': agents.PROTOCOLS.get(agents.protocol_of(agent_name, f.preset)),
            'task_notes': task.notes,
            'argv': sys.argv,
        }
        if not resume:
            atomic_write_json(run.file('config.json'), cfg_file)
        run.set_status('running', pid=os.getpid(), resumed=resume)
    for note in task.notes:
        print(f'[tiltbench] note: {note}', file=sys.stderr)

    wandb_run = None
    if f.wandb:
        import wandb

        os.environ.setdefault('WANDB_MODE', 'offline')
        wandb_run = wandb.init(
            project=f.wandb_project,
            name=os.path.basename(runs[0].path),
            config=config.to_dict(),
            dir=runs[0].path,
            resume='allow',
        )
    t0 = time.time()
    try:
        summaries = _train(agent_mod, config, task, f, runs, wandb_run, resume)
    except Exception as e:  # keep the run directory and the last checkpoint; say what went wrong
        from runner.loop import NonFiniteError, ResumeError

        msg = f'{type(e).__name__}: {e}'
        for run in runs:
            run.set_status('failed', error=msg, traceback=traceback.format_exc())
        if isinstance(e, ResumeError):  # says all there is to say in one line
            print(f'error: {e}', file=sys.stderr)
            return 1
        print(
            f'error: {msg}\nRun directory: {runs[0].path} (status failed; the last checkpoint is kept; --resume '
            'continues from it)',
            file=sys.stderr,
        )
        if not isinstance(e, NonFiniteError):
            traceback.print_exc()
        return 1
    for k, (run, summary) in enumerate(zip(runs, summaries)):
        summary.update(
            agent=agent_name,
            env=f.env_name,
            seed=f.seed + k,
            wall_time_s=round(time.time() - t0, 2),
            glibc_tunables=os.environ.get('GLIBC_TUNABLES', ''),  # the heap wall_time_s was measured on (main.py)
            num_seeds_in_process=f.num_seeds,
            run_dir=run.path,
            task_notes=task.notes,
            preset=f.preset,
        )
        atomic_write_json(run.file('final.json'), summary)
        run.set_status('finished')
        print(
            f'[tiltbench] finished: final_score={summary.get("final_score")} -> {run.path}/final.json', file=sys.stderr
        )
    if wandb_run is not None:
        wandb_run.finish()
    return 0


def _train(agent_mod, config, task, f, runs, wandb_run, resume) -> list[dict]:
    import jax

    from agents.common import buffer as buffer_lib
    from agents.common.trainer import Learner
    from runner.loop import Loop, make_online_buffer, restore_buffer

    consts = agent_mod.constants(config, task.train_dataset) if hasattr(agent_mod, 'constants') else {}
    learner = Learner(agent_mod, config, task.obs_dim, task.action_dim, consts, task.extra.get('oracle_q'))
    variants = agent_mod.eval_variants(config) if hasattr(agent_mod, 'eval_variants') else [('', {})]
    loop = Loop(learner, task, f, runs, variants, wandb_run)
    state = loop.init_state()
    phase, step, rows = 'offline', 0, None
    if resume:
        restored = loop.restore(state)
        if restored is not None:
            state, step, phase, rows = restored
            print(f'[tiltbench] resuming from the {phase} checkpoint at step {step}', file=sys.stderr)
    if phase == 'offline' and step < f.offline_steps:
        state = loop.offline(state, buffer_lib.make_buffer(task.train_dataset), step)
        step = f.offline_steps
    if f.online_steps > 0:
        buffer = make_online_buffer(task, f, config, f.num_seeds)
        done = 0
        if phase == 'online':
            done = step - f.offline_steps
            if f.num_seeds == 1:
                buffer = restore_buffer(buffer, rows[0])
            else:
                seeds = [
                    restore_buffer(jax.tree_util.tree_map(lambda x, k=k: x[k], buffer), r) for k, r in enumerate(rows)
                ]
                buffer = jax.tree_util.tree_map(lambda *xs: jax.numpy.stack(xs), *seeds)
        if done < f.online_steps:
            state, buffer = loop.online(state, buffer, f.offline_steps, done)
    if f.offline_steps == 0 and f.online_steps == 0:
        loop.evaluate(state, 0, 'offline')
    loop.close()
    summaries = []
    for k, sr in enumerate(loop.seeds):
        summary = dict(
            offline_steps=f.offline_steps,
            online_steps=f.online_steps,
            steps=int(jax.device_get(loop.seed_state(state, k).step)),
            protocol=task.protocol + '; final score = mean of the last three evaluations (FQL protocol)',
            eval_episodes=f.eval_episodes,
            constants={c: np.asarray(v).tolist() for c, v in consts.items()},
        )
        summary.update(loop.final_scores(k))
        summary['last_eval'] = sr.last_eval
        if sr.last_samples is not None:
            np.save(sr.run.file('policy_samples.npy'), sr.last_samples)
            summary['policy_samples'] = 'policy_samples.npy'
        summaries.append(summary)
    return summaries
