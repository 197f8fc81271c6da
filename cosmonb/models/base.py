r"""The model contract: what every trainable model of cosmonb offers, and the registry.

Every model is a ``torch.nn.Module`` that derives from :class:`Model` and offers

* ``config``: a JSON-able dict with which ``type(model)(**config)`` rebuilds it
  (same architecture; the weights come from the state_dict);
* ``loss(batch) -> scalar tensor``: what training minimises. The trainer
  (:mod:`cosmonb.train`) calls nothing else, so a flow's negative
  log-likelihood, a VAE's negative ELBO, the diffusion loss and the IMNN loss
  all train through one loop;
* ``sample(n, cond=None, *, seed=None) -> tensor`` when ``can_sample`` is
  True (the same ``seed`` gives the same samples, whatever the global RNG
  state, which it leaves untouched);
* ``log_prob(x, cond=None)`` when ``log_prob_kind`` is not None. The flag
  says what the number is:

  - ``"exact"``: ``ln q(x | c)`` itself (normalizing flows, Glow), via the
    change of variables ``ln q(x) = ln N(T(x)) + ln |det dT/dx|``;
  - ``"bound"``: a lower bound, the ELBO
    ``E_q(z|x)[ln p(x|z)] - KL(q(z|x) || p(z)) <= ln p(x)`` (VAE);
  - ``"per_timestep"``: the terms of the diffusion bound, one per noise
    level (e.g. the L_0 term used for posteriors);
  - ``None``: no density (compressors such as the IMNN).

A model that cannot sample (``can_sample = False``) raises
``NotImplementedError`` from ``sample`` with a sentence saying why; the
contract test skips its sampling check. A registry maps a short name to
each class (:func:`register_model`), so :mod:`cosmonb.checkpoints` rebuilds
any shipped model from ``(name, config)`` with :func:`build_model`.

Models hold networks and their math only: they never read files, import
``cosmonb.train`` or ``cosmonb.checkpoints``, or plot.

Example:
    >>> import torch
    >>> from torch import nn
    >>> @register_model("demo_gaussian")
    ... class Gaussian(Model):
    ...     log_prob_kind = "exact"
    ...     def __init__(self, dim: int = 2):
    ...         super().__init__()
    ...         self.dim = dim
    ...         self.mu = nn.Parameter(torch.zeros(dim))
    ...     @property
    ...     def config(self):
    ...         return {"dim": self.dim}
    ...     def log_prob(self, x, cond=None):
    ...         return torch.distributions.Normal(self.mu, 1.0).log_prob(x).sum(-1)
    ...     def loss(self, batch):
    ...         return -self.log_prob(batch).mean()
    ...     def sample(self, n, cond=None, *, seed=None):
    ...         with seeded_rng(seed):
    ...             return self.mu + torch.randn(n, self.dim)
    >>> model = build_model("demo_gaussian", {"dim": 3})
    >>> model.loss(torch.zeros(4, 3)).shape, torch.equal(model.sample(2, seed=0), model.sample(2, seed=0))
    (torch.Size([]), True)
    >>> model_name(model), "demo_gaussian" in registered_models()
    ('demo_gaussian', True)
    >>> _ = unregister_model("demo_gaussian")
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

__all__ = ["Model", "LOG_PROB_KINDS", "register_model", "unregister_model", "build_model", "model_class",
           "model_name", "registered_models", "seeded_rng"]

#: The values of ``Model.log_prob_kind``.
LOG_PROB_KINDS = ("exact", "bound", "per_timestep", None)

_REGISTRY: dict[str, type] = {}


class Model(nn.Module):
    """Base class of every trainable cosmonb model (see the module docstring for the contract).

    Subclasses set the class attributes ``log_prob_kind`` (one of
    :data:`LOG_PROB_KINDS`) and ``can_sample``, and implement ``config`` and
    ``loss``; ``sample`` and ``log_prob`` where the model has them. The
    defaults here raise ``NotImplementedError`` naming the model.
    """

    #: What ``log_prob`` returns: "exact", "bound", "per_timestep" or None (no log_prob).
    log_prob_kind: str | None = None
    #: Whether ``sample`` is available.
    can_sample: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.log_prob_kind not in LOG_PROB_KINDS:
            raise TypeError(f"{cls.__name__}.log_prob_kind: expected one of {LOG_PROB_KINDS}, "
                            f"got {cls.log_prob_kind!r}")

    @property
    def config(self) -> dict:
        """JSON-able keyword arguments that rebuild the model: ``type(model)(**model.config)``."""
        raise NotImplementedError(f"{type(self).__name__}: define the config property")

    def loss(self, batch) -> torch.Tensor:
        """The scalar training loss of one batch (the only method the trainer calls)."""
        raise NotImplementedError(f"{type(self).__name__}: define loss(batch) -> scalar tensor")

    def sample(self, n: int, cond=None, *, seed: int | None = None) -> torch.Tensor:
        """``n`` samples (given ``cond`` for a conditional model); the same ``seed``, the same samples."""
        raise NotImplementedError(f"{type(self).__name__} does not generate samples (can_sample=False)")

    def log_prob(self, x, cond=None) -> torch.Tensor:
        """ln q(x | cond) per row; what it is (exact, a bound, per-timestep terms) is ``log_prob_kind``."""
        raise NotImplementedError(f"{type(self).__name__} has no log_prob (log_prob_kind=None)")

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """A config saved by an older version of the class, brought up to date (default: unchanged).

        Override when a new argument's default differs from what older
        checkpoints were built with, so that they still rebuild exactly.
        """
        return dict(config)

    @classmethod
    def from_config(cls, config: dict) -> "Model":
        """``cls(**upgrade_config(config))``, with a clear error when ``config`` is not a dict."""
        if not isinstance(config, dict):
            raise ValueError(f"config: expected a dict of keyword arguments for {cls.__name__}, "
                             f"got {type(config).__name__}")
        try:
            return cls(**cls.upgrade_config(config))
        except TypeError as err:
            raise ValueError(f"config: does not rebuild {cls.__name__} ({err}); got keys {sorted(config)}") from err


# --------------------------------------------------------------------------- registry
def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: register a :class:`Model` subclass under ``name`` (for :func:`build_model`).

    Registering the same class twice is harmless; another class under a
    taken name raises ``ValueError``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected a short identifier such as 'density_flow', got {name!r}")

    def decorate(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Model)):
            raise TypeError(f"register_model({name!r}): expected a subclass of cosmonb.models.base.Model, "
                            f"got {cls!r}")
        old = _REGISTRY.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"register_model: the name {name!r} is taken by {old.__module__}.{old.__qualname__}")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return decorate


def unregister_model(name: str) -> type | None:
    """Remove ``name`` from the registry (tests and examples); returns the class or None."""
    return _REGISTRY.pop(name, None)


def _load_shipped() -> None:
    """Import the modules that register the shipped models (lazily: no import cycle)."""
    from . import diffusion, flows, glow, imnn, vdvae  # noqa: F401


def registered_models() -> dict[str, type]:
    """``name -> class`` of every registered model (the shipped ones included)."""
    _load_shipped()
    return dict(_REGISTRY)


def model_class(name: str) -> type:
    """The class registered under ``name``; ``KeyError`` listing the known names otherwise."""
    models = registered_models()
    if name not in models:
        raise KeyError(f"model {name!r} is not registered; known models: {sorted(models)}")
    return models[name]


def model_name(model) -> str:
    """The registry name of a model (instance or class); ``ValueError`` if it is not registered."""
    cls = model if isinstance(model, type) else type(model)
    for name, c in registered_models().items():
        if c is cls:
            return name
    raise ValueError(f"model: {cls.__name__} is not registered (decorate it with @register_model(name))")


def build_model(name: str, config: dict) -> Model:
    """Rebuild a registered model from its name and config: ``model_class(name)(**config)``."""
    return model_class(name).from_config(config)


# --------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def seeded_rng(seed: int | None, device=None):
    """Seed torch with ``seed`` inside the block and restore the RNG state on exit.

    The CPU generator (and ``device``'s, for an accelerator) is forked, so the
    global random stream is the same after the block as before it. ``seed=None``
    does nothing (draws then come from, and advance, the global stream).

    Example:
        >>> with seeded_rng(0):
        ...     a = torch.rand(2)
        >>> with seeded_rng(0):
        ...     b = torch.rand(2)
        >>> torch.equal(a, b)
        True
    """
    if seed is None:
        yield
        return
    device = torch.device("cpu" if device is None else device)
    accelerator = device.type != "cpu"
    with torch.random.fork_rng(devices=[device.index or 0] if accelerator else [],
                               device_type=device.type if accelerator else "cuda"):
        torch.manual_seed(int(seed))
        yield
