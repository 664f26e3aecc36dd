"""Sphinx configuration of the memnets documentation: the guides (docs/*.md, read by
MyST) and the API reference built from the docstrings (docs/api/*.rst, autodoc).

Build with ``make docs``: HTML in docs/_build/html, every warning an error.

Why these tools: the docstrings are written in reStructuredText for Sphinx already
(``.. math::`` blocks, ``:class:`` roles, Google-style ``Args:`` read by napoleon),
and the guides are Markdown, which MyST reads without rewriting them.  Nothing here
reaches the network: no intersphinx, and MathJax is only loaded by a browser that
opens the pages.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the checkout's memnets, even when not installed

project = "memnets"
author = "the memnets authors"
copyright = "the memnets authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# heading anchors, so that a guide may link to [a section](core.md#writing-a-cell)
myst_heading_anchors = 4

# autodoc: documented members only, in the order of the source; signatures as written
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autoclass_content = "class"
# a method without a docstring of its own is left out, not given torch's (nn.Module.forward ...)
autodoc_inherit_docstrings = False
# a docstring's Args:/Returns:/Raises: sections (Google style); no NumPy style
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Attributes: a field list like Args (several names may share an entry: "bias_ih, bias_hh"),
# not attribute objects, which would clash with those autodoc finds (NamedTuple fields)
napoleon_custom_sections = [("Attributes", "params_style")]

html_theme = "alabaster"
html_title = "memnets"
html_static_path: list[str] = []
