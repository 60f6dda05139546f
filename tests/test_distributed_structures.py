"""Two CPU processes (torchrun, gloo): predict returns each output structure in dataset order
without the padding duplicates, and a two-output fit on dict batches equals one process."""

import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

pytest.importorskip("transformers")

HERE = os.path.join(os.path.dirname(__file__), "scripts")
sys.path.insert(0, HERE)
import predict_structures_script as script


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_structures")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": HERE}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(HERE, "predict_structures_script.py"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [torch.load(out / f"rank{k}.pt", weights_only=False) for k in range(2)]


def _manual(net, data):
    net.eval()
    with torch.no_grad():
        return [net(**{k: v for k, v in batch.items() if k != "labels"})
                for batch in DataLoader(data, batch_size=script.BATCH)]


def test_predict_gathers_tuples_in_order_without_padding(ranks):
    r0, r1 = ranks
    assert r0["num_processes"] == 2
    expected = _manual(script.nets()["tuple"], script.Rows())
    for got in (r0["tuple"], r1["tuple"]):
        assert isinstance(got, tuple) and len(got) == 2
        assert got[1].tolist() == list(range(script.N))  # every row once, in order
        torch.testing.assert_close(got[0], torch.cat([e[0] for e in expected]))
    assert torch.equal(r0["labels"], script.Rows().labels)


def test_predict_gathers_dicts_in_order_without_padding(ranks):
    expected = _manual(script.nets()["dict"], script.Rows())
    for got in (r["dict"] for r in ranks):
        assert list(got) == ["logits", "row", "extra"]
        assert got["row"].tolist() == list(range(script.N))
        torch.testing.assert_close(got["logits"], torch.cat([e["logits"] for e in expected]))
        assert isinstance(got["extra"], list) and got["extra"][0].shape == (script.N,)
        torch.testing.assert_close(got["extra"][0], torch.cat([e["extra"][0] for e in expected]))


def test_predict_gathers_a_model_output_as_a_dict(ranks):
    expected = _manual(script.nets()["bert"], script.BertInputs())
    logits = torch.cat([e.logits for e in expected])
    for got in (r["bert"] for r in ranks):
        assert isinstance(got, dict) and list(got) == ["logits"]
        assert got["logits"].shape == (script.N, 3)
        torch.testing.assert_close(got["logits"], logits, rtol=1e-5, atol=1e-6)


def test_two_output_fit_on_dict_batches_equals_one_process(ranks):
    r0, r1 = ranks
    assert r0["history"] == r1["history"]
    net = script.two_heads()  # lr=0: the weights the ranks used
    with torch.no_grad():
        columns = {}
        for stage, data in (("train", script.TwoHeadRows(16)),
                            ("val", script.TwoHeadRows(11, seed=1))):
            out = net(x=data.x)
            a = nn.functional.cross_entropy(out["a"], data.labels)
            b = nn.functional.mse_loss(out["b"], data.x[:, 0])
            columns.update({f"{stage}_a_loss": a, f"{stage}_b_loss": b,
                            f"{stage}_loss": 0.5 * a + b})
    history = r0["history"]
    assert list(history) == ["epoch", "train_loss", "train_a_loss", "train_b_loss", "lr",
                             "val_loss", "val_a_loss", "val_b_loss"]
    for key, value in columns.items():
        assert history[key][0] == pytest.approx(float(value), rel=1e-5), key
