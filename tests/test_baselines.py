"""Gradient-method baselines (bcd.baselines): BCD's forward pass at epoch 0, determinism, Keras's MSE, validation."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from bcd.baselines import BaselineConfig, BaselineMLP, baseline_loss, evaluate, fit_baseline, train_baseline
from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.inputs import make_problem
from bcd.objective import accuracy, predict
from bcd.problem import init_weights, initial_state


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(n=240, d=6, k=3, seed=1, n_test=120)


def _bcd(ds, dtype="float64", init="kaiming", activation="relu", hidden=(12, 10)):
    cfg = BCDConfig(hidden=hidden, activation=activation, init=init, dtype=dtype, seed=3)
    problem = make_problem(ds.X_train, ds.y_train, cfg, X_test=ds.X_test, y_test=ds.y_test, n_classes=ds.n_classes)
    weights = init_weights(cfg, problem.widths)
    return problem, weights, initial_state(problem, weights)


def _numpy_forward(weights, X, activation):
    H = np.asarray(X, dtype=np.float64).T
    for i, W in enumerate(weights, start=1):
        W = W.double().numpy()
        H = W[:, :-1] @ H + W[:, -1:]
        if i < len(weights):
            H = activation(H)
    return H


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("init", "activation"), [("kaiming", "relu"), ("authors", "relu"),
                                                  ("kaiming", "tanh"), ("kaiming", "leaky_relu(0.1)")])
def test_epoch0_is_bcd_forward_pass(data, dtype, init, activation):
    problem, weights, state = _bcd(data, dtype, init, activation)
    N = problem.config.N
    model = BaselineMLP(weights, activation, dtype=getattr(torch, dtype))
    with torch.no_grad():
        assert torch.equal(model(problem.X), state.V[N])  # bit for bit: the same affine and σ, same layout
        assert torch.equal(model(problem.X_test).argmax(dim=0), predict(state.W, problem.X_test, problem))
    rows = train_baseline(data.X_train, data.y_train, data.X_test, data.y_test, weights=weights,
                          activation=activation, config=BaselineConfig(epochs=0), dtype=dtype)
    assert len(rows) == 1 and rows[0]["epoch"] == 0 and rows[0]["seconds"] == 0.0
    assert rows[0]["train_acc"] == accuracy(state.W, problem.X, problem.labels, problem)
    assert rows[0]["test_acc"] == accuracy(state.W, problem.X_test, problem.labels_test, problem)
    # an independent NumPy forward pass and the Keras MSE on one-hot targets
    sigma = {"relu": lambda u: np.maximum(u, 0), "tanh": np.tanh,
             "leaky_relu(0.1)": lambda u: np.where(u > 0, u, 0.1 * u)}
    out = _numpy_forward(weights, data.X_train, sigma[activation])
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(state.V[N].double().numpy(), out, rtol=tol, atol=tol)
    Y = np.eye(3)[data.y_train].T
    assert rows[0]["train_loss"] == pytest.approx(np.mean((out - Y) ** 2), rel=tol)
    if init == "authors":  # the paper's init: every sample gets (nearly) the same output, one class predicted
        assert len(set(predict(state.W, problem.X, problem).tolist())) == 1


def test_chunked_evaluation(data):
    problem, weights, state = _bcd(data)
    model = BaselineMLP(weights, "relu", dtype=torch.float64)
    labels = problem.labels_test
    full = evaluate(model, problem.X_test, labels, "cross_entropy")
    chunked = evaluate(model, problem.X_test, labels, "cross_entropy", chunk=37)
    assert chunked[1] == full[1] == (predict(state.W, problem.X_test, problem, chunk=37) == labels).double().mean()
    assert chunked[0] == pytest.approx(full[0], rel=1e-12)


def test_deterministic_and_on_epoch(data):
    _, weights, _ = _bcd(data)
    cfg = BaselineConfig(optimizer="adam", lr=1e-2, batch_size=50, epochs=3, seed=7)
    seen = []
    a = train_baseline(data.X_train, data.y_train, data.X_test, data.y_test, weights=weights, activation="relu",
                       config=cfg, on_epoch=seen.append)
    b = train_baseline(torch.as_tensor(data.X_train), torch.as_tensor(data.y_train), data.X_test, data.y_test,
                       weights=[w.clone() for w in weights], activation="relu", config=cfg)
    assert _strip(a) == _strip(b)
    assert seen == a and [r["epoch"] for r in a] == [0, 1, 2, 3]
    assert all(r["seconds"] > 0 for r in a[1:])
    c = train_baseline(data.X_train, data.y_train, data.X_test, data.y_test, weights=weights, activation="relu",
                       config=BaselineConfig(optimizer="adam", lr=1e-2, batch_size=50, epochs=3, seed=8))
    assert _strip(c)[1:] != _strip(a)[1:]  # the seed drives the shuffling
    assert _strip(c)[0] == _strip(a)[0]


def test_weights_are_copied(data):
    _, weights, _ = _bcd(data)
    before = [w.clone() for w in weights]
    train_baseline(data.X_train, data.y_train, None, None, weights=weights, activation="relu",
                   config=BaselineConfig(optimizer="adam", lr=1e-2, epochs=1))
    assert all(torch.equal(w, v) for w, v in zip(weights, before))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_lr0_changes_nothing(data, momentum):
    problem, weights, _ = _bcd(data)
    model = BaselineMLP(weights, "relu", dtype=torch.float64)
    y = torch.as_tensor(data.y_train)
    rows = fit_baseline(model, problem.X, y, problem.X_test, torch.as_tensor(data.y_test),
                        config=BaselineConfig(lr=0.0, momentum=momentum, batch_size=64, epochs=3))
    assert all(torch.equal(w, v) for w, v in zip(model.weights(), weights))
    for r in rows[1:]:
        assert (r["train_acc"], r["test_acc"]) == (rows[0]["train_acc"], rows[0]["test_acc"])
        assert r["train_loss"] == pytest.approx(rows[0]["train_loss"], rel=1e-12)  # weighted batch mean = full


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_adam_learns(data, loss):
    _, weights, _ = _bcd(data)
    rows = train_baseline(data.X_train, data.y_train, data.X_test, data.y_test, weights=weights, activation="relu",
                          config=BaselineConfig(optimizer="adam", lr=1e-2, batch_size=32, epochs=20, loss=loss))
    assert rows[0]["train_acc"] < 0.5  # 3 classes: chance is 1/3
    assert rows[-1]["train_acc"] > 0.85 and rows[-1]["test_acc"] > 0.75
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[-1]["train_loss"] < rows[1]["train_loss"]


def test_sgd_stays_stuck_with_the_paper_init(data):
    """The paper's setting in miniature: authors' init, deep narrow ReLU net, SGD with MSE and lr 1e-3: one class."""
    _, weights, _ = _bcd(data, "float32", "authors", hidden=(16,) * 6)
    rows = train_baseline(data.X_train, data.y_train, data.X_test, data.y_test, weights=weights, activation="relu",
                          config=BaselineConfig(epochs=3, batch_size=64))
    shares = np.bincount(data.y_test, minlength=3) / len(data.y_test)
    assert all(r["test_acc"] in shares for r in rows)


def test_mse_is_keras_mean_over_outputs_and_batch():
    out = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.0]], dtype=torch.float64)  # 3 outputs × 2 samples
    y = torch.tensor([0, 2])
    # sample 0: (1-1, 0-0, 3-0) → mean(0, 0, 9) = 3; sample 1: (2-0, -1-0, 0-1) → mean(4, 1, 1) = 2; batch mean 2.5
    assert baseline_loss(out, y, "mse").item() == 2.5
    lse = [math.log(math.exp(1) + 1 + math.exp(3)), math.log(math.exp(2) + math.exp(-1) + 1)]
    ce = ((lse[0] - 1.0) + (lse[1] - 0.0)) / 2
    assert baseline_loss(out, y, "cross_entropy").item() == pytest.approx(ce, rel=1e-14)


@pytest.mark.parametrize(("field", "value"), [
    ("optimizer", "rmsprop"), ("lr", -1e-3), ("lr", float("nan")), ("batch_size", 0), ("batch_size", 2.5),
    ("epochs", -1), ("loss", "squared"), ("momentum", 1.0), ("momentum", -0.1), ("betas", (0.9,)),
    ("betas", (0.9, 1.0)), ("seed", -2), ("seed", True), ("seed", 2**64),
])
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=re.escape(f"{field}={value!r}")):
        BaselineConfig(**{field: value})


def test_config_normalises():
    cfg = BaselineConfig(optimizer="adam", lr=1, betas=[0.5, 0.9])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.betas == (0.5, 0.9)
    with pytest.raises(ValueError, match=re.escape("momentum=0.9") + ".*optimizer='adam'"):
        BaselineConfig(optimizer="adam", momentum=0.9)


def test_bad_inputs(data):
    _, weights, _ = _bcd(data)
    kw = dict(weights=weights, activation="relu", config=BaselineConfig(epochs=0))
    args = (data.X_train, data.y_train, data.X_test, data.y_test)
    with pytest.raises(ValueError, match="dtype='float16'"):
        train_baseline(*args, dtype="float16", **kw)
    with pytest.raises(ValueError, match="device='tpu'"):
        train_baseline(*args, device="tpu", **kw)
    with pytest.raises(ValueError, match="activation='swish'"):
        train_baseline(*args, **{**kw, "activation": "swish"})
    with pytest.raises(ValueError, match="X_train has 5 features"):
        train_baseline(data.X_train[:, :5], *args[1:], **kw)
    with pytest.raises(ValueError, match=r"y_train has labels in \[1, 3\]; allowed: 0..2"):
        train_baseline(data.X_train, np.where(data.y_train == 0, 3, data.y_train), *args[2:], **kw)
    with pytest.raises(ValueError, match="y_test"):
        train_baseline(*args[:3], None, **kw)
    with pytest.raises(ValueError, match="W2 has shape"):
        train_baseline(*args, **{**kw, "weights": [weights[0], weights[2]]})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(data):
    _, weights, _ = _bcd(data)
    cfg = BaselineConfig(optimizer="adam", lr=1e-2, batch_size=50, epochs=2)
    args = (data.X_train, data.y_train, data.X_test, data.y_test)
    cpu = train_baseline(*args, weights=weights, activation="relu", config=cfg, dtype="float64")
    gpu = train_baseline(*args, weights=weights, activation="relu", config=cfg, dtype="float64", device="cuda")
    for g, c in zip(gpu, cpu):  # same shuffles (CPU generator); float64 rounding apart
        assert g["train_loss"] == pytest.approx(c["train_loss"], rel=1e-9)
        assert abs(g["train_acc"] - c["train_acc"]) <= 1 / 240
