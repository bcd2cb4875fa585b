"""The machinery of the ``tether.subprocess`` drop-in: ``Popen`` and its functions.

Kept apart from the public module so that ``tether.subprocess`` is a flat list of the
standard module's names; see ``docs/subprocess.md`` for what the drop-in changes.
"""
