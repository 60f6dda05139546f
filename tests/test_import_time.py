"""``import kerastorch`` and a plain ``fit`` import only what they use (ARCHITECTURE.md's rule on
imports): each heavy dependency waits for the first call that needs it. Checked on
``sys.modules`` in a fresh interpreter; the time itself is measured by
``benchmarks/import_time.py``, not asserted here."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# never needed by ``import kerastorch``; each costs from a tenth of a second to seconds
NOT_AT_IMPORT = ("torchmetrics", "pandas", "accelerate", "matplotlib", "scipy", "transformers",
                 "tensorboard", "torch.utils.tensorboard", "wandb", "mlflow", "torchvision",
                 "sklearn", "IPython", "onnx", "onnxruntime", "onnxscript", "safetensors",
                 "datasets")
# never needed by a fit without metrics, plots, loggers or checkpoints (safetensors is not
# listed: accelerate imports it)
NOT_IN_PLAIN_FIT = ("torchmetrics", "matplotlib", "scipy", "transformers", "tensorboard",
                    "torch.utils.tensorboard", "wandb", "mlflow", "torchvision", "sklearn",
                    "IPython", "onnx", "onnxruntime", "onnxscript", "datasets")


def _loaded_after(code: str, watched) -> list:
    """The modules of ``watched`` in ``sys.modules`` after running ``code`` in a fresh Python."""
    probe = code + textwrap.dedent(f"""
        import json, sys
        print(json.dumps([m for m in {list(watched)!r} if m in sys.modules]))
        """)
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_kerastorch_leaves_the_heavy_dependencies_unimported():
    assert _loaded_after("import kerastorch\n", NOT_AT_IMPORT) == []


def test_public_names_still_import():
    code = textwrap.dedent("""
        import kerastorch
        from kerastorch import *
        from kerastorch.metrics import AUCROC, Accuracy, BatchMeanMetric
        import torchmetrics
        assert issubclass(AUCROC, torchmetrics.Metric) and issubclass(Accuracy, torchmetrics.Metric)
        assert all(hasattr(kerastorch, name) for name in kerastorch.__all__)
        """)
    assert _loaded_after(code, ["torchmetrics"]) == ["torchmetrics"]


def test_a_plain_fit_imports_no_metrics_plots_or_loggers():
    code = textwrap.dedent("""
        import torch
        from torch import nn
        from kerastorch import KerasModel
        x, y = torch.randn(32, 4), torch.randn(32, 1)
        net = nn.Linear(4, 1)
        model = KerasModel(net, nn.MSELoss(), optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
        history = model.fit(x, y, epochs=2, batch_size=8, ckpt_path=None, quiet=True)
        assert len(history) == 2
        """)
    assert _loaded_after(code, NOT_IN_PLAIN_FIT) == []


def test_a_fit_with_a_torchmetrics_metric_still_works():
    code = textwrap.dedent("""
        import torch, torchmetrics
        from torch import nn
        from kerastorch import KerasModel
        x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        net = nn.Linear(4, 2)
        model = KerasModel(net, nn.CrossEntropyLoss(),
                           {"acc": torchmetrics.Accuracy(task="multiclass", num_classes=2)})
        history = model.fit(x, y, epochs=1, batch_size=8, ckpt_path=None, quiet=True)
        assert 0.0 <= history["train_acc"].iloc[0] <= 1.0
        """)
    assert _loaded_after(code, ["torchmetrics"]) == ["torchmetrics"]
