"""The posix_spawn backend's pure-Python path, forced where the C extension is built.

Without the extension, the ``posix_spawn`` backend calls ``os.posix_spawn`` (on the
spawner thread from the main thread) and lists ``/proc/self/fd`` to close inheritable
fds; with it, ``posix_spawn_into`` does both in C. Tests of the fallback force it with
:func:`python_posix_spawn`.
"""

from __future__ import annotations

import pytest

from tether._spawn import _posix_spawn


def python_posix_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ``posix_spawn`` backend take its pure-Python path until *monkeypatch* undoes it."""
    monkeypatch.setattr(_posix_spawn, "_spawn_into", None)
    monkeypatch.setattr(_posix_spawn, "_closes_from", False)
    monkeypatch.setattr(_posix_spawn, "RECORDS_IN_C", False)
