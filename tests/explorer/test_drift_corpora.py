"""The explorer's cross-corpus drift page over a real `corpus_drift` folder (a tiny organism
read on two corpora): what build_index writes, the links it finds, and the page in Chromium
with no console error and no request off 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.analysis.corpus_drift_run import corpus_drift_run
from tests.explorer.test_browser import CHROMIUM, Guarded, _require_browser, plots
from tests.organism.conftest import TINY

from polysemy.analysis.corpus_drift_views import corpus_neuron, read_corpus_drift
from polysemy.explorer import build_index
from polysemy.explorer.drift_index import _corpus_links
from polysemy.explorer.server import create_app, url_of

ID = "analyses-drift-corpora"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explorer-corpora") / "run"
    shutil.copytree(corpus_drift_run(tmp_path_factory), root)
    build_index(root)
    return root


def test_view_reads_the_folder_and_each_side_sums_to_one(run: Path) -> None:
    view = read_corpus_drift(run / "analyses" / "drift-corpora")
    assert view.n_neurons == TINY["d_mlp"] and view.corpus_b.startswith("pydocs")
    top, low = view.picks["different"][0], view.picks["stable"][0]
    assert view.arrays["score"][top] >= view.arrays["score"][low]
    v = corpus_neuron(view, top)
    for side in ("a", "b"):
        assert sum(x["share"] for x in v[side]) == pytest.approx(1.0, abs=1e-4)
        assert v[side][-2]["name"] == "SAE error"
    assert v["ci"][0] <= v["score"] + 1e-6 <= v["ci"][1] + 2e-6
    assert v["different"] == (v["score"] > v["null_threshold"])
    with pytest.raises(ValueError, match="neuron must be in"):
        corpus_neuron(view, TINY["d_mlp"])


def test_build_index_writes_the_corpora_page(run: Path) -> None:
    out = run / "explorer"
    index = json.loads((out / "index.json").read_text())
    (entry,) = index["drift"]
    page = json.loads((out / "drift" / f"{ID}.json").read_text())
    assert page["links"] == {"features": "mlp", "neurons": "mlp"}  # the run's SAE, same site
    assert entry["id"] == ID and entry["corpora"] is True
    f = entry["different_fraction"]
    assert 0 <= f["low"] <= f["estimate"] <= f["high"] <= 1
    page = json.loads((out / "drift" / f"{ID}.json").read_text())
    h = page["score_histogram"]
    assert sum(h["counts"]) == h["n"] == page["summary"]["neurons"]["n"]
    assert sum(h["null_counts"]) == pytest.approx(h["n"])  # per split: in neurons too
    shard = json.loads((out / "drift" / ID / "0.json").read_text())
    assert set(shard) == {str(j) for j in range(TINY["d_mlp"])}


def test_links_to_feature_and_neuron_pages() -> None:
    # The two fields _corpus_links reads.
    view = SimpleNamespace(
        summary={"site": "h.0.mlp.act.output", "d_sae": 128, "sae": {"path": "/x/saes/mlp"}},
        inputs={"sae": "/x/saes/mlp"},
    )

    dicts = [{"id": "other", "site": "h.0.output", "sae": "resid", "d_sae": 64,
              "pages": ["features", "neurons"]},
             {"id": "mlp", "site": "h.0.mlp.act.output", "sae": "mlp", "d_sae": 128,
              "pages": ["features", "neurons"]}]  # fmt: skip
    assert _corpus_links(view, dicts) == {"features": "mlp", "neurons": "mlp"}  # type: ignore[arg-type]
    assert _corpus_links(view, dicts[:1]) == {"features": None, "neurons": None}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def guarded(run: Path) -> Iterator[Guarded]:
    import uvicorn

    sync_playwright = _require_browser()
    from tests.explorer.test_browser import ARGS

    server = uvicorn.Server(
        uvicorn.Config(create_app(run), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield Guarded(browser, url_of(server, "127.0.0.1"))
        browser.close()
    server.should_exit = True
    thread.join(timeout=5)


def test_corpora_page_in_chromium(guarded: Guarded, run: Path) -> None:
    page = guarded.open("#/", "home")
    assert "across corpora" in page.locator("main").inner_text()
    page.click(f"#nav >> text=drift {ID}")
    guarded.ready("drift")
    assert plots(page) >= 2  # A-vs-B voices, histogram vs null
    text = page.locator("main").inner_text()
    for broken in ("[object ", "undefined", "NaN"):
        assert broken not in text, (broken, text[:500])
    assert "singing different voices" in text and "(n = " in text and "null's 95% point" in text
    assert "dominant voice on A" in text and "SAE error" in text
    assert "among the features alone" in text and "FVU" in text
    guarded.shot("drift-corpora")
    overview = json.loads((run / "explorer" / "drift" / f"{ID}.json").read_text())
    stable = overview["picks"]["stable"][0]
    page.select_option("#drift-pick", str(stable))
    guarded.ready("drift")
    assert page.locator("main h2").first.inner_text() == f"neuron {stable} neuron page"
    page.fill("#drift-neuron", "7")
    page.click("#drift-goto button")
    guarded.ready("drift")
    assert page.locator("main h2").first.inner_text() == "neuron 7 neuron page"
    # The links: the neuron's own page, and its dominant feature's page, in the same SAE.
    top = overview["picks"]["different"][0]  # active: a dominant voice on both corpora
    v = json.loads((run / "explorer" / "drift" / ID / "0.json").read_text())[str(top)]
    page = guarded.open(f"#/drift/{ID}/{top}", "drift")
    page.click(f"main li a[href='#/feature/mlp/{v['dominant_a']}']")
    guarded.ready("feature")
    page = guarded.open(f"#/drift/{ID}/{top}", "drift")
    page.click(f"main a[href='#/neuron/mlp/{top}']")
    guarded.ready("neuron")
    page = guarded.open(f"#/drift/{ID}/640", "notfound")
    assert "no neuron 640" in page.locator("main").inner_text()
    guarded.check()
