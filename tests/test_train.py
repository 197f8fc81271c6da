"""Tests for cosmonb.runtime, cosmonb.train and cosmonb.checkpoints (tiny models, CPU, < 30 s)."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from cosmonb import checkpoints, runtime, train
from cosmonb.checkpoints import (PretrainedError, PretrainedMissingError, load_pretrained,
                                 pretrained_available, read_manifest, save_pretrained)
from cosmonb.runtime import device, is_quick, read_records, record, seed_everything
from cosmonb.train import CheckpointError, History, NonFiniteLossError, evaluate, fit


# --------------------------------------------------------------------------- fixtures
def _regression(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3 + 0.05 * torch.randn(n, 1, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def _mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def _mlp():
    # dropout makes the result depend on the torch RNG stream, so resume must restore it
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))


class _Scalar(nn.Module):
    """One parameter w; loss (w - target)^2 with target the batch."""

    def __init__(self, w=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w)))


def _scalar_loss(model, target):
    return ((model.w - target) ** 2).mean()


# --------------------------------------------------------------------------- runtime
def test_device_is_cpu_here(monkeypatch):
    monkeypatch.delenv("COSMONB_DEVICE", raising=False)
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert device() == torch.device("cpu")
    assert device("cpu") == torch.device("cpu")
    monkeypatch.setenv("COSMONB_DEVICE", "cpu")
    assert device() == torch.device("cpu")


def test_device_rejects_bad_names(monkeypatch):
    with pytest.raises(ValueError, match="prefer"):
        device("tpu")
    with pytest.raises(ValueError, match="prefer"):
        device(3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="prefer.*cuda"):
            device("cuda")
        monkeypatch.setenv("COSMONB_DEVICE", "cuda")
        with pytest.raises(ValueError, match="COSMONB_DEVICE"):
            device()


def test_seed_everything_reproducible():
    def draw():
        rng = seed_everything(123)
        return (random.random(), np.random.rand(), torch.rand(3).tolist(), rng.normal(size=2).tolist())

    assert draw() == draw()
    a = seed_everything(1).random()
    b = seed_everything(2).random()
    assert a != b
    for bad in (-1, 2**32, 1.5, "1", True):
        with pytest.raises(ValueError, match="seed"):
            seed_everything(bad)


def test_is_quick(monkeypatch):
    for v, expected in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)]:
        monkeypatch.setenv("COSMONB_QUICK", v)
        assert is_quick() is expected
    monkeypatch.delenv("COSMONB_QUICK")
    assert is_quick() is False


def test_record_writes_and_merges_json(tmp_path, monkeypatch, capsys):
    path = tmp_path / "records.json"
    path.write_text(json.dumps({"from_other_notebook": 7}))
    monkeypatch.setenv("COSMONB_RECORDS", str(path))
    assert record("rmse_omega_m", np.float32(0.0625)) == 0.0625
    record("r2", {"omega_m": 0.93, "sigma_8": [0.5, np.float64(0.64)]})
    record("n_epochs", torch.tensor(12))
    assert "[cosmonb.record] rmse_omega_m = 0.0625" in capsys.readouterr().out
    data = read_records(path)
    assert data == {"from_other_notebook": 7, "rmse_omega_m": 0.0625,
                    "r2": {"omega_m": 0.93, "sigma_8": [0.5, 0.64]}, "n_epochs": 12}
    assert read_records() == data  # env var default
    assert runtime.RECORDS["rmse_omega_m"] == 0.0625
    record("rmse_omega_m", 0.05)  # overwrite keeps the others
    assert read_records(path)["rmse_omega_m"] == 0.05
    assert not [p for p in tmp_path.iterdir() if p.name != "records.json"]  # no temp files left


def test_record_rejects_bad_input(tmp_path, monkeypatch):
    path = tmp_path / "records.json"
    monkeypatch.setenv("COSMONB_RECORDS", str(path))
    for bad in (float("nan"), math.inf, [1.0, float("nan")], {"a": -math.inf}, "0.5", None, True,
                list(range(2000))):
        with pytest.raises(ValueError, match="value"):
            record("x", bad)
    for bad in ("bad name", "1abc", "", "a-b", 3, "a..b"):
        with pytest.raises(ValueError, match="name"):
            record(bad, 1.0)
    assert not path.exists()
    path.write_text("{not json")
    with pytest.raises(ValueError, match="records.json"):
        record("y", 1.0)
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "missing.json")


# --------------------------------------------------------------------------- fit
def test_loss_decreases_on_tiny_regression():
    data = _regression()
    train_dl = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True)
    val = [data[:32]]
    model = nn.Linear(3, 1)
    h = fit(model, _mse, train_dl, val, epochs=15, lr=0.05, progress=False, seed=0)
    assert isinstance(h, History) and h.epochs == 15 and len(h.val_loss) == 15
    assert h.train_loss[-1] < 0.05 * h.train_loss[0]
    assert h.val_loss[-1] < 0.05 * h.val_loss[0]
    assert h.best_epoch is not None and h.val_loss[h.best_epoch - 1] == min(h.val_loss)
    assert h.stop_reason == "completed 15 epochs" and not h.stopped_early and h.seconds > 0
    assert h.lr == [0.05] * 15
    assert not model.training
    assert evaluate(model, _mse, val) == pytest.approx(h.val_loss[-1])


def _resume_setup(own_generator=False):
    data = _regression()
    gen = torch.Generator().manual_seed(5) if own_generator else None
    return (torch.utils.data.DataLoader(data, batch_size=16, shuffle=True, generator=gen),
            [data[:24], data[24:48]])


def _resume_kwargs():
    return dict(epochs=4, lr=0.02, progress=False, seed=0,
                scheduler=lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3], gamma=0.5))


@pytest.mark.parametrize("own_generator", [False, True])
def test_resume_after_kill_equals_uninterrupted(tmp_path, capsys, own_generator):
    torch.manual_seed(0)
    ref_model = _mlp()
    init = {k: v.clone() for k, v in ref_model.state_dict().items()}
    train_dl, val = _resume_setup(own_generator)
    ref = fit(ref_model, _mse, train_dl, val, **dict(_resume_kwargs(), progress=True))

    class Killed(Exception):
        pass

    def kill_at_2(epoch, history):
        torch.rand(5)  # callbacks may draw random numbers without perturbing training
        if epoch == 2:
            raise Killed

    ckpt = tmp_path / "run.pt"
    model = _mlp()
    model.load_state_dict(init)
    train_dl, val = _resume_setup(own_generator)
    with pytest.raises(Killed):
        fit(model, _mse, train_dl, val, checkpoint=ckpt, callback=kill_at_2, **_resume_kwargs())
    assert ckpt.exists() and [p.name for p in tmp_path.iterdir()] == ["run.pt"]

    torch.manual_seed(99)  # a fresh process would start from other weights and RNG states
    resumed_model = _mlp()
    train_dl, val = _resume_setup(own_generator)
    capsys.readouterr()
    h = fit(resumed_model, _mse, train_dl, val, checkpoint=ckpt, **_resume_kwargs())
    assert "resumed from" in capsys.readouterr().out
    assert h.resumed_at == [2]
    ref_state, state = ref_model.state_dict(), resumed_model.state_dict()
    assert ref_state.keys() == state.keys()
    for k in ref_state:
        assert torch.equal(ref_state[k], state[k]), k
    assert h.train_loss == ref.train_loss and h.val_loss == ref.val_loss and h.lr == ref.lr

    # calling again with a finished checkpoint does not train further
    again = _mlp()
    h2 = fit(again, _mse, train_dl, val, checkpoint=ckpt, **_resume_kwargs())
    assert "already holds a finished run" in capsys.readouterr().out
    assert h2.train_loss == ref.train_loss
    for k in ref_state:
        assert torch.equal(ref_state[k], again.state_dict()[k])


def test_callable_data_per_epoch():
    seen = []

    def batches(epoch):
        seen.append(epoch)
        return [torch.full((4,), 1.0)]

    h = fit(_Scalar(), _scalar_loss, batches, lambda: [torch.ones(2)], epochs=3, lr=0.1, progress=False)
    assert seen == [1, 2, 3] and h.epochs == 3


def test_early_stopping_restores_best_weights():
    # SGD on (w - 1)^2 from w = 0 moves w = 0, .2, .36, .488, .59, .672, ...; the validation
    # loss (w - 0.5)^2 is lowest after epoch 3 (w = .488), then rises.
    model = _Scalar(0.0)
    seen = []
    h = fit(model, _scalar_loss, [torch.ones(1)], [torch.full((1,), 0.5)], epochs=50,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1), patience=2,
            progress=False, callback=lambda e, hist: seen.append(model.w.item()))
    assert h.stopped_early and h.best_epoch == 3 and h.epochs == 5
    assert "early stopping" in h.stop_reason and "epoch 3" in h.stop_reason
    assert model.w.item() == pytest.approx(0.488, abs=1e-6)
    assert model.w.item() == seen[2]
    assert h.best_val_loss == pytest.approx(0.012**2, rel=1e-4)


def test_early_stopping_min_delta_and_checkpoint(tmp_path):
    ckpt = tmp_path / "es.pt"
    model = _Scalar(0.0)
    h = fit(model, _scalar_loss, [torch.ones(1)], [torch.full((1,), 0.5)], epochs=50,
            optimizer=lambda p: torch.optim.SGD(p, lr=0.1), patience=1, min_delta=0.1,
            checkpoint=ckpt, checkpoint_every=10, progress=False)
    # val losses .09, .0196, ...: the second does not improve on the first by more than 0.1
    assert h.stopped_early and h.best_epoch == 1 and h.epochs == 2
    assert model.w.item() == pytest.approx(0.2)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 2 and saved["history"]["stopped_early"]
    assert float(saved["best_state"]["w"]) == pytest.approx(0.2)


def test_gradient_clipping_bounds_the_norm():
    def run(clip):
        model = nn.Linear(4, 1, bias=False)
        nn.init.zeros_(model.weight)
        x = torch.full((8, 4), 10.0)
        y = torch.full((8, 1), 100.0)
        h = fit(model, _mse, [(x, y)], epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                clip_grad=clip, progress=False)
        return model.weight.detach().norm().item(), h  # the step is lr * (clipped) gradient

    step, h = run(0.5)
    assert step == pytest.approx(0.5, rel=1e-5)
    assert h.grad_norm[0] == pytest.approx(4000.0, rel=1e-5)  # 2 * 100 * 10 * sqrt(4)
    unclipped, h = run(None)
    assert unclipped == pytest.approx(4000.0, rel=1e-5) and h.grad_norm == []


def test_nan_loss_raises_with_epoch_and_step():
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        loss = _scalar_loss(model, batch)
        return loss * float("nan") if calls["n"] == 7 else loss  # epoch 2 (4 steps each), step 3

    with pytest.raises(NonFiniteLossError, match="epoch 2, step 3"):
        fit(_Scalar(), loss_fn, [torch.ones(2)] * 4, epochs=3, progress=False)
    with pytest.raises(NonFiniteLossError, match="validation loss is inf at epoch 1, step 1"):
        fit(_Scalar(), _scalar_loss, [torch.ones(2)], [torch.full((1,), math.inf)], epochs=1,
            progress=False)


def test_corrupt_checkpoint_raises_naming_the_file(tmp_path):
    ckpt = tmp_path / "broken.pt"
    ckpt.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match="broken.pt.*cannot be loaded"):
        fit(_Scalar(), _scalar_loss, [torch.ones(1)], epochs=2, checkpoint=ckpt, progress=False)
    assert ckpt.read_bytes() == b"this is not a torch file"  # untouched, not overwritten

    # a valid checkpoint of another model is refused too
    other = tmp_path / "other.pt"
    fit(nn.Linear(3, 1), _mse, [_regression()[:8]], epochs=1, checkpoint=other, progress=False)
    with pytest.raises(CheckpointError, match="different model"):
        fit(_Scalar(), _scalar_loss, [torch.ones(1)], epochs=2, checkpoint=other, progress=False)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a cosmonb.fit checkpoint"):
        fit(_Scalar(), _scalar_loss, [torch.ones(1)], epochs=2, checkpoint=tmp_path / "foreign.pt",
            progress=False)


def test_fit_rejects_bad_arguments():
    model, data = _Scalar(), [torch.ones(1)]
    cases = [
        (dict(epochs=0), "epochs"), (dict(epochs=2.5), "epochs"), (dict(epochs=2, lr=-1), "lr"),
        (dict(epochs=2, lr=float("nan")), "lr"), (dict(epochs=2, patience=2), "patience"),
        (dict(epochs=2, clip_grad=0), "clip_grad"), (dict(epochs=2, checkpoint_every=0), "checkpoint_every"),
        (dict(epochs=2, min_delta=-1.0), "min_delta"), (dict(epochs=2, callback=3), "callback"),
        (dict(epochs=2, optimizer="adam"), "optimizer"), (dict(epochs=2, device="gpu0"), "device"),
    ]
    for kwargs, arg in cases:
        with pytest.raises(ValueError, match=arg):
            fit(model, _scalar_loss, data, progress=False, **kwargs)
    with pytest.raises(ValueError, match="model"):
        fit("model", _scalar_loss, data, epochs=1)
    with pytest.raises(ValueError, match="loss_fn"):
        fit(model, None, data, epochs=1)
    with pytest.raises(ValueError, match="train_data.*one-shot"):
        fit(model, _scalar_loss, iter(data), epochs=1)
    with pytest.raises(ValueError, match="train_data.*no batches"):
        fit(model, _scalar_loss, [], epochs=1, progress=False)
    with pytest.raises(ValueError, match="loss_fn.*scalar"):
        fit(model, lambda m, b: m.w * b, [torch.ones(3)], epochs=1, progress=False)


def test_history_plot_and_dict():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    h = History(train_loss=[3.0, 1.0, 0.05], val_loss=[3.5, 1.2, 1.3], best_epoch=2)
    ax = h.plot()
    assert len(ax.get_lines()) == 3 and ax.get_yscale() == "log"
    assert History.from_dict(json.loads(json.dumps(h.to_dict()))) == h
    import matplotlib.pyplot as plt
    plt.close("all")


# --------------------------------------------------------------------------- pretrained
def test_save_load_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    norm = {"mean": np.array([0.3, 0.8]), "std": torch.tensor([0.1, 0.1]), "log10": True}
    path = save_pretrained("lin_test", {"in": 3, "out": 2}, model.state_dict(), norm,
                           {"rmse": np.float64(0.058), "r2": [0.9, 0.6]},
                           command="python -m cosmonb.bench lin", seconds=12.5, directory=tmp_path)
    assert path == tmp_path / "lin_test.pt"
    manifest = read_manifest(tmp_path)
    entry = manifest["lin_test"]
    assert entry["size_bytes"] == path.stat().st_size and len(entry["sha256"]) == 64
    assert entry["command"] == "python -m cosmonb.bench lin" and entry["seconds"] == 12.5
    assert entry["metrics"] == {"rmse": 0.058, "r2": [0.9, 0.6]} and entry["config"] == {"in": 3, "out": 2}
    assert {"platform", "cpu_count", "torch", "device"} <= set(entry["hardware"]) and entry["date"]
    assert pretrained_available("lin_test", tmp_path)

    ckpt = load_pretrained("lin_test", tmp_path)
    fresh = nn.Linear(ckpt["config"]["in"], ckpt["config"]["out"])
    fresh.load_state_dict(ckpt["state_dict"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k])
    assert torch.equal(ckpt["normaliser"]["mean"], torch.tensor([0.3, 0.8], dtype=torch.float64))
    assert ckpt["normaliser"]["log10"] is True
    assert ckpt["metadata"]["metrics"]["rmse"] == 0.058

    # a second model merges into the manifest
    save_pretrained("other", {}, nn.Linear(1, 1), None, {}, "cmd", 0.0, directory=tmp_path)
    assert set(read_manifest(tmp_path)) == {"lin_test", "other"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANIFEST.json", "lin_test.pt", "other.pt"]


def test_pretrained_tampered_or_missing_raises(tmp_path):
    save_pretrained("m", {}, nn.Linear(2, 1).state_dict(), None, {"loss": 1.0}, "cmd", 1.0,
                    directory=tmp_path)
    data = bytearray((tmp_path / "m.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "m.pt").write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match="sha256 mismatch.*TRAIN=True"):
        load_pretrained("m", tmp_path)
    (tmp_path / "m.pt").unlink()
    assert not pretrained_available("m", tmp_path)
    with pytest.raises(PretrainedMissingError, match="not found.*TRAIN=True"):
        load_pretrained("m", tmp_path)
    with pytest.raises(FileNotFoundError):
        load_pretrained("m", tmp_path)
    torch.save({"x": 1}, tmp_path / "unlisted.pt")
    with pytest.raises(PretrainedError, match="no sha256 entry"):
        load_pretrained("unlisted", tmp_path)


def test_save_pretrained_validates_and_warns(tmp_path, monkeypatch):
    sd = nn.Linear(2, 1).state_dict()
    good = dict(model_config={}, state_dict=sd, normaliser=None, metrics={}, command="c", seconds=1.0,
                directory=tmp_path)
    for key, bad in [("name", "a/b"), ("name", "x.pt"), ("model_config", [1]),
                     ("model_config", {"a": object()}), ("state_dict", {}),
                     ("state_dict", {"w": torch.tensor([float("nan")])}), ("normaliser", 3),
                     ("metrics", {"rmse": float("nan")}), ("command", ""), ("seconds", -1)]:
        kwargs = dict(good, **({} if key == "name" else {key: bad}))
        name = bad if key == "name" else "ok"
        with pytest.raises(ValueError, match=key if key != "metrics" else "metrics"):
            save_pretrained(name, **kwargs)
    monkeypatch.setattr(checkpoints, "MAX_FILE_BYTES", 100)
    with pytest.warns(UserWarning, match="over the"):
        save_pretrained("big", **good)
    with pytest.raises(ValueError, match="name"):
        load_pretrained("../etc", tmp_path)


def test_shipped_manifest_is_valid_json():
    manifest = read_manifest()
    assert isinstance(manifest, dict)
    for name, entry in manifest.items():
        assert {"sha256", "size_bytes", "command", "hardware", "metrics", "config", "date"} <= set(entry)


# --------------------------------------------------------------------------- resume mismatches (issue 8)
def test_resume_with_new_lr_uses_it_and_warns(tmp_path):
    # the old code silently kept the checkpoint's lr (0.1, 0.05, 0.025, ...)
    data = [torch.ones(1)]
    step = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    ckpt = tmp_path / "lr.pt"
    fit(_Scalar(), _scalar_loss, data, epochs=2, lr=0.1, scheduler=step, checkpoint=ckpt, progress=False)
    with pytest.warns(UserWarning, match=r"lr\.pt with a different learning rate: lr=0\.01 \(was 0\.1\)"):
        h = fit(_Scalar(), _scalar_loss, data, epochs=4, lr=0.01, scheduler=step, checkpoint=ckpt,
                progress=False)
    # the schedule keeps its progress (two halvings done) at the new scale
    assert h.lr == pytest.approx([0.1, 0.05, 0.0025, 0.00125], rel=1e-12)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["requested_lr"] == [0.01] and saved["scheduler"]["base_lrs"] == [0.01]
    import warnings
    with warnings.catch_warnings():  # resuming again with the new lr is silent
        warnings.simplefilter("error")
        h = fit(_Scalar(), _scalar_loss, data, epochs=5, lr=0.01, scheduler=step, checkpoint=ckpt,
                progress=False)
    assert h.lr[-1] == pytest.approx(0.000625, rel=1e-12)

    # without a scheduler, and with an optimizer factory bringing its own lr
    ckpt = tmp_path / "sgd.pt"
    sgd = lambda lr: (lambda p: torch.optim.SGD(p, lr=lr))  # noqa: E731
    fit(_Scalar(), _scalar_loss, data, epochs=1, optimizer=sgd(0.1), checkpoint=ckpt, progress=False)
    with pytest.warns(UserWarning, match=r"lr=0\.3 \(was 0\.1\)"):
        h = fit(_Scalar(), _scalar_loss, data, epochs=2, optimizer=sgd(0.3), checkpoint=ckpt, progress=False)
    assert h.lr == [0.1, 0.3]


class _Mean(nn.Module):
    """The smallest cosmonb-style model: one parameter, ``loss(batch)`` = mean squared distance to the batch."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def loss(self, batch):
        return ((self.w - batch[0]) ** 2).mean()


class _LrLog(train.Callback):
    """Records the lr the next step will use: at the start (after any resume) and after every step."""

    def __init__(self):
        self.lrs = []

    def on_train_start(self, trainer):
        self.lrs.append(float(trainer.opt.param_groups[0]["lr"]))

    def on_step_end(self, trainer, loss):
        self.lrs.append(float(trainer.opt.param_groups[0]["lr"]))


def test_trainer_resume_with_new_lr_uses_it_and_warns(tmp_path):
    # the Trainer used to keep the checkpoint's lr silently (0.1 x warm-up) while fit switched with a warning
    import warnings

    data = torch.utils.data.TensorDataset(torch.ones(16, 1))
    ckpt = tmp_path / "lr.pt"

    def run(max_steps, lr):
        log = _LrLog()
        cfg = train.TrainConfig(max_steps=max_steps, batch_size=4, lr=lr, optimizer="sgd", warmup_steps=6,
                                seed=0, progress=False)
        trainer = train.Trainer(_Mean(), cfg, checkpoint=ckpt, callbacks=[log], device="cpu")
        return trainer, trainer.fit(data), log.lrs

    run(3, 0.1)
    with pytest.warns(UserWarning, match=r"Trainer: resuming .*lr\.pt with a different learning rate: "
                                         r"lr=0\.01 \(was 0\.1\)\. The new value takes effect from step 4"):
        trainer, result, lrs = run(6, 0.01)
    assert result["resumed_at"] == [3] and result["steps"] == 6
    # the warm-up keeps its progress (3 of 6 steps done: factor 4/6 for step 4) at the new scale
    assert lrs == pytest.approx([0.01 * 4 / 6, 0.01 * 5 / 6, 0.01, 0.01], rel=1e-12)
    saved = torch.load(ckpt, weights_only=False)
    assert saved["requested_lr"] == [0.01] and saved["scheduler"]["base_lrs"] == [0.01]
    with warnings.catch_warnings():  # resuming again with the new lr is silent
        warnings.simplefilter("error")
        _, result, lrs = run(8, 0.01)
    assert result["resumed_at"] == [3, 6] and lrs == pytest.approx([0.01] * 3, rel=1e-12)


def test_resume_with_another_optimizer_raises_checkpoint_error(tmp_path):
    # the old code loaded Adam's state into SGD and raised KeyError 'momentum' at its first step
    ckpt = tmp_path / "adam.pt"
    data = [torch.ones(1)]
    fit(_Scalar(), _scalar_loss, data, epochs=1, checkpoint=ckpt, progress=False)  # default Adam
    sgd = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)  # noqa: E731
    with pytest.raises(CheckpointError, match=r"adam\.pt was written with optimizer torch\.optim\.adam\.Adam"
                                              r", but this call uses torch\.optim\.sgd\.SGD"):
        fit(_Scalar(), _scalar_loss, data, epochs=2, optimizer=sgd, checkpoint=ckpt, progress=False)
    # a checkpoint that does not record its optimizer class is caught at load time too
    old = torch.load(ckpt, weights_only=True)
    del old["optimizer_class"], old["requested_lr"]
    torch.save(old, ckpt)
    with pytest.raises(CheckpointError, match=r"adam\.pt.*lacks the settings \['dampening', 'momentum'\]"
                                              r" that torch\.optim\.sgd\.SGD needs"):
        fit(_Scalar(), _scalar_loss, data, epochs=2, optimizer=sgd, checkpoint=ckpt, progress=False)
    h = fit(_Scalar(), _scalar_loss, data, epochs=2, checkpoint=ckpt, progress=False)  # Adam resumes
    assert h.resumed_at == [1] and h.epochs == 2


def test_resume_with_other_shapes_names_the_tensors(tmp_path):
    # the old code passed on torch's "size mismatch ... copying a param with shape torch.Size" text
    ckpt = tmp_path / "wide.pt"
    data = [_regression()[:8]]
    fit(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)), _mse, data, epochs=1,
        checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError) as info:
        fit(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)), _mse, data, epochs=2,
            checkpoint=ckpt, progress=False)
    msg = str(info.value)
    assert str(ckpt) in msg and "different model: 3 tensor(s) differ" in msg
    for line in ["'0.weight': checkpoint (8, 3) vs model (4, 3)", "'0.bias': checkpoint (8,) vs model (4,)",
                 "'2.weight': checkpoint (1, 8) vs model (1, 4)"]:
        assert line in msg
    assert "size mismatch" not in msg and "'2.bias'" not in msg


def test_pretrained_with_other_shapes_names_the_tensors(tmp_path):
    # a checkpoint whose sha256 is valid but whose tensors no longer fit the model's code
    save_pretrained("wide", {"width": 8}, nn.Sequential(nn.Linear(3, 8), nn.Linear(8, 1)), None, {},
                    "make wide", 1.0, directory=tmp_path)
    ckpt = load_pretrained("wide", tmp_path)
    assert ckpt["metadata"]["path"] == str(tmp_path / "wide.pt")
    with pytest.raises(PretrainedError) as info:
        checkpoints.load_weights(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1), nn.ReLU(), nn.Linear(1, 1)),
                                 ckpt)
    msg = str(info.value)
    assert str(tmp_path / "wide.pt") in msg and "5 tensor(s) differ" in msg
    for line in ["'0.weight': checkpoint (8, 3) vs model (4, 3)", "'1.weight': checkpoint (1, 8) vs model (1, 4)",
                 "'3.weight': missing from the checkpoint (model (1, 1))", "'3.bias': missing"]:
        assert line in msg
    assert "size mismatch" not in msg
    extra = {**ckpt, "state_dict": {**ckpt["state_dict"], "2.scale": torch.ones(2)}}
    with pytest.raises(PretrainedError, match=r"'2\.scale': in the checkpoint \(2,\) but not in the model"):
        checkpoints.load_weights(nn.Sequential(nn.Linear(3, 8), nn.Linear(8, 1)), extra)
    model = checkpoints.load_weights(nn.Sequential(nn.Linear(3, 8), nn.Linear(8, 1)), ckpt)
    assert torch.equal(model[0].weight, ckpt["state_dict"]["0.weight"])


def test_manifest_records_cpu_model_and_capability(tmp_path):
    save_pretrained("hw", {}, nn.Linear(1, 1), None, {}, "make hw", 0.0, directory=tmp_path)
    hw = read_manifest(tmp_path)["hw"]["hardware"]
    info = runtime.machine_info()
    assert hw["cpu_capability"] == torch.backends.cpu.get_cpu_capability() == info["cpu_capability"]
    assert hw["cpu"] == info["cpu"] and isinstance(hw["cpu"], str) and hw["cpu"]
    assert hw["torch_threads"] == torch.get_num_threads() and hw["device"] == "cpu"
    # also inside the file, so a checkpoint copied without its manifest still says where it was made
    assert load_pretrained("hw", tmp_path)["metadata"]["hardware"]["cpu_capability"] == info["cpu_capability"]
