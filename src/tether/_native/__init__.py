"""The native spawner (``_spawner.c``), when the build could compile it.

This is the one place that knows whether it exists: ``available`` is false on a
platform where the optional extension was not built, and tether then runs on its
pure-Python backends (``posix_spawn`` and ``fork``) with the same behaviour, only
slower and without the options that need C in the child (see the user guide).
"""

from __future__ import annotations

unavailable_reason: str | None = None
"""Why the extension could not be imported (None when it was)."""
try:
    from . import _spawner as spawner  # typed by _spawner.pyi
except ImportError as exc:  # pragma: no cover - exercised only where the build failed
    spawner = None  # type: ignore[assignment]  # every user checks ``available`` first
    unavailable_reason = f"the C extension was not built or cannot load: {exc}"

available = spawner is not None
"""Whether the C spawner extension was built and imported."""


def clone_pidfd_used() -> bool | None:
    """Whether ``clone(CLONE_PIDFD)`` delivered the pidfds (None before the first spawn).

    False means the kernel refused it and the spawner opens each pidfd with
    ``pidfd_open`` right after the clone instead.
    """
    return spawner.clone_pidfd() if available else None


ID_HELPER_NAME = "_setids"
"""The id helper's file name, next to the spawner extension (``_setids.c``)."""


def _register_id_helper() -> None:
    """Hand the spawner the id helper, when it was built and this mount lets it run.

    Without it, a native child that changes its user or group ids is cloned with a
    copy of the parent's memory instead (see ``docs/backends.md``).
    """
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(spawner.__file__)), ID_HELPER_NAME)
    if os.access(path, os.X_OK):  # also false on a noexec mount
        spawner.set_id_helper(os.fsencode(path))


def id_helper() -> str | None:
    """The id helper's path, or None when changes of ids run on a copy of our memory."""
    if not available:
        return None
    path = spawner.id_helper()
    return None if path is None else path.decode(errors="surrogateescape")


if available:
    _register_id_helper()
