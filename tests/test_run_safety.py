"""Run safety: one live process per run directory (an OS lock the OS drops when the process dies), resume falls back
past a cut-off checkpoint / log / status file, and a resume with no readable checkpoint is a one-line error."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from runner import checkpoint as ckpt_lib
from runner.io import CsvLogger, RunLockedError, lock_run_dir, read_csv, run_dir_holder, unlock_run_dir
from scripts.sweep import run_state
from tests.conftest import ROOT, TINY, read_final, run_main

ARGS = [
    '--agent=fql',
    '--env_name=toy-8gaussians',
    '--offline_steps=100',
    '--eval_interval=50',
    '--log_interval=25',
    '--save_interval=50',
    '--updates_per_call=25',
    '--eval_episodes=1',
    *TINY,
]
RUN = 'fql_toy-8gaussians_seed0'


def _hold_lock(path):
    """A second process that takes the run directory's lock and sleeps until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from runner.io import lock_run_dir
        lock_run_dir({str(path)!r})
        print('locked', flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'locked'
    return proc


def test_second_process_on_a_live_run_directory_exits_with_one_line(tmp_path):
    run = tmp_path / RUN
    holder = _hold_lock(run)
    try:
        assert run_state(str(run)) == 'running'
        assert f'process {holder.pid}' in run_dir_holder(str(run))
        with pytest.raises(RunLockedError, match=f'in use by process {holder.pid}'):
            lock_run_dir(str(run))
        proc = run_main(ARGS, tmp_path, check=False)
        assert proc.returncode == 2
        err = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
        assert len(err) == 1 and f'in use by process {holder.pid}' in err[0] and 'Traceback' not in proc.stderr
        assert os.listdir(run) == ['.lock']  # nothing was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without cleaning up: its lock went with it, the run starts (no --resume needed: nothing ran)
    assert run_dir_holder(str(run)) is None and run_state(str(run)) == 'new'
    run_main(ARGS, tmp_path)
    assert run_state(str(run)) == 'finished'


def test_lock_is_per_process_and_released(tmp_path):
    lock_run_dir(str(tmp_path / 'a'))
    lock_run_dir(str(tmp_path / 'a'))  # taking it again in the same process is a no-op
    assert run_dir_holder(str(tmp_path / 'a')) is None  # our own lock does not block us
    unlock_run_dir(str(tmp_path / 'a'))
    holder = _hold_lock(tmp_path / 'a')  # released: another process can take it
    holder.kill()
    holder.wait()


def test_resume_falls_back_past_cut_off_files_and_stays_bit_exact(tmp_path):
    run_main(ARGS, tmp_path / 'ref')
    ref = tmp_path / 'ref' / RUN
    run_main(ARGS, tmp_path / 'cut')
    run = tmp_path / 'cut' / RUN
    # As if the process died while writing: the newest checkpoint, train.csv, eval.csv and status.json cut off.
    ckpts = ckpt_lib.list_checkpoints(str(run / 'checkpoints'))
    assert [ckpt_lib.step_of(p) for p in ckpts] == [50, 100]
    for path, keep in ((ckpts[-1], 0.5), (run / 'train.csv', 0.9), (run / 'eval.csv', 0.8), (run / 'status.json', 0.5)):
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[: int(len(data) * keep)])
    os.remove(run / 'final.json')
    proc = run_main([*ARGS, '--resume'], tmp_path / 'cut')
    warnings = [line for line in proc.stderr.splitlines() if 'moved aside' in line]
    assert len(warnings) == 1 and 'ckpt_000000100.msgpack' in warnings[0]
    assert os.path.exists(ckpts[-1] + '.unreadable')  # kept for inspection, not deleted
    assert 'resuming from the offline checkpoint at step 50' in proc.stderr
    a = jax.tree_util.tree_leaves(ckpt_lib.read(ckpt_lib.latest(str(ref / 'checkpoints')))['state'])
    b = jax.tree_util.tree_leaves(ckpt_lib.read(ckpt_lib.latest(str(run / 'checkpoints')))['state'])
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    for name in ('train.csv', 'eval.csv'):
        ra, rb = read_csv(str(ref / name)), read_csv(str(run / name))
        assert [r['step'] for r in ra] == [r['step'] for r in rb]
        assert [{k: v for k, v in r.items() if k != 'time'} for r in ra] == [
            {k: v for k, v in r.items() if k != 'time'} for r in rb
        ]
    assert read_final(ref)['final_score'] == read_final(run)['final_score']
    assert json.load(open(run / 'status.json'))['status'] == 'finished'


def test_resume_with_no_readable_checkpoint_is_one_line(tmp_path):
    run_main(ARGS, tmp_path)
    run = tmp_path / RUN
    for p in ckpt_lib.list_checkpoints(str(run / 'checkpoints')):
        open(p, 'wb').write(b'\x00garbage')
    os.remove(run / 'final.json')
    json.dump({'status': 'running'}, open(run / 'status.json', 'w'))  # as if killed after its last checkpoint
    proc = run_main([*ARGS, '--resume'], tmp_path, check=False)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(err) == 1 and 'no checkpoint' in err[0] and '--overwrite' in err[0]
    assert len([f for f in os.listdir(run / 'checkpoints') if f.endswith('.unreadable')]) == 2


def test_csv_logger_drops_a_partial_last_line(tmp_path):
    path = str(tmp_path / 'log.csv')
    log = CsvLogger(path)
    log.write({'step': 1, 'x': 0.5})
    log.write({'step': 2, 'x': 0.25})
    with open(path, 'ab') as f:
        f.write(b'3,0.1')  # cut off before its newline
    with pytest.warns(UserWarning, match='partial last line'):
        log = CsvLogger(path)
    log.write({'step': 3, 'x': 0.125})
    assert [(r['step'], r['x']) for r in read_csv(path)] == [('1', '0.5'), ('2', '0.25'), ('3', '0.125')]
