"""Run under torchrun by test_distributed_structures.py: predict returns each output structure
(tuple, dict, HuggingFace ModelOutput) on 2 CPU processes, and a two-output fit on dict batches.

    predict_structures_script.py OUT

Each rank writes what it got to <out>/rank<k>.pt.
"""

import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ddp_script import leave
from kerastorch import KerasModel

N, BATCH = 13, 4  # 13 = 3*4 + 1: two processes pad the last round of batches with duplicates


class Rows(Dataset):
    """Dict samples: tokens, a mask, a float feature vector, the row index and labels."""

    def __init__(self, n=N, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 50, (n, 6), generator=g)
        self.mask = torch.ones(n, 6, dtype=torch.long)
        self.mask[::3, -2:] = 0
        self.x = torch.randn(n, 4, generator=g)
        self.labels = torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "x": self.x[i],
                "row": torch.tensor(i), "labels": self.labels[i]}


class TupleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x, row, **_):
        return self.fc(x), row


class DictNet(TupleNet):
    def forward(self, x, row, **_):
        logits = self.fc(x)
        return {"logits": logits, "row": row, "extra": [logits.sum(-1)]}


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 1)

    def forward(self, x, **_):
        return {"a": self.a(x), "b": self.b(x).squeeze(-1)}


class TwoHeadRows(Rows):
    def __getitem__(self, i):
        return {"x": self.x[i], "labels": {"a": self.labels[i], "b": self.x[i, 0]}}


def bert():
    import transformers

    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=3,
                                     max_position_embeddings=16)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


class BertInputs(Rows):
    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i],
                "labels": self.labels[i]}


def nets():
    torch.manual_seed(0)
    return {"tuple": TupleNet(), "dict": DictNet(), "bert": bert()}


def two_heads():
    torch.manual_seed(1)
    return TwoHeads()


def main(out):
    results = {}
    for name, net in nets().items():
        data = BertInputs() if name == "bert" else Rows()
        model = KerasModel(net, nn.CrossEntropyLoss() if name != "bert" else None)
        results[name] = model.predict(DataLoader(data, batch_size=BATCH))
        if name == "tuple":
            _, results["labels"] = model.predict(DataLoader(data, batch_size=BATCH),
                                                 with_labels=True)
    net = two_heads()
    model = KerasModel(net, {"a": nn.CrossEntropyLoss(), "b": nn.MSELoss()},
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
                       loss_weights={"a": 0.5})
    # 16 training rows: an uneven training pass would pad with duplicates (and train on them);
    # the 11 val rows are gathered without the padding
    df = model.fit(DataLoader(TwoHeadRows(16), batch_size=BATCH),
                   DataLoader(TwoHeadRows(11, seed=1), batch_size=BATCH), epochs=1,
                   ckpt_path=None, patience=None, quiet=True)
    results["history"] = df.to_dict(orient="list")
    results["num_processes"] = model.accelerator.num_processes
    rank = model.accelerator.process_index
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    leave(model.accelerator)


if __name__ == "__main__":
    main(sys.argv[1])
