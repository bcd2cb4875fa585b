"""Sphinx configuration of tether's documentation site (``make docs``).

The hazard is drift: a hand-written reference that repeats the docstrings goes stale, and a
link to a name that no longer exists rots silently. So the reference under ``api/`` is
generated from the docstrings by autodoc, the pages are MyST Markdown, and the build is
nitpicky and run with ``-W --keep-going``: any warning, any reference that does not resolve,
fails it. The build reads nothing from the network: Python's own inventory is bundled in
``_inventories/`` (from Debian's ``python3.11-doc``), and names no bundled inventory covers
are listed in ``nitpick_ignore`` below, each with its reason.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # `make docs` installs tether too; this is for plain sphinx

import tether  # noqa: E402  (after the path, for a build without the editable install)

project = "tether"
author = "the tether authors"
copyright = "the tether authors"
release = tether.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_inventories"]

# -- Markdown -------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist", "attrs_inline"]
myst_heading_anchors = 4  # `[text](page.md#a-heading)` links resolve to a heading's slug

# -- Strictness ---------------------------------------------------------------------------
nitpicky = True
nitpick_ignore = [
    # The type parameter of Supervised (Process or AsyncProcess, as its docstring says): a
    # private TypeVar that no page can document.
    ("py:class", "tether._supervise._records.H"),
    ("py:obj", "tether._supervise._records.H"),
    # anyio publishes its inventory on the web only, and the build fetches nothing.
    ("py:class", "ByteReceiveStream"),
    ("py:class", "ByteSendStream"),
]

# -- Autodoc -----------------------------------------------------------------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}


def _merge_private_attribute_docs() -> None:
    """Let autodoc find the attribute docstrings of classes defined in private modules.

    ``tether/__init__.py`` (and ``tether/daemon/__init__.py``) set each public class's
    ``__module__`` to its public home, so that reprs and tracebacks say ``tether.X``. autodoc
    reads ``#:``-less attribute docstrings (the string after a field) from the source of
    ``__module__``, which is then the package's ``__init__.py``, where they are not: the fields
    of ``Exited``, ``RestartPolicy``, ... would vanish from the reference. So the analyzer of a
    public package also carries the attribute docstrings of the private modules under it.
    """
    from sphinx.errors import PycodeError
    from sphinx.pycode import ModuleAnalyzer

    original = ModuleAnalyzer.for_module.__func__  # type: ignore[attr-defined]
    homes = {"tether": "tether._", "tether.daemon": "tether.daemon._"}

    def for_module(cls: type[ModuleAnalyzer], modname: str) -> ModuleAnalyzer:
        analyzer = original(cls, modname)
        prefix = homes.get(modname)
        if prefix is not None and not getattr(analyzer, "_tether_merged", False):
            analyzer.analyze()
            for name in sorted(sys.modules):
                if name.startswith(prefix):
                    try:
                        private = original(cls, name)
                        private.analyze()
                    except PycodeError:  # an extension module: no source, no attribute docs
                        continue
                    for key, doc in private.attr_docs.items():
                        analyzer.attr_docs.setdefault(key, doc)
                    for key, order in private.tagorder.items():
                        analyzer.tagorder.setdefault(key, order)
            analyzer._tether_merged = True  # type: ignore[attr-defined]
        return analyzer

    ModuleAnalyzer.for_module = classmethod(for_module)  # type: ignore[method-assign,assignment]


_merge_private_attribute_docs()


def _hide_private_bases(
    app: object, name: str, obj: object, options: object, bases: list[object]
) -> None:
    """``Bases:`` lines name public classes only (a private base is an implementation detail)."""
    bases[:] = [
        base
        for base in bases
        if not str(getattr(base, "__module__", "")).startswith("tether._")
        and "tether._" not in repr(base)
        and not repr(base).startswith("typing.Generic[")
        and base is not object
    ]


# Names that annotations show unqualified: tether's modules say `from __future__ import
# annotations`, and a class given a public ``__module__`` has its string annotations read in
# the package's namespace, where these names are not. Each goes to where it is documented:
# the standard library's page, or the docstring that spells out a private alias.
_PYTHON_TARGETS = {
    "Signals": "signal.Signals",
    # asyncio's classes live in asyncio.streams but are documented at asyncio.X.
    "asyncio.streams.StreamReader": "asyncio.StreamReader",
    "asyncio.streams.StreamWriter": "asyncio.StreamWriter",
}
_EXPLAINED_AT = {
    "StrOrBytesPath": ("api/spawning", "tether.SpawnOptions"),
    "StdioOption": ("api/spawning", "tether.SpawnOptions"),
}


def _resolve_unqualified(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """The ``missing-reference`` handler for the names above (None for any other)."""
    target = node.get("reftarget")
    if node.get("refdomain") != "py":
        return None
    if target in _PYTHON_TARGETS:
        from sphinx.ext.intersphinx import missing_reference

        node = node.deepcopy()
        node["reftarget"] = _PYTHON_TARGETS[target]
        return missing_reference(app, env, node, contnode)
    if target in _EXPLAINED_AT:
        from sphinx.util.nodes import make_refnode

        docname, anchor = _EXPLAINED_AT[target]
        return make_refnode(app.builder, node["refdoc"], docname, anchor, contnode, target)
    home = _public_home(target)
    if home is not None:
        py = env.get_domain("py")
        return py.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], home, node, contnode
        )
    return None


def _public_home(target: str) -> str | None:
    """Where ``tether.X`` is documented when X lives in a public submodule, else None.

    ``tether.PidFile`` is ``tether.daemon.PidFile``, ``tether.Limits`` is
    ``tether.limits.Limits``, ``tether.Popen`` is ``tether.subprocess.Popen``: the reference
    documents each once, at its home, and a link to the other name goes there.
    """
    module, _, name = target.rpartition(".")
    if module != "tether" or name not in tether.__all__:
        return None
    home = getattr(getattr(tether, name), "__module__", None)
    if not isinstance(home, str) or home == module or not home.startswith("tether."):
        return None
    return f"{home}.{name}"


# The public modules whose every name (``__all__``) the reference must document.
PUBLIC_MODULES = ["tether", "tether.limits", "tether.subprocess", "tether.asyncio", "tether.daemon"]


def _check_every_public_name(app: Any, env: Any) -> None:
    """Warn (so fail the build) for a name of a public ``__all__`` that no page documents.

    A name exported from two modules (``tether.PidFile`` is ``tether.daemon.PidFile``) counts
    as documented when the object is documented under either name.
    """
    import importlib

    from sphinx.util import logging

    documented = set(env.get_domain("py").objects)
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            obj = getattr(module, name)
            home = getattr(obj, "__module__", None)
            candidates = {f"{modname}.{name}"}
            if isinstance(home, str) and home.startswith("tether"):
                candidates.add(f"{home}.{name}")
            if not candidates & documented:
                logging.getLogger(__name__).warning(
                    "%s.%s is public (in __all__) but no page of docs/api/ documents it",
                    modname,
                    name,
                )


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _hide_private_bases)
    app.connect("missing-reference", _resolve_unqualified)
    app.connect("env-check-consistency", _check_every_public_name)


# -- Intersphinx, offline ------------------------------------------------------------------
# Links to the standard library point at docs.python.org, but the inventory is read from the
# file in _inventories/ (Debian's python3.11-doc 3.11.2, usr/share/doc/python3.11/html/
# objects.inv), so the build opens no connection.
intersphinx_mapping = {
    "python": (
        "https://docs.python.org/3/",
        str(Path(__file__).parent / "_inventories/python.inv"),
    ),
}

# -- HTML -----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"tether {release}"
html_static_path = ["_static"]
html_css_files = ["tether.css"]
pygments_style = "friendly"
pygments_dark_style = "monokai"
