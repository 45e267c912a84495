"""Per-task paper hyperparameters (`--preset=paper`), read from CSV files copied into configs/ from the papers:

- fav_table6_hyperparameters.csv: FAV paper, Table 6 (IQL, ReBRAC, FQL, QAM, FAV, FAV-Adaptive, ... per task).
- qam_table4_hyperparameters.csv / qam_table3_common.csv: QAM paper, Tables 3-4 (per domain).
- vgf_hyperparameters.csv: VGF paper, Tables 5-6 (train-time VGF steps and step size per environment).
"""

from __future__ import annotations

import csv
import functools
import os
import re

_DIR = os.path.dirname(os.path.abspath(__file__))

# OGBench default tasks (the env id without a task suffix): antmaze/humanoidmaze task1, antsoccer task4,
# cube/scene task2, puzzle task4; pointmaze task1.
DEFAULT_TASK = {'antmaze': 1, 'humanoidmaze': 1, 'antsoccer': 4, 'cube': 2, 'scene': 2, 'puzzle': 4, 'pointmaze': 1}


class PresetError(ValueError):
    pass


@functools.lru_cache(maxsize=None)
def read_table(file_name: str) -> tuple[dict, ...]:
    with open(os.path.join(_DIR, file_name)) as f:
        return tuple(csv.DictReader(f))


def canonical_task(env_name: str) -> str:
    """Resolve an OGBench default-task alias (`cube-single-play-singletask-v0`) to its task id
    (`cube-single-play-singletask-task2-v0`). Other names are returned unchanged."""
    m = re.fullmatch(r'(.+)-singletask-(v\d+)', env_name)
    if m:
        family = env_name.split('-')[0]
        if family in DEFAULT_TASK:
            return f'{m.group(1)}-singletask-task{DEFAULT_TASK[family]}-{m.group(2)}'
    return env_name


def paper_discount(env_name: str) -> float:
    """Discount 0.995 for the long-horizon domains (antmaze-giant, humanoidmaze, antsoccer), else 0.99."""
    return 0.995 if env_name.startswith(('antmaze-giant', 'humanoidmaze', 'antsoccer')) else 0.99


def _num(v: str) -> float:
    return float('inf') if v.strip() == 'inf' else float(v)


def fav_table6(env_name: str, columns: dict[str, str]) -> dict:
    """Values of FAV Table 6 for `env_name`: {config key: value of column}."""
    task = canonical_task(env_name)
    rows = {r['task']: r for r in read_table('fav_table6_hyperparameters.csv')}
    if task not in rows:
        raise PresetError(
            f'No paper preset (FAV Table 6) for {env_name!r}. Tasks with presets: {", ".join(sorted(rows))}.'
        )
    return {key: _num(rows[task][col]) for key, col in columns.items()}


def with_discount(env_name: str, values: dict) -> dict:
    return {**values, 'discount': paper_discount(env_name)}
