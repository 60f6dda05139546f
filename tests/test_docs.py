"""Docstring examples and the README's snippets run, and print what they claim."""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import kerastorch

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(kerastorch.__path__, "kerastorch."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_readme_quick_start_prints_what_its_comments_say(capsys):
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    exec(compile(block, "README-quick-start", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    claimed = []
    for line in block.splitlines():
        if line.startswith("print(") and "#" in line:
            claimed.append(line.split("#", 1)[1].strip())
        elif line.startswith("# ["):
            claimed.append(line[2:])
    assert printed == claimed


def test_readme_opens_with_the_two_commands_ci_runs():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    setup = first_block[0].split(" && python examples/")[0]
    assert setup in ci
    assert first_block[1].split("&& ", 1)[1] in ci


def test_readme_recipes_block_runs(tmp_path, monkeypatch):
    """Every recipe in the README's Recipes section runs and its asserts hold."""
    pytest.importorskip("mlflow")
    pytest.importorskip("onnx")
    monkeypatch.chdir(tmp_path)  # MLflow and friends write nothing into the repository
    text = (ROOT / "README.md").read_text()
    block = text.split("## Recipes", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block, "README-recipes", "exec"), namespace)
    assert len(namespace["history"]) == 3
    assert len(namespace["finder"].history) > 10
