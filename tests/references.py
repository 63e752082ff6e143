"""Independent reference minimisers shared by the tests (a different method from every closed form)."""

from __future__ import annotations

import torch


def lbfgs_minimise(f, x0, *, iters: int = 200, restarts: int = 5, tolerance_grad: float = 1e-14,
                   tolerance_change: float = 1e-16, history_size: int = 50):
    """L-BFGS with a strong Wolfe line search on f(x) from x0, ``restarts`` times in a row (float64)."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=iters, tolerance_grad=tolerance_grad,
                            tolerance_change=tolerance_change, history_size=history_size,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    for _ in range(restarts):
        opt.step(closure)
    return x.detach()
