"""The epoch-based loop ``fit`` (notebooks 01 and 02), beside the step-based :class:`~cosmonb.train.Trainer`.

Why two loops: ``fit`` made the shipped flows and IMNNs and trains DELFI and the IMNNs of
notebook 01's quick mode, whose numbers (and the tests and README figures that quote
them) it reproduces bit for bit; the ``Trainer`` steps its schedule per optimiser step
and shards data under DDP, so moving these callers onto it would change every one of
those numbers. New models (Glow, VDVAE, DDPM) and ``python -m cosmonb train`` use the
``Trainer``; both loops share :mod:`cosmonb.train.state` (checkpoint format checks, RNG
state, learning-rate changes on resume), so resume logic exists once.

``fit`` knows nothing about the model: it calls ``loss_fn(model, batch)``,
which returns a scalar tensor, and with ``loss_fn=None`` the model's own
``model.loss(batch)`` (the contract of :mod:`cosmonb.models.base`). So Glow's negative log-likelihood, the VAE's ELBO, the
diffusion loss and the IMNN loss all share one device policy, one seed, one
progress bar, one checkpoint format and one resume logic.

A run with ``checkpoint=path`` can be killed at any time: the checkpoint is
written atomically every ``checkpoint_every`` epochs (model, optimizer and
scheduler states, history, best weights and every RNG state), and calling
``fit`` again with the same arguments resumes from it and ends with the
same weights, bit for bit on CPU, as a run that was never interrupted.

Example:
    >>> import torch
    >>> from torch import nn
    >>> x = torch.linspace(-1, 1, 64)[:, None]
    >>> data = [(x[i:i + 16], 3 * x[i:i + 16] + 1) for i in range(0, 64, 16)]
    >>> mse = lambda model, batch: nn.functional.mse_loss(model(batch[0]), batch[1])
    >>> history = fit(nn.Linear(1, 1), mse, data, epochs=60, lr=0.1, progress=False, seed=0)
    >>> history.train_loss[-1] < 1e-3 * history.train_loss[0]
    True
"""
from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import runtime
from .._checks import check_float, check_int
from .state import (CHECKPOINT_FORMAT, CheckpointError, NonFiniteLossError, apply_new_lr, batch_size_of,
                    check_loss, cpu_state, get_rng_state, load_checkpoint, make_optimizer, make_scheduler,
                    optimizer_name, requested_lrs, restore_states, set_rng_state, to_device)

__all__ = ["fit", "evaluate", "History", "NonFiniteLossError", "CheckpointError", "model_loss"]

# --------------------------------------------------------------------------- history
@dataclass
class History:
    """What ``fit`` returns: the loss curves and how the run ended.

    Epochs are numbered from 1: ``train_loss[e - 1]`` is the mean training
    loss of epoch ``e`` and ``best_epoch`` is the epoch with the lowest
    validation loss (``None`` without validation data).

    Fields: ``train_loss``, ``val_loss`` (per epoch, batch-size weighted
    means), ``best_epoch``, ``best_val_loss``, ``stopped_early``,
    ``stop_reason`` (a sentence), ``seconds`` (wall time of all sessions
    together), ``lr`` (learning rate used in each epoch), ``grad_norm``
    (largest gradient norm before clipping in each epoch; only with
    ``clip_grad``), ``resumed_at`` (epochs already done each time the run
    resumed from its checkpoint).

    Example:
        >>> h = History(train_loss=[1.0, 0.5], val_loss=[1.1, 0.7], best_epoch=2)
        >>> h.epochs, h.val_loss[h.best_epoch - 1]
        (2, 0.7)
    """

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    best_val_loss: float | None = None
    stop_reason: str = ""
    lr: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    resumed_at: list = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.train_loss)

    def to_dict(self) -> dict:
        """Plain dict (lists, floats, str) for checkpoints and JSON.

        Example:
            >>> History(train_loss=[1.0]).to_dict()["train_loss"]
            [1.0]
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        """Inverse of ``to_dict`` (unknown keys are ignored).

        Example:
            >>> History.from_dict({"train_loss": [2.0, 1.0]}).epochs
            2
        """
        if not isinstance(data, dict):
            raise ValueError(f"data: expected a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def plot(self, ax=None, logy: bool | None = None):
        """Draw the training (and validation) loss per epoch; returns the axes.

        The best epoch is marked by a dotted line. ``logy=None`` uses a log
        scale when every loss is positive and they span more than a factor 30.

        Example:
            >>> import matplotlib; matplotlib.use("Agg")
            >>> ax = History(train_loss=[1.0, 0.5, 0.3], val_loss=[1.2, 0.6, 0.7], best_epoch=2).plot()
            >>> ax.get_xlabel()
            'epoch'
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        x = np.arange(1, len(self.train_loss) + 1)
        ax.plot(x, self.train_loss, label="train")
        if self.val_loss:
            ax.plot(np.arange(1, len(self.val_loss) + 1), self.val_loss, label="validation")
        if self.best_epoch is not None:
            ax.axvline(self.best_epoch, ls=":", color="gray", label=f"best (epoch {self.best_epoch})")
        values = np.asarray(list(self.train_loss) + list(self.val_loss), dtype=float)
        if logy is None:
            logy = bool(values.size) and bool(np.all(values > 0)) and values.max() > 30 * values.min()
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        if self.train_loss:
            ax.legend()
        return ax


# --------------------------------------------------------------------------- helpers




def _check_data(data, name: str) -> None:
    if isinstance(data, (str, bytes)) or data is None:
        raise ValueError(f"{name}: expected an iterable of batches (list, DataLoader) or a callable "
                         f"returning one per epoch, got {type(data).__name__}")
    if isinstance(data, collections.abc.Iterator):
        raise ValueError(f"{name}: a one-shot iterator/generator can be read only once, but fit "
                         "reads the data every epoch; pass a list, a DataLoader, or a callable "
                         "that returns a fresh iterable each epoch")
    if not isinstance(data, collections.abc.Iterable) and not callable(data):
        raise ValueError(f"{name}: expected an iterable of batches (list, DataLoader) or a callable "
                         f"returning one per epoch, got {type(data).__name__}")


def _epoch_batches(data, epoch: int, name: str):
    """The iterable of batches for ``epoch`` (1-based)."""
    if isinstance(data, collections.abc.Iterable):
        return data
    try:
        inspect.signature(data).bind(epoch)
        takes_epoch = True
    except (TypeError, ValueError):  # takes no argument (or has no signature)
        takes_epoch = False
    batches = data(epoch) if takes_epoch else data()
    if not isinstance(batches, collections.abc.Iterable) or isinstance(batches, (str, bytes)):
        raise ValueError(f"{name}: the callable should return an iterable of batches, "
                         f"got {type(batches).__name__} in epoch {epoch}")
    return batches


def _save_checkpoint(path: Path, *, epoch, epochs, model, opt, sched, history, best_val,
                     best_state, since_best, loaders, requested_lr) -> None:
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "epochs_requested": epochs,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "optimizer_class": optimizer_name(opt),
        "requested_lr": requested_lr,
        "scheduler": sched.state_dict() if sched is not None else None,
        "history": history.to_dict(),
        "best_val_loss": best_val,
        "best_state": best_state,
        "epochs_since_best": since_best,
        "rng": get_rng_state(loaders),
        "torch_version": str(torch.__version__),
    }
    with runtime.atomic_write(path, "wb") as f:
        torch.save(ckpt, f)


def _run_epoch(model, loss_fn, batches, dev, epoch, *, opt=None, clip_grad=None, name="train_data"):
    """One pass; trains when ``opt`` is given. Returns (mean loss, max grad norm or None)."""
    training = opt is not None
    phase = "training" if training else "validation"
    model.train(training)
    total, count, max_norm, step = 0.0, 0, None, 0
    params = [p for p in model.parameters() if p.requires_grad]
    for step, batch in enumerate(batches, 1):
        batch = to_device(batch, dev)
        if training:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            value = check_loss(loss, epoch, step, phase)
            loss.backward()
            if clip_grad is not None:
                norm = float(torch.nn.utils.clip_grad_norm_(params, clip_grad))
                if not math.isfinite(norm):
                    raise NonFiniteLossError(f"gradient norm is {norm} at epoch {epoch}, step {step} "
                                             f"(loss {value:.6g}); check the loss for log(0) or 1/0")
                max_norm = norm if max_norm is None else max(max_norm, norm)
            opt.step()
        else:
            with torch.no_grad():
                value = check_loss(loss_fn(model, batch), epoch, step, phase)
        n = batch_size_of(batch)
        total += value * n
        count += n
    if step == 0:
        raise ValueError(f"{name}: yielded no batches in epoch {epoch}")
    return total / count, max_norm


# --------------------------------------------------------------------------- public API
def model_loss(model: nn.Module, batch) -> torch.Tensor:
    """``model.loss(batch)``: the ``loss_fn`` that ``fit`` and ``evaluate`` use when given ``None``."""
    return model.loss(batch)


def _resolve_loss(model, loss_fn):
    if loss_fn is None:
        if not callable(getattr(model, "loss", None)):
            raise ValueError(f"loss_fn: None means model.loss(batch), but {type(model).__name__} has no loss "
                             "method; pass a callable (model, batch) -> scalar tensor")
        return model_loss
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable (model, batch) -> scalar tensor, got {type(loss_fn).__name__}")
    return loss_fn


def evaluate(model: nn.Module, loss_fn: Callable | None, data, *, device=None) -> float:
    """Mean of ``loss_fn(model, batch)`` over ``data`` (batch-size weighted), in eval mode, no grad.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(1, 1)
        >>> _ = [nn.init.zeros_(p) for p in model.parameters()]
        >>> evaluate(model, lambda m, b: (m(b) ** 2).mean(), [torch.ones(4, 1)])
        0.0
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    loss_fn = _resolve_loss(model, loss_fn)
    _check_data(data, "data")
    dev = runtime.select_device(device, "device")
    model.to(dev)
    mean, _ = _run_epoch(model, loss_fn, _epoch_batches(data, 1, "data"), dev, 1, name="data")
    return mean


def fit(model: nn.Module, loss_fn: Callable | None, train_data, val_data=None, *, epochs: int,
        optimizer=None, lr: float = 1e-3, scheduler=None, checkpoint=None, checkpoint_every: int = 1,
        patience: int | None = None, min_delta: float = 0.0, clip_grad: float | None = None,
        device=None, progress: bool = True, seed: int | None = None,
        callback: Callable[[int, History], Any] | None = None) -> History:
    """Train ``model`` by minimising ``loss_fn(model, batch)``; the one loop of the package.

    Arguments:
        model: any ``torch.nn.Module``; moved to ``device``.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``, or ``None`` for
            ``model.loss(batch)`` (every cosmonb model has one).
        train_data, val_data: iterables of batches (a list, a DataLoader)
            or a callable returning one each epoch (called as ``f(epoch)``
            if it takes an argument, else ``f()``). A batch is a tensor or a
            tuple/list/dict of them; tensors are moved to ``device``.
        epochs: total number of epochs (counting epochs done before a resume).
        optimizer: ``None`` (Adam with ``lr``), an optimizer over
            ``model.parameters()``, or a factory ``params -> optimizer``.
            Resuming a checkpoint written with another optimizer class
            (SGD over Adam) raises ``CheckpointError`` naming both.
        lr: learning rate of the default Adam (a passed optimizer brings its
            own). Resuming with a learning rate other than the checkpoint's
            (this ``lr``, or your optimizer's) uses the new one, with a
            ``UserWarning``: each param group's lr and the scheduler's base
            lrs are scaled to it, keeping the scheduler's progress. Pass the
            old value to continue the interrupted run exactly.
        scheduler: ``None``, an LR scheduler, or a factory ``optimizer ->
            scheduler``; stepped once per epoch (ReduceLROnPlateau gets the
            validation loss, or the training loss without validation data).
        checkpoint: file path. Written atomically every ``checkpoint_every``
            epochs and at the end; if it exists when ``fit`` starts, training
            resumes from it (and gives the same weights as an uninterrupted
            run). A corrupt or mismatched file (another model, listing the
            tensors whose shapes differ; another optimizer) raises
            ``CheckpointError``; training never silently starts over.
        patience: stop when the validation loss has not dropped by more than
            ``min_delta`` for ``patience`` epochs, then restore the best
            weights (needs ``val_data``). Without ``patience`` the best epoch
            is still reported but the final weights are kept.
        clip_grad: clip the total gradient norm to this value each step.
        device: ``None`` (``cosmonb.device()``), or a device name.
        progress: show a tqdm progress bar over epochs (train/val loss in the
            postfix).
        seed: if given, ``seed_everything(seed)`` before training.
        callback: ``callback(epoch, history)`` after each epoch (and after
            its checkpoint is written). It does not perturb the training
            RNG streams, so resume stays exact even if it draws random numbers.

    Returns a ``History``; the model ends in eval mode. A NaN/inf loss
    raises ``NonFiniteLossError`` naming the epoch and step.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> x = torch.randn(64, 3); y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
        >>> data = [(x[:32], y[:32]), (x[32:], y[32:])]
        >>> loss = lambda m, b: nn.functional.mse_loss(m(b[0]), b[1])
        >>> h = fit(nn.Linear(3, 1), loss, data, data[1:], epochs=5, progress=False, seed=0)
        >>> len(h.train_loss), len(h.val_loss), h.stopped_early
        (5, 5, False)
    """
    # ---- validate
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model: has no trainable parameters")
    loss_fn = _resolve_loss(model, loss_fn)
    _check_data(train_data, "train_data")
    if val_data is not None:
        _check_data(val_data, "val_data")
    epochs = check_int(epochs, "epochs", 1)
    lr = check_float(lr, "lr", positive=True)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", 1)
    if patience is not None:
        patience = check_int(patience, "patience", 1)
        if val_data is None:
            raise ValueError("patience: early stopping watches the validation loss, so it needs val_data")
    min_delta = check_float(min_delta, "min_delta", positive=False)
    if clip_grad is not None:
        clip_grad = check_float(clip_grad, "clip_grad", positive=True)
    if callback is not None and not callable(callback):
        raise ValueError(f"callback: expected a callable (epoch, history), got {type(callback).__name__}")
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise ValueError(f"checkpoint: expected a file path, got {type(checkpoint).__name__}")
        checkpoint = Path(checkpoint)
        if checkpoint.is_dir():
            raise ValueError(f"checkpoint: {checkpoint} is a directory; give a file path such as run.pt")
    if seed is not None:
        runtime.seed_everything(seed)
    dev = runtime.select_device(device, "device")

    # ---- set up
    model.to(dev)
    opt = make_optimizer(optimizer, model, lr)
    requested_lr = requested_lrs(opt)
    sched = make_scheduler(scheduler, opt)
    loaders = {"train_data": train_data, "val_data": val_data}
    history = History()
    best_val, best_state, since_best, start = math.inf, None, 0, 0
    if checkpoint is not None and checkpoint.exists():
        ckpt = load_checkpoint(checkpoint)
        restore_states(ckpt, checkpoint, model, opt, sched, loaders)
        start = int(ckpt["epoch"])
        history = History.from_dict(ckpt["history"])
        best_val = math.inf if ckpt["best_val_loss"] is None else float(ckpt["best_val_loss"])
        best_state, since_best = ckpt["best_state"], int(ckpt["epochs_since_best"])
        if start >= epochs or history.stopped_early:
            print(f"[cosmonb.fit] {checkpoint} already holds a finished run "
                  f"({start} epochs; {history.stop_reason or 'done'}); not training further")
            if start > epochs:
                print(f"[cosmonb.fit] note: the checkpoint has {start} epochs, more than epochs={epochs}")
            if best_state is not None and (patience is not None or history.stopped_early):
                model.load_state_dict(best_state)
            model.eval()
            return history
        apply_new_lr(ckpt, checkpoint, opt, sched, requested_lr, start)
        history.resumed_at.append(start)
        print(f"[cosmonb.fit] resumed from {checkpoint} after epoch {start} of {epochs}")

    # ---- loop
    seconds_before = history.seconds
    t0 = time.perf_counter()
    bar = tqdm(total=epochs, initial=start, desc="fit", unit="epoch", disable=not progress,
               dynamic_ncols=True)
    try:
        for epoch in range(start + 1, epochs + 1):
            history.lr.append(float(opt.param_groups[0]["lr"]))
            train_loss, norm = _run_epoch(model, loss_fn, _epoch_batches(train_data, epoch, "train_data"),
                                          dev, epoch, opt=opt, clip_grad=clip_grad)
            history.train_loss.append(train_loss)
            if norm is not None:
                history.grad_norm.append(norm)
            postfix = {"train": f"{train_loss:.4g}"}
            if val_data is not None:
                val_loss, _ = _run_epoch(model, loss_fn, _epoch_batches(val_data, epoch, "val_data"),
                                         dev, epoch, name="val_data")
                history.val_loss.append(val_loss)
                postfix["val"] = f"{val_loss:.4g}"
                if val_loss < best_val - min_delta:
                    best_val, best_state, since_best = val_loss, cpu_state(model), 0
                    history.best_epoch, history.best_val_loss = epoch, val_loss
                else:
                    since_best += 1
            if sched is not None:
                if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    sched.step(history.val_loss[-1] if val_data is not None else train_loss)
                else:
                    sched.step()
            stop = patience is not None and since_best >= patience
            if stop:
                history.stopped_early = True
                history.stop_reason = (
                    f"early stopping after epoch {epoch}: validation loss did not improve by more than "
                    f"{min_delta:g} for {patience} epochs since epoch {history.best_epoch} "
                    f"({best_val:.6g}); best weights restored")
            elif epoch == epochs:
                history.stop_reason = f"completed {epochs} epochs" + (
                    "; best weights restored" if patience is not None and best_state is not None else "")
            history.seconds = seconds_before + time.perf_counter() - t0
            if checkpoint is not None and (stop or epoch == epochs or epoch % checkpoint_every == 0):
                _save_checkpoint(checkpoint, epoch=epoch, epochs=epochs, model=model, opt=opt, sched=sched,
                                 history=history, best_val=None if math.isinf(best_val) else best_val,
                                 best_state=best_state, since_best=since_best, loaders=loaders,
                                 requested_lr=requested_lr)
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if callback is not None:
                rng = get_rng_state(loaders)
                callback(epoch, history)
                set_rng_state(rng, loaders)
            if stop:
                break
    finally:
        bar.close()
    if patience is not None and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
