"""Reports rendered from small saved traces: files produced, verdict table content, missing columns,
several seeds, log axes with zero/negative values."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from reports_traces import write_run

from reports import figures, style
from reports.document import FIGURES_DIR, overall, render_report, verdict_rows
from reports.figures import FIGURES, Figure, Skipped, tail_slope
from reports.runs import failed_guaranteed, guarantee, load_run
from theory import constants
from verification import schema
from verification.verdict import FAIL

FIGURE_NAMES = [name for name, _, _ in FIGURES]


@pytest.fixture(scope="module")
def passing(tmp_path_factory):
    d = write_run(tmp_path_factory.mktemp("pass") / "run")
    run = load_run(d)
    return run, render_report([run], d)


def _md_row(md: str, claim: str) -> list[str]:
    rows = [line for line in md.splitlines() if line.startswith("| ") and f"[{claim}]" in line]
    assert len(rows) == 1, rows
    return [c.strip() for c in re.split(r"(?<!\\)\|", rows[0])[1:-1]]


def test_every_file_is_written_and_the_html_is_self_contained(passing):
    _run, report = passing
    out = report.html.parent
    assert report.html.name == "report.html" and report.markdown.name == "report.md"
    for name in FIGURE_NAMES:
        for ext in ("png", "pdf"):
            f = out / FIGURES_DIR / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert all(isinstance(f, Figure) for f in report.figures)
    html = report.html.read_text()
    imgs = re.findall(r"<img [^>]*src=\"([^\"]+)\"", html)
    assert len(imgs) == len(FIGURE_NAMES)
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    # nothing that a browser would fetch: no external script, stylesheet, font or image
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html and "@import" not in html
    md = report.markdown.read_text()
    for name in FIGURE_NAMES:
        assert f"]({FIGURES_DIR}/{name}.png)" in md
    assert report.warnings == []
    # zero block updates (V_N unchanged late in the synthetic run) stay visible on the log-log scatter
    caption = next(f.caption for f in report.figures if f.name == "block_descent")
    assert "value(s) ≤ 0 are drawn at the floor" in caption and "0 point(s) lie below the line" in caption


def test_verdict_table_of_a_passing_run(passing):
    run, report = passing
    md = report.markdown.read_text()
    row = _md_row(md, constants.RELATIVE_ERROR)
    # claim | guaranteed | relation | theoretical | measured | status | worst sweep | margin / tolerance | explanation
    assert row[1].startswith("yes — ") and row[2:7] == ["≤", "2897", "3.9", "pass", "sweep 3"]
    kl = _md_row(md, constants.KL_EXPONENT)
    assert kl[1].startswith("no — beyond the paper") and kl[5] == "inconclusive"
    conv = _md_row(md, constants.CONVERGENCE)
    assert conv[1].startswith("no — Theorem 1(a),(b)")  # λ = 0: no condition of Theorem 1 is known to hold
    assert overall(run) == "pass" and failed_guaranteed(run) == []
    # claims in MATH.md §4 order, whatever order the verdicts were saved in
    claims = [r["claim"] for r in verdict_rows(run)]
    assert claims[0].endswith(f"[{constants.MONOTONE}]") and claims[1].endswith(f"[{constants.SUFFICIENT_DESCENT}]")
    html = report.html.read_text()
    assert '<span class="status pass">pass</span>' in html and "status fail" not in html
    for key in ("torch 2.13.0", "test-cpu", "abc123", "float64", "engine", "hooks (instrumentation)"):
        assert key in html, key


def test_missing_columns_warn_and_skip_never_crash(tmp_path):
    d = write_run(tmp_path / "run", drop=(schema.G_NORM, schema.CUM_G_SQ, schema.NORM_V_MAX), drop_blocks=True)
    report = render_report([load_run(d)], d, formats=("png",))
    skipped = {f.name for f in report.figures if isinstance(f, Skipped)}
    assert skipped == {"relative_error", "rate", "block_descent", "iterate_norms"}
    drawn = {f.name for f in report.figures if isinstance(f, Figure)}
    assert drawn == set(FIGURE_NAMES) - skipped
    text = " ".join(report.warnings)
    assert schema.G_NORM in text and schema.NORM_V_MAX in text and "blocks column" in text
    html = report.html.read_text()
    assert "<h2>Warnings</h2>" in html and html.count("<p class='skipped'>") == len(skipped)
    assert not (d / FIGURES_DIR / "rate.png").exists()
    meta = json.loads((d / "trace_meta.json").read_text())  # the same columns absent from a recorder's trace: edited
    (d / "trace_meta.json").write_text(json.dumps({**meta, "source": "engine"}))
    with pytest.raises(ValueError, match=r"trace_sweeps.parquet' is damaged \(it lacks the column\(s\) 'g_norm', "
                                         r"'cum_g_sq' the recorder always writes\)"):
        load_run(d)


def test_log_axes_keep_zero_and_negative_values_visible():
    v, clipped = style.clip_for_log([3.0, 0.0, -2.0, np.nan, 1e-9], floor=1e-6)
    assert clipped.tolist() == [False, True, True, False, True]
    assert v[1] == v[2] == v[4] == 1e-6 and np.isnan(v[3])
    assert style.log_floor([0.0, -1.0]) == 1e-300  # nothing positive: still a finite floor
    assert style.log_floor([2.0, 0.5, 0.0]) == pytest.approx(5e-4)
    assert style.spans_decades([1.0, 1e3]) and not style.spans_decades([1.0, 50.0])


def test_tail_slope_recovers_a_power_law():
    T = np.arange(1, 41, dtype=float)
    assert tail_slope(T, 7.0 / T) == pytest.approx(-1.0)
    assert tail_slope(T, 7.0 / T**2) == pytest.approx(-2.0)
    assert tail_slope(T[:2], T[:2]) is None


def test_only_a_failed_guaranteed_claim_fails_the_run(tmp_path):
    run = load_run(write_run(tmp_path / "run"))
    assert failed_guaranteed(run) == [] and overall(run) == "pass"
    # λ = 0: Theorem 1(c) is not guaranteed, so a failed rate check is reported but does not fail the run
    rate = run.verdict(constants.RATE)
    assert guarantee(run, rate).guaranteed is False
    run.verdicts = [dataclasses.replace(v, status=FAIL) if v is rate else v for v in run.verdicts]
    assert failed_guaranteed(run) == [] and overall(run) == "pass"
    # monotone descent is guaranteed for every α, γ > 0: its failure fails the run
    mono = run.verdict(constants.MONOTONE)
    assert guarantee(run, mono).guaranteed is True
    run.verdicts = [dataclasses.replace(v, status=FAIL) if v is mono else v for v in run.verdicts]
    assert [v.claim for v in failed_guaranteed(run)] == [constants.MONOTONE] and overall(run) == "fail"
    # with λ > 0 (r_i coercive) the theory does guarantee the rate
    run.config["bcd"]["lam"] = 0.1
    assert guarantee(run, rate).guaranteed is True


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.mark.browser
@pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="headless Chromium not installed (apt-get install -y chromium chromium-driver)",
)
def test_report_html_in_a_real_browser(passing, tmp_path):
    """Every figure is decoded and displayed, and the page fetches nothing but data: URIs."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    _run, report = passing
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        driver.get(report.html.as_uri())
        images = driver.find_elements("tag name", "img")
        assert len(images) == len(FIGURE_NAMES)
        for img in images:
            assert img.is_displayed()
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(r.startswith("data:") for r in resources), resources
        requested = [
            json.loads(e["message"])["message"]["params"]["request"]["url"]
            for e in driver.get_log("performance")
            if '"Network.requestWillBeSent"' in e["message"]
        ]
        assert report.html.as_uri() in requested  # the log is live ...
        network = [u for u in requested if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")]
        assert network == [], network  # ... and nothing left the machine (chrome:// pages are internal)
    finally:
        driver.quit()


def test_a_figure_that_cannot_be_drawn_is_skipped_with_its_reason(passing, tmp_path, monkeypatch):
    run, _report = passing

    def broken(runs, out, warnings):
        raise RuntimeError("singular colour map")

    monkeypatch.setattr(figures, "FIGURES", (("broken", "A broken figure", broken),))
    result, warnings = figures.render_figures([run], tmp_path)
    assert [type(f) for f in result] == [Skipped] and "RuntimeError: singular colour map" in result[0].reason
    assert warnings == ["A broken figure: figure skipped: could not be drawn (RuntimeError: singular colour map)"]


def test_the_run_description_names_the_catalogue_records():
    """The report's network row prints the loss, activation, r, s and reg_bias specs (not only λ), and the theory rows
    the run's own a (inner-solver V_i), b (+ η) and Theorem 2's bound with the loss's L_R."""
    import pandas as pd

    from bcd import BCDConfig
    from reports.document import environment_rows, theory_rows
    from reports.runs import RunData
    from verification.trace import Trace

    cfg = BCDConfig(hidden=(4,), loss="cross_entropy", vn_update="prox_linear", r="l1(0.01)", s=("box(-1, 1)", "none"),
                    reg_bias=False, gamma=0.5, alpha=1.0)
    raw = dataclasses.asdict(cfg)
    sw = pd.DataFrame({schema.SWEEP: [0, 1], schema.OBJECTIVE: [10.0, 9.0], schema.BOUND_B: [2.0, 3.0]})
    run = RunData("r", Trace(sw, meta={"config": raw, "widths": [3, 4, 2], "n": 10}), config={"bcd": raw})
    net = dict(environment_rows(run))["network"]
    for text in ("loss cross_entropy (sum)", "σ = relu", "r_i = l1(0.01) on Ŵ_i only (reg_bias = false",
                 "s_1 = box(-1, 1); s_2 = none", "three-splitting", "V_N update prox_linear"):
        assert text in net, (text, net)
    assert "λ =" not in net
    rows = dict(theory_rows(run))
    a_row = next(k for k in rows if k.startswith("a = "))
    assert "γ/2 − min(η, γ/4)" in a_row and "−(L_R − 2·α − γ)/2" in a_row  # the theory's own text (theory.claims)
    assert float(rows[a_row]) == pytest.approx(run.constants.a())
    b_row = next(k for k in rows if k.startswith("b ("))
    assert "η" in b_row, b_row  # + η for the inner-solver blocks
    assert rows["α bound for prox-linear V_N: α > (L_R − γ)/2, L_R of cross_entropy"] == "0"


def test_a_run_with_no_guaranteed_claim_is_not_a_pass(tmp_path):
    """all([]) is True: a run whose guaranteed claims are all absent must read inconclusive, never pass."""
    run = load_run(write_run(tmp_path / "run"))
    run.verdicts = [dataclasses.replace(v, status=FAIL) for v in run.verdicts
                    if v.claim in (constants.RATE, constants.CONVERGENCE)]
    assert not any(guarantee(run, v).guaranteed for v in run.verdicts)
    assert overall(run) == "inconclusive"


def test_no_rate_constant_is_printed_when_a_is_not_positive(tmp_path):
    """Prox-linear V_N with α ≤ (L_R − γ)/2: a ≤ 0, so C = b²(L̄⁰ − L̄*)/a is no bound (a = 0 divided by zero)."""
    from reports.document import theory_rows

    run = load_run(write_run(tmp_path / "run", verdicts=False))  # a from the config, not from a saved verdict
    for alpha in (0.25, 0.1):  # γ = 0.5, L_R = 1: a = (2α + γ − L_R)/2 = 0, then < 0
        run.config["bcd"].update(vn_update="prox_linear", gamma=0.5, alpha=alpha)
        rows = dict(theory_rows(run))
        c_row = next(k for k in rows if k.startswith("C = "))
        assert rows[c_row] == "— (a ≤ 0: no sufficient descent, so no rate constant)"


def test_markdown_captions_and_titles_are_inert(tmp_path):
    """A run name reaches the figure captions through the group labels: raw HTML must not survive into report.md."""
    evil = "<img src=x onerror=alert(1)>"
    dirs = [write_run(tmp_path / "a"), write_run(tmp_path / evil, seed=1, alpha=3.0)]
    report = render_report([load_run(d) for d in dirs], tmp_path / "out", formats=("png",))
    md = report.markdown.read_text()
    assert "<img" not in md and "&lt;img" in md


def test_group_labels_stay_distinct_beyond_three_differing_keys(tmp_path):
    from reports.runs import group_labels, groups

    runs = []
    for j, over in enumerate([dict(alpha=1.0, dtype="float64", eval_every=1, lam=0.0),
                              dict(alpha=1.0, dtype="float64", eval_every=1, lam=0.5),
                              dict(alpha=2.0, dtype="float32", eval_every=2, lam=0.0)]):
        run = load_run(write_run(tmp_path / f"r{j}", seed=j))
        run.config["bcd"].update(over)
        runs.append(run)
    labels = group_labels(groups(runs))
    assert len(set(labels)) == 3 and "lam=0.5" in labels[1], labels


def test_the_current_directory_is_named_by_its_folder(tmp_path, monkeypatch):
    d = write_run(tmp_path / "myrun")
    monkeypatch.chdir(d)
    assert load_run(".").name == "myrun"
