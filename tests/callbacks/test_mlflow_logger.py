"""MLflowLogger against a local SQLite store (MLflow 3 refuses file stores), read back with
MlflowClient: params, per-epoch metrics equal to the history, the checkpoint, the run status,
resume into the same run."""

import filecmp
import math
import sys
import types

import pytest
import torch
from conftest import TinyNet, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback
from kerastorch.callbacks.mlflow_logger import MLflowLogger

# mlflow's own SQLAlchemy use; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


class ArgsModel(KerasModel):
    """A model exposing fit's arguments as ``fit_arguments``, which MLflowLogger reads."""

    def fit(self, train_data, val_data=None, epochs=10, **kwargs):
        self.fit_arguments = {"train_data": train_data, "val_data": val_data, "epochs": epochs,
                              **kwargs}
        return super().fit(train_data, val_data, epochs, **kwargs)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module: creating its tables takes seconds."""
    pytest.importorskip("mlflow", reason="MLflowLogger needs the optional mlflow package")
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    return types.SimpleNamespace(uri=uri, client=MlflowClient(uri), folder=folder)


def logger_for(store, experiment, **kwargs):
    return MLflowLogger(store.uri, experiment, artifact_location=str(store.folder / experiment),
                        **kwargs)


def fit(model_cls, callbacks, epochs=3, **kwargs):
    x, y = make_classification(n=32)
    torch.manual_seed(0)
    model = model_cls(TinyNet(), nn.CrossEntropyLoss())
    kwargs = {"ckpt_path": None, "patience": None, "quiet": True, "batch_size": 8, **kwargs}
    return model.fit((x, y), (x, y), epochs=epochs, callbacks=callbacks, **kwargs), model


def metric_table(client, run_id, df):
    """{column: [(step, value)]} as MLflow holds it, for the history's columns."""
    return {col: sorted((m.step, m.value) for m in client.get_metric_history(run_id, col))
            for col in df.columns if col != "epoch"}


def history_table(df):
    return {col: [(int(e), float(v)) for e, v in zip(df["epoch"], df[col])]
            for col in df.columns if col != "epoch"}


def test_params_metrics_checkpoint_and_status(store, tmp_path):
    logger = logger_for(store, "basic", run_name="first")
    ckpt = tmp_path / "best.pt"
    df, _ = fit(ArgsModel, [logger], epochs=3, ckpt_path=str(ckpt))
    run = store.client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert logger.client is None
    params = run.data.params
    assert {k: params[k] for k in ("fit.epochs", "fit.batch_size", "fit.ckpt_path",
                                   "optimizer.class", "optimizer.param_groups.0.lr",
                                   "num_parameters", "versions.torch")} == {
        "fit.epochs": "3", "fit.batch_size": "8", "fit.ckpt_path": str(ckpt),
        "optimizer.class": "torch.optim.adam.Adam", "optimizer.param_groups.0.lr": "0.001",
        "num_parameters": "15", "versions.torch": torch.__version__}
    assert params["net_class"].endswith("TinyNet") and params["loss_fn"] == "CrossEntropyLoss()"
    assert params["fit.train_data.type"] == "tuple"  # hparams.json's description, flat
    assert params["fit.train_data.shapes"] == "[[32, 4], [32]]"
    # every history column, one value per epoch at step=epoch, equal to the DataFrame
    assert list(df.columns) == ["epoch", "train_loss", "lr", "val_loss"]
    assert metric_table(store.client, logger.run_id, df) == history_table(df)
    # the best weights, byte for byte
    (artifact,) = store.client.list_artifacts(logger.run_id, "checkpoints")
    assert artifact.path == "checkpoints/best.pt"
    local = store.client.download_artifacts(logger.run_id, "checkpoints/best.pt",
                                            str(tmp_path))
    assert filecmp.cmp(local, ckpt, shallow=False)
    # reused: a second fit is a second run of the experiment
    first = logger.run_id
    fit(ArgsModel, [logger], epochs=1)
    assert logger.run_id != first
    assert store.client.get_run(logger.run_id).data.params["fit.epochs"] == "1"
    experiment = store.client.get_experiment_by_name("basic")
    assert experiment.artifact_location == str(store.folder / "basic")
    runs = store.client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted([first, logger.run_id])


def test_a_plain_model_logs_its_description_and_a_named_checkpoint(store, tmp_path):
    ckpt = tmp_path / "weights.pt"
    logger = logger_for(store, "plain", log_checkpoint=ckpt)
    df, _ = fit(KerasModel, [logger], epochs=2, ckpt_path=str(ckpt))
    params = store.client.get_run(logger.run_id).data.params
    assert params["fit.epochs"] == "2" and params["optimizer.param_groups.0.lr"] == "0.001"
    assert params["versions.kerastorch"] and params["net_class"].endswith("TinyNet")
    assert [a.path for a in store.client.list_artifacts(logger.run_id, "checkpoints")] == [
        "checkpoints/weights.pt"]
    assert metric_table(store.client, logger.run_id, df) == history_table(df)
    # log_checkpoint=False: none, although the fit wrote one
    logger = logger_for(store, "plain", log_checkpoint=False)
    fit(ArgsModel, [logger], epochs=1, ckpt_path=str(ckpt))
    assert store.client.list_artifacts(logger.run_id) == []


class Fail(Callback):
    def __init__(self, epoch, exc):
        self.epoch, self.exc = epoch, exc

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise self.exc


def test_an_error_fails_the_run_and_an_interrupt_kills_it(store):
    logger = logger_for(store, "ends")
    with pytest.raises(RuntimeError, match="boom"):
        fit(ArgsModel, [logger, Fail(2, RuntimeError("boom"))], epochs=3)
    run = store.client.get_run(logger.run_id)
    assert run.info.status == "FAILED" and logger.client is None
    assert [m.step for m in store.client.get_metric_history(logger.run_id, "train_loss")] == [1]
    with pytest.warns(UserWarning, match="training interrupted during epoch 3"):
        df, _ = fit(ArgsModel, [logger, Fail(3, KeyboardInterrupt())], epochs=5)
    assert store.client.get_run(logger.run_id).info.status == "KILLED" and len(df) == 2


def test_a_resumed_fit_continues_the_same_run(store, tmp_path):
    state = str(tmp_path / "fit.state.pt")
    first = logger_for(store, "resume")
    with pytest.warns(UserWarning, match="training interrupted during epoch 3"):
        df, _ = fit(ArgsModel, [first, Fail(3, KeyboardInterrupt())], epochs=4,
                    state_path=state, resume=False)
    assert len(df) == 2 and store.client.get_run(first.run_id).info.status == "KILLED"
    # a new process: a new logger, the run id comes from the saved state
    second = logger_for(store, "resume")
    df, _ = fit(ArgsModel, [second], epochs=4, state_path=state, resume=True)
    assert second.run_id == first.run_id and len(df) == 4
    run = store.client.get_run(second.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["fit.resume"] == "False"  # the params the run started with
    assert metric_table(store.client, second.run_id, df) == history_table(df)
    experiment = store.client.get_experiment_by_name("resume")
    assert len(store.client.search_runs([experiment.experiment_id])) == 1


def test_resume_from_another_store_is_a_clear_error(store):
    logger = logger_for(store, "elsewhere")
    logger.set_model(KerasModel(TinyNet(), nn.CrossEntropyLoss()))
    logger.on_fit_begin()
    logger.load_state_dict({"run_id": "0" * 32})
    with pytest.raises(ValueError, match="cannot continue the saved run '0+': it is not in "
                                         "tracking_uri 'sqlite:"):
        logger.on_epoch_begin(1)


def test_nan_is_logged_as_nan(store):
    logger = logger_for(store, "nan")
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    logger.set_model(model)
    logger.on_fit_begin()
    logger.on_epoch_begin(1)
    logger.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5, "val_loss": float("nan"),
                            "per_class": [0.1, 0.2], "flag": True})
    logger.on_fit_end({"error": None, "interrupted": False})
    run = store.client.get_run(logger.run_id)
    assert sorted(run.data.metrics) == ["train_loss", "val_loss"]
    assert math.isnan(run.data.metrics["val_loss"]) and run.info.status == "FINISHED"


def test_other_processes_log_nothing_and_misuse(monkeypatch):
    class NotMain:
        is_main_process = False

    logger = MLflowLogger("sqlite:///never.db")
    logger.set_model(NotMain())
    logger.on_fit_begin()
    logger.on_epoch_begin(1)
    logger.on_epoch_end(1, {"train_loss": 0.5})
    logger.on_fit_end({})
    assert logger.client is None and logger.run_id is None and logger.state_dict() == {}
    for kwargs, message in [({"experiment": ""}, "experiment must be a non-empty str"),
                            ({"experiment": 3}, "experiment must be a non-empty str"),
                            ({"tracking_uri": 5}, "tracking_uri must be a str or None"),
                            ({"log_checkpoint": 1}, "log_checkpoint must be a bool or a file")]:
        with pytest.raises(TypeError, match=message):
            MLflowLogger(**kwargs)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    logger = MLflowLogger()
    with pytest.raises(ImportError, match="MLflowLogger needs the mlflow package"):
        logger.on_fit_begin()
