"""Import paths from before the reader was grouped into folders keep working, as the very same modules."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from lerowds.reader._moved import MOVED

# In a fresh interpreter (nothing imported yet, so each old path warns): each old module path, what it is,
# how many warnings name its new path; and an old ``from ... import`` gives the same object as the new path.
_PROBE = """
import importlib, json, sys, warnings
from lerowds.reader._moved import MOVED
out = {}
for old, new in MOVED.items():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = importlib.import_module("lerowds.reader." + old)
    out[old] = [m.__name__, sum(f"moved to lerowds.reader.{new}" in str(x.message) for x in w)]
from lerowds.reader.store import open_store
from lerowds.reader.io.store import open_store as new_open_store
out["same object"] = open_store is new_open_store
print(json.dumps(out))
"""


def test_every_old_path_is_the_new_module_and_warns_once() -> None:
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    found = json.loads(result.stdout)
    assert found.pop("same object") is True
    assert found == {old: [f"lerowds.reader.{new}", 1] for old, new in MOVED.items()}


def test_old_names_that_became_packages_reexport() -> None:
    from lerowds.reader.decode import PyAVClipDecoder
    from lerowds.reader.order import ORDER_VERSION, rank_plan
    from lerowds.reader.resume import resume_plan

    assert ORDER_VERSION == 2
    assert all(callable(f) for f in (PyAVClipDecoder, rank_plan, resume_plan))


def test_unknown_old_name_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lerowds.reader.no_such_module")
