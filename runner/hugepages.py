"""glibc's heap on transparent huge pages, set before the process starts.

On 4 KiB pages, a jitted call of one FAV, QAM or VGF update costs 28-44 ms beyond the update itself (the online phase
at one update per environment step, the parity harness); with glibc's `glibc.malloc.hugetlb=1` tunable most of it goes
(results/throughput.md, "one update per call"). glibc reads its tunables once, when a process starts, so main.py
re-executes itself with the tunable added (`reexec_with_hugepages`), and scripts/benchmark.py starts its workers with
the same environment (`hugepage_env`), so its figures are those of a run. A `glibc.malloc.hugetlb` value already in
GLIBC_TUNABLES wins: `GLIBC_TUNABLES=glibc.malloc.hugetlb=0` keeps 4 KiB pages.
"""

from __future__ import annotations

import os
import re
import sys

TUNABLE = 'glibc.malloc.hugetlb'
THP_ENABLED = '/sys/kernel/mm/transparent_hugepage/enabled'
MIN_GLIBC = (2, 35)  # the first glibc with glibc.malloc.hugetlb


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the C library this Python runs on, or None where it is not glibc (musl, macOS, Windows)."""
    try:
        name = os.confstr('CS_GNU_LIBC_VERSION')  # 'glibc 2.36'
    except (AttributeError, ValueError, OSError):
        return None
    match = re.match(r'glibc (\d+)\.(\d+)', name or '')
    return (int(match.group(1)), int(match.group(2))) if match else None


def thp_mode(path: str = THP_ENABLED) -> str | None:
    """The kernel's transparent-huge-page mode, the bracketed word of `path` ('always', 'madvise', 'never'), or None."""
    try:
        with open(path) as f:
            match = re.search(r'\[(\w+)\]', f.read())
    except OSError:
        return None
    return match.group(1) if match else None


def hugepage_env(environ, glibc: tuple[int, int] | None, thp: str | None) -> dict | None:
    """`environ` with glibc.malloc.hugetlb=1 appended to GLIBC_TUNABLES, or None where nothing should change: the
    tunable is already there (the user's value wins), the C library is not glibc >= 2.35 (no such tunable), or the THP
    mode is not 'madvise' ('always': glibc's heap gets huge pages without asking; 'never': there are none to get)."""
    tunables = environ.get('GLIBC_TUNABLES', '')
    if TUNABLE + '=' in tunables or glibc is None or glibc < MIN_GLIBC or thp != 'madvise':
        return None
    env = dict(environ)
    env['GLIBC_TUNABLES'] = f'{tunables}:{TUNABLE}=1' if tunables else f'{TUNABLE}=1'
    return env


def reexec_with_hugepages() -> None:
    """Replace this process by itself, same interpreter, options and arguments, with the tunable in its environment;
    returns (and changes nothing) where `hugepage_env` says nothing should change, or where the process was not
    started as `python [options] script args` (a notebook's `%run main.py`, a launcher's runpy: the interpreter's
    command line does not end with sys.argv, and re-executing it would restart something else). Call it before
    anything else runs: the process is replaced, not continued."""
    env = hugepage_env(os.environ, glibc_version(), thp_mode())
    argv = getattr(sys, 'orig_argv', None)
    if env is None or not argv or not sys.executable or argv[-len(sys.argv) :] != sys.argv:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
