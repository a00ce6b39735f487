"""Keep the documentation from rotting.

* The Examples sections of the docstrings run as doctests. The modules
  whose examples are cheap (no backbone, or a cached one: < 5 s each) run
  always; those that embed or train with a real backbone are marked
  ``slow`` (10-30 s each on a 2-core CPU).
* Every public name appears in the API reference (``docs/api.rst``), so a
  new estimator cannot ship without a page.
* The site's sources and gallery scripts hold together: every guide page is
  in a toctree, every gallery script reads the quick-mode variable, and
  (``slow``) the cheaper gallery scripts (``GALLERY_TESTED``) run in quick
  mode as the docs build runs them; ``make docs`` runs all of them.

The whole site is built by ``make docs`` (Sphinx, warnings as errors, every
gallery script in quick mode, internal links checked), which CI runs after
``make test`` (``.ci/run``); this file does not build it (minutes), it
checks what breaks it most often, within ``make test``.
"""

import doctest
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GALLERY = ROOT / "examples" / "gallery"

# Modules whose Examples run in a few seconds with the offline defaults.
CHEAP_DOCTEST_MODULES = [
    "sktransfer._config",
    "sktransfer._cache",
    "sktransfer.metrics._forgetting",
    "sktransfer.selection._scores",
    "sktransfer.datasets._bbc_news",
    "sktransfer.datasets._rotten_tomatoes",
    "sktransfer.datasets._fashion_mnist",
    "sktransfer.backbones._loading",
    "sktransfer.datasets._adult",  # < 1 s
    "sktransfer.metrics._fairness",  # 9 s (bootstrap on toy predictions, no model)
]
# Modules whose Examples embed or train with a real backbone (seconds measured
# with pytest --doctest-modules on the loaded 2-core machine, import included).
SLOW_DOCTEST_MODULES = [
    "sktransfer._feature_extractor",  # 33 s
    "sktransfer._zero_shot",  # 37 s
    "sktransfer._few_shot",  # 32 s
    "sktransfer._lora",  # 38 s
    "sktransfer._auto",  # 28 s
    "sktransfer.adaptation",  # 27 s
    "sktransfer.merging",  # 48 s
    "sktransfer.selection._selector",  # 12 s
    "sktransfer._dask",  # 9 s
    "sktransfer._fine_tuning",  # 31 s
    "sktransfer._multi_task",
    "sktransfer.federated._estimator",  # 96 s at load 13: a Flower simulation on Ray
]

# Public modules whose names the API reference lists besides sktransfer.__all__.
PUBLIC_SUBMODULES = [
    "sktransfer.datasets",
    "sktransfer.selection",
    "sktransfer.adaptation",
    "sktransfer.merging",
]
# Public names of modules without __all__.
EXTRA_PUBLIC_NAMES = {
    "sktransfer.metrics": ["linear_cka", "forgetting_report"],
    "sktransfer.callbacks": [
        "FreezeSchedule",
        "WarmupCosine",
        "L2SP",
        "WiSEFT",
        "ResumableCheckpoint",
        "apply_wise_ft",
        "recompute_bn_statistics",
        "planned_train_steps",
    ],
}


def _run_doctests(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, module_name) if t.examples]
    assert tests, f"{module_name} has no doctest examples: remove it from the list in {__file__}"
    for test in tests:
        test.globs = dict(test.globs)
        runner.run(test, out=lambda s: None)
    failures, attempted = runner.summarize(verbose=False)
    if failures:
        # Run again, printing, so the failure report names the example.
        report = []
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        for test in tests:
            runner.run(test, out=report.append)
        pytest.fail(f"{failures} of {attempted} doctest examples failed in {module_name}:\n" + "".join(report))


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("module_name", CHEAP_DOCTEST_MODULES)
def test_docstring_examples_cheap(module_name, offline, tmp_path, monkeypatch):
    monkeypatch.setenv("SKTRANSFER_CACHE_DIR", str(tmp_path))
    _run_doctests(module_name)


@pytest.mark.slow
@pytest.mark.parametrize("module_name", SLOW_DOCTEST_MODULES)
def test_docstring_examples_slow(module_name, offline):
    _run_doctests(module_name)


def test_every_module_with_examples_is_doctested():
    """A module whose docstrings gain ``>>>`` examples must join one of the lists above."""
    listed = set(CHEAP_DOCTEST_MODULES)
    listed |= {m.values[0] if hasattr(m, "values") else m for m in SLOW_DOCTEST_MODULES}
    package = ROOT / "sktransfer"
    with_examples = {
        "sktransfer." + ".".join(p.relative_to(package).with_suffix("").parts)
        for p in package.rglob("*.py")
        if ">>> " in p.read_text(encoding="utf-8")
    }
    unlisted = sorted(with_examples - listed)
    assert not unlisted, f"modules with doctest examples missing from tests/test_docs.py's lists: {unlisted}"


def _api_source():
    return (DOCS / "api.rst").read_text(encoding="utf-8")


def _listed(name, source):
    # An autosummary entry is the name alone on its line, or an autodata/autoclass target.
    return re.search(rf"^\s+{re.escape(name)}\s*$|::\s+{re.escape(name)}\s*$", source, re.MULTILINE) is not None


def test_every_public_name_is_in_the_api_reference():
    import sktransfer

    source = _api_source()
    missing = [f"sktransfer.{n}" for n in sktransfer.__all__ if not _listed(n, source)]
    for mod_name in PUBLIC_SUBMODULES:
        mod = importlib.import_module(mod_name)
        missing += [f"{mod_name}.{n}" for n in mod.__all__ if not _listed(n, source)]
    for mod_name, names in EXTRA_PUBLIC_NAMES.items():
        mod = importlib.import_module(mod_name)
        for n in names:
            assert hasattr(mod, n), f"{mod_name}.{n} no longer exists: update EXTRA_PUBLIC_NAMES in {__file__}"
        missing += [f"{mod_name}.{n}" for n in names if not _listed(n, source)]
    assert not missing, f"public names missing from docs/api.rst (add them to an autosummary block): {missing}"


def test_every_guide_page_is_in_a_toctree():
    """A Markdown page in docs/ that no toctree lists is unreachable on the site."""
    toctree_sources = "".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md")) + _api_source()
    entries = set(re.findall(r"^([\w/]+)\s*$", toctree_sources, re.MULTILINE))
    pages = {p.stem for p in DOCS.glob("*.md")} - {"index"}
    unlisted = sorted(pages - entries)
    assert not unlisted, f"pages in docs/ that no toctree lists (add them to docs/user_guide.md): {unlisted}"


def test_gallery_scripts_read_the_quick_mode():
    scripts = sorted(GALLERY.glob("plot_*.py"))
    assert scripts, "examples/gallery/ holds no plot_*.py script"
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        compile(text, str(script), "exec")
        assert text.startswith('"""'), f"{script.name}: sphinx-gallery needs a docstring with a title first"
        assert "SKTRANSFER_DOCS_QUICK" in text, f"{script.name} does not read SKTRANSFER_DOCS_QUICK"


# Gallery scripts that this file runs in quick mode (``slow``), chosen so that
# they add little to ``make test``; ``make docs`` runs every script anyway.
# Seconds: quick mode, subprocess, measured on the loaded 2-core machine
# (load average 8-13), warm embedding cache where the script uses cache=True.
GALLERY_TESTED = [
    "plot_cache_grid_search.py",  # 25-57 s
    "plot_text_and_numeric_columns.py",  # 7-30 s
    "plot_images_from_folder.py",  # IMAGES_S
]
# Scripts left to ``make docs`` (each one trains or embeds for a minute or more here).
GALLERY_DOCS_ONLY = [
    "plot_grid_search_strategy.py",  # GRID_S: 3 fine-tunings x 2 folds + refit
    "plot_lora_save_load.py",  # LORA_S: LoRA training + 3 passes over the test texts
    "plot_backbone_selection.py",  # BACKBONE_S: 3 candidates embedded, probes cross-validated
    "plot_domain_shift.py",  # DOMAIN_S
    "plot_bias_monitoring.py",  # another helper's script: not measured here
]


def test_every_gallery_script_is_run_or_left_to_the_docs_build():
    """A new gallery script must be listed: run here, or only by ``make docs``."""
    scripts = {p.name for p in GALLERY.glob("plot_*.py")}
    unlisted = sorted(scripts - set(GALLERY_TESTED) - set(GALLERY_DOCS_ONLY))
    assert not unlisted, (f"gallery scripts in neither GALLERY_TESTED nor GALLERY_DOCS_ONLY of {__file__}: {unlisted}")
    stale = sorted(set(GALLERY_TESTED) - scripts)
    assert not stale, f"GALLERY_TESTED names scripts that no longer exist: {stale}"


@pytest.mark.slow
@pytest.mark.parametrize("script", GALLERY_TESTED)
def test_gallery_script_runs_in_quick_mode(script, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", SKTRANSFER_DOCS_QUICK="1", MPLBACKEND="Agg",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    proc = subprocess.run([sys.executable, str(GALLERY / script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip(), f"{script} printed nothing: a gallery script prints what it measured"
