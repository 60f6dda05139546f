"""One script for one process or several: python, torchrun or accelerate launch, unchanged.

An MLP on scikit-learn's bundled digits. Started with plain ``python`` it trains in
one process; started by ``torchrun`` or ``accelerate launch`` it trains in as many
processes as those start (on CPUs Accelerate uses the gloo backend; on GPUs one
process per GPU), and the code has no branch for it: ``KerasModel`` builds the
Accelerator, which reads the launcher's environment, shards the training batches
(``--batch-size`` is per process) and averages the gradients. Every process computes
the same history; only the main process prints it and writes the run directory.

    python examples/ddp_train.py
    torchrun --nproc_per_node 2 examples/ddp_train.py --log-dir runs
    accelerate launch --num_processes 2 examples/ddp_train.py      # add --cpu on a GPU machine

The JSON line ends with what each process saw (its last history row and the sum of
its weights), gathered to the main process, so agreement across processes can be
checked.
"""

import argparse
import json
import time

import torch
import torchmetrics
from accelerate.utils import gather_object
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import RunDirectory


def load_data(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    # every process loads and splits identically (same seed); Accelerate shards the batches
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.3,
                                                      random_state=seed, stratify=y)
    return x_train, y_train, x_val, y_val


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default=None, help="run directory parent (main process)")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--cpu", action="store_true", help="use the CPU even with GPUs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--smoke", action="store_true", help="3 epochs (tests)")
    args = parser.parse_args(argv)
    epochs = min(args.epochs, 3) if args.smoke else args.epochs

    x_train, y_train, x_val, y_val = load_data(args.seed)
    torch.manual_seed(args.seed)  # the same initial weights in every process
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=10)},
                       optimizer=torch.optim.Adam(net.parameters(), lr=args.lr))
    run_directory = None
    if args.log_dir:
        # what fit(log_dir=...) adds, made here so that its folder (.path) is known;
        # it writes from the main process only
        run_directory = RunDirectory(args.log_dir, monitor="val_acc", mode="max",
                                     val_data=(x_val, y_val), arguments=vars(args))
    start = time.perf_counter()
    # all epochs run (no early stopping); fit then restores the best epoch's weights
    history = model.fit((x_train, y_train), (x_val, y_val), epochs=epochs,
                        batch_size=args.batch_size, monitor="val_acc", mode="max",
                        patience=None, ckpt_path=None, quiet=args.quiet, cpu=args.cpu,
                        mixed_precision=args.mixed_precision,
                        callbacks=[run_directory] if run_directory else None)
    seconds = time.perf_counter() - start
    final = model.evaluate((x_val, y_val), quiet=True)  # every process takes part
    acc = model.accelerator
    seen = {"rank": acc.process_index, "last_row": history.iloc[-1].to_dict(),
            "weights_sum": sum(p.double().sum().item() for p in net.parameters())}
    every_rank = gather_object([seen])  # a collective: every process calls it

    if acc.is_main_process:
        print(history.to_string(index=False, float_format="%.4f"))
        result = {"num_processes": acc.num_processes, "device": str(acc.device),
                  "epochs_run": len(history), "val_acc": final["val_acc"],
                  "val_loss": final["val_loss"], "seconds": seconds, "ranks": every_rank}
        print(json.dumps(result))
        if run_directory is not None:
            print(f"run directory written to {run_directory.path}")
    # Accelerate's end-of-script call: it shuts the process group down cleanly (exiting
    # with it alive can abort in gloo's C++ teardown after all the work is done)
    acc.end_training()


if __name__ == "__main__":
    main()
