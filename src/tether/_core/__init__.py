"""The synchronous core: ``Process`` and ``spawn``, ``run``, and the background reaper.

Built on ``_spawn`` (starting children) and ``_linux`` (waiting, signalling, reaping);
``_aio`` and ``_supervise`` build on it.
"""
