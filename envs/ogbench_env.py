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

import gymnasium
import numpy as np

from envs.base import DatasetError, Task, check_dataset

DEFAULT_DATASET_DIR = '~/.ogbench/data'
OGBENCH_FAMILIES = ('pointmaze', 'antmaze', 'humanoidmaze', 'antsoccer', 'cube', 'scene', 'puzzle')
# Families whose single-task reward counts unsolved subtasks (r in {-k, ..., 0}); their `-sparse` variants (QAM's
# protocol on scene, puzzle-3x3 and puzzle-4x4) reward -1 until the whole task is solved.
SPARSE_FAMILIES = ('cube', 'scene', 'puzzle')


LARGE_URL = 'https://rail.eecs.berkeley.edu/datasets/ogbench'


def split_variants(env_name: str) -> tuple[str, bool, bool]:
    """Variant words between the dataset type and `singletask`: `-100m` (the 100M-transition datasets, in shards) and
    `-sparse` (sparse rewards). `puzzle-4x4-play-100m-sparse-singletask-task4-v0` -> (`puzzle-4x4-play-singletask-
    task4-v0`, sparse=True, large=True); other names -> (name, False, False)."""
    splits = env_name.split('-')
    if 'singletask' not in splits:
        return env_name, False, False
    pos = splits.index('singletask')
    start = pos
    while start > 1 and splits[start - 1] in ('sparse', '100m'):
        start -= 1
    words = splits[start:pos]
    if len(set(words)) != len(words):
        return env_name, False, False
    return '-'.join(splits[:start] + splits[pos:]), 'sparse' in words, '100m' in words


def large_dataset_dir(dataset_dir: str, env_name: str) -> str:
    """The directory of a 100M dataset's shards, in the released layout: <dataset_dir>/<dataset>-100m-v0/*.npz (each
    shard with its -val.npz), e.g. ~/.ogbench/data/cube-quadruple-play-100m-v0/."""
    from envs import ogbench_gen

    base = ogbench_gen.dataset_name_for(env_name)  # cube-quadruple-play-v0
    return os.path.join(os.path.expanduser(dataset_dir), base.replace('-v0', '-100m-v0'))


def large_dataset_shards(dataset_dir: str, env_name: str) -> list[str]:
    """The training shards of a 100M dataset, sorted (the released main.py's glob, -val files excluded). Raises
    DatasetError saying how to get them."""
    import glob

    d = large_dataset_dir(dataset_dir, env_name)
    shards = [f for f in sorted(glob.glob(os.path.join(d, '*.npz'))) if not f.endswith('-val.npz')]
    missing_val = [f for f in shards if not os.path.exists(f[: -len('.npz')] + '-val.npz')]
    if not shards or missing_val:
        name = os.path.basename(d)
        what = (
            f'no shards in {d}'
            if not shards
            else f'{len(missing_val)} shards without their -val file ({missing_val[0]})'
        )
        raise DatasetError(
            f'The 100M-transition dataset {name} for {env_name}: {what}. It cannot be generated here (100 x 1M '
            f'transitions); download it on a machine with internet into --dataset_dir: cd '
            f'{os.path.dirname(d)} && wget -r -np -nH --cut-dirs=2 -A "*.npz" {LARGE_URL}/{name}/ (the OGBench README, '
            '"larger datasets"; QAM Table 1 uses them for puzzle-4x4 and cube-quadruple).'
        )
    return shards


class SeededReset(gymnasium.Wrapper):
    """An ogbench env whose resets are reproducible. ogbench's locomaze resets (pointmaze, antmaze, humanoidmaze,
    antsoccer) draw the start noise from numpy's global RNG and take 5-40 random steps from the action space's own
    generator; `reset(seed=...)` seeds neither, so evaluation episodes differed from process to process. Here each
    reset runs with both seeded from its seed (and numpy's global state restored after); a reset without a seed
    takes the next seed from this wrapper's generator (seeded at construction), so an online phase is reproducible
    too. Episodes of manipspace tasks (cube, scene, puzzle), which draw from the env's seeded generator, are
    unchanged. The released code leaves these draws unseeded (same distribution, no reproducibility)."""

    def __init__(self, env, seed: int):
        super().__init__(env)
        self._seeds = np.random.default_rng([seed, 0x5EED])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None:
            seed = int(self._seeds.integers(2**31 - 1))
        state = np.random.get_state()
        np.random.seed(seed)
        self.env.unwrapped.action_space.seed(seed)
        try:
            return self.env.reset(seed=seed, options=options)
        finally:
            np.random.set_state(state)


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

    splits = split_variants(env_name)[0].split('-')
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
    """`env_name` may carry variant words (split_variants): `-sparse` (the same data and environment with sparse
    rewards) and `-100m` (the 100M-transition dataset: the first shard here, the others in `extra['shards']`, read by
    `load_shard` when the training loop moves on to them)."""
    import ogbench

    name = env_name
    env_name, sparse, large = split_variants(env_name)
    if sparse and env_name.split('-')[0] not in SPARSE_FAMILIES:
        raise ValueError(
            f'{name}: sparse-reward variants exist for the manipulation families ({", ".join(SPARSE_FAMILIES)}), '
            'whose rewards count unsolved subtasks; the other families already reward success only.'
        )
    if large:
        shards = large_dataset_shards(dataset_dir, env_name)
        notes = [f'100M dataset: {len(shards)} shards in {os.path.dirname(shards[0])}, one at a time']
        where = dict(dataset_path=shards[0])
    else:
        shards = None
        notes = ensure_dataset(env_name, dataset_dir, **ensure_kwargs)
        where = dict(dataset_dir=os.path.expanduser(dataset_dir))
    try:
        env, train, val = ogbench.make_env_and_datasets(env_name, **where)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise _unreadable(env_name, dataset_dir, shards[0] if shards else None, e) from e
    env.close()

    def prepare(ds: dict, what: str) -> dict:
        ds = check_dataset(ds, f'{name} ({what})')
        if sparse:
            ds['rewards'] = sparse_reward(ds['rewards']).astype(np.float32)
        return ds

    train, val = prepare(train, 'train'), prepare(val, 'val')
    if sparse:
        notes.append('sparse rewards: (r != 0) * -1 on the data and online (the released QAM code, --sparse)')
    extra = {}
    if shards:

        def load_shard(k: int) -> dict:
            """Training data of shard k (modulo the number of shards), prepared like the first."""
            path = shards[k % len(shards)]
            relabel_env = ogbench.make_env_and_datasets(env_name, env_only=True)  # rewards of the single task
            try:
                ds, _ = ogbench.make_env_and_datasets(
                    env_name, dataset_path=path, dataset_only=True, cur_env=relabel_env
                )
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                raise _unreadable(env_name, dataset_dir, path, e) from e
            finally:
                relabel_env.close()
            return prepare(ds, os.path.basename(path))

        extra = {'shards': shards, 'load_shard': load_shard}

    def make_env(seed: int):
        e = SeededReset(ogbench.make_env_and_datasets(env_name, env_only=True), seed)
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
        extra=extra,
    )


def _unreadable(env_name: str, dataset_dir: str, path: str | None, e: Exception) -> DatasetError:
    from envs import ogbench_gen

    train_path = path or _paths(dataset_dir, ogbench_gen.dataset_name_for(env_name))[0]
    return DatasetError(
        f'Could not read the OGBench dataset for {env_name} ({train_path}: {type(e).__name__}: {e}). The file may be '
        f'truncated or not an ogbench .npz; delete {train_path} (and its -val file) and download or generate it again.'
    )
