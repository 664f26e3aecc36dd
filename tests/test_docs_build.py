"""What the API reference promises beyond a clean Sphinx build (``make docs``).

* Every public cell and layer class shows an ``Examples::`` block of doctest lines.
* The doctests of every memnets module pass: this file is how ``make test`` runs them
  (``pytest --doctest-modules src/memnets`` runs the same examples).
* Every memnets module has an ``automodule`` in docs/api/: Sphinx itself says nothing
  about a module that no page names.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import memnets

API = Path(__file__).resolve().parents[1] / "docs" / "api"
# the command line is documented by `memnets --help` and the guides, not the reference
NOT_IN_REFERENCE = {"memnets", "memnets.__main__", "memnets.cli", "memnets.demo"}


def _module_names() -> list[str]:
    names = ["memnets"]
    names += [m.name for m in pkgutil.walk_packages(memnets.__path__, "memnets.")]
    return sorted(n for n in names if n != "memnets.__main__")  # __main__ runs the CLI


def _source(name: str) -> str:
    return Path(importlib.util.find_spec(name).origin).read_text(encoding="utf-8")


def _public_modules(package) -> list[type]:
    """The public nn.Module classes defined in the modules of ``package``."""
    classes = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        classes += [obj for name, obj in vars(module).items()
                    if inspect.isclass(obj) and obj.__module__ == module.__name__
                    and not name.startswith("_") and issubclass(obj, nn.Module)]
    return classes


def run_doctests(module) -> tuple[int, int, str]:
    """``(tried, failed, report)`` for the doctests of ``module``'s docstrings."""
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=report.append)
    return runner.tries, runner.failures, "".join(report)


@pytest.mark.parametrize("package", [memnets.cells, memnets.layers], ids=lambda p: p.__name__)
def test_every_public_cell_and_layer_class_has_examples(package):
    classes = _public_modules(package)
    assert len(classes) >= 10  # the package was read, not skipped
    missing = [f"{c.__module__}.{c.__qualname__}" for c in classes
               if not re.search(r"Examples::\n(\s*\n)+\s+>>> ", inspect.getdoc(c) or "")]
    assert not missing, f"no 'Examples::' block of '>>>' lines in the docstring of {missing}"


DOCTEST_MODULES = [n for n in _module_names() if ">>>" in _source(n)]


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_doctests_pass(name):
    torch.manual_seed(0)  # the examples hold for any draw; a failure reproduces
    tried, failed, report = run_doctests(importlib.import_module(name))
    assert tried > 0, f"{name} has '>>>' lines but no doctest was found in its docstrings"
    assert failed == 0, f"{failed} of {tried} doctest lines of {name} failed:\n{report}"


def test_doctests_of_cells_and_layers_are_collected():
    assert {"memnets.cells.lstm", "memnets.layers.recurrent"} <= set(DOCTEST_MODULES)


def test_a_wrong_example_is_reported():
    module = types.ModuleType("fake", "A docstring whose example is wrong.\n\n>>> 1 + 1\n3\n")
    tried, failed, report = run_doctests(module)
    assert (tried, failed) == (1, 1) and "Expected:\n    3\nGot:\n    2" in report


def test_every_module_is_in_the_api_reference():
    named = set()
    for page in API.glob("*.rst"):
        named |= set(re.findall(r"^\.\. automodule:: (\S+)$", page.read_text(), re.M))
    missing = sorted(set(_module_names()) - NOT_IN_REFERENCE - named)
    assert not missing, (f"modules without an '.. automodule::' in docs/api/<package>.rst "
                         f"(add a section per module): {missing}")
