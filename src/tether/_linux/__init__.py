"""Raw Linux calls: pidfds, the no-pidfd exit notifier, cgroup v2, prctl, /proc, probes.

The lowest layer above the pure values (``_errors``, ``_status``, ``limits``): thin
wrappers over system calls and kernel files (``_pidfd``, ``_exit_notifier``, ``_cgroup``,
``_prctl``, ``_procfs``), and ``_probes.KERNEL``, what they learned about this kernel.
Nothing here knows about handles, scopes or event loops, and nothing here imports a
higher layer.
"""
