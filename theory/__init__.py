"""The paper as checked symbolic data (Zeng et al., ICML 2019; MATH.md).

* :mod:`theory.constants` — numeric constants and claim ids (no sympy; used by verification/).
* :mod:`theory.derivations` — sympy: every block subproblem of Algorithm 2 and Theorem 2's V_N step,
  its stationarity condition and closed form; the ReLU prox by case analysis.
* :mod:`theory.symbolic` — a, δ, b, C and Theorem 2's α condition as sympy expressions; numbers for a run.
* :mod:`theory.claims` — ``claims_for(config, B=, L0=)``: the claims as records.
* :mod:`theory.assumptions` — ``applicability(config)``: Assumption 1, Theorem 1 (i)–(iii), guarantees, decided
  from the run's catalogue records (:mod:`bcd.catalogue`); ``catalogue_entries()``: every registered record.
* :mod:`theory.cli` — ``bcd theory [CONFIG]``.

Nothing is imported here, so ``import theory.constants`` stays free of sympy.
"""
