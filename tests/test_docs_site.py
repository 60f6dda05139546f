"""The documentation site: every python block in docs/ runs and prints what it says; the site builds.

The convention (also stated in docs/index.md, "How these pages are tested"):

* every fenced block names its language; ```python blocks are executed, page by
  page, top to bottom, all blocks of a page sharing one namespace, in a fresh
  temporary working directory;
* a block prints exactly the lines its ``# -> `` comments give, in order (a
  trailing ``print(x)  # -> 3`` or a line of its own ``# -> 3``); a block with
  none prints nothing;
* anything that must not run here (a torchrun command, a GPU-only snippet, output)
  goes in a ```bash or ```text fence.
"""

import io
import os
import re
import subprocess
import sys
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
EXPECT = re.compile(r"#\s*->\s?(.*)$")
NOT_RUN = {"bash", "text", "yaml"}
# pages that teach by example: each needs at least one block that runs
GUIDES = [p for p in PAGES if p.startswith("guides/")] + ["getting-started.md"]


def fenced_blocks(text):
    """``[(language, first_line_number, code)]`` of a Markdown page, in order."""
    return [(m.group(1).strip(), text.count("\n", 0, m.start(2)) + 1, m.group(2))
            for m in FENCE.finditer(text)]


def expected_output(code):
    """The lines a block claims to print: its ``# -> `` comments, in order."""
    return [m.group(1).rstrip() for line in code.splitlines() if (m := EXPECT.search(line))]


def test_the_parser_reads_fences_and_claims():
    text = "x\n```python\nprint(1)  # -> 1\n# -> two\n```\n\n```bash\nls\n```\n"
    assert fenced_blocks(text) == [("python", 3, "print(1)  # -> 1\n# -> two\n"),
                                   ("bash", 8, "ls\n")]
    assert expected_output("print(1)  # -> 1\n# -> two\n") == ["1", "two"]


def test_every_page_listed_and_every_fence_named():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert f" {page}\n" in nav, f"{page} is not in mkdocs.yml's nav"
        for language, line, _code in fenced_blocks((DOCS / page).read_text()):
            assert language in NOT_RUN | {"python"}, (
                f"docs/{page}:{line}: a fence must be ```python (run by this test) or one of "
                f"{sorted(NOT_RUN)} (not run); received {language!r}")


def test_the_guides_have_code_that_runs():
    for page in GUIDES:
        languages = [b[0] for b in fenced_blocks((DOCS / page).read_text())]
        assert "python" in languages, f"docs/{page} has no ```python block"


@pytest.mark.parametrize("page", [p for p in PAGES
                                  if "python" in [b[0] for b in
                                                  fenced_blocks((DOCS / p).read_text())]])
def test_page_code_runs_and_prints_what_it_claims(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    torch.manual_seed(0)
    for language, line, code in fenced_blocks((DOCS / page).read_text()):
        if language != "python":
            continue
        # blank lines in front, so a traceback names the page's own line numbers
        compiled = compile("\n" * (line - 1) + code, str(DOCS / page), "exec")
        out = io.StringIO()
        with redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a page shows warnings on purpose (few seeds)
            exec(compiled, namespace)
        printed = [s.rstrip() for s in out.getvalue().splitlines()]
        assert printed == expected_output(code), f"docs/{page}:{line}: printed {printed}"


def test_site_builds_strictly(tmp_path):
    for module in ("mkdocs", "mkdocstrings_handlers.python", "material"):
        pytest.importorskip(module, reason=f"the docs site needs {module}: "
                                           'pip install -e ".[docs]"')
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                             "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr
    for page in PAGES:
        html = site / page.replace("index.md", "index.html").replace(".md", "/index.html")
        assert html.is_file(), f"{page} was not built"
    api = (site / "api" / "kerasmodel" / "index.html").read_text()
    assert 'id="kerastorch.KerasModel.fit"' in api and "ckpt_path" in api
    # Sphinx roles in the docstrings are shown as code, never literally
    assert ":class:`" not in "".join(p.read_text() for p in (site / "api").rglob("*.html"))
