"""The leak guard must see each kind of leak, or it guards nothing."""

from __future__ import annotations

import os
import threading

from tests import leakguard


def test_sees_a_zombie_child() -> None:
    before = leakguard.snapshot()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        found = leakguard.leaks(before, leakguard.snapshot())
        assert len(found) == 1
        assert found[0].startswith(f"child pid {pid} (")
        assert found[0].endswith(", zombie)")
    finally:
        os.waitpid(pid, 0)
    assert leakguard.leaks(before, leakguard.snapshot()) == []


def test_sees_an_fd() -> None:
    before = leakguard.snapshot()
    read_end, write_end = os.pipe()
    try:
        found = leakguard.leaks(before, leakguard.snapshot())
        assert [line.split(" -> ")[0] for line in found] == [f"fd {read_end}", f"fd {write_end}"]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_sees_a_thread() -> None:
    before = leakguard.snapshot()
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        found = leakguard.leaks(before, leakguard.snapshot())
        assert len(found) == 1
        assert found[0].startswith("thread ")
    finally:
        release.set()
        thread.join()


def test_reaps_leaked_children() -> None:
    before = leakguard.snapshot()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    leakguard.reap_leaked_children(before)
    assert leakguard.leaks(before, leakguard.snapshot()) == []
