"""A peer of the authors' training loop, for timing our engine against "the authors' loop at the same shapes".

    .venv/bin/python benchmarks/authors_loop.py                                  # n = 2000, 3x100, 3 sweeps
    .venv/bin/python benchmarks/authors_loop.py --n 10000 --nets 3x600 --sweeps 2 --threads 1

Written here from the algorithm of Zeng, Lau, Lin, Yao, "Global Convergence of Block Coordinate Descent in Deep
Learning" (ICML 2019), Algorithm 2 (three-splitting, ReLU, squared loss), *as implemented* in the authors' public
PyTorch notebooks (repository ``timlautk/BCD-for-DNNs-PyTorch``: ``bcd_dnn_mlp_mnist.ipynb`` and
``bcd_dnn_mlp_mnist_deep_output.ipynb``).  It is a peer, not their code: no code or text of theirs is copied.
The choices of theirs it reproduces, so that its cost per sweep is theirs:

* samples as columns; separate blocks W_i (d_i × d_{i−1}) and b_i (d_i × 1), the bias broadcast by materialising
  ``b.repeat(1, n)`` wherever it enters a product;
* initialisation W_i = 0.01·randn, b_i = 0.1, then one forward pass: U_i = W_i V_{i−1} + b_i, V_i = ReLU(U_i),
  V_N = U_N (seeded; drawn on the CPU here, then moved to X's device and dtype);
* γ = ρ = α = 1 for every block, as in their deep notebook (their 3-layer notebook used α = 5); no ridge
  term: their W update has only the proximal α‖W − W_old‖² term;
* sweep order, backwards: V_N, U_N, then for i = N..2: (W_i, b_i), V_{i−1}, U_{i−1}; finally (W_1, b_1);
* V_N and U_N in closed form (V_N with a proximal α term, U_N without);
* W_i = (α W_old + ρ (U_i − b_old) V_{i−1}ᵀ) (α I + ρ V_{i−1} V_{i−1}ᵀ)⁻¹ with the inverse formed explicitly
  (``torch.linalg.inv``, the kernel behind their ``torch.inverse``), every sweep, for every layer, W_1 included;
* b_i = (α b_old + ρ Σ_columns(U_i − W_old V_{i−1})) / (ρ n + α): the bias updated with the *old* W (Jacobi),
  recomputing the product W_old V_{i−1};
* V_{i−1} = (ρ W_iᵀW_i + γ I)⁻¹ (ρ W_iᵀ(U_i − b_i) + γ ReLU(U_{i−1})) with the new W_i, b_i and the old U_{i−1},
  again with the inverse formed explicitly and no proximal term;
* U_{i−1} by the closed-form prox of ½(ReLU(u) − v)² + (ρ+α)/(2γ)(u − c)², c the ρ/α mix of W_{i−1}V_{i−2} + b_{i−1}
  and the old U_{i−1}, decided elementwise by ``torch.where`` on the case thresholds (derived here).

``objective()`` is the full three-splitting objective ½‖V_N − Y‖² + Σ_i γ/2‖V_i − σ_i(U_i)‖² + ρ/2‖U_i − W_iV_{i−1} −
b_i‖² (σ_N = identity; not the authors' logged "total loss", which drops the γ terms of the hidden layers).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

Tensor = torch.Tensor

RHO = 1.0  # ρ of every layer in both notebooks


def _relu_prox(v: Tensor, c: Tensor, g: float) -> Tensor:
    """argmin_u ½(ReLU(u) − v)² + g/2 (u − c)², elementwise.

    On u ≥ 0 the minimiser is (v + g c)/(1 + g) when v + g c ≥ 0; on u ≤ 0 it is min(c, 0).  When v + g c < 0 the
    negative branch wins; when c < 0 ≤ v + g c the positive branch wins iff g c ≥ v (g − √(g(g+1)))."""
    s = v + g * c
    pos = s / (1.0 + g)
    neg = torch.minimum(c, torch.zeros_like(c))
    out = torch.where((c >= 0) | (g * c >= v * (g - math.sqrt(g * (g + 1.0)))), pos, c)
    return torch.where(s < 0, neg, out)


def make_authors_sweep(
    X: Tensor, Y: Tensor, widths: list[int], *, gamma: float = 1.0, alpha: float = 1.0, seed: int = 0
) -> tuple[Callable[[], None], Callable[[], float]]:
    """``(sweep, objective)`` over a private state initialised as in the authors' notebooks.

    X is (d_0, n), Y one-hot (d_N, n), ``widths`` = [d_0, …, d_N]; dtype and device are X's."""
    dt, dev = X.dtype, X.device
    n = X.shape[1]
    N = len(widths) - 1
    if X.shape[0] != widths[0] or Y.shape != (widths[-1], n):
        raise ValueError(f"X {tuple(X.shape)} / Y {tuple(Y.shape)} do not match widths {widths} and n = {n}")
    Y = Y.to(device=dev, dtype=dt)
    rho = RHO

    gen = torch.Generator().manual_seed(seed)
    W: list[Tensor] = [X]  # index 0 unused; W[i], b[i] for i = 1..N
    b: list[Tensor] = [X]
    for d_in, d_out in itertools.pairwise(widths):
        W.append((0.01 * torch.randn(d_out, d_in, generator=gen)).to(device=dev, dtype=dt))
        b.append(torch.full((d_out, 1), 0.1, device=dev, dtype=dt))
    V: list[Tensor] = [X]
    U: list[Tensor] = [X]
    for i in range(1, N + 1):
        U.append(torch.addmm(b[i].repeat(1, n), W[i], V[i - 1]))
        V.append(torch.relu(U[i]) if i < N else U[i])
    eye = [torch.eye(d, device=dev, dtype=dt) for d in widths]

    def update_wb(i: int) -> None:
        Vp, Wo, bo = V[i - 1], W[i], b[i]
        gram_inv = torch.linalg.inv(alpha * eye[i - 1] + rho * (Vp @ Vp.T))
        W[i] = (alpha * Wo + rho * ((U[i] - bo.repeat(1, n)) @ Vp.T)) @ gram_inv
        b[i] = (alpha * bo + rho * (U[i] - Wo @ Vp).sum(dim=1, keepdim=True)) / (rho * n + alpha)

    def update_v(i: int) -> None:  # V_i from layer i+1's new W, b and the old U_i
        Wn = W[i + 1]
        inv = torch.linalg.inv(rho * (Wn.T @ Wn) + gamma * eye[i])
        V[i] = inv @ (rho * (Wn.T @ (U[i + 1] - b[i + 1].repeat(1, n))) + gamma * torch.relu(U[i]))

    def update_u(i: int) -> None:  # U_i, i < N, by the ReLU prox
        c = (rho * torch.addmm(b[i].repeat(1, n), W[i], V[i - 1]) + alpha * U[i]) / (rho + alpha)
        U[i] = _relu_prox(V[i], c, (rho + alpha) / gamma)

    def sweep() -> None:
        V[N] = (Y + gamma * U[N] + alpha * V[N]) / (1.0 + gamma + alpha)
        U[N] = (gamma * V[N] + rho * (W[N] @ V[N - 1] + b[N].repeat(1, n))) / (gamma + rho)
        for i in range(N, 1, -1):
            update_wb(i)
            update_v(i - 1)
            update_u(i - 1)
        update_wb(1)

    def objective() -> float:
        terms = [0.5 * (V[N] - Y).square().sum(), 0.5 * gamma * (V[N] - U[N]).square().sum()]
        for i in range(1, N + 1):
            if i < N:
                terms.append(0.5 * gamma * (V[i] - torch.relu(U[i])).square().sum())
            terms.append(0.5 * rho * (U[i] - torch.addmm(b[i], W[i], V[i - 1])).square().sum())
        return float(torch.stack(terms).sum())

    return sweep, objective


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    from bcd.data import load_mnist

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="first n MNIST training samples")
    ap.add_argument("--nets", default="3x100", help="hidden layers LxW, e.g. 3x100")
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    depth, width = (int(s) for s in args.nets.lower().split("x"))
    device = torch.device(args.device)
    ds = load_mnist()
    X = torch.as_tensor(np.ascontiguousarray(ds.X_train[: args.n].T), dtype=torch.float32, device=device)
    labels = torch.as_tensor(ds.y_train[: args.n], device=device)
    Y = torch.zeros(10, args.n, dtype=torch.float32, device=device)
    Y[labels, torch.arange(args.n, device=device)] = 1.0
    widths = [X.shape[0]] + [width] * depth + [10]

    sweep, objective = make_authors_sweep(X, Y, widths, seed=args.seed)
    print(f"authors' loop, widths {widths}, n = {args.n}, {device}, float32, {torch.get_num_threads()} threads")
    print(f"sweep 0: objective {objective():.6g}")
    times = []
    for k in range(1, args.sweeps + 1):
        _sync(device)
        t0 = time.perf_counter()
        sweep()
        _sync(device)
        times.append(time.perf_counter() - t0)
        print(f"sweep {k}: objective {objective():.6g}   {times[-1]:.4f} s")
    print(f"median sweep time: {statistics.median(times):.4f} s")


if __name__ == "__main__":
    main()
