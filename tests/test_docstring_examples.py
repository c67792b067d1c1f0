"""Every runnable example in a docstring of the installed package is executed.

Modules are imported under their real names (``tidal.…``), so the examples
see the same module state as user code does.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tidal

_SKIP_PREFIXES = ("tidal.tests", "tidal.examples", "tidal.__main__")


def _modules() -> list[str]:
    names = ["tidal"]
    for info in pkgutil.walk_packages(tidal.__path__, "tidal."):
        if info.name.startswith(_SKIP_PREFIXES) or info.name.endswith(".__main__"):
            continue
        names.append(info.name)
    return sorted(set(names))


@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
