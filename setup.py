"""Build hook beside pyproject.toml: the optional native spawner extension and its init.

``optional=True``: where the C spawner cannot be compiled, tether installs without
it and runs on its pure-Python backends (``tether._native.available`` says which).
Next to the extension the build links ``_nsinit``, the small program that is PID 1 of
each child's PID namespace in ``kill="namespace"`` mode (``_nsinit.c``); it is just as
optional: without it that mode refuses to start, and nothing else changes.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

INIT_SOURCE = "src/tether/_native/_nsinit.c"


class BuildExtAndInit(build_ext):
    """``build_ext``, then the namespace init linked as an executable beside the extension."""

    def run(self) -> None:
        super().run()
        try:
            self.build_init()
        except Exception as exc:  # optional, like the extension itself
            print(f"warning: tether's namespace init was not built: {exc}")

    def build_init(self) -> None:
        if self.compiler is None or isinstance(self.compiler, str):
            return  # no extension was compiled: no compiler to link with either
        target = os.path.dirname(self.get_ext_fullpath("tether._native._spawner"))
        os.makedirs(target, exist_ok=True)
        objects = self.compiler.compile(
            [INIT_SOURCE],
            output_dir=self.build_temp,
            extra_postargs=["-O2", "-Wall", "-Wextra"],
        )
        self.compiler.link_executable(objects, "_nsinit", output_dir=target)


setup(
    cmdclass={"build_ext": BuildExtAndInit},
    ext_modules=[
        Extension(
            "tether._native._spawner",
            sources=["src/tether/_native/_spawner.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ],
)
