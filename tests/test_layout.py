"""The package layout holds: no import cycles, layers import only what they may, no module over 400 lines.

The checker is ``tools/check_layout.py`` (CI also runs it on its own); these tests run it on the source tree
and on small made-up trees, so a checker that found nothing could not pass them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "check_layout.py"


@pytest.fixture(scope="module")
def layout():
    spec = importlib.util.spec_from_file_location("check_layout", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_source_tree_has_no_layout_problems(layout) -> None:
    assert layout.problems() == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_finds_a_cycle_through_a_lazy_import(layout, tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "lerowds/__init__.py": "",
            "lerowds/reader/__init__.py": "",
            "lerowds/reader/a.py": "from lerowds.reader.b import x\n",
            "lerowds/reader/b.py": "x = 1\ndef f():\n    from lerowds.reader import a\n",
            "lerowds/reader/c.py": "from lerowds.reader.a import x\n",
        },
    )
    assert layout.problems(src) == ["import cycle: lerowds.reader.a <-> lerowds.reader.b"]


def test_type_checking_imports_and_package_reexports_are_not_cycles(layout, tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "lerowds/__init__.py": "",
            "lerowds/reader/__init__.py": "",
            "lerowds/reader/order/__init__.py": "from lerowds.reader.order.pool import y\n",
            "lerowds/reader/order/pool.py": "from typing import TYPE_CHECKING\ny = 1\n"
            "if TYPE_CHECKING:\n    from lerowds.reader.order import y\n",
        },
    )
    assert layout.problems(src) == []


def test_finds_layer_breaks_and_long_modules(layout, tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "lerowds/__init__.py": "",
            "lerowds/reader/__init__.py": "",
            "lerowds/reader/io/__init__.py": "",
            "lerowds/reader/io/store.py": "def f():\n    import torch\n",
            "lerowds/convert/__init__.py": "from lerowds.reader import io\n" + "x = 1\n" * 401,
        },
    )
    found = layout.problems(src)
    assert any("lerowds.reader.io.store imports torch" in p for p in found), found
    assert any("lerowds.convert imports lerowds.reader" in p for p in found), found
    assert any(p.startswith("lerowds/convert/__init__.py: 402 lines") for p in found), found
    assert len(found) == 3, found
