"""kerastorch.metrics: torchkeras's binary metrics, fed logits consistently across batches."""

import pytest
import torch

from kerastorch.metrics import AUCROC, Accuracy


def test_auc_matches_the_rank_formula_when_some_batches_of_logits_lie_in_0_1():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 1, generator=g)
    labels = (logits + torch.randn(200, 1, generator=g) > 0).float()
    metric = AUCROC()
    for start in range(0, 200, 10):
        batch = logits[start:start + 10]
        if start == 50:
            batch = batch.clamp(0.05, 0.95)  # a batch whose logits all look like probabilities
            logits[start:start + 10] = batch
        metric.update(batch, labels[start:start + 10])
    scores, truth = logits.reshape(-1), labels.reshape(-1).bool()
    pos, neg = scores[truth], scores[~truth]
    pairs = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
    assert metric.compute().item() == pytest.approx(pairs.mean().item(), abs=1e-6)


def test_accuracy_reads_logits_and_probabilities_as_told():
    logits, labels = torch.tensor([[0.3], [-0.2], [2.0]]), torch.tensor([[1.0], [0.0], [0.0]])
    on_logits = Accuracy()
    on_logits.update(logits, labels)
    assert on_logits.compute().item() == pytest.approx(2 / 3)  # 0.3 -> p=0.57 -> class 1
    on_probs = Accuracy(from_logits=False)
    on_probs.update(torch.tensor([0.3, 0.2, 0.9]), torch.tensor([1.0, 0.0, 0.0]))
    assert on_probs.compute().item() == pytest.approx(1 / 3)
    with pytest.raises(TypeError, match="from_logits must be True or False; received 'yes'"):
        AUCROC(from_logits="yes")
