"""OGBench single-task environments through the real `ogbench` API (rewards relabeled by ogbench itself).

Data policy (main.py): use the dataset files in `dataset_dir` if present; otherwise try the ogbench download;
if that is impossible and the dataset can be generated locally (envs/ogbench_gen.py), generate it (official size
unless `generate_episodes` is given) and say so. The task is never changed silently.
"""

from __future__ import annotations

import os
import socket
import sys
import zipfile

import numpy as np

from envs.base import DatasetError, Task, check_dataset

DEFAULT_DATASET_DIR = '~/.ogbench/data'
OGBENCH_FAMILIES = ('pointmaze', 'antmaze', 'humanoidmaze', 'antsoccer', 'cube', 'scene', 'puzzle')
# Families whose single-task reward counts unsolved subtasks (r in {-k, ..., 0}); their `-sparse` variants (QAM's
# protocol on scene, puzzle-3x3 and puzzle-4x4) reward -1 until the whole task is solved.
SPARSE_FAMILIES = ('cube', 'scene', 'puzzle')


def split_sparse(env_name: str) -> tuple[str, bool]:
    """`scene-play-sparse-singletask-task2-v0` -> (`scene-play-singletask-task2-v0`, True); other names -> (name,
    False)."""
    splits = env_name.split('-')
    if (
        'singletask' in splits
        and splits.index('singletask') >= 1
        and splits[splits.index('singletask') - 1] == 'sparse'
    ):
        pos = splits.index('singletask') - 1
        return '-'.join(splits[:pos] + splits[pos + 1 :]), True
    return env_name, False


def sparse_reward(r):
    """The sparse reward of the released QAM code (main.py, --sparse): (r != 0) * -1, i.e. 0 only when every subtask
    is solved. Works on floats and numpy arrays."""
    return (np.asarray(r) != 0.0) * np.float32(-1.0)


def is_ogbench_name(name: str) -> bool:
    return name.split('-')[0] in OGBENCH_FAMILIES and '-singletask' in name


def is_registered(env_name: str) -> bool:
    """Whether ogbench registers the environment of this single-task dataset name (e.g. cube-single-play-singletask-
    task2-v0 -> cube-single-singletask-task2-v0), i.e. the name is a real OGBench task."""
    import gymnasium
    import ogbench  # noqa: F401  (registers the environments)

    splits = split_sparse(env_name)[0].split('-')
    pos = splits.index('singletask')
    return '-'.join(splits[: pos - 1] + splits[pos:]) in gymnasium.registry


def _paths(dataset_dir: str, dataset_name: str) -> tuple[str, str]:
    d = os.path.expanduser(dataset_dir)
    return os.path.join(d, f'{dataset_name}.npz'), os.path.join(d, f'{dataset_name}-val.npz')


def _try_download(dataset_name: str, dataset_dir: str, timeout: float = 20.0) -> str | None:
    """Try the ogbench download; return None on success or the reason it failed."""
    import ogbench

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        ogbench.download_datasets([dataset_name], dataset_dir=os.path.expanduser(dataset_dir))
        return None
    except Exception as e:  # no network, DNS failure, HTTP error: all mean "cannot download here"
        for p in _paths(dataset_dir, dataset_name):
            if os.path.exists(p + '.tmp'):
                os.remove(p + '.tmp')
        return f'{type(e).__name__}: {e}'
    finally:
        socket.setdefaulttimeout(old)


def ensure_dataset(
    env_name: str,
    dataset_dir: str,
    download: bool = True,
    generate: bool = True,
    generate_episodes: int | None = None,
    seed: int = 0,
) -> list[str]:
    """Make sure the dataset files of `env_name` exist in `dataset_dir`; returns notes on what was done."""
    from envs import ogbench_gen

    dataset_name = ogbench_gen.dataset_name_for(env_name)
    train_path, val_path = _paths(dataset_dir, dataset_name)
    if os.path.exists(train_path) and os.path.exists(val_path):
        note = ogbench_gen.generation_note(train_path)
        notes = [note] if note else []
        if generate_episodes is not None:
            notes.append(f'--generate_episodes={generate_episodes} had no effect: {train_path} already exists')
        return notes
    notes = []
    reason = _try_download(dataset_name, dataset_dir) if download else 'download disabled (--download=False)'
    if reason is None:
        return [f'downloaded {dataset_name} to {dataset_dir}']
    unsupported = ogbench_gen.generation_unsupported_reason(dataset_name)
    if not generate or unsupported:
        raise DatasetError(
            f'Dataset {dataset_name} for {env_name} is not in {dataset_dir} ({train_path}) and could not be '
            f'downloaded ({reason}). '
            + (unsupported + ' ' if unsupported else '')
            + 'Download it on a machine with internet (python -c "import ogbench; ogbench.download_datasets'
            f"(['{dataset_name}'])\") and copy {dataset_name}.npz and {dataset_name}-val.npz into --dataset_dir"
            + (
                '.'
                if unsupported
                else f', or generate it with python scripts/generate_dataset.py --env_name={env_name}.'
            )
        )
    size = 'official size' if generate_episodes is None else f'{generate_episodes} episodes'
    msg = (
        f'[tiltbench] {dataset_name} could not be downloaded ({reason}); GENERATING IT LOCALLY ({size}) with the '
        f'real ogbench environment and its scripted oracle into {dataset_dir}. These data were made locally, '
        'not downloaded.'
    )
    print(msg, file=sys.stderr, flush=True)
    train_path, _ = ogbench_gen.generate_dataset(
        dataset_name, os.path.expanduser(dataset_dir), num_episodes=generate_episodes, seed=seed
    )
    notes.append(ogbench_gen.generation_note(train_path))
    return notes


def make_ogbench_task(env_name: str, dataset_dir: str = DEFAULT_DATASET_DIR, **ensure_kwargs) -> Task:
    """`env_name` may be a `-sparse` variant (split_sparse): the same data and environment with sparse rewards."""
    import ogbench

    name = env_name
    env_name, sparse = split_sparse(env_name)
    if sparse and env_name.split('-')[0] not in SPARSE_FAMILIES:
        raise ValueError(
            f'{name}: sparse-reward variants exist for the manipulation families ({", ".join(SPARSE_FAMILIES)}), '
            'whose rewards count unsolved subtasks; the other families already reward success only.'
        )
    notes = ensure_dataset(env_name, dataset_dir, **ensure_kwargs)
    try:
        env, train, val = ogbench.make_env_and_datasets(env_name, dataset_dir=os.path.expanduser(dataset_dir))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        from envs import ogbench_gen

        train_path, _ = _paths(dataset_dir, ogbench_gen.dataset_name_for(env_name))
        raise DatasetError(
            f'Could not read the OGBench dataset for {env_name} from {dataset_dir} ({type(e).__name__}: {e}). The file '
            f'may be truncated or not an ogbench .npz; delete {train_path} (and its -val file) and download or '
            'generate it again.'
        ) from e
    env.close()
    train = check_dataset(train, f'{env_name} (train)')
    val = check_dataset(val, f'{env_name} (val)')
    if sparse:
        for ds in (train, val):
            ds['rewards'] = sparse_reward(ds['rewards']).astype(np.float32)
        notes.append('sparse rewards: (r != 0) * -1 on the data and online (the released QAM code, --sparse)')

    def make_env(seed: int):
        e = ogbench.make_env_and_datasets(env_name, env_only=True)
        e.reset(seed=seed)
        return e

    return Task(
        name=name,
        family='ogbench',
        train_dataset=train,
        val_dataset=val,
        make_env=make_env,
        score=lambda ret, info: 100.0 * float(info.get('success', 0.0)),
        protocol='OGBench: success rate (%) at the end of each evaluation episode',
        notes=notes,
        transform_reward=(lambda r: float(sparse_reward(r))) if sparse else (lambda r: r),
    )
