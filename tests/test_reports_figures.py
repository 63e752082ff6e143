"""The report's figures on tiny synthetic traces: captions that state the run's own formulas (taken from the theory
package), the rate figure when a ≤ 0 or when ‖g^k‖ was recorded on a schedule, one log floor per axis, heatmap row
labels on every panel whose rows differ, and one fit behind the tail slope the legend states and the line drawn."""

from __future__ import annotations

import re

import matplotlib.collections
import numpy as np
import pytest
from reports_traces import synthetic_trace

from bcd.model import act_term, aff_term, fit_term
from reports import figures, style
from reports.runs import RunData
from theory.symbolic import NOT_DERIVED
from verification import schema
from verification.trace import Trace

N = 3  # layers of the synthetic traces (reports_traces.HIDDEN = (6, 5))


def run_of(trace: Trace, name: str = "run", widths: tuple[int, ...] | None = None, **config) -> RunData:
    """A run of ``trace`` with its configuration (and widths) changed."""
    meta = {**trace.meta, "config": {**trace.meta["config"], **config}}
    if widths is not None:
        meta["widths"] = list(widths)
    return RunData(name, Trace(trace.sweeps.copy(), trace.blocks.copy(), meta), config={"bcd": meta["config"]})


def two_splitting(name: str = "alg1", **config) -> RunData:
    """The synthetic trace recast as Algorithm 1's (γ = 1, α = 5): fit gaps, no U blocks."""
    tr = synthetic_trace()
    sw = tr.sweeps.copy()
    for i in range(1, N + 1):
        sw[fit_term(i)] = sw.pop(act_term(i)) + sw.pop(aff_term(i))
    sw = sw.drop(columns=[schema.NORM_U_MAX])
    blocks = tr.blocks[tr.blocks[schema.BLOCK] != "U"].reset_index(drop=True)
    return run_of(Trace(sw, blocks, tr.meta), name, **{"splitting": "two", "gamma": 1.0, "alpha": 5.0, **config})


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figure of every figure drawn in the test, by name (captured before it is saved)."""
    figs = {}
    save = style.save

    def keep(fig, target, name):
        figs[name] = fig
        return save(fig, target, name)

    monkeypatch.setattr(figures.style, "save", keep)
    return figs


def draw(fig_fn, runs, tmp_path, warnings=None):
    return fig_fn(runs, style.Target(tmp_path, ("png",)), [] if warnings is None else warnings)


# ---------------------------------------------------------------- 1. captions state the run's own formulas
def test_the_captions_of_a_two_splitting_run_state_algorithm_1s_constants(tmp_path):
    run = two_splitting()
    suff = draw(figures.fig_sufficient_descent, [run], tmp_path).caption
    assert "a = α/2 = 2.5" in suff and "min(" not in suff  # min(5, 1)/2 would be 0.5
    blocks = draw(figures.fig_block_descent, [run], tmp_path).caption
    assert "V_N: α/2, W_i: α/2, V_i: α/2" in blocks
    assert "U_N" not in blocks and "U_i" not in blocks and "γ" not in blocks and "Tight" not in blocks
    objective = draw(figures.fig_objective, [run], tmp_path).caption
    assert "two-splitting objective (Algorithm 1)" in objective and "three-splitting" not in objective
    gaps = draw(figures.fig_gaps_heatmap, [run], tmp_path).caption
    assert "γ/2‖V_1 − σ_1(W̃_1Ṽ_0)‖²" in gaps and "U_" not in gaps
    rel = draw(figures.fig_relative_error, [run], tmp_path).caption
    assert f"no theoretical b: {NOT_DERIVED}" in rel and "3δ" not in rel


def test_prox_linear_resnet_and_inner_solver_captions_state_their_a_and_b(tmp_path):
    tr = synthetic_trace()
    pl = run_of(tr, "pl", vn_update="prox_linear", gamma=0.5, alpha=0.1)  # a = (2α + γ − L_R)/2 = −0.15
    suff = draw(figures.fig_sufficient_descent, [pl], tmp_path).caption
    assert "a = min(α/2, γ/2, −(L_R − 2·α − γ)/2) = -0.15" in suff and "min(α, γ)/2" not in suff
    assert "a ≤ 0 (pl): no sufficient descent" in suff
    blocks = draw(figures.fig_block_descent, [pl], tmp_path).caption
    assert "V_N (prox-linear step): −(L_R − 2·α − γ)/2" in blocks and "U_N: γ" in blocks
    resnet = run_of(tr, "resnet", widths=(4, 6, 6, 3), hidden=[6, 6], skip="auto")  # layer 2 has a skip
    assert "·√2" in draw(figures.fig_relative_error, [resnet], tmp_path).caption
    inner = run_of(tr, "inner", r="l1(0.01)")  # W̃_i by the inner solver: b gains + η
    assert re.search(r"b = √3·√N·max\([^;]*\) \+ η", draw(figures.fig_relative_error, [inner], tmp_path).caption)


# ---------------------------------------------------------------- 2. a ≤ 0: no rate constant
@pytest.mark.parametrize("alpha", [0.25, 0.1])  # a = (2α + γ − L_R)/2 = 0 and −0.15 (γ = 0.5, L_R = 1)
def test_the_rate_figure_draws_no_rate_constant_when_a_is_not_positive(tmp_path, drawn, alpha):
    run = run_of(synthetic_trace(), "pl", vn_update="prox_linear", gamma=0.5, alpha=alpha)
    caption = draw(figures.fig_rate, [run], tmp_path).caption
    assert "a ≤ 0: no sufficient descent, so no rate constant" in caption and "C = " not in caption.split("L̄*)/a")[1]
    labels = [line.get_label() for line in drawn["rate"].axes[0].get_lines()]
    assert not any("C/T" in lab for lab in labels), labels


# ---------------------------------------------------------------- 3. one floor per log axis
def markers(ax) -> np.ndarray:
    """The heights of the red ▼ drawn for clipped values."""
    ys = [c.get_offsets()[:, 1] for c in ax.collections if isinstance(c, matplotlib.collections.PathCollection)]
    return np.concatenate(ys) if ys else np.array([])


def caption_floor(caption: str) -> str:
    return re.search(r"drawn at (\S+) as red ▼", caption).group(1)


def test_two_series_on_one_log_axis_share_the_floor_the_caption_names(tmp_path, drawn):
    # L̄ rises at sweep 7: a decrease ≤ 0 on the axis that also draws the much smaller bound a‖ΔQ^k‖² (α small)
    run = run_of(synthetic_trace(failing=True, alpha=0.02), alpha=0.02)
    caption = draw(figures.fig_sufficient_descent, [run], tmp_path).caption
    ys = markers(drawn["sufficient_descent"].axes[0])
    assert ys.size >= 1 and {f"{y:.1e}" for y in ys} == {caption_floor(caption)}


def test_the_relative_error_and_its_lower_bracket_share_the_floor_the_caption_names(tmp_path, drawn):
    # ‖g‖/‖ΔQ‖ (one value 0) and the bracket's much smaller lower ratio on one axis
    tr = synthetic_trace()
    sw = tr.sweeps
    sw.loc[4, schema.G_NORM] = 0.0
    sw[schema.G_NORM_LOWER] = sw[schema.G_NORM] * 1e-3
    tr.meta[schema.META_G_DEFINITION] = "least_norm_bracket"
    caption = draw(figures.fig_relative_error, [run_of(tr)], tmp_path).caption
    ys = markers(drawn["relative_error"].axes[0])
    assert ys.size >= 1 and {f"{y:.1e}" for y in ys} == {caption_floor(caption)}


# ---------------------------------------------------------------- 4. a trace recorded on a schedule
def scheduled(recorded: list[int], sweeps: int = 12) -> RunData:
    """‖g^k‖ only at the sweeps ``recorded``; the running sum NaN from the first sweep without it (the recorder's)."""
    tr = synthetic_trace(sweeps=sweeps)
    sw = tr.sweeps
    k = sw[schema.SWEEP].to_numpy()
    sw.loc[~np.isin(k, recorded), schema.G_NORM] = np.nan
    g = sw[schema.G_NORM].to_numpy(float)
    cum = np.r_[0.0, np.cumsum(g[1:] ** 2)]  # NaN from the first unrecorded sweep on
    sw[schema.CUM_G_SQ] = cum
    return run_of(tr, "sched")


def test_the_rate_figure_of_a_scheduled_trace_plots_partial_sums_over_the_recorded_sweeps(tmp_path, drawn):
    recorded = [1, 3, 5, 7, 9, 11]
    run = scheduled(recorded)
    caption = draw(figures.fig_rate, [run], tmp_path).caption
    g = run.trace.sweeps[schema.G_NORM].to_numpy(float)[recorded]
    want = np.cumsum(g**2) / np.array(recorded)
    for ax in drawn["rate"].axes[:2]:
        (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "sched"]
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert x[np.isfinite(y)].tolist() == recorded and np.allclose(y[np.isfinite(y)], want)
    assert "recorded on 6 of 12 sweeps: the sums run over the recorded sweeps only" in caption
    warnings = []
    with pytest.raises(figures.Skip, match="fewer than 2 sweeps"):
        draw(figures.fig_rate, [scheduled([1])], tmp_path, warnings)
    assert "fewer than 2 sweeps" in warnings[0]


# ---------------------------------------------------------------- 5. heatmap rows labelled on every panel that differs
def test_every_heatmap_panel_whose_rows_differ_is_labelled(tmp_path, drawn):
    runs = [run_of(synthetic_trace(), "alg2"), two_splitting("alg1"), two_splitting("alg1-again")]
    draw(figures.fig_gaps_heatmap, runs, tmp_path)
    ticks = [[t.get_text() for t in ax.get_yticklabels()] for ax in drawn["gaps_heatmap"].axes[:3]]
    assert len(ticks[0]) == 2 * N and all(ticks[0])
    assert len(ticks[1]) == N and all("W" in t for t in ticks[1])  # σ_i(W̃_iṼ_{i−1}): its own rows, labelled
    assert ticks[2] == [""] * N  # the same rows as its left neighbour


# ---------------------------------------------------------------- 6. the tail slope stated is the line drawn
def test_the_tail_fit_legend_states_the_slope_of_the_line_it_draws(tmp_path, drawn):
    tr = synthetic_trace(sweeps=3)  # the last half (T ≥ 1.5) holds 2 points: the fit takes the last 3
    sw = tr.sweeps
    sw[schema.G_NORM] = np.sqrt([np.nan, 1.0, 1.0, 4.0])
    sw[schema.CUM_G_SQ] = [0.0, 1.0, 2.0, 6.0]
    draw(figures.fig_rate, [run_of(tr)], tmp_path)
    (line,) = [ln for ln in drawn["rate"].axes[1].get_lines() if ln.get_label().startswith("tail fit")]
    stated = float(re.search(r"slope (-?[0-9.]+)", line.get_label()).group(1))
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    drawn_slope = np.polyfit(np.log(x), np.log(y), 1)[0]
    assert x.tolist() == [1.0, 2.0, 3.0] and stated == pytest.approx(drawn_slope, abs=0.005)
    assert figures.tail_slope(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0])) == pytest.approx(drawn_slope)
