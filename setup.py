"""Build hook beside pyproject.toml: the optional native spawner extension.

``optional=True``: where the C spawner cannot be compiled, tether installs without
it and runs on its pure-Python backends (``tether._native.available`` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tether._native._spawner",
            sources=["src/tether/_native/_spawner.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
