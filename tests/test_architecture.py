"""ARCHITECTURE.md's rules, checked on the source: one home per module name, no imports back
up a layer, imports inside functions only of optional dependencies and of the heavy ones a
plain ``import kerastorch`` does not need, Accelerate internals in one module.
(tests/test_import_time.py checks in a fresh interpreter that those heavy ones stay unloaded.)"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kerastorch"
SOURCES = sorted(PACKAGE.rglob("*.py"))
OPTIONAL = ("matplotlib", "IPython", "tensorboard", "torch.utils.tensorboard", "wandb", "mlflow",
            "transformers", "datasets", "onnx", "onnxruntime", "onnxscript", "safetensors", "scipy")
# required, but slow to import and not needed by ``import kerastorch``: imported on first use
# (kerastorch.metric_classes subclasses torchmetrics; kerastorch.experiments loads pandas;
# torch.distributed.checkpoint only loads weights back into FSDP2 shards)
ON_FIRST_USE = ("torchmetrics", "pandas", "accelerate", "kerastorch.metric_classes",
                "kerastorch.experiments", "torch.distributed.checkpoint")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _under(name: str, roots) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def _type_checking_only(tree: ast.Module) -> set:
    """ids of the imports in module-level ``if TYPE_CHECKING:`` blocks, which never run."""
    return {id(node) for block in tree.body
            if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING",
                                                                          "typing.TYPE_CHECKING")
            for node in block.body}


def _imports(path: Path):
    """(imported kerastorch-or-external module, runs_at_import) for each import in path:
    False for one inside a function (or a ``TYPE_CHECKING`` block, which never runs)."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body)) | _type_checking_only(tree)
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            yield name, id(node) in top


def test_no_two_modules_share_a_name():
    names = [p.stem for p in SOURCES if p.stem != "__init__"]
    assert sorted({n for n in names if names.count(n) > 1}) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module(p))
def test_only_optional_or_heavy_dependencies_are_imported_on_first_use(path):
    lazy = [name for name, top in _imports(path)
            if not top and not _under(name, OPTIONAL + ON_FIRST_USE) and name != "__future__"]
    assert lazy == []


def test_the_type_checking_blocks_are_recognised():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas\n"
                     "def f():\n    import json\n")
    assert len(_type_checking_only(tree)) == 1
    assert _under("accelerate.utils", ON_FIRST_USE) and not _under("pandasx", ON_FIRST_USE)


# what each lower layer may not import (the layers of ARCHITECTURE.md)
FORBIDDEN = {
    "kerastorch.losses": ("kerastorch.",),  # the losses import nothing of the trainer...
    "kerastorch.callbacks": ("kerastorch.kerasmodel", "kerastorch.runners", "kerastorch.data",
                             "kerastorch.experiments", "kerastorch.state"),
    "kerastorch.runners": ("kerastorch.kerasmodel", "kerastorch.callbacks", "kerastorch.state"),
    "kerastorch.data": ("kerastorch.kerasmodel", "kerastorch.callbacks", "kerastorch.runners"),
    "kerastorch.files": ("kerastorch.",),
    "kerastorch.checks": ("kerastorch.",),
    "kerastorch.batches": ("kerastorch.",),
    "kerastorch.objectives": ("kerastorch.",),
    "kerastorch.diagnostics": ("kerastorch.kerasmodel", "kerastorch.runners",
                               "kerastorch.callbacks"),
}
# ...but these leaf helpers
ALLOWED = {"kerastorch.losses": ("kerastorch.losses", "kerastorch.userwarn"),
           "kerastorch.checks": ("kerastorch.userwarn",),
           "kerastorch.objectives": ("kerastorch.batches",)}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module(p))
def test_no_import_runs_back_up_a_layer(path):
    module = _module(path)
    for layer, forbidden in FORBIDDEN.items():
        if module != layer and not module.startswith(layer + "."):
            continue
        allowed = ALLOWED.get(layer, ())
        bad = [name for name, _ in _imports(path)
               if name.startswith(forbidden) and not name.startswith(allowed)]
        assert bad == [], f"{module} imports {bad}"


def test_accelerate_internals_are_used_in_one_module_only():
    internal = ("_reset_state", "AcceleratorState", "GradientState", "synchronized_generator",
                "AcceleratedOptimizer", "accelerate.state", "accelerate.optimizer")
    users = sorted(_module(p) for p in SOURCES
                   if any(name in p.read_text() for name in internal))
    assert users == ["kerastorch.accelerate_compat"]


def test_modules_do_not_import_each_others_private_names():
    bad = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                bad += [f"{_module(path)}: {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert bad == []
