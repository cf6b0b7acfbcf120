"""Every name in ``lerowds.__all__`` imports and says what it is (a docstring of its own)."""

from __future__ import annotations

import inspect

import pytest

import lerowds


@pytest.mark.parametrize("name", lerowds.__all__)
def test_every_public_name_imports_and_has_a_docstring(name: str) -> None:
    value = getattr(lerowds, name)
    doc = value.__doc__ if inspect.isclass(value) or inspect.isroutine(value) else None
    assert doc and doc.strip(), f"lerowds.{name} has no docstring"
    if inspect.isclass(value):  # not one inherited from a base class
        assert "__doc__" in vars(value) and vars(value)["__doc__"], f"lerowds.{name} inherits its docstring"


def test_errors_users_are_told_to_catch_are_exported() -> None:
    from lerowds import errors

    public = {n for n, v in vars(errors).items() if inspect.isclass(v) and issubclass(v, Exception)}
    assert public <= set(lerowds.__all__), sorted(public - set(lerowds.__all__))


def test_dataset_docstring_documents_every_setting() -> None:
    params = inspect.signature(lerowds.LeRobotWebDataset.__init__).parameters
    doc = lerowds.LeRobotWebDataset.__doc__ or ""
    missing = [p for p in params if p != "self" and p not in doc]
    assert not missing, f"LeRobotWebDataset's docstring does not document {missing}"
