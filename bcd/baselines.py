"""Gradient-method baselines: the same MLP as BCD's, trained by minibatch SGD or Adam (plain PyTorch).

This is what ``bcd reproduce`` compares BCD against.  The paper's demonstration (Zeng et al., ICML 2019): a
10-hidden-layer MLP on MNIST, where BCD trains while Keras SGD with the MSE loss, lr 1e-3 and batch 512 stays at
0.1135 test accuracy (the share of the digit 1: every sample gets the same prediction).

The network is built from BCD's own initial weights W̃_i = [Ŵ_i b_i] (:func:`bcd.problem.init_weights`), one
parameter per layer in exactly that augmented form, and runs BCD's forward pass: layer i computes
σ(W̃_iṼ_{i-1}) = σ(Ŵ_ih + b_i) with :func:`bcd.blocks.affine` and the catalogue record's σ, the last layer linear,
samples as columns.  Hence at epoch 0 its outputs, predictions and accuracies are those of
:func:`bcd.objective.predict` (same device and dtype).  A joint [Ŵ b] parameter trains exactly as separate weight
and bias parameters would: SGD, momentum and Adam act entry by entry.

The losses follow Keras: ``mse`` is the mean of (out − one_hot(y))² over the outputs and the batch (no ½), what
Keras's ``mean_squared_error`` gives with its default reduction; ``cross_entropy`` is softmax cross-entropy on the
logits, averaged over the batch.  An epoch's ``train_loss`` is the mean of its batch losses weighted by batch size
(Keras's running mean; the plain mean over batches when n is a multiple of the batch size).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from bcd import catalogue
from bcd.blocks import affine
from bcd.config import DEVICES, DTYPES, check_seed
from bcd.inputs import _as_matrix
from bcd.inputs import labels as as_labels
from bcd.objective import PREDICT_CHUNK  # the slices of bcd.objective.predict, so results match it

Tensor = torch.Tensor

OPTIMIZERS = ("sgd", "adam")
LOSSES = ("mse", "cross_entropy")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(allowed)}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class BaselineConfig:
    """Hyperparameters of one gradient-method baseline run.

    ``optimizer``: ``sgd`` (``torch.optim.SGD``, with ``momentum``) or ``adam`` (``torch.optim.Adam``, with
    ``betas``); ``lr`` ≥ 0 (0 leaves the weights unchanged); ``loss``: ``mse`` (Keras's mean over outputs and batch,
    one-hot targets) or ``cross_entropy`` (softmax); ``seed`` seeds the per-epoch shuffling only (the weights are
    given).  A bad value raises ``ValueError`` naming the field, the value and what is allowed."""

    optimizer: str = "sgd"
    lr: float = 1e-3
    batch_size: int = 512
    epochs: int = 100
    loss: str = "mse"
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("loss", self.loss, LOSSES)
        if not _is_real(self.lr) or self.lr < 0:
            raise ValueError(f"lr={self.lr!r} is not allowed; lr must be a finite number >= 0")
        object.__setattr__(self, "lr", float(self.lr))
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} is not allowed; batch_size must be an integer >= 1")
        if not _is_int(self.epochs) or self.epochs < 0:
            raise ValueError(f"epochs={self.epochs!r} is not allowed; epochs must be an integer >= 0")
        check_seed("seed", self.seed)
        if not _is_real(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum!r} is not allowed; momentum must be a number in [0, 1)")
        object.__setattr__(self, "momentum", float(self.momentum))
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum={self.momentum!r} is not allowed with optimizer={self.optimizer!r}; momentum "
                             "is for optimizer='sgd' only (Adam's moments are set by betas)")
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else self.betas
        if not (isinstance(betas, tuple) and len(betas) == 2 and all(_is_real(b) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas={self.betas!r} is not allowed; betas must be two numbers in [0, 1), "
                             "e.g. (0.9, 0.999)")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas)


class BaselineMLP(nn.Module):
    """The MLP of BCD's forward pass: h_i = σ(W̃_ih̃_{i-1}) for i < N, out = W̃_Nh̃_{N-1}; samples as **columns**.

    ``W[i-1]`` is the parameter W̃_i = [Ŵ_i b_i] ∈ R^{d_i×(d_{i-1}+1)}, a copy of the given weight in ``dtype`` on
    ``device`` (the given weights are never modified)."""

    def __init__(self, weights: list, activation: str, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not isinstance(weights, (list, tuple)) or len(weights) == 0:
            raise ValueError(f"weights of type {type(weights).__name__} are not allowed; give a non-empty list of the "
                             "augmented W̃_i = [Ŵ_i b_i]")
        params = []
        for i, w in enumerate(weights, start=1):
            t = w.detach() if isinstance(w, torch.Tensor) else torch.as_tensor(w)
            if t.ndim != 2 or t.shape[1] < 2 or not torch.is_floating_point(t):
                raise ValueError(f"weight W{i} has shape {tuple(t.shape)} and dtype {t.dtype}; expected a real "
                                 "d_i × (d_(i-1)+1) matrix (the bias as the last column)")
            if i > 1 and t.shape[1] != params[-1].shape[0] + 1:
                raise ValueError(f"weight W{i} has shape {tuple(t.shape)}; after W{i - 1} of shape "
                                 f"{tuple(params[-1].shape)} expected ({t.shape[0]}, {params[-1].shape[0] + 1})")
            t = t.to(dtype=dtype, device=device).clone()
            if not torch.isfinite(t).all():
                raise ValueError(f"weight W{i} contains NaN/Inf; all values must be finite")
            params.append(nn.Parameter(t))
        self.W = nn.ParameterList(params)
        self.activation = catalogue.build("activation", activation)

    @property
    def widths(self) -> tuple[int, ...]:
        """(d_0, d_1, ..., d_N)."""
        return (self.W[0].shape[1] - 1, *(w.shape[0] for w in self.W))

    def forward(self, H: Tensor) -> Tensor:
        """Outputs (d_N × b) of inputs H (d_0 × b), samples as columns."""
        N = len(self.W)
        for i, W in enumerate(self.W, start=1):
            H = affine(W, H)
            if i < N:
                H = self.activation.apply(H)
        return H

    def weights(self) -> list[Tensor]:
        """Detached copies of W̃_1..W̃_N (BCD's format: usable with :func:`bcd.objective.predict`)."""
        return [w.detach().clone() for w in self.W]


def baseline_loss(out: Tensor, labels: Tensor, loss: str) -> Tensor:
    """The batch loss of outputs ``out`` (d_N × b, samples as columns) against integer ``labels`` (b,).

    ``mse``: mean over outputs and batch of (out − one_hot(labels))², i.e. Keras's ``mean_squared_error`` (mean over
    the last axis, then over the batch); ``cross_entropy``: softmax cross-entropy of the logits, mean over the batch.
    """
    _choice("loss", loss, LOSSES)
    if loss == "mse":
        Y = functional.one_hot(labels, out.shape[0]).T.to(out.dtype)
        return functional.mse_loss(out, Y)
    return functional.cross_entropy(out.T, labels)


@torch.no_grad()
def evaluate(model: BaselineMLP, X: Tensor, labels: Tensor, loss: str, chunk: int = PREDICT_CHUNK
             ) -> tuple[float, float]:
    """(loss, accuracy) of a full forward pass over X (d_0 × n, samples as columns), in chunks of ``chunk`` columns
    (the slices of :func:`bcd.objective.predict`); the loss is the mean over all n samples."""
    n = X.shape[1]
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    correct = torch.zeros((), dtype=torch.int64, device=X.device)
    for s in range(0, n, chunk):
        out = model(X[:, s : s + chunk])
        y = labels[s : s + chunk]
        total += baseline_loss(out, y, loss).to(torch.float64) * y.numel()
        correct += (out.argmax(dim=0) == y).sum()
    return total.item() / n, correct.item() / n


def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device; allowed: {', '.join(DEVICES)}") from None
    _choice("device", dev.type, DEVICES)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available here; allowed: cpu")
    return dev


def _columns(name: str, X, d0: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """X (n × d_0, samples as rows) validated and transposed once to a contiguous d_0 × n on ``device``."""
    t = _as_matrix(name, X, dtype)
    if t.shape[1] != d0:
        raise ValueError(f"{name} has {t.shape[1]} features but the first weight takes d_0 = {d0}; they must match")
    if t.shape[0] == 0:
        raise ValueError(f"{name} has no samples (shape (0, {d0})); give at least one row")
    return t.T.contiguous().to(device)


def train_baseline(
    X_train,
    y_train,
    X_test,
    y_test,
    *,
    weights: list,
    activation: str,
    config: BaselineConfig,
    device: str = "cpu",
    dtype: str = "float32",
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train the MLP built from ``weights`` (BCD's initial W̃_i) with ``config``'s optimizer; one row per epoch.

    ``X_train``/``X_test``: NumPy arrays or tensors (n × d_0, samples as rows, as :mod:`bcd.data` gives them);
    ``y_train``/``y_test``: integer labels (n,) in 0..d_N−1.  The test set may be ``None`` (``test_acc`` is then
    ``None``).  ``activation``: a catalogue spec (``relu``, ``leaky_relu(0.01)``, ...), the σ of the hidden layers.
    ``dtype``: ``float32`` (Keras's) or ``float64``; the weights are cast to it.

    Row ``epoch`` 0 is before training (like BCD's sweep 0; ``train_loss`` is the full-train loss, ``seconds`` 0);
    each later epoch shuffles the training set with a ``torch.Generator`` seeded once by ``config.seed``, steps the
    optimizer on minibatches of ``batch_size`` (the last one smaller when n is not a multiple), and records
    ``train_loss`` (the batch losses' mean, weighted by batch size), ``train_acc`` and ``test_acc`` (full forward
    passes after the epoch, argmax) and ``seconds`` (the epoch's training wall time, evaluation excluded).
    ``on_epoch(row)`` is called after each row (progress, checkpointing).  Same inputs and seed give the same rows,
    ``seconds`` aside."""
    _choice("dtype", dtype, DTYPES)
    tdtype, dev = getattr(torch, dtype), _device(device)
    model = BaselineMLP(weights, activation, device=dev, dtype=tdtype)
    widths = model.widths
    Xtr = _columns("X_train", X_train, widths[0], tdtype, dev)
    ytr = as_labels("y_train", y_train, Xtr.shape[1], widths[-1]).to(dev)
    Xte = yte = None
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if X_test is not None:
        Xte = _columns("X_test", X_test, widths[0], tdtype, dev)
        yte = as_labels("y_test", y_test, Xte.shape[1], widths[-1]).to(dev)
    return fit_baseline(model, Xtr, ytr, Xte, yte, config=config, on_epoch=on_epoch)


def fit_baseline(
    model: BaselineMLP,
    X_train: Tensor,
    y_train: Tensor,
    X_test: Tensor | None,
    y_test: Tensor | None,
    *,
    config: BaselineConfig,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """The training loop of :func:`train_baseline` on an already built ``model`` (trained in place) and validated
    tensors on its device: X as **columns** (d_0 × n), labels int64 (n,)."""
    if not isinstance(config, BaselineConfig):
        raise ValueError(f"config={config!r} is not allowed; give a BaselineConfig")
    n = X_train.shape[1]
    dev = X_train.device
    rows: list[dict] = []

    def record(epoch: int, train_loss: float | None, seconds: float) -> None:
        full_loss, train_acc = evaluate(model, X_train, y_train, config.loss)
        test_acc = None if X_test is None else evaluate(model, X_test, y_test, config.loss)[1]
        row = {"epoch": epoch, "train_loss": full_loss if train_loss is None else train_loss,
               "train_acc": train_acc, "test_acc": test_acc, "seconds": seconds}
        rows.append(row)
        if on_epoch is not None:
            on_epoch(row)

    record(0, None, 0.0)  # before training: the full-train loss
    optimizer = config.make_optimizer(model.parameters())
    gen = torch.Generator().manual_seed(config.seed)  # on the CPU: the same shuffles on every device
    bs = config.batch_size
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(dev)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        for s in range(0, n, bs):
            idx = perm[s : s + bs]
            loss = baseline_loss(model(X_train.index_select(1, idx)), y_train[idx], config.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().to(torch.float64) * idx.numel()
        train_loss = total.item() / n  # one host sync per epoch (it also waits for the device)
        record(epoch, train_loss, time.perf_counter() - start)
    return rows
