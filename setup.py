"""Build hook kept beside pyproject.toml so a compiled extension can join the build."""

from setuptools import setup

setup()
