"""Build hook beside pyproject.toml: the optional native spawner extension and its programs.

``optional=True``: where the C spawner cannot be compiled, tether installs without
it and runs on its pure-Python backends (``tether._native.available`` says which).
Next to the extension the build links two small programs, each just as optional:

- ``_nsinit``, PID 1 of each child's PID namespace in ``kill="namespace"`` mode
  (``_nsinit.c``); without it that mode refuses to start, and nothing else changes;
- ``_setids``, the id helper (``_setids.c``): a native child that changes its user or
  group ids execs it to make the change on a memory map of its own, so that its cost
  does not grow with the parent's heap; without it such a child is cloned with a copy
  of the parent's memory, as ``fork`` does. It is linked statically where the C
  library allows, which makes its exec cheaper.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PROGRAMS = {
    "_nsinit": ("src/tether/_native/_nsinit.c", "the namespace init", False),
    "_setids": ("src/tether/_native/_setids.c", "the id helper", True),
}
"""name: (source, what it is, whether to try a static link first)"""


class BuildExtAndPrograms(build_ext):
    """``build_ext``, then the small programs linked as executables beside the extension."""

    def run(self) -> None:
        super().run()
        for name, (source, what, static) in PROGRAMS.items():
            try:
                self.build_program(name, source, static)
            except Exception as exc:  # optional, like the extension itself
                print(f"warning: tether's {what} was not built: {exc}")

    def build_program(self, name: str, source: str, static: bool) -> None:
        if self.compiler is None or isinstance(self.compiler, str):
            return  # no extension was compiled: no compiler to link with either
        target = os.path.dirname(self.get_ext_fullpath("tether._native._spawner"))
        os.makedirs(target, exist_ok=True)
        objects = self.compiler.compile(
            [source],
            output_dir=self.build_temp,
            extra_postargs=["-O2", "-Wall", "-Wextra"],
        )
        if static:
            try:
                self.compiler.link_executable(
                    objects, name, output_dir=target, extra_postargs=["-static"]
                )
                return
            except Exception:  # no static C library here: a dynamic link does the same job
                pass
        self.compiler.link_executable(objects, name, output_dir=target)


setup(
    cmdclass={"build_ext": BuildExtAndPrograms},
    ext_modules=[
        Extension(
            "tether._native._spawner",
            sources=["src/tether/_native/_spawner.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ],
)
