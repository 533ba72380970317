"""write_report on a real tiny run folder: sections, chorus cards, n and intervals on every
figure, plotly.min.js copied once, no URLs, atomic writes and every refusal."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from polysemy import runfolder
from polysemy.report import ReportConfig, write_report
from polysemy.report import writer as writer_module
from polysemy.report.writer import plotly_js_path

CARD = re.compile(
    r"Neuron (\d+) is a chorus of about [\d.]+ features \(effective number; rotation "
    r"baseline [\d.]+\); its strongest voices are feature (\d+) \(([\d.]+)%\), feature \d+ "
    r"\([\d.]+%\) and feature \d+ \([\d.]+%\), and which one you hear depends on context:"
)


def test_report_folder_holds_the_page_and_its_parts(report_dir: Path, run_folder: Path) -> None:
    assert report_dir == run_folder / "report"
    for name in ("index.html", "report.md", "data.js", "plotly.min.js", "report.json"):
        assert (report_dir / name).is_file(), name
    record = json.loads((report_dir / "report.json").read_text())
    assert record["format"] == "polysemy.report/1"
    assert runfolder.detect_kind(report_dir) == "polysemy.report/1"
    kinds = {s["kind"] for s in record["sources"]}
    assert {"sae", "activations", "toy", "analysis:neurons", "analysis:features",
            "analysis:geometry", "analysis:claims"} <= kinds  # fmt: skip


def test_every_kind_has_its_section(report_dir: Path) -> None:
    html = (report_dir / "index.html").read_text()
    for cls in ("section-sae", "section-analysis-neurons", "section-analysis-features",
                "section-analysis-geometry", "section-analysis-claims", "section-toy"):  # fmt: skip
        assert f'class="{cls}"' in html, cls
    # Kinds the run does not hold are simply absent.
    for absent in ("section-analysis-fidelity", "section-analysis-ablate",
                   "section-analysis-probes", "section-analysis-edits"):  # fmt: skip
        assert absent not in html
    titles = json.loads((report_dir / "report.json").read_text())["sections"]
    # Pipeline order: the SAE, then its analyses, then claims, then toy models.
    assert titles[0].startswith("SAE") and titles[-1].startswith("Toy model")


def test_chorus_cards_describe_measured_mixtures(report_dir: Path, run_folder: Path) -> None:
    html = (report_dir / "index.html").read_text()
    records = json.loads((run_folder / "analyses/neurons-mlp/neurons.json").read_text())
    cards = CARD.findall(html)
    assert len(cards) == min(ReportConfig().chorus_cards, len(records))
    assert html.count('class="chorus"') == len(cards)
    assert html.count("SAE error line:") == len(cards)
    # The first card is the neuron the SAE reconstructs best, its voices read from neurons.json.
    contexts = json.loads((run_folder / "analyses/neurons-mlp/contexts.json").read_text())
    fires = {
        c["neuron"] for c in contexts if any(x["activation"] > 0 for g in c["groups"]
                                             for x in g["contexts"])
    }  # fmt: skip
    best = min(records, key=lambda r: (r["neuron"] not in fires, r["error_share"], r["neuron"]))
    neuron, feature, pct = cards[0]
    assert int(neuron) == best["neuron"]
    assert int(feature) == best["features"][0][0]
    share = 100 * best["features"][0][1]
    assert float(pct) == pytest.approx(share, abs=0.51 if share >= 0.95 else 0.051)
    assert f"{best['error_share']:.0%} of this neuron" in html
    md = (report_dir / "report.md").read_text()
    assert len(CARD.findall(md)) == len(cards)
    # Contexts are traced to text, the row's token highlighted (the store has text traces).
    assert len(re.findall(r'<span class="ctx">[^<]*<mark>[^<]+</mark>', html)) >= len(cards)
    assert "the store holds no text" not in html
    assert re.search(r"- feature \d+ \(dominates \d+ of the top rows\): .*\*\*\S+\*\*", md)


def test_every_figure_states_n_and_interval(report_dir: Path) -> None:
    html = (report_dir / "index.html").read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert len(captions) == json.loads((report_dir / "report.json").read_text())["charts"] >= 4
    for caption in captions:
        assert re.search(r"\bn = \d+", caption), caption
        assert re.search(r"\[[-\d.e]+, [-\d.e]+\]", caption) or "no interval" in caption, caption


def test_charts_have_png_fallbacks_and_data(report_dir: Path) -> None:
    html = (report_dir / "index.html").read_text()
    ids = re.findall(r'data-chart="([\w-]+)"', html)
    data = (report_dir / "data.js").read_text()
    assert data.startswith("window.POLYSEMY_CHARTS = ")
    charts = json.loads(data[len("window.POLYSEMY_CHARTS = ") :].rstrip().rstrip(";"))
    assert sorted(charts) == sorted(ids)
    for chart_id in ids:
        png = report_dir / "figures" / f"{chart_id}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{chart_id}.png" in (report_dir / "report.md").read_text()
        assert charts[chart_id]["data"], chart_id
    # The toy run's weights are drawn with the toy tour's figure.
    assert any(p.name.endswith("-toy.png") for p in (report_dir / "figures").iterdir())


def test_plotly_js_is_copied_once_and_nothing_points_online(report_dir: Path) -> None:
    copies = [p for p in report_dir.rglob("*") if p.name.endswith(".js") and "plotly" in p.name]
    assert [p.name for p in copies] == ["plotly.min.js"]
    source = plotly_js_path()
    assert source is not None
    assert copies[0].read_bytes() == source.read_bytes()
    html = (report_dir / "index.html").read_text()
    assert html.count('<script src="plotly.min.js"></script>') == 1
    assert len(html) < 200_000  # not inlined
    for name in ("index.html", "data.js", "report.md"):
        assert not re.search(r"https?://", (report_dir / name).read_text()), name


def test_claims_table_shows_verdict_sentence_and_intervals(report_dir: Path, claims) -> None:
    html = (report_dir / "index.html").read_text()
    section = html.split('class="section-analysis-claims"', 1)[1].split("</section>", 1)[0]
    assert "2 claims tested: 1 inconclusive, 1 supported" in section
    for c in claims:
        assert c["claim"]["text"] in section
        assert f"<td>{c['verdict']}</td>" in section
    assert "share: 0.41 [0.35, 0.47] (95% bootstrap, n=400)" in section
    assert "null_range: [0.01, 0.08]" in section


def test_single_analysis_folder(run_folder: Path, tmp_path: Path) -> None:
    out = write_report(run_folder / "analyses" / "features-mlp", tmp_path / "r")
    record = json.loads((out / "report.json").read_text())
    assert record["sections"] == ["Features: ."]
    assert "density" in (out / "index.html").read_text()


def test_png_only_without_interactive(run_folder: Path, tmp_path: Path) -> None:
    out = write_report(run_folder / "saes" / "mlp", tmp_path / "r",
                       config=ReportConfig(interactive=False))  # fmt: skip
    assert not (out / "plotly.min.js").exists() and not (out / "data.js").exists()
    html = (out / "index.html").read_text()
    assert "<script" not in html
    assert '<img src="figures/saes-mlp-training.png"' not in html  # named from the root
    assert '<img src="figures/root-training.png"' in html


def test_rerun_replaces_its_own_report_and_never_reads_it(run_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_folder / "analyses" / "neurons-mlp", run / "neurons")
    first = write_report(run)
    again = write_report(run)  # a report in out is the same kind: no force needed
    assert first == again
    sources = json.loads((again / "report.json").read_text())["sources"]
    assert [s["kind"] for s in sources] == ["analysis:neurons"]


def test_write_is_atomic(run_folder: Path, tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_folder / "analyses" / "neurons-mlp", run / "neurons")
    out = write_report(run)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    calls = []

    def fail(*args, **kwargs):  # fails part-way through drawing
        calls.append(1)
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer_module, "draw_png", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(run, config=ReportConfig(chorus_cards=1))
    assert calls
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in run.iterdir()) == ["neurons", "report"]  # no temp left


@pytest.mark.parametrize("make", ["missing", "empty", "file", "foreign"])
def test_not_a_run_folder_is_one_line_value_error(tmp_path: Path, make: str) -> None:
    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
    elif make == "file":
        path.write_text("hi")
    elif make == "foreign":
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "config.json").write_text('{"format": "someone-else/1"}')
    with pytest.raises(ValueError, match=r"^path must be a run folder") as err:
        write_report(path)
    assert "\n" not in str(err.value)
    assert not (path / "report").exists()


def test_out_holding_another_run_is_refused(run_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    shutil.copytree(run_folder / "stores" / "mlp", out)
    with pytest.raises(ValueError, match=r"already holds a polysemy\.activations/1 run"):
        write_report(run_folder / "analyses" / "features-mlp", out)
    assert not (out / "index.html").exists()


@pytest.mark.parametrize(
    ("field", "value"), [("chorus_cards", -1), ("voices", 0), ("contexts", True)]
)
def test_config_refuses_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ReportConfig(**{field: value})  # type: ignore[arg-type]


def test_toy_tour_figures_and_checks(tmp_path: Path) -> None:
    import polysemy as ps
    from polysemy.report.toy_report import write_toy_report

    tour = tmp_path / "tour"
    ps.toy.reproduce(out=tour, experiments=["correlation"], fast=True, render=write_toy_report)
    out = write_report(tour)
    record = json.loads((out / "report.json").read_text())
    # The tour's own runs/ are its data, drawn on its page: reported once, as the tour.
    assert [s["kind"] for s in record["sources"]] == ["toy-report"]
    html = (out / "index.html").read_text()
    assert '<img src="figures/root-correlation.png"' in html
    assert (out / "figures" / "root-correlation.png").read_bytes()[:4] == b"\x89PNG"
    assert re.search(r"<td>Correlated and anti-correlated features[^<]*</td><td>2 of 2</td>", html)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"estimate": 0.5, "low": 0.25, "high": 0.75, "level": 0.95, "n": 9,
          "method": "bootstrap"}, "0.5 [0.25, 0.75] (95% bootstrap, n=9)"),
        ([0.1, 0.2], "[0.1, 0.2]"),
        ({"q05": 0.125, "q50": 0.5}, "q05 0.125, q50 0.5"),
        (3, "3"),
    ],
)  # fmt: skip
def test_interval_text(value: object, text: str) -> None:
    from polysemy.report.sections import interval_text

    assert interval_text(value) == text


def test_an_unreadable_folder_gets_its_own_section(run_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_folder / "analyses" / "features-mlp", run / "features")
    bad = run / "neurons"
    shutil.copytree(run_folder / "analyses" / "neurons-mlp", bad)
    (bad / "neurons.json").write_text('[{"neuron": 0}]')  # a format this version cannot read
    out = write_report(run)
    titles = json.loads((out / "report.json").read_text())["sections"]
    assert titles == ["Unreadable analysis:neurons: neurons", "Features: features"]
    assert "KeyError" in (out / "index.html").read_text()
