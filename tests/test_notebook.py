"""examples/quickstart.ipynb runs in a real Jupyter kernel, and its outputs are checked."""

import base64
import io
import os
import sys
from pathlib import Path

import pytest
from conftest import register_this_python_kernel

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.fixture
def this_python_kernel(tmp_path, monkeypatch):
    """A kernelspec named python3 that starts *this* interpreter, found first on JUPYTER_PATH.

    Whatever kernels a user or the system has registered, the notebook then runs with the
    virtualenv the tests run in (where kerastorch is installed).
    """
    name = register_this_python_kernel(tmp_path, monkeypatch)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return name


def _outputs(cell, kind):
    return [o for o in cell.outputs if kind in o.get("data", {})]


def _png(output):
    import matplotlib.image as mpimg

    data = base64.b64decode(output["data"]["image/png"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(io.BytesIO(data), format="png")


def test_quickstart_notebook_executes_and_shows_curves_and_history(this_python_kernel, tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = nbclient.NotebookClient(nb, kernel_name=this_python_kernel, timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    cells = {c.source.splitlines()[0]: c for c in nb.cells if c.cell_type == "code"}

    # the kernel is this virtualenv's interpreter, not a system one
    (last,) = cells["import sys; print(sys.executable)"].outputs
    assert os.path.realpath(last["text"].strip()) == os.path.realpath(sys.executable)

    # the fit cell shows one live picture, updated in place (not one per epoch)
    fit = cells[next(k for k in cells if k.startswith("history = model.fit("))]
    (picture,) = _outputs(fit, "image/png")
    assert picture["output_type"] == "display_data"
    image = _png(picture)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 600
    assert not [o for o in fit.outputs if o["output_type"] == "error"]

    # lr_find prints a suggestion and shows its curve; the fit then uses it as one-cycle's peak
    finder = cells["finder = model.lr_find((x_train, y_train), batch_size=64)"]
    (printed,) = [o for o in finder.outputs if o["output_type"] == "stream"]
    suggestion = float(printed["text"].split(":")[1])
    assert 1e-4 < suggestion < 1.0
    (curve,) = _outputs(finder, "image/png")
    assert _png(curve).ndim == 3

    # the history table is displayed, with one row per epoch that ran
    (table,) = _outputs(cells["history"], "text/html")
    html = table["data"]["text/html"]
    for column in ("epoch", "train_loss", "train_acc", "lr", "val_loss", "val_acc"):
        assert f"<th>{column}</th>" in html
    rows = html.count("<tr>") - 1  # minus the header row
    assert 3 <= rows <= 8

    # evaluate returns the val numbers; predict agrees with them
    (evaluated,) = _outputs(cells["model.evaluate((x_val, y_val), quiet=True)"], "text/plain")
    values = eval(evaluated["data"]["text/plain"], {})  # a dict of floats
    assert set(values) == {"val_loss", "val_acc"} and values["val_acc"] > 0.85
    (printed,) = cells["logits = model.predict(x_val)"].outputs
    accuracy = float(printed["text"].split(":")[1])
    assert accuracy == pytest.approx(values["val_acc"], abs=1e-3)

    # seed 000's 2x3 grid of predictions is drawn
    (grid,) = _outputs(cells["images = x_val[:6].reshape(-1, 8, 8)"], "image/png")
    assert _png(grid).ndim == 3
    assert os.listdir(tmp_path) == ["jupyter"]  # the notebook wrote no files
