"""Supervisor scopes: restart policy, supervised records, process trees, shutdown, subreaper.

The top layer of the engine: ``Supervisor`` (threads) and ``AsyncSupervisor`` (anyio),
built on ``_core``, ``_aio`` and ``_linux``.
"""
