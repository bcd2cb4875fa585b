"""The async layer on anyio (asyncio and trio): ``AsyncProcess``, ``open_process``, ``run_process``.

A coat over ``_core``: the same spawn and reap, awaited on the pidfd instead of polled.
"""
