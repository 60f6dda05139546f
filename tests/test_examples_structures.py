"""The examples of batch and output structures, run in this process on their --smoke settings.

``examples/multitask.py`` (a dict loss over two heads) and ``examples/text_classification_hf.py``
(a HuggingFace model computing its own loss, fed a ``datasets.Dataset``). They run here
rather than in a subprocess: a second process would spend ~10 s importing torch (and
transformers) before a run of a few seconds.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}",
                                                  ROOT / "examples" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(example, argv, capsys):
    """``main(argv)``'s ``(result, history)``, after checking its last line is the result."""
    result, history = example.main(argv)
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == result
    assert "epoch" in out and "predict:" in out
    return result, history


# -- multitask.py ------------------------------------------------------------------------

def test_multitask_weighs_two_heads_and_logs_each(capsys):
    example = load_example("multitask.py")
    result, history = run_main(example, ["--smoke", "--quiet", "--reg-weight", "0.5"], capsys)
    assert list(history.columns) == result["columns"] == [
        "epoch", "train_loss", "train_cls_loss", "train_reg_loss", "train_cls_acc",
        "train_reg_mae", "lr", "val_loss", "val_cls_loss", "val_reg_loss", "val_cls_acc",
        "val_reg_mae"]
    assert len(history) == result["epochs_run"] == 6  # patience 8 never stops 6 epochs
    assert result["loss_weights"] == {"cls": 1.0, "reg": 0.5}
    # the total is the weighted sum of the heads' losses, epoch by epoch, in both stages:
    # each step's total is, and the epoch means are linear in the steps
    for stage in ("train", "val"):
        expected = history[f"{stage}_cls_loss"] + 0.5 * history[f"{stage}_reg_loss"]
        np.testing.assert_allclose(history[f"{stage}_loss"], expected, rtol=1e-6)
    # seeds 0-2: accuracy 0.89-0.93 and error 0.17-0.20 standard deviations after 6 epochs,
    # where always answering the mean errs by 0.74-0.82
    assert result["val_cls_acc"] >= 0.85
    assert result["val_reg_mae"] <= 0.35 and result["val_mae_of_mean"] >= 0.7
    reg_std = example.load_data(0)[-1]  # one standard deviation of the target, in rows
    assert result["val_mae_rows"] == pytest.approx(result["val_reg_mae"] * reg_std, rel=1e-5)
    # evaluate ran on the restored best weights by val_cls_acc; predict's dict agrees with it
    assert result["val_cls_acc"] == pytest.approx(history["val_cls_acc"].max(), abs=1e-6)
    assert result["val_acc_from_predict"] == pytest.approx(result["val_cls_acc"], abs=1e-6)
    assert result["predict_shapes"] == {"cls": [450, 10], "reg": [450]}


def test_multitask_data_has_dict_labels_and_the_centre_row():
    example = load_example("multitask.py")
    image = np.zeros((2, 64))
    image[0, 2 * 8:3 * 8] = 16  # ink only in row 2
    image[1, [0, 63]] = [4, 12]  # row 0 weighing 1, row 7 weighing 3
    np.testing.assert_allclose(example.ink_centre_row(image), [2.0, 7 * 0.75])
    x_train, y_train, x_val, y_val, reg_std = example.load_data(0)
    assert x_train.shape == (1347, 64) and x_val.shape == (450, 64)
    assert 0 <= x_train.min() and x_train.max() <= 1
    assert set(y_train) == set(y_val) == {"cls", "reg"}
    assert y_train["cls"].dtype == torch.long and y_train["reg"].shape == (1347,)
    # standardised on the training split
    assert float(y_train["reg"].mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(y_train["reg"].std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert 0.3 < reg_std < 0.5  # rows


# -- text_classification_hf.py -----------------------------------------------------------

def test_text_classification_hf_trains_on_a_hf_dataset(capsys):
    pytest.importorskip("transformers", reason="the example needs transformers")
    pytest.importorskip("datasets", reason="the example needs datasets")
    example = load_example("text_classification_hf.py")
    result, history = run_main(example, ["--smoke", "--quiet"], capsys)
    assert list(history.columns) == result["columns"] == [
        "epoch", "train_loss", "train_acc", "train_f1", "lr", "val_loss", "val_acc", "val_f1"]
    assert (result["train_size"], result["val_size"]) == (1200, 500)
    # the dataset handed to fit kept its raw text; the net never saw it. Training calls
    # carried the labels (the model's own loss), predict's calls left them out
    assert result["dataset_columns"] == ["text", "labels", "input_ids", "attention_mask"]
    assert result["net_input_keys"] == [["attention_mask", "input_ids", "labels"],
                                        ["attention_mask", "input_ids"]]
    assert result["predict_keys"] == ["logits"] and result["predict_shape"] == [500, 2]
    # seeds 0-4: 0.90-0.93 after 4 epochs, where the majority class is 0.51-0.54
    assert result["val_acc"] >= 0.85 and result["val_f1"] >= 0.85
    assert result["val_acc"] >= result["majority_share"] + 0.3
    # the accuracy and F1 computed from predict's logits are torchmetrics' numbers at the
    # epoch whose weights fit restored (the first best val_acc)
    best = history.loc[history["val_acc"].idxmax()]
    assert result["val_acc"] == pytest.approx(best["val_acc"], abs=1e-6)
    assert result["val_f1"] == pytest.approx(best["val_f1"], abs=1e-6)
    assert np.isfinite(history["train_loss"]).all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_word_tokenizer_pads_cuts_and_marks_unknown_words():
    example = load_example("text_classification_hf.py")
    tokenizer = example.WordTokenizer(["good film", "bad plot"], max_length=5)
    assert list(tokenizer.vocab)[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    good, film = tokenizer.vocab["good"], tokenizer.vocab["film"]
    batch = tokenizer({"text": ["Good film", "good odd film film film"]})
    assert batch["input_ids"] == [[2, good, film, 3, 0], [2, good, 1, film, 3]]
    assert batch["attention_mask"] == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def test_generated_reviews_are_labelled_by_their_negated_counts():
    example = load_example("text_classification_hf.py")
    texts, labels = example.make_reviews(400, np.random.default_rng(0))
    for text, label in zip(texts, labels):
        words, score = text.split(), 0
        for i, word in enumerate(words):
            sign = (word in example.POSITIVE) - (word in example.NEGATIVE)
            score += -sign if i and words[i - 1] == "not" else sign
        assert score != 0 and label == int(score > 0), text
    assert 0.4 < np.mean(labels) < 0.6  # balanced: ties are drawn again, not labelled 0
    assert any("not" in text.split() for text in texts)
    again, _ = example.make_reviews(400, np.random.default_rng(0))
    assert again == texts  # seeded
