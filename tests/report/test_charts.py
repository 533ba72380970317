"""One chart spec, two renderers: pre-binned histograms and interval bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polysemy.report.charts import Chart, bars, draw_png, histogram


def test_histogram_is_prebinned_and_counts_every_finite_value() -> None:
    t = histogram([1.0, 2.0, 2.5, np.nan, 10.0], name="x", bins=4)
    assert t["type"] == "bar" and sum(t["y"]) == 4 and len(t["x"]) == 4


def test_bars_carry_asymmetric_intervals() -> None:
    t = bars(["a", "b"], [0.5, 0.2], [0.4, None], [0.7, 0.3], name="est")
    assert np.allclose(t["error_y"]["array"], [0.2, 0.1])
    assert np.allclose(t["error_y"]["arrayminus"], [0.1, 0.0])


def test_draw_png_renders_every_trace_kind(tmp_path: Path) -> None:
    chart = Chart(
        id="c", title="t", caption="n = 2", xlabel="x", log_x=False,
        traces=[bars(["a", "b"], [1, 2], [0.5, 1.5], [1.5, 2.5], name="one"),
                bars(["a", "b"], [1, 2], [None, None], [None, None], name="two")],
    )  # fmt: skip
    path = draw_png(chart, tmp_path / "figures" / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    line = Chart(id="l", title="t", caption="n = 3", log_x=True,
                 traces=[{"type": "scatter", "mode": "lines+markers", "x": [1, 10, 100],
                          "y": [1, 2, 3]}])  # fmt: skip
    assert draw_png(line, tmp_path / "l.png").stat().st_size > 1000
    assert chart.plotly()["layout"]["xaxis"]["type"] == "-"
    assert line.plotly()["layout"]["xaxis"]["type"] == "log"


def test_data_script_writes_gaps_for_non_finite_values() -> None:
    import json

    from polysemy.report.page import charts_script

    chart = Chart(id="c", title="t", caption="n = 2",
                  traces=[bars(["a", "b"], [float("nan"), 1.0], [None, 0.5], [None, 2.0],
                               name="x")])  # fmt: skip
    text = charts_script([chart])
    data = json.loads(text[len("window.POLYSEMY_CHARTS = ") :].rstrip().rstrip(";"))
    assert data["c"]["data"][0]["y"] == [None, 1.0]
