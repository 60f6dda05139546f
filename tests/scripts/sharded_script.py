"""Run under torchrun by test_sharded_weights.py: the sharded-weights code path on DDP.

    sharded_script.py OUT

Two fits in the same processes: a plain DDP one into OUT/plain, then one into
OUT/sharded with the sharded path forced. On this CPU machine Accelerate turns FSDP
into DDP, so that fit forces ``KerasModel.is_sharded`` and wraps
``Accelerator.get_state_dict`` in a real collective (an all_reduce counting the
gatherings): a process that skipped a gathering the others joined would hang, as
under FSDP. Each rank writes <folder>/rank<k>.json; the checkpoint files come from
rank 0.
"""

import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ddp_script import leave
from kerastorch import KerasModel, callbacks


def main(out, sharded):
    gatherings = []
    os.makedirs(out, exist_ok=True)
    if sharded:
        KerasModel.is_sharded = property(lambda self: self.accelerator is not None)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.5))
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=8)
    top = callbacks.ModelCheckpoint(os.path.join(out, "top.pt"), monitor="val_loss",
                                    save_top_k=2, every_n_steps=3)

    class Counting(callbacks.Callback):
        def on_fit_begin(self, logs=None):
            acc = self.model.accelerator
            real = type(acc).get_state_dict

            def gather(net, unwrap=True):
                count = torch.ones(1)
                dist.all_reduce(count)  # every process must be here, or this hangs
                gatherings.append(int(count.item()))
                return real(acc, net, unwrap)

            acc.get_state_dict = gather

    model.fit(train, val, epochs=3, ckpt_path=os.path.join(out, "best.pt"), patience=None,
              quiet=True, callbacks=[top, Counting()])
    model.save_ckpt(os.path.join(out, "saved.pt"))
    rank = model.accelerator.process_index
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"gatherings": gatherings, "history": model.history.to_dict("list"),
                   "best_epoch": model.history.val_loss.idxmin() + 1,
                   "weights": {k: v.tolist() for k, v in model.net.state_dict().items()},
                   "top": sorted(os.path.basename(p) for p in top.best_k_models)}, f)
    return model


if __name__ == "__main__":
    main(os.path.join(sys.argv[1], "plain"), sharded=False)
    leave(main(os.path.join(sys.argv[1], "sharded"), sharded=True).accelerator)
