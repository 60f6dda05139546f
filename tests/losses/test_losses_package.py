"""The kerastorch.losses package: its public names, their documentation, doctests, import boundaries."""

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import kerastorch
import kerastorch.losses as losses_package

PUBLIC = [
    "FocalLoss",
    "MultiClassFocalLoss",
    "SCELoss",
    "DiceLoss",
    "JaccardLoss",
    "TverskyLoss",
    "DiceBCELoss",
    "CostSensitiveLoss",
    "RegularizedLoss",
    "with_regularization",
    "check_loss",
]
MODULES = sorted(m.name for m in pkgutil.iter_modules(losses_package.__path__, "kerastorch.losses."))
SOURCES = sorted(Path(losses_package.__file__).parent.glob("*.py"))


def test_the_public_names_are_those_of_the_former_module():
    assert losses_package.__all__ == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_imports_from_the_package_and_as_an_attribute(name):
    namespace = {}
    exec(f"from kerastorch.losses import {name}", namespace)
    assert namespace[name] is getattr(kerastorch.losses, name)


def test_shared_helpers_stay_out_of_the_public_api():
    internal = ["check_reduction", "check_real", "reduce", "float_input", "check_loss_value",
                "loss_name", "OverlapLoss"]
    assert not set(internal) & set(losses_package.__all__)
    assert not set(internal) & set(dir(losses_package))


def test_one_module_per_family():
    assert MODULES == ["kerastorch.losses." + m for m in (
        "cost_sensitive", "focal", "misuse", "overlap", "regularization", "symmetric", "validation")]


def test_docstring_examples_run():
    attempted = 0
    for name in ["kerastorch.losses"] + MODULES:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
        attempted += result.attempted
    assert attempted > 0


def test_public_api_is_listed_and_documented():
    assert losses_package.__doc__.splitlines()[0].startswith("Loss functions for kerastorch")
    for name in losses_package.__all__:
        doc = getattr(losses_package, name).__doc__
        assert doc is not None, name
        assert "Args:" in doc and "Example:" in doc and "Defaults to" in doc, name


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_modules_import_no_trainer_module_and_no_private_sibling_name(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            assert not any(alias.name.split(".")[0] == "kerastorch" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "kerastorch", "absolute kerastorch import"
            # level 2 leaves the package: only the warning helper may be imported from there
            assert node.level < 2 or (node.level, node.module) == (2, "userwarn"), node.module
            if node.level:
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports private names {private}"
