"""Text classification with HuggingFace: a tiny BERT built from its config, fed a datasets.Dataset.

Nothing is downloaded: the model is ``transformers.BertForSequenceClassification`` built
from a small ``BertConfig`` (hidden size 32, 2 layers, 2 heads, randomly initialised),
the tokenizer is the word-level one below (a vocabulary dict, ``[CLS] words [SEP]``
padded or cut to a fixed length, giving ``input_ids`` and ``attention_mask``), and the
text is generated: short "reviews" of neutral filler words with a few sentiment words
mixed in, labelled positive when most of their sentiment words are positive, a "not"
flipping the word after it ("the plot was great but the acting not good and dull" is
negative). The model has to find the sentiment words among the fillers, notice the
"not" before them and count them by polarity.

The data stay a ``datasets.Dataset`` end to end: built from a dict with a raw ``"text"``
column and a ``"labels"`` column, tokenized with ``.map``, and passed straight to
``model.fit(train_ds, val_ds)``. kerastorch drops the text column (strings cannot become
tensors) and formats the rest as torch, so each batch is a dict the model is called with
as ``net(input_ids=..., attention_mask=..., labels=...)`` (a forward pre-hook records the
keys; the JSON line lists them). ``KerasModel(net, loss_fn=None)`` trains on the loss the
model computes itself from ``labels``; the metrics get the output's ``logits``.
``predict`` leaves the label key out of each batch, so the model returns its logits alone
and ``predict`` a dict ``{"logits": ...}``; accuracy and F1 are computed from those.

Measured here (2 busy CPU cores, ``OMP_NUM_THREADS=1``): the classes are balanced (the
majority class is 0.51-0.54 of the validation reviews), and counting sentiment words
while ignoring "not" would score 0.89. The default run (up to 10 epochs on 2000 reviews,
early stopping on ``val_acc``; 6-9 s of training after ~15 s of imports) reaches
validation accuracy 0.91-0.94 on seeds 0-2 (macro F1 the same to 0.002), so the model
learns some of what "not" does; ``--smoke`` (4 epochs on 1200 reviews, 3-4 s) reaches
0.90-0.93 on seeds 0-4.

    python examples/text_classification_hf.py
    python examples/text_classification_hf.py --epochs 12 --log-dir runs
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torchmetrics

from kerastorch import KerasModel

POSITIVE = ["good", "great", "excellent", "lovely", "wonderful", "superb", "brilliant",
            "charming", "moving", "fun"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "horrible", "boring", "dull", "weak",
            "clumsy", "tedious"]
FILLER = ["the", "a", "film", "movie", "plot", "acting", "story", "music", "ending", "cast",
          "was", "is", "and", "but", "quite", "really", "very", "rather", "its", "this",
          "scenes", "script", "director", "camera", "pace", "with", "of", "at", "times"]
# (positive, negative) sentiment words per review: never a tie, so every label is defined
COUNTS = [(1, 0), (0, 1), (2, 0), (0, 2), (2, 1), (1, 2), (3, 0), (0, 3), (3, 1), (1, 3)]
NEGATION = 0.15  # the chance that a sentiment word is preceded by "not"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
PAD, UNK, CLS, SEP = range(len(SPECIALS))


def make_reviews(n: int, rng: np.random.Generator, negation: float = NEGATION):
    """``(texts, labels)``: ``n`` generated reviews of 6-14 words (plus their "not"s),
    label 1 for positive.

    Each review draws its numbers of positive and negative sentiment words from
    :data:`COUNTS` and fills up with neutral words in random order. Each sentiment
    word is written as "not <word>" with probability ``negation``, which flips it; the
    label is the majority polarity after the flips (never a tie).
    """
    texts, labels = [], []
    for _ in range(n):
        positive, negative = COUNTS[rng.integers(len(COUNTS))]
        stated = [*rng.choice(POSITIVE, positive), *rng.choice(NEGATIVE, negative)]
        # drawn again when the flips tie the counts (3 good words and 1 bad, one good one
        # negated), so that no label is a guess
        while True:
            negated = rng.random(len(stated)) < negation
            # the counts as meant: a negated positive word is a negative one, and back
            n_pos = positive - negated[:positive].sum() + negated[positive:].sum()
            if 2 * n_pos != len(stated):
                break
        phrases = [f"not {w}" if flip else w for w, flip in zip(stated, negated)]
        phrases += list(rng.choice(FILLER, rng.integers(6, 15) - len(stated)))
        rng.shuffle(phrases)
        texts.append(" ".join(phrases))
        labels.append(int(2 * n_pos > len(stated)))
    return texts, labels


class WordTokenizer:
    """Splits on whitespace and maps words to ids through a vocabulary built from texts.

    Encodes ``[CLS] w1 ... wn [SEP]``, cut to ``max_length`` (keeping the final
    ``[SEP]``) or padded with ``[PAD]``; unknown words become ``[UNK]``. Called on a
    batch of ``{"text": [...]}`` (as ``Dataset.map(..., batched=True)`` passes it) it
    returns ``{"input_ids": [...], "attention_mask": [...]}``.
    """

    def __init__(self, texts, max_length: int = 16):
        words = sorted({w for text in texts for w in text.lower().split()})
        self.vocab = {token: i for i, token in enumerate(SPECIALS + words)}
        self.max_length = max_length

    def encode(self, text: str):
        ids = [self.vocab.get(w, UNK) for w in text.lower().split()][:self.max_length - 2]
        ids = [CLS, *ids, SEP]
        padding = self.max_length - len(ids)
        return ids + [PAD] * padding, [1] * len(ids) + [0] * padding

    def __call__(self, batch: dict) -> dict:
        ids, masks = zip(*(self.encode(text) for text in batch["text"]))
        return {"input_ids": list(ids), "attention_mask": list(masks)}


def make_datasets(train_size: int, val_size: int, max_length: int, seed: int, *,
                  quiet: bool = False):
    """``(train_ds, val_ds, tokenizer)``: tokenized ``datasets.Dataset`` objects that keep
    their raw ``"text"`` column beside ``"labels"``, ``"input_ids"`` and ``"attention_mask"``."""
    import datasets
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    train_texts, train_labels = make_reviews(train_size, rng)
    val_texts, val_labels = make_reviews(val_size, rng)
    tokenizer = WordTokenizer(train_texts, max_length)  # the vocabulary from training text only
    train_ds = Dataset.from_dict({"text": train_texts, "labels": train_labels})
    val_ds = Dataset.from_dict({"text": val_texts, "labels": val_labels})
    bars = datasets.is_progress_bar_enabled()
    if quiet:
        datasets.disable_progress_bar()  # map's bars; a global switch, so restored below
    try:
        # in-memory datasets: map writes no cache files
        train_ds = train_ds.map(tokenizer, batched=True)
        val_ds = val_ds.map(tokenizer, batched=True)
    finally:
        if bars:
            datasets.enable_progress_bar()
    return train_ds, val_ds, tokenizer


def make_net(vocab_size: int, max_length: int):
    """A 2-layer BERT with hidden size 32 and a 2-class head, randomly initialised."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=max_length, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        pad_token_id=PAD)
    return BertForSequenceClassification(config)


def record_input_keys(net: torch.nn.Module) -> list:
    """A list that receives the sorted keyword names of every distinct call of ``net``."""
    seen: list = []

    def hook(module, args, kwargs):
        keys = sorted(kwargs)
        if keys not in seen:
            seen.append(keys)

    net.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def save_pictures(run_dir, history):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kerastorch import plot_history

    fig = plot_history(history)
    fig.savefig(os.path.join(run_dir, "curves.png"))
    plt.close("all")


def scores_from_logits(logits: torch.Tensor, labels) -> dict:
    """Accuracy and macro F1 of the argmax class, and the share of the majority class."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = np.asarray(labels)
    predicted = logits.argmax(-1).numpy()
    return {"val_acc": float(accuracy_score(labels, predicted)),
            "val_f1": float(f1_score(labels, predicted, average="macro")),
            "majority_share": float(max(labels.mean(), 1 - labels.mean()))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=500)
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--log-dir", default=None, help="write pictures and history here")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--cpu", action="store_true", help="use the CPU even with a GPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--smoke", "--quick", action="store_true",
                        help="a short run for the tests (at most 4 epochs on 1200 reviews)")
    args = parser.parse_args(argv)
    epochs = min(args.epochs, 4) if args.smoke else args.epochs
    train_size = min(args.train_size, 1200) if args.smoke else args.train_size

    torch.manual_seed(args.seed)
    train_ds, val_ds, tokenizer = make_datasets(train_size, args.val_size, args.max_length,
                                                args.seed, quiet=args.quiet)
    net = make_net(len(tokenizer.vocab), args.max_length)
    input_keys = record_input_keys(net)
    model = KerasModel(
        net, loss_fn=None,  # the model computes its loss from the batch's "labels"
        metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass", num_classes=2),
                      "f1": torchmetrics.F1Score(task="multiclass", num_classes=2,
                                                 average="macro")},
        optimizer=torch.optim.AdamW(net.parameters(), lr=args.lr))
    run_dir = None
    if args.log_dir:
        run_dir = os.path.join(args.log_dir, time.strftime("%Y%m%d-%H%M%S"))
        os.makedirs(run_dir, exist_ok=True)
    start = time.perf_counter()
    history = model.fit(train_ds, val_ds, epochs=epochs, batch_size=args.batch_size,
                        monitor="val_acc", mode="max", patience=args.patience,
                        ckpt_path=os.path.join(run_dir, "best.pt") if run_dir else None,
                        mixed_precision=args.mixed_precision, cpu=args.cpu, quiet=args.quiet)
    seconds = time.perf_counter() - start
    preds = model.predict(val_ds)  # {"logits": (N, 2)}: no labels in, so no loss out
    scores = scores_from_logits(preds["logits"], val_ds["labels"])

    print(history.to_string(index=False, float_format="%.4f"))
    print("predict:", {k: tuple(v.shape) for k, v in preds.items()})
    result = {"epochs_run": len(history), "columns": list(history.columns),
              "dataset_columns": train_ds.column_names, "net_input_keys": input_keys,
              "predict_keys": sorted(preds), "predict_shape": list(preds["logits"].shape),
              "train_size": len(train_ds), "val_size": len(val_ds),
              "vocab_size": len(tokenizer.vocab), **scores,
              "best_val_acc": float(history["val_acc"].max()), "seconds": seconds}
    print(json.dumps(result))
    if run_dir:
        history.to_csv(os.path.join(run_dir, "history.csv"), index=False)
        save_pictures(run_dir, history)
        print(f"pictures and history written to {run_dir}")
    return result, history


if __name__ == "__main__":
    main()
