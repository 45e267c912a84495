"""runner/hugepages.py: when main.py re-executes itself with glibc's heap on huge pages, and that the new process is
the same command (interpreter, options, arguments) with the tunable added."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from runner.hugepages import TUNABLE, glibc_version, hugepage_env, thp_mode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    'environ, glibc, thp, tunables',
    [
        ({}, (2, 36), 'madvise', f'{TUNABLE}=1'),
        ({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, (2, 35), 'madvise', f'glibc.malloc.arena_max=2:{TUNABLE}=1'),
        ({'GLIBC_TUNABLES': f'{TUNABLE}=0'}, (2, 36), 'madvise', None),  # the user's value wins (opt out)
        ({'GLIBC_TUNABLES': f'a.b=1:{TUNABLE}=2'}, (2, 40), 'madvise', None),
        ({}, (2, 34), 'madvise', None),  # no such tunable before 2.35
        ({}, (3, 0), 'madvise', f'{TUNABLE}=1'),
        ({}, None, 'madvise', None),  # not glibc
        ({}, (2, 36), 'always', None),  # the heap gets huge pages without asking
        ({}, (2, 36), 'never', None),
        ({}, (2, 36), None, None),  # no THP file (not Linux)
    ],
)
def test_when_the_tunable_is_added(environ, glibc, thp, tunables):
    environ = dict(environ, HOME='/somewhere')
    env = hugepage_env(environ, glibc, thp)
    if tunables is None:
        assert env is None
    else:
        assert env == dict(environ, GLIBC_TUNABLES=tunables)
        assert environ.get('GLIBC_TUNABLES') != tunables  # a copy; the caller's mapping is not changed


def test_thp_mode_reads_the_bracketed_word(tmp_path):
    f = tmp_path / 'enabled'
    f.write_text('always [madvise] never\n')
    assert thp_mode(str(f)) == 'madvise'
    f.write_text('[always] madvise never\n')
    assert thp_mode(str(f)) == 'always'
    assert thp_mode(str(tmp_path / 'missing')) is None


def test_glibc_version_agrees_with_platform():
    lib, version = platform.libc_ver()
    if lib == 'glibc':
        assert glibc_version() == tuple(int(x) for x in version.split('.')[:2])
    else:
        assert glibc_version() is None


def probe(tmp_path, argv_line: str = '') -> str:
    """A script that re-executes itself the way main.py does and prints what the final process saw."""
    script = tmp_path / 'probe.py'
    script.write_text(
        'import os, sys\n'
        f'sys.path.insert(0, {ROOT!r})\n'
        'print("start", flush=True)\n'
        f'{argv_line}\n'
        'from runner.hugepages import reexec_with_hugepages\n'
        'reexec_with_hugepages()\n'
        'print(repr(os.environ.get("GLIBC_TUNABLES", "")), sys.flags.optimize, sys.argv[1:])\n'
    )
    return str(script)


ENV = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}


def test_reexec_keeps_interpreter_options_and_arguments(tmp_path):
    cmd = [sys.executable, '-O', probe(tmp_path), '--x=1', 'two words']
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    wanted = hugepage_env(ENV, glibc_version(), thp_mode())
    lines = proc.stdout.splitlines()
    # one 'start' per process: two where it re-executed, one where nothing needed changing
    assert lines[:-1] == ['start'] * (1 if wanted is None else 2)
    tunables = '' if wanted is None else wanted['GLIBC_TUNABLES']
    assert lines[-1] == f"{tunables!r} 1 ['--x=1', 'two words']"


def test_no_reexec_when_not_started_as_the_script(tmp_path):
    """A notebook's `%run main.py` or a runpy launcher sets sys.argv itself: the interpreter's own command line is
    something else, and re-executing it would restart that; nothing happens."""
    cmd = [sys.executable, probe(tmp_path, "sys.argv = ['main.py', '--agent=fql']")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['start', "'' 0 ['--agent=fql']"]
