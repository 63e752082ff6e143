"""The block subproblems of Algorithm 2 (and the prox-linear V_N step of Theorem 2), derived in sympy.

For every block this module writes the subproblem symbolically, differentiates it to get the
stationarity condition, and solves that condition for the closed form (MATH.md §3):

* Matrix blocks (V_N, U_N, W_i, V_i) are derived **entrywise with small symbolic dimensions**
  (each entry of every matrix is its own real symbol; the dimensions are arguments, defaults
  below).  The subproblems are strongly convex quadratics, so ∇ = 0 is a linear system
  H·vec(X) = rhs that sympy solves exactly; H is kept as the Hessian (its smallest eigenvalue
  is the strong-convexity modulus used by the descent constants).  :func:`matches_matrix_form`
  checks the entrywise solution against the matrix formula of MATH.md at random rational
  points (exact arithmetic; a Schwartz–Zippel identity test of rational functions).
* The U_i block is separable over entries: completing the square gives the scalar proximal
  problem  min_u ½(a − σ(u))² + (β/2)(u − m)², derived with scalar symbols.  For ReLU it is
  solved by case analysis (branch u ≥ 0 / branch u ≤ 0 / comparison of the two candidates), which
  produces the piecewise solution of MATH.md §3 including θ = β − √(β(β+1)) — derived, not typed.

Everything here is symbolic (sympy) and therefore never imported by the engine; numeric
callables come from ``sympy.lambdify`` and take NumPy arrays.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

# ----------------------------------------------------------------------------- symbols

gamma, alpha, lam = sp.symbols("gamma alpha lambda", positive=True)
c = sp.Symbol("c", positive=True)  # loss scale: R = (c/2)‖V − Y‖²
a, m, u = sp.symbols("a m u", real=True)  # scalar prox: target a = V_i⁺, centre m, variable u
beta = sp.Symbol("beta", positive=True)
p, u_old = sp.symbols("p u_old", real=True)  # U_i entry: P = W_i⁻Ṽ_{i-1}⁻ and U_i⁻


def symbol_matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    """A rows×cols matrix whose entries are distinct real symbols name_{r}_{c}."""
    return sp.Matrix(rows, cols, lambda r, k: sp.Symbol(f"{name}_{r}_{k}", real=True))


def augment(V: sp.Matrix) -> sp.Matrix:
    """Ṽ = [V; 1ᵀ] (the fixed ones row that absorbs the bias)."""
    return V.col_join(sp.ones(1, V.shape[1]))


def sq_norm(M: sp.Matrix) -> sp.Expr:
    """‖M‖²_F."""
    return sum((x**2 for x in M), sp.Integer(0))


# ----------------------------------------------------------------------------- smooth blocks


@dataclass(frozen=True)
class BlockDerivation:
    """One block subproblem  X⁺ = argmin_X f(X; inputs), derived entrywise.

    ``stationarity`` = ∇_X f (same shape as X), ``hessian`` = ∂²f/∂vec(X)² (row-major vec),
    ``solution`` = the unique root of the stationarity condition (f is strongly convex).
    ``inputs`` names the arguments of the numeric callables, in order; scalars are symbols and
    matrices are symbol matrices (pass NumPy arrays of the same shape)."""

    name: str
    statement: str
    variable: sp.Matrix
    inputs: tuple[tuple[str, Any], ...]
    subproblem: sp.Expr
    stationarity: sp.Matrix
    hessian: sp.Matrix
    solution: sp.Matrix
    matrix_form: sp.Matrix
    dims: dict[str, int] = field(default_factory=dict)
    note: str = ""

    # -- numeric callables ------------------------------------------------------------
    @functools.cached_property
    def _flat_symbols(self) -> list[sp.Symbol]:
        out: list[sp.Symbol] = []
        for _, s in self.inputs:
            out.extend(list(s) if isinstance(s, sp.MatrixBase) else [s])
        return out

    def _flat_values(self, values: dict[str, Any]) -> list[Any]:
        missing = [k for k, _ in self.inputs if k not in values]
        if missing:
            raise ValueError(f"{self.name}: missing input(s) {missing}; needs {[k for k, _ in self.inputs]}")
        out: list[Any] = []
        for k, s in self.inputs:
            v = values[k]
            if isinstance(s, sp.MatrixBase):
                arr = np.asarray(v, dtype=np.float64)
                if arr.shape != s.shape:
                    raise ValueError(f"{self.name}: input {k} has shape {arr.shape}; the derivation uses {s.shape}")
                out.extend(arr.ravel().tolist())
            else:
                out.append(float(v))
        return out

    @functools.cached_property
    def _solution_fn(self) -> Callable:
        return sp.lambdify(self._flat_symbols, self.solution, modules="numpy", cse=True)

    @functools.cached_property
    def _stationarity_fn(self) -> Callable:
        return sp.lambdify(list(self.variable) + self._flat_symbols, self.stationarity, modules="numpy", cse=True)

    @functools.cached_property
    def _hessian_fn(self) -> Callable:
        return sp.lambdify(self._flat_symbols, self.hessian, modules="numpy", cse=True)

    def solve(self, **values: Any) -> np.ndarray:
        """The derived closed form evaluated at numeric inputs (float64)."""
        return np.asarray(self._solution_fn(*self._flat_values(values)), dtype=np.float64).reshape(self.variable.shape)

    def gradient(self, X: Any, **values: Any) -> np.ndarray:
        """∇_X f at a numeric X (the stationarity residual; zero exactly at the minimiser)."""
        x = np.asarray(X, dtype=np.float64)
        if x.shape != self.variable.shape:
            raise ValueError(f"{self.name}: X has shape {x.shape}; the derivation uses {self.variable.shape}")
        out = self._stationarity_fn(*x.ravel().tolist(), *self._flat_values(values))
        return np.asarray(out, dtype=np.float64).reshape(self.variable.shape)

    def relative_residual(self, X: Any, **values: Any) -> float:
        """‖∇f(X)‖ / (‖H‖‖X‖ + ‖∇f(0)‖): scale-free stationarity residual (∇f(X) = H·vec X − rhs)."""
        H = np.asarray(self._hessian_fn(*self._flat_values(values)), dtype=np.float64)
        g = self.gradient(X, **values)
        g0 = self.gradient(np.zeros(self.variable.shape), **values)
        scale = np.linalg.norm(H, 2) * np.linalg.norm(X) + np.linalg.norm(g0)
        return float(np.linalg.norm(g) / scale) if scale > 0 else float(np.linalg.norm(g))

    def strong_convexity(self, **values: Any) -> float:
        """λ_min of the Hessian at numeric inputs (the subproblem's strong-convexity modulus)."""
        H = np.asarray(self._hessian_fn(*self._flat_values(values)), dtype=np.float64)
        return float(np.linalg.eigvalsh(H).min())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "statement": self.statement,
            "dims": dict(self.dims),
            "inputs": [k for k, _ in self.inputs],
            "note": self.note,
        }


def _derive(
    name: str,
    statement: str,
    X: sp.Matrix,
    f: sp.Expr,
    inputs: tuple[tuple[str, Any], ...],
    matrix_form: sp.Matrix,
    dims: dict[str, int],
    note: str = "",
) -> BlockDerivation:
    """Differentiate f entrywise, read the linear stationarity system H·vec X = rhs, solve it."""
    unknowns = list(X)
    grad = [sp.diff(f, x) for x in unknowns]
    H, rhs = sp.linear_eq_to_matrix(grad, unknowns)  # raises if ∇f is not affine in X
    for k in range(H.rows):  # f is a quadratic: its Hessian contains no unknown
        if H.row(k).free_symbols & set(unknowns):
            raise ValueError(f"{name}: the stationarity condition is not linear in the block")
    sol = H.LUsolve(rhs)
    return BlockDerivation(
        name=name,
        statement=statement,
        variable=X,
        inputs=inputs,
        subproblem=f,
        stationarity=sp.Matrix(grad).reshape(*X.shape),
        hessian=H,
        solution=sol.reshape(*X.shape),
        matrix_form=matrix_form,
        dims=dims,
        note=note or f"derived entrywise with small symbolic dimensions {dims}",
    )


@functools.cache
def derive_V_N(d: int = 2, n: int = 3) -> BlockDerivation:
    """V_N⁺ = argmin_V (c/2)‖V − Y‖² + γ/2‖V − U_N⁻‖² + α/2‖V − V_N⁻‖²  (squared loss, s_N = 0)."""
    V, Vm, U, Y = (symbol_matrix(s, d, n) for s in ("V", "Vm", "U", "Y"))
    f = c / 2 * sq_norm(V - Y) + gamma / 2 * sq_norm(V - U) + alpha / 2 * sq_norm(V - Vm)
    form = (c * Y + gamma * U + alpha * Vm) / (c + gamma + alpha)
    inputs = (("V_N", Vm), ("U_N", U), ("Y", Y), ("gamma", gamma), ("alpha", alpha), ("c", c))
    return _derive("V_N", "argmin_V (c/2)‖V−Y‖² + γ/2‖V−U_N⁻‖² + α/2‖V−V_N⁻‖²", V, f, inputs, form, {"d_N": d, "n": n})


def loss_gradient(d: int, n: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """∇R(V) for the squared loss R = (c/2)‖V − Y‖², differentiated entrywise: returns (V, Y, ∇R)."""
    V, Y = symbol_matrix("Vm", d, n), symbol_matrix("Y", d, n)
    R = c / 2 * sq_norm(V - Y)
    return V, Y, sp.Matrix(d, n, lambda r, k: sp.diff(R, V[r, k]))


@functools.cache
def derive_V_N_prox_linear(d: int = 2, n: int = 3, squared_loss: bool = False) -> BlockDerivation:
    """Theorem 2: V_N⁺ = argmin_V ⟨G, V − V_N⁻⟩ + α/2‖V − V_N⁻‖² + γ/2‖V − U_N⁻‖²  with G = ∇R(V_N⁻).

    ``squared_loss=False``: G is a free symbol matrix (any L_R-smooth loss);
    ``squared_loss=True``: G = ∇R(V_N⁻) derived from R = (c/2)‖V − Y‖² (inputs V_N, U_N, Y, c)."""
    V, U = symbol_matrix("V", d, n), symbol_matrix("U", d, n)
    if squared_loss:
        Vm, Y, G = loss_gradient(d, n)
        inputs: tuple[tuple[str, Any], ...] = (
            ("V_N", Vm), ("U_N", U), ("Y", Y), ("gamma", gamma), ("alpha", alpha), ("c", c),
        )
    else:
        Vm, G = symbol_matrix("Vm", d, n), symbol_matrix("G", d, n)
        inputs = (("V_N", Vm), ("U_N", U), ("grad_R", G), ("gamma", gamma), ("alpha", alpha))
    inner = sum((G[k] * (V[k] - Vm[k]) for k in range(d * n)), sp.Integer(0))
    f = inner + alpha / 2 * sq_norm(V - Vm) + gamma / 2 * sq_norm(V - U)
    form = (alpha * Vm - G + gamma * U) / (alpha + gamma)
    name = "V_N_prox_linear" + ("_squared" if squared_loss else "")
    return _derive(name, "argmin_V ⟨∇R(V_N⁻), V−V_N⁻⟩ + α/2‖V−V_N⁻‖² + γ/2‖V−U_N⁻‖²", V, f, inputs, form,
                   {"d_N": d, "n": n})


@functools.cache
def derive_U_N(d_out: int = 2, d_in: int = 2, n: int = 3) -> BlockDerivation:
    """U_N⁺ = argmin_U γ/2‖V_N⁺ − U‖² + γ/2‖U − W̃_N⁻Ṽ_{N-1}⁻‖²  (σ_N = Id, no proximal term)."""
    U, V = symbol_matrix("U", d_out, n), symbol_matrix("V", d_out, n)
    W, Vp = symbol_matrix("Wm", d_out, d_in + 1), symbol_matrix("Vp", d_in, n)
    P = W * augment(Vp)
    f = gamma / 2 * sq_norm(V - U) + gamma / 2 * sq_norm(U - P)
    form = (V + P) / 2
    inputs = (("V_N", V), ("W_N", W), ("V_prev", Vp), ("gamma", gamma))
    return _derive("U_N", "argmin_U γ/2‖V_N⁺−U‖² + γ/2‖U−W̃_N⁻Ṽ_{N-1}⁻‖²", U, f, inputs, form,
                   {"d_N": d_out, "d_{N-1}": d_in, "n": n})


@functools.cache
def derive_W(d_out: int = 2, d_in: int = 2, n: int = 3) -> BlockDerivation:
    """W̃_i⁺ = argmin_W λ/2‖W‖² + γ/2‖U_i⁺ − WṼ_{i-1}⁻‖² + α/2‖W − W̃_i⁻‖²  (r_i = λ/2‖W̃_i‖², bias included)."""
    W, Wm = symbol_matrix("W", d_out, d_in + 1), symbol_matrix("Wm", d_out, d_in + 1)
    U, Vp = symbol_matrix("U", d_out, n), symbol_matrix("Vp", d_in, n)
    Vt = augment(Vp)
    f = lam / 2 * sq_norm(W) + gamma / 2 * sq_norm(U - W * Vt) + alpha / 2 * sq_norm(W - Wm)
    M = (alpha + lam) * sp.eye(d_in + 1) + gamma * Vt * Vt.T  # symmetric: X M⁻¹ = (M⁻¹Xᵀ)ᵀ
    form = M.LUsolve((alpha * Wm + gamma * U * Vt.T).T).T
    inputs = (("W", Wm), ("U", U), ("V_prev", Vp), ("gamma", gamma), ("alpha", alpha), ("lam", lam))
    return _derive("W", "argmin_W λ/2‖W‖² + γ/2‖U_i⁺−WṼ_{i-1}⁻‖² + α/2‖W−W̃_i⁻‖²", W, f, inputs, form,
                   {"d_i": d_out, "d_{i-1}": d_in, "n": n})


@functools.cache
def derive_V_hidden(d: int = 2, d_next: int = 3, n: int = 2) -> BlockDerivation:
    """V_i⁺ = argmin_V γ/2‖V − σ(U_i⁻)‖² + γ/2‖U_{i+1}⁺ − W̃_{i+1}⁺Ṽ‖²  (i < N, s_i = 0, no proximal term).

    The subproblem depends on U_i⁻ only through S = σ(U_i⁻), which is the input here."""
    V, S = symbol_matrix("V", d, n), symbol_matrix("S", d, n)
    Wn, Un = symbol_matrix("Wn", d_next, d + 1), symbol_matrix("Un", d_next, n)
    f = gamma / 2 * sq_norm(V - S) + gamma / 2 * sq_norm(Un - Wn * augment(V))
    W_hat, b = Wn[:, :d], Wn[:, d]
    form = (sp.eye(d) + W_hat.T * W_hat).LUsolve(S + W_hat.T * (Un - b * sp.ones(1, n)))
    # γ multiplies both terms, so the minimiser does not depend on it; it stays an input of the
    # (unsimplified) derived expressions, and agreement for random γ checks that independence
    inputs = (("sigma_U", S), ("W_next", Wn), ("U_next", Un), ("gamma", gamma))
    return _derive("V_hidden", "argmin_V γ/2‖V−σ(U_i⁻)‖² + γ/2‖U_{i+1}⁺−W̃_{i+1}⁺Ṽ‖²", V, f, inputs, form,
                   {"d_i": d, "d_{i+1}": d_next, "n": n})


def matches_matrix_form(deriv: BlockDerivation, trials: int = 3, seed: int = 0) -> bool:
    """True when the entrywise solution equals MATH.md's matrix formula at ``trials`` random rational
    points, in exact arithmetic (both are rational functions of the inputs: Schwartz–Zippel)."""
    rng = random.Random(seed)
    syms = sorted(deriv.solution.free_symbols | deriv.matrix_form.free_symbols, key=str)
    for _ in range(trials):
        point = {}
        for s in syms:
            q = sp.Rational(rng.randint(-9, 9), rng.randint(1, 5))
            point[s] = abs(q) + 1 if s.is_positive else q
        if (deriv.solution.xreplace(point) - deriv.matrix_form.xreplace(point)) != sp.zeros(*deriv.variable.shape):
            return False
    return True


# ----------------------------------------------------------------------------- U_i: the proximal problem


@dataclass(frozen=True)
class CompletedSquare:
    """γ/2(a − σ(u))² + γ/2(u − p)² + α/2(u − u⁻)² = γ[½(a − σ(u))² + (β/2)(u − m)²] + const."""

    m: sp.Expr
    beta: sp.Expr
    const: sp.Expr


@functools.cache
def complete_the_square() -> CompletedSquare:
    """Derive m and β of the U_i prox from the U_i subproblem (entrywise; σ(u) is held as a symbol)."""
    s = sp.Symbol("s", real=True)  # stands for σ(u): the quadratic-in-u part does not involve it
    q = gamma / 2 * (u - p) ** 2 + alpha / 2 * (u - u_old) ** 2
    m_expr = sp.solve(sp.diff(q, u), u)[0]  # centre of the u-quadratic
    curvature = sp.diff(q, u, 2)  # γ + α
    const = sp.simplify(q.subs(u, m_expr))
    beta_expr = sp.simplify(curvature / gamma)
    lhs = gamma / 2 * (a - s) ** 2 + q
    rhs = gamma * (sp.Rational(1, 2) * (a - s) ** 2 + beta_expr / 2 * (u - m_expr) ** 2) + const
    if sp.simplify(sp.expand(lhs - rhs)) != 0:
        raise ArithmeticError("completing the square failed")  # pragma: no cover - a derivation bug
    return CompletedSquare(sp.simplify(m_expr), beta_expr, const)


@dataclass(frozen=True)
class Branch:
    """The prox objective restricted to one piece of σ, its stationary point and its constrained minimiser."""

    domain: str
    objective: sp.Expr
    stationary: sp.Expr
    minimiser: sp.Expr
    convex: bool


@dataclass(frozen=True)
class ProxDerivation:
    """u* = argmin_u ½(a − σ(u))² + (β/2)(u − m)², elementwise.

    ``solution`` is a sympy ``Piecewise`` in (a, m, β); ``residual`` is the distance from 0 to the
    Fréchet subdifferential of the objective at u (zero at every stationary point; +∞ at a kink where
    the subdifferential is empty)."""

    activation: str
    objective: sp.Expr
    branches: tuple[Branch, ...]
    solution: sp.Expr
    residual: sp.Expr
    theta: sp.Expr | None = None
    comparison: sp.Expr | None = None
    steps: tuple[str, ...] = ()

    @functools.cached_property
    def _solution_fn(self) -> Callable:
        return sp.lambdify((a, m, beta), self.solution, modules="numpy")

    @functools.cached_property
    def _residual_fn(self) -> Callable:
        return sp.lambdify((u, a, m, beta), self.residual, modules="numpy")

    @functools.cached_property
    def _objective_fn(self) -> Callable:
        return sp.lambdify((u, a, m, beta), self.objective, modules="numpy")

    def solve(self, a_: Any, m_: Any, beta_: float) -> np.ndarray:
        A, M = np.broadcast_arrays(np.asarray(a_, dtype=np.float64), np.asarray(m_, dtype=np.float64))
        return np.asarray(self._solution_fn(A, M, float(beta_)), dtype=np.float64) + np.zeros_like(A)

    def stationarity_residual(self, u_: Any, a_: Any, m_: Any, beta_: float) -> np.ndarray:
        U, A, M = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (u_, a_, m_)))
        with np.errstate(invalid="ignore"):
            return np.asarray(self._residual_fn(U, A, M, float(beta_)), dtype=np.float64) + np.zeros_like(A)

    def value(self, u_: Any, a_: Any, m_: Any, beta_: float) -> np.ndarray:
        return np.asarray(self._objective_fn(u_, a_, m_, float(beta_)), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "activation": self.activation,
            "objective": sp.sstr(self.objective),
            "solution": sp.sstr(self.solution),
            "theta": None if self.theta is None else sp.sstr(self.theta),
            "steps": list(self.steps),
        }


def _branch(domain: str, f: sp.Expr, lower: sp.Expr | None, upper: sp.Expr | None) -> Branch:
    """Minimise the smooth piece f over the interval [lower, upper] (one end may be None = ∞)."""
    crit = sp.solve(sp.diff(f, u), u)
    if len(crit) != 1:
        raise ArithmeticError(f"branch {domain}: expected one stationary point, got {crit}")
    convex = bool(sp.simplify(sp.diff(f, u, 2)).is_positive)
    if not convex:
        raise ArithmeticError(f"branch {domain}: the piece is not strictly convex")  # pragma: no cover
    x = crit[0]
    if lower is not None:
        x = sp.Max(x, lower)  # a strictly convex piece: project the stationary point onto the interval
    if upper is not None:
        x = sp.Min(x, upper)
    return Branch(domain, f, crit[0], x, convex)


@functools.cache
def derive_relu_prox() -> ProxDerivation:
    """Case analysis of  min_u ½(a − max(u,0))² + (β/2)(u − m)².

    1. Branch u ≥ 0: f₊ = ½(a−u)² + β/2(u−m)², strictly convex; u₊ = max(stationary point, 0).
    2. Branch u ≤ 0: f₋ = ½a² + β/2(u−m)², strictly convex; u₋ = min(m, 0).
    3. Comparison, by the sign of t = a + βm (the branch-+ stationary point times 1+β):
       t < 0 → u₊ = 0 also lies in branch −, so f(u₋) ≤ f(0) = f(u₊): take u₋.
       t ≥ 0, m ≥ 0 → u₋ = 0 also lies in branch +: take u₊.
       t ≥ 0, m < 0 → D(m) = f₋(m) − f₊(u₊*) is a concave quadratic in m; u₊ wins iff m ≥ its lower root,
       written βm ≥ aθ (θ derived below); a tie goes to u₊.
    """
    f_full = sp.Rational(1, 2) * (a - sp.Max(u, 0)) ** 2 + beta / 2 * (u - m) ** 2
    f_plus = sp.Rational(1, 2) * (a - u) ** 2 + beta / 2 * (u - m) ** 2
    f_minus = sp.Rational(1, 2) * a**2 + beta / 2 * (u - m) ** 2
    plus = _branch("u >= 0", f_plus, sp.Integer(0), None)
    minus = _branch("u <= 0", f_minus, None, sp.Integer(0))
    u_star = sp.simplify(plus.stationary)  # (a + βm)/(1 + β)
    t = sp.simplify(u_star * (1 + beta))  # sign(u_star) = sign(t) since 1 + β > 0

    # the two branches agree at u = 0 (continuity), which the t<0 / m≥0 cases use
    if sp.simplify(f_plus.subs(u, 0) - f_minus.subs(u, 0)) != 0:
        raise ArithmeticError("branches disagree at u = 0")  # pragma: no cover
    # case t ≥ 0, m < 0: u₊ = u*, u₋ = m; D = f₋(m) − f₊(u*)
    D = sp.simplify(f_minus.subs(u, minus.stationary) - f_plus.subs(u, u_star))
    poly = sp.Poly(sp.expand(D * 2 * (1 + beta)), m)
    if not (poly.degree() == 2 and sp.simplify(poly.LC()).is_negative):
        raise ArithmeticError(f"D is not a concave quadratic in m: {D}")  # pragma: no cover
    roots = sp.solve(D, m)
    # with a > 0 (implied by t ≥ 0 > βm) the roots are a(1 ± √((1+β)/β)); the lower one is negative
    a_pos = sp.Symbol("a_pos", positive=True)
    if len(roots) != 2:
        raise ArithmeticError(f"D has roots {roots}; expected two")  # pragma: no cover
    r0, r1 = (r.subs(a, a_pos) for r in roots)
    diff = sp.simplify(r0 - r1)
    lower = roots[0] if diff.is_negative else roots[1] if diff.is_positive else None
    product = sp.simplify(sp.expand(r0 * r1))  # −a²/β < 0: the roots have opposite signs
    if lower is None or not product.is_negative:
        raise ArithmeticError(f"could not identify the negative root of D among {roots}")  # pragma: no cover
    theta = sp.radsimp(sp.simplify(sp.expand(beta * lower / a)))  # βm ≥ aθ ⟺ m ≥ lower root (a > 0)
    solution = sp.Piecewise(
        (minus.minimiser, t < 0),
        (u_star, sp.Or(m >= 0, beta * m >= a * theta)),
        (minus.stationary, True),
    )
    # Fréchet subdifferential: derivative of the active piece off the kink; at u = 0 the interval
    # [f₋'(0), f₊'(0)] when it is one (f₋'(0) ≤ f₊'(0)), else empty (distance +∞)
    left, right = sp.diff(f_minus, u).subs(u, 0), sp.diff(f_plus, u).subs(u, 0)
    at_kink = sp.Piecewise((sp.Max(left, 0) + sp.Max(-right, 0), left <= right), (sp.oo, True))
    residual = sp.Piecewise(
        (sp.Abs(sp.diff(f_plus, u)), u > 0), (sp.Abs(sp.diff(f_minus, u)), u < 0), (at_kink, True)
    )
    steps = (
        f"branch u ≥ 0: stationary point {sp.sstr(u_star)}, minimiser {sp.sstr(plus.minimiser)}",
        f"branch u ≤ 0: stationary point {sp.sstr(minus.stationary)}, minimiser {sp.sstr(minus.minimiser)}",
        f"t = a + βm = {sp.sstr(t)}: t < 0 → u₋; t ≥ 0 and m ≥ 0 → u₊",
        f"t ≥ 0, m < 0: D = f₋(m) − f₊(u*) = {sp.sstr(D)}; roots {[sp.sstr(r) for r in roots]}",
        f"u₊ optimal iff βm ≥ aθ with θ = {sp.sstr(theta)}",
    )
    return ProxDerivation("relu", f_full, (plus, minus), solution, residual, theta, D, steps)


@functools.cache
def derive_identity_prox() -> ProxDerivation:
    """σ = Id: min_u ½(a − u)² + (β/2)(u − m)² is a strictly convex quadratic; one stationary point."""
    f = sp.Rational(1, 2) * (a - u) ** 2 + beta / 2 * (u - m) ** 2
    br = _branch("all u", f, None, None)
    residual = sp.Abs(sp.diff(f, u))
    return ProxDerivation("identity", f, (br,), sp.simplify(br.stationary), residual,
                          steps=(f"stationary point {sp.sstr(br.stationary)}",))


PROX_DERIVATIONS: dict[str, Callable[[], ProxDerivation]] = {
    "relu": derive_relu_prox,
    "identity": derive_identity_prox,
}


def derive_prox(activation: str) -> ProxDerivation:
    try:
        return PROX_DERIVATIONS[activation]()
    except KeyError:
        raise ValueError(
            f"activation={activation!r} has no derived prox; allowed: {', '.join(PROX_DERIVATIONS)}"
        ) from None


@dataclass(frozen=True)
class UHiddenDerivation:
    """U_i⁺ = argmin_U γ/2‖V_i⁺ − σ(U)‖² + γ/2‖U − W̃_i⁻Ṽ_{i-1}⁻‖² + α/2‖U − U_i⁻‖²  (i < N), elementwise.

    Entry by entry this is the prox of σ at m = (γP + αU_i⁻)/(γ+α) with β = (γ+α)/γ, P = W̃_i⁻Ṽ_{i-1}⁻."""

    activation: str
    square: CompletedSquare
    prox: ProxDerivation
    solution: sp.Expr  # in (a = V_i⁺ entry, p = P entry, u_old = U_i⁻ entry, γ, α)

    @functools.cached_property
    def _fn(self) -> Callable:
        return sp.lambdify((a, p, u_old, gamma, alpha), self.solution, modules="numpy")

    def solve(self, V: Any, P: Any, U: Any, *, gamma_: float, alpha_: float) -> np.ndarray:
        A, Pn, Un = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (V, P, U)))
        return np.asarray(self._fn(A, Pn, Un, float(gamma_), float(alpha_)), dtype=np.float64) + np.zeros_like(A)

    def centre(self, P: Any, U: Any, *, gamma_: float, alpha_: float) -> np.ndarray:
        fn = sp.lambdify((p, u_old, gamma, alpha), self.square.m, modules="numpy")
        return np.asarray(fn(np.asarray(P, dtype=np.float64), np.asarray(U, dtype=np.float64), gamma_, alpha_))

    def beta_value(self, *, gamma_: float, alpha_: float) -> float:
        return float(self.square.beta.subs({gamma: gamma_, alpha: alpha_}))


@functools.cache
def derive_U_hidden(activation: str = "relu") -> UHiddenDerivation:
    sq_ = complete_the_square()
    prox = derive_prox(activation)
    sol = prox.solution.subs({m: sq_.m, beta: sq_.beta}, simultaneous=True)
    return UHiddenDerivation(activation, sq_, prox, sol)


def all_block_derivations() -> dict[str, BlockDerivation]:
    """Every matrix block of Algorithm 2 (+ Theorem 2's V_N step) at the default small dimensions."""
    return {
        "V_N": derive_V_N(),
        "V_N_prox_linear": derive_V_N_prox_linear(),
        "V_N_prox_linear_squared": derive_V_N_prox_linear(squared_loss=True),
        "U_N": derive_U_N(),
        "W": derive_W(),
        "V_hidden": derive_V_hidden(),
    }
