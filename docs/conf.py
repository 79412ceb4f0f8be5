"""Sphinx configuration for fastbp's documentation.

Build (offline; nothing is fetched):  python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
import importlib.util
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)                      # document this checkout's fastbp

import fastbp  # noqa: E402

# The performance tables are made from committed benchmark output, never typed by hand.
_spec = importlib.util.spec_from_file_location("perf_table", os.path.join(ROOT, "benchmarks", "perf_table.py"))
perf_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(perf_table)
perf_table.write_docs_tables()

project = "fastbp"
author = "the fastbp developers"
copyright = "fastbp developers; BSD-3-Clause"
release = fastbp.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",                            # for CHANGELOG.md only
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated"]

# `name` in a docstring links to name's page when it has one, else it is set in italics.
default_role = "autolink"
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True}
autodoc_typehints = "none"
# Each class page lists its methods through autodoc (templates/autosummary/class.rst); numpydoc's
# own member tables would add a second, stub-less list of the same methods.
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_theme_options = {
    "description": "Multi-layer perceptrons trained fast on multicore CPUs",
    "fixed_sidebar": True,
    "page_width": "1180px",
    "sidebar_width": "230px",
    "show_powered_by": False,
}
html_static_path = []
html_show_sourcelink = False
html_title = f"fastbp {release}"

# No intersphinx and no external images: the build needs no network.


def _check_api_reference(app):
    """Warn (an error under -W) when a public name is missing from api.rst."""
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    with open(os.path.join(HERE, "api.rst"), encoding="utf-8") as f:
        text = f.read()
    listed, module = {}, None
    for line in text.splitlines():
        m = re.match(r"\.\. (?:currentmodule|module):: (\S+)", line.strip())
        if m:
            module = m[1]
            continue
        m = re.fullmatch(r"   ([A-Za-z_][A-Za-z0-9_]*)", line)
        if m and module:
            listed.setdefault(module, set()).add(m[1])
    import importlib
    import inspect

    # Modules with an __all__: every name in it. Modules without one: the functions and classes
    # they define whose names do not start with an underscore.
    for name in ("fastbp", "fastbp.sklearn", "fastbp.datasets", "fastbp.schedules", "fastbp.metrics",
                 "fastbp.interop", "fastbp.distributed"):
        mod = importlib.import_module(name)
        if hasattr(mod, "__all__"):
            public = set(mod.__all__) - {"__version__"}
        else:
            public = {k for k, v in vars(mod).items()
                      if not k.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v))
                      and v.__module__ == name}
        # a public submodule (fastbp.metrics) is listed by a section of its own
        public = {p for p in public if f"{name}.{p}" not in listed}
        for missing in sorted(public - listed.get(name, set())):
            log.warning(f"api.rst: {name}.{missing} is public but not listed")


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Leave out methods that scikit-learn generates on its estimator subclasses (set_fit_request,
    ...): they are scikit-learn's, documented there, and their docstrings refer to its glossary."""
    if getattr(obj, "__module__", None) and obj.__module__.startswith("sklearn."):
        return True
    return None


def setup(app):
    app.connect("builder-inited", _check_api_reference)
    app.connect("autodoc-skip-member", _skip_foreign_members)
