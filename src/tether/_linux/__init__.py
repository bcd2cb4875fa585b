"""Raw Linux calls: pidfds and reaping, the no-pidfd exit notifier, cgroup v2.

The lowest layer above the pure values (``_errors``, ``_status``, ``limits``): thin
wrappers over system calls and kernel files. Nothing here knows about handles,
scopes or event loops, and nothing here imports a higher layer.
"""
