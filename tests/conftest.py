"""Shared test helpers. Tests run on CPU with tiny networks and few steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


@pytest.fixture
def tiny_args():
    return list(TINY)
