"""An outside user's NumPy re-implementation of Algorithm 2 (three-splitting BCD), with planted mutants.

Independent of the packages ``bcd``, ``verification`` and ``theory`` on purpose: it is the "other
implementation" whose recorded iterates the tests of ``bcd audit`` feed to the auditor.  Written from
``../shared/MATH.md`` §1–§3 and §8 only.

Conventions: samples are columns (X is d_0×n, Y is d_N×n), float64, squared loss with c = 1 (sum),
W̃_i = [Ŵ_i b_i] of shape d_i×(d_{i-1}+1) acting on Ṽ_{i-1} = [V_{i-1}; 1ᵀ], σ_N = Id.  One sweep updates,
in this backward Gauss–Seidel order, V_N, U_N, W_N, then V_i, U_i, W_i for i = N−1, …, 1; every block is the
exact minimiser of its subproblem.  ``skips=True`` is Algorithm 3 (MATH.md §8): a skip on every layer with
d_i = d_{i-1}, V_0 = X included.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MUTANTS: dict[str, str] = {
    "prox_dropped": "proximal term dropped from U_1 (α = 0 in its subproblem)",
    "jacobi_bias": "authors' Jacobi bias update in W_1 (Ŵ with the old b, b from the old Ŵ)",
    "wrong_beta": "U_1 ReLU prox with the wrong β = γ/(γ+α)",
    "old_W_next": "V_1 solved with the old W_2 (before its update in this sweep)",
    "swapped_gamma_alpha": "γ and α swapped in the W_N update",
    "worse_candidate": "ReLU prox of U_1 returns the worse of its two candidates",
    "jacobi_bias_all": "authors' Jacobi bias update in every W_i (their actual code)",
}

State = dict[str, np.ndarray]


# ----------------------------------------------------------------------------- helpers
def aug(V: np.ndarray) -> np.ndarray:
    """Ṽ = [V; 1ᵀ]."""
    return np.vstack([V, np.ones((1, V.shape[1]))])


def sigma(U: np.ndarray, i: int, N: int, activation: str) -> np.ndarray:
    """σ_i(U): ReLU (or the identity) for hidden layers, the identity for the output layer i = N."""
    return np.maximum(U, 0.0) if i < N and activation == "relu" else U


def skip_flags(widths, skips: bool) -> list[int]:
    """τ_0..τ_N: τ_i = 1 where layer i has a skip (d_i = d_{i-1}) and ``skips`` is on."""
    return [0] + [int(skips and widths[i] == widths[i - 1]) for i in range(1, len(widths))]


def skip_in(V_prev: np.ndarray, i: int, tau) -> np.ndarray | float:
    """τ_iV_{i-1}: V_{i-1} on a skip layer, 0 otherwise (the shapes differ there)."""
    return V_prev if tau[i] else 0.0


def relu_prox(a: np.ndarray, m: np.ndarray, beta: float, worse: bool = False) -> np.ndarray:
    """argmin_u ½(a − relu(u))² + β/2(u − m)², elementwise, by comparing its two candidates
    (``worse=True``: the mutant that returns the worse one)."""
    u_plus = np.maximum((a + beta * m) / (1.0 + beta), 0.0)
    u_minus = np.minimum(m, 0.0)

    def f(u):
        return 0.5 * (a - np.maximum(u, 0.0)) ** 2 + 0.5 * beta * (u - m) ** 2

    plus_better = f(u_plus) <= f(u_minus)
    return np.where(plus_better != worse, u_plus, u_minus)


def initial_point(X: np.ndarray, widths, seed: int = 0, activation: str = "relu", skips: bool = False) -> State:
    """Q⁰: Ŵ_i ~ N(0, 2/d_{i-1}), b_i = 0, then a forward pass U_i = W̃_iṼ_{i-1}, V_i = σ_i(U_i) (+ V_{i-1})."""
    rng = np.random.default_rng(seed)
    N, tau = len(widths) - 1, skip_flags(widths, skips)
    Q: State = {}
    V = X
    for i in range(1, N + 1):
        W_hat = rng.standard_normal((widths[i], widths[i - 1])) * np.sqrt(2.0 / widths[i - 1])
        Q[f"W{i}"] = np.hstack([W_hat, np.zeros((widths[i], 1))])
        Q[f"U{i}"] = Q[f"W{i}"] @ aug(V)
        V = Q[f"V{i}"] = sigma(Q[f"U{i}"], i, N, activation) + skip_in(V, i, tau)
    return Q


# ----------------------------------------------------------------------------- the block updates
# Each takes the working state S (S["V0"] = X) at its current values, i.e. "−" for blocks not yet updated in
# this sweep and "+" for those already updated, and returns the new value of its block.
def new_V_out(S: State, N: int, Y: np.ndarray, tau, gamma: float, alpha: float) -> np.ndarray:
    """V_N = (Y + γ(τ_N V_{N-1} + U_N) + αV_N⁻)/(1 + γ + α)."""
    return (Y + gamma * (skip_in(S[f"V{N - 1}"], N, tau) + S[f"U{N}"]) + alpha * S[f"V{N}"]) / (1.0 + gamma + alpha)


def new_U_out(S: State, N: int, tau) -> np.ndarray:
    """U_N = (V_N⁺ − τ_N V_{N-1} + W̃_NṼ_{N-1})/2 (no proximal term)."""
    return (S[f"V{N}"] - skip_in(S[f"V{N - 1}"], N, tau) + S[f"W{N}"] @ aug(S[f"V{N - 1}"])) / 2.0


def new_W(S: State, i: int, gamma: float, alpha: float, lam: float) -> np.ndarray:
    """W̃_i = (αW̃_i⁻ + γU_i⁺Ṽᵀ)((α+λ)I + γṼṼᵀ)⁻¹, Ṽ = Ṽ_{i-1}: one joint solve for Ŵ and b."""
    Vt = aug(S[f"V{i - 1}"])
    M = (alpha + lam) * np.eye(Vt.shape[0]) + gamma * Vt @ Vt.T
    R = alpha * S[f"W{i}"] + gamma * S[f"U{i}"] @ Vt.T
    return np.linalg.solve(M, R.T).T  # M is symmetric: W M = R ⇔ M Wᵀ = Rᵀ


def new_W_jacobi(S: State, i: int, gamma: float, alpha: float, lam: float) -> np.ndarray:
    """The authors' Jacobi step: Ŵ solved with the OLD b held fixed, b from the OLD Ŵ (not the minimiser)."""
    V, U = S[f"V{i - 1}"], S[f"U{i}"]
    W_old, b_old = S[f"W{i}"][:, :-1], S[f"W{i}"][:, -1:]
    M = (alpha + lam) * np.eye(V.shape[0]) + gamma * V @ V.T
    W_hat = np.linalg.solve(M, (alpha * W_old + gamma * (U - b_old) @ V.T).T).T
    b = (alpha * b_old + gamma * (U - W_old @ V).sum(axis=1, keepdims=True)) / (alpha + lam + gamma * V.shape[1])
    return np.hstack([W_hat, b])


def new_V_hidden(S: State, i: int, N: int, tau, activation: str, W_next: np.ndarray) -> np.ndarray:
    """((1 + τ_{i+1})I + ŴᵀŴ)V = τ_iV_{i-1} + σ(U_i) + τ_{i+1}(V_{i+1}⁺ − σ_{i+1}(U_{i+1}⁺)) + Ŵᵀ(U_{i+1}⁺ − b),
    with [Ŵ b] = W_next (W̃_{i+1}⁺ in the correct loop)."""
    W_hat, b = W_next[:, :-1], W_next[:, -1:]
    rhs = skip_in(S[f"V{i - 1}"], i, tau) + sigma(S[f"U{i}"], i, N, activation) + W_hat.T @ (S[f"U{i + 1}"] - b)
    if tau[i + 1]:
        rhs = rhs + S[f"V{i + 1}"] - sigma(S[f"U{i + 1}"], i + 1, N, activation)
    M = (1.0 + tau[i + 1]) * np.eye(W_hat.shape[1]) + W_hat.T @ W_hat
    return np.linalg.solve(M, rhs)


def new_U_hidden(S: State, i: int, tau, activation: str, gamma: float, alpha: float,
                 beta: float | None = None, worse: bool = False) -> np.ndarray:
    """argmin_U γ/2‖a − σ(U)‖² + γ/2‖U − P‖² + α/2‖U − U_i⁻‖², a = V_i⁺ − τ_iV_{i-1}, P = W̃_iṼ_{i-1}; divided
    by γ, elementwise ½(a − σ(u))² + β/2(u − m)² with m = (γP + αU⁻)/(γ+α), β = (γ+α)/γ (``beta`` overrides
    it).  ReLU: :func:`relu_prox`; identity: the quadratic's minimiser (a + βm)/(1 + β)."""
    P = S[f"W{i}"] @ aug(S[f"V{i - 1}"])
    m = (gamma * P + alpha * S[f"U{i}"]) / (gamma + alpha)
    beta = (gamma + alpha) / gamma if beta is None else beta
    a = S[f"V{i}"] - skip_in(S[f"V{i - 1}"], i, tau)
    if activation == "relu":
        return relu_prox(a, m, beta, worse)
    if worse:
        raise ValueError("the worse_candidate mutant needs the ReLU activation (the identity has one candidate)")
    return (a + beta * m) / (1.0 + beta)


# ----------------------------------------------------------------------------- the loop
def run_algorithm2(X: np.ndarray, Y: np.ndarray, widths, gamma: float, alpha: float, lam: float = 0.0,
                   sweeps: int = 8, seed: int = 0, mutant: str | None = None, activation: str = "relu",
                   skips: bool = False, on_block: Callable[[str, State], None] | None = None) -> list[State]:
    """Algorithm 2 (Algorithm 3 with ``skips``) from :func:`initial_point`; returns [Q⁰, Q¹, …, Q^sweeps],
    each a dict of copies with keys W1..WN, V1..VN, U1..UN.  ``mutant``: a key of :data:`MUTANTS`, applied
    at every sweep.  ``on_block(name, Q)`` is called after every block update (name e.g. "U2") with copies
    of all blocks at that moment."""
    if mutant is not None and mutant not in MUTANTS:
        raise ValueError(f"unknown mutant {mutant!r}; allowed: {sorted(MUTANTS)}")
    if activation not in ("relu", "identity"):
        raise ValueError(f"activation={activation!r}; allowed: 'relu', 'identity'")
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    widths = tuple(widths)
    if widths[0] != X.shape[0] or widths[-1] != Y.shape[0]:
        raise ValueError(f"widths {widths} do not match X {X.shape} and Y {Y.shape} (samples as columns)")
    N, tau = len(widths) - 1, skip_flags(widths, skips)
    S: State = {"V0": X, **initial_point(X, widths, seed, activation, skips)}

    def snapshot() -> State:
        return {f"{b}{i}": S[f"{b}{i}"].copy() for i in range(1, N + 1) for b in "WVU"}

    def put(name: str, value: np.ndarray) -> None:
        S[name] = value
        if on_block is not None:
            on_block(name, snapshot())

    def put_W(i: int) -> None:
        jacobi = mutant == "jacobi_bias_all" or (mutant == "jacobi_bias" and i == 1)
        g, a = (alpha, gamma) if mutant == "swapped_gamma_alpha" and i == N else (gamma, alpha)
        put(f"W{i}", (new_W_jacobi if jacobi else new_W)(S, i, g, a, lam))

    iterates = [snapshot()]
    for _ in range(sweeps):
        old = snapshot()  # Q^{k-1}
        put(f"V{N}", new_V_out(S, N, Y, tau, gamma, alpha))
        put(f"U{N}", new_U_out(S, N, tau))
        put_W(N)
        for i in range(N - 1, 0, -1):
            W_next = old[f"W{i + 1}"] if mutant == "old_W_next" and i == 1 else S[f"W{i + 1}"]
            put(f"V{i}", new_V_hidden(S, i, N, tau, activation, W_next))
            mutated_U = i == 1 and mutant in ("prox_dropped", "wrong_beta", "worse_candidate")
            a = 0.0 if mutated_U and mutant == "prox_dropped" else alpha
            beta = gamma / (gamma + alpha) if mutated_U and mutant == "wrong_beta" else None
            worse = mutated_U and mutant == "worse_candidate"
            put(f"U{i}", new_U_hidden(S, i, tau, activation, gamma, a, beta, worse))
            put_W(i)
        iterates.append(snapshot())
    return iterates


def objective(Q: State, X: np.ndarray, Y: np.ndarray, gamma: float, lam: float, skips: bool = False,
              activation: str = "relu") -> float:
    """L̄(Q) = ½‖V_N − Y‖² + Σ λ/2‖W̃_i‖² + γ/2 Σ_i (‖V_i − τ_iV_{i-1} − σ_i(U_i)‖² + ‖U_i − W̃_iṼ_{i-1}‖²)."""
    N = sum(k.startswith("W") for k in Q)
    widths = [X.shape[0]] + [Q[f"V{i}"].shape[0] for i in range(1, N + 1)]
    tau = skip_flags(widths, skips)
    V = {0: X, **{i: Q[f"V{i}"] for i in range(1, N + 1)}}
    value = 0.5 * np.sum((V[N] - Y) ** 2)
    for i in range(1, N + 1):
        W, U = Q[f"W{i}"], Q[f"U{i}"]
        value += 0.5 * lam * np.sum(W**2)
        value += 0.5 * gamma * np.sum((V[i] - skip_in(V[i - 1], i, tau) - sigma(U, i, N, activation)) ** 2)
        value += 0.5 * gamma * np.sum((U - W @ aug(V[i - 1])) ** 2)
    return float(value)


def toy_data(n: int = 20, d: int = 5, k: int = 3, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A small Gaussian mixture: X (d×n), one-hot Y (k×n), samples as columns."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    centres = rng.standard_normal((d, k)) * 2.0
    X = centres[:, labels] + rng.standard_normal((d, n))
    return X, np.eye(k)[:, labels]


if __name__ == "__main__":  # self-checks: monotone descent (per block and per sweep); every mutant changes Q
    X, Y = toy_data()
    widths, gamma, alpha = (5, 4, 4, 3), 1.0, 2.0
    for activation, skips, lam in [("relu", False, 0.0), ("relu", True, 0.1), ("identity", False, 0.3)]:
        states: list[State] = []
        its = run_algorithm2(X, Y, widths, gamma, alpha, lam, sweeps=15, activation=activation, skips=skips,
                             on_block=lambda _, Q, out=states: out.append(Q))
        per_sweep = [objective(Q, X, Y, gamma, lam, skips, activation) for Q in its]
        rises = np.diff([per_sweep[0], *(objective(Q, X, Y, gamma, lam, skips, activation) for Q in states)])
        print(f"{activation} skips={skips} lam={lam}: L̄ {per_sweep[0]:.6g} -> {per_sweep[-1]:.6g}, "
              f"max block rise {rises.max():.3g}, max sweep rise {np.diff(per_sweep).max():.3g}")
        assert rises.max() <= 1e-10 * per_sweep[0]
    correct = run_algorithm2(X, Y, widths, gamma, alpha)
    for name in MUTANTS:
        its = run_algorithm2(X, Y, widths, gamma, alpha, mutant=name)
        diff = max(np.abs(Q[k] - R[k]).max() for Q, R in zip(its, correct) for k in Q)
        print(f"{name}: max |mutant − correct| = {diff:.3g}")
        assert diff > 1e-6, name
