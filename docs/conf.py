"""Sphinx configuration of the sktransfer documentation site.

Why Sphinx + sphinx-gallery + numpydoc (and not MkDocs Material + mkdocstrings):

* the docstrings are numpydoc, and numpydoc is a Sphinx extension: the API
  reference renders them as scikit-learn's does, with no format conversion;
* sphinx-gallery runs the example scripts at build time, captures what they
  print and the figures they draw, and links each API page to the examples
  that use it (``backreferences``); mkdocs-gallery exists but is far less used;
* intersphinx links our pages to scikit-learn's, numpy's and PyTorch's;
* myst-parser reads the existing Markdown pages in ``docs/`` as they are, so
  they stay readable on GitHub and need no rewrite.

Theme: pydata-sphinx-theme (the one scikit-learn, numpy and pandas use); it
installs from the package registry and needs no network at build time.

Build: ``make docs`` (offline, warnings are errors, then an internal link
check). Gallery scripts read ``SKTRANSFER_DOCS_QUICK=1`` (set by ``make docs``
unless overridden) to shrink their data so the whole gallery runs in a few
minutes on a 2-core CPU.
"""

import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# Offline build: weights come from installed packages, never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SKTRANSFER_DOCS_QUICK", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# No progress bars in the gallery's captured output.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import sktransfer  # noqa: E402

project = "sktransfer"
author = "sktransfer developers"
copyright = "2026, sktransfer developers"
release = sktransfer.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
html_static_path = ["_static"]
exclude_patterns = ["_build", "generated/*.examples", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.json"]

# -- Markdown (myst-parser) ---------------------------------------------------
# Heading anchors let the pages' "[text](page.md#a-heading)" links resolve,
# as they do on GitHub.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]

# -- API reference (autosummary + numpydoc) -------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False  # the class template lists the methods
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- Cross-project links --------------------------------------------------------
# Offline: no inventories are downloaded (the build must not need a network).
# Set SKTRANSFER_DOCS_INTERSPHINX=1 where a network is available.
intersphinx_mapping = {}
if os.environ.get("SKTRANSFER_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "sklearn": ("https://scikit-learn.org/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
    }

# -- Gallery (sphinx-gallery) ----------------------------------------------------
# Every script in examples/gallery/ whose name starts with "plot_" runs at
# build time (in quick mode: SKTRANSFER_DOCS_QUICK=1); the demo
# examples/demo.py (`make demo`, minutes) stays outside the gallery.
sphinx_gallery_conf = {
    "examples_dirs": ["../examples/gallery"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "backreferences_dir": "generated",
    "doc_module": ("sktransfer",),
    "min_reported_time": 0,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
}

# -- HTML -------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sktransfer {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_css_files = ["sktransfer.css"]
html_show_sourcelink = True
html_last_updated_fmt = None
pygments_style = "sphinx"

# -- Narrow, documented warning suppressions --------------------------------------
# None yet: a warning fails the build (-W). Add an entry here only with the
# reason and the file it comes from.
suppress_warnings = []


# -- Links from the Markdown pages to files outside docs/ ---------------------------
# The guide pages link to ../benchmarks/RESULTS.md so that the link works on
# GitHub. On the site that file is the page results.md (which includes it),
# so the link is rewritten at read time; the .md files are not changed.
_RESULTS_LINK = re.compile(r"\]\(\.\./benchmarks/RESULTS\.md")


def _rewrite_results_links(app, docname, source):
    if docname != "results":
        source[0] = _RESULTS_LINK.sub("](results.md", source[0])


# -- Docstrings: narrow fixes at render time ------------------------------------------
# sklearn generates set_{fit,score,...}_request methods on every estimator
# that takes metadata; their docstrings point into sklearn's own glossary,
# which does not exist here. sklearn's site lists them; ours leaves them out.
_REQUEST_METHOD = re.compile(r"^set_\w+_request$")


def _skip_member(app, what, name, obj, skip, options):
    if _REQUEST_METHOD.match(name):
        return True
    return None


def setup(app):
    app.connect("source-read", _rewrite_results_links)
    app.connect("autodoc-skip-member", _skip_member)
