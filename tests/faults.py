"""Fault injection: the disk fills at the Nth write.

Every file the toolkit writes is opened through ``electra.runtime.files.open_for_writing`` (or
``open_for_appending``), which call ``files._open``; ``disk_fills_at`` replaces it with files whose ``write``
raises ENOSPC from the Nth call on (counted over all files), as a full disk would.
"""

from __future__ import annotations

import errno
import subprocess
from contextlib import contextmanager

import electra.runtime.files as files


class _FillingFile:
    def __init__(self, f, disk: "FillingDisk"):
        self._f, self._disk = f, disk

    def write(self, data):
        self._disk.writes += 1
        if self._disk.fail_at is not None and self._disk.writes >= self._disk.fail_at:
            self._disk.failed += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


class FillingDisk:
    """``writes``: the write calls seen so far; ``failed``: how many raised. ``fail_at=None`` only counts."""

    def __init__(self, fail_at: int | None):
        self.fail_at, self.writes, self.failed = fail_at, 0, 0
        self._real = files._open

    def open(self, *args, **kwargs):
        return _FillingFile(self._real(*args, **kwargs), self)


def disk_fills_at(monkeypatch, fail_at: int | None) -> FillingDisk:
    disk = FillingDisk(fail_at)
    monkeypatch.setattr(files, "_open", disk.open)
    return disk


@contextmanager
def mounted_tmpfs(folder, options: str):
    """A real tmpfs mounted on ``folder`` (e.g. ``size=256k``, or ``ro,size=1m`` for a read-only file system),
    for what no patched writer can show; the test is skipped where this process may not mount."""
    import pytest

    folder.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder
    finally:  # lazily: a failing test may still hold a file open there
        subprocess.run(["umount", "-l", str(folder)], check=True)
