"""The explorer's drift pages over a real organism drift and a real toy drift: what
build_index writes, what the server answers (and refuses), and the pages in Chromium with no
console error and no request off 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.analysis.drift_run import drift_run
from tests.explorer.test_browser import CHROMIUM, Guarded, _require_browser, plots
from tests.organism.conftest import TINY

from polysemy.analysis.drift_views import read_drift
from polysemy.explorer import build_index
from polysemy.explorer.drift_index import _neuron_links
from polysemy.explorer.server import create_app, url_of

ORG = "analyses-drift-organism"
TOY = "analyses-drift-toy"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared drift run, plus a drift folder without the per-neuron files this
    version draws (as another kind of drift might write)."""
    root = tmp_path_factory.mktemp("explorer-drift") / "run"
    shutil.copytree(drift_run(tmp_path_factory), root)
    broken = root / "analyses" / "drift-broken"
    shutil.copytree(root / "analyses" / "drift-toy", broken)
    (broken / "drift.safetensors").unlink()
    build_index(root)
    return root


def test_build_index_writes_a_page_per_drift_folder(run: Path) -> None:
    out = run / "explorer"
    index = json.loads((out / "index.json").read_text())
    by_id = {d["id"]: d for d in index["drift"]}
    assert set(by_id) == {ORG, TOY, "analyses-drift-broken"}
    assert by_id["analyses-drift-broken"]["generic"] is True  # summary only, not fatal
    generic = json.loads((out / "drift" / "analyses-drift-broken.json").read_text())
    assert "drift.safetensors" in generic["reason"] and len(generic["pairs"]) == 4
    org = by_id[ORG]
    assert org["source"] == "organism" and org["n_neurons"] == TINY["d_mlp"]
    lo, hi = org["switch_fraction"]["low"], org["switch_fraction"]["high"]
    assert 0 <= lo <= org["switch_fraction"]["estimate"] <= hi <= 1
    page = json.loads((out / "drift" / f"{ORG}.json").read_text())
    assert page["steps"] == [0, 1, 8, 60] and len(page["pairs"]) == 3
    assert page["genealogy"]["pairs"] == ["0→1", "1→8", "8→60"]
    assert page["loss"]["snapshots"][0]["ci95"] is not None
    assert sum(page["score_histogram"]["counts"]) == TINY["d_mlp"]
    assert sum(page["score_histogram"]["null_counts"]) == TINY["d_mlp"]
    shard = json.loads((out / "drift" / ORG / "0.json").read_text())
    assert set(shard) == {str(j) for j in range(TINY["d_mlp"])}  # 64 neurons: one shard
    j = page["picks"]["switching"][0]
    assert shard[str(j)]["label"] == f"neuron {j}" and len(shard[str(j)]["score"]) == 3
    toy = json.loads((out / "drift" / f"{TOY}.json").read_text())
    assert toy["genealogy"] is None and toy["n_neurons"] == 6
    assert len(toy["loss"]["snapshots"]) == 5 and "instances" in toy["loss"]["unit"]
    assert len(toy["loss"]["history"]) > 100 and "every" in toy["loss"]["history_unit"]


def test_links_to_neuron_pages_only_for_the_same_site(run: Path) -> None:
    view = read_drift(run / "analyses" / "drift-organism")
    site = view.summary["site"]
    dicts = [{"id": "other", "site": "h.0.output", "pages": ["features", "neurons"]},
             {"id": "mlp", "site": site, "pages": ["features"]},
             {"id": "org-mlp", "site": site, "pages": ["features", "neurons"]}]  # fmt: skip
    assert _neuron_links(view, dicts) == "org-mlp"
    assert _neuron_links(view, dicts[:2]) is None  # no neurons page there
    assert _neuron_links(read_drift(run / "analyses" / "drift-toy"), dicts) is None


def test_server_serves_drift_files_and_404s(run: Path) -> None:
    client = TestClient(create_app(run), base_url="http://127.0.0.1")
    assert client.get("/static/drift.js").status_code == 200
    assert "drift.js" in client.get("/").text
    assert client.get(f"/data/drift/{ORG}.json").json()["id"] == ORG
    assert client.get(f"/data/drift/{ORG}/0.json").status_code == 200
    assert client.get("/data/drift/nothing.json").status_code == 404
    assert client.get(f"/data/drift/{ORG}/99.json").status_code == 404
    assert client.get("/data/drift/%2e%2e/index.json").status_code == 400


@pytest.fixture(scope="module")
def live(run: Path) -> Iterator[str]:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(create_app(run), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    yield url_of(server, "127.0.0.1")
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def guarded(live: str) -> Iterator[Guarded]:
    sync_playwright = _require_browser()
    from tests.explorer.test_browser import ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        g = Guarded(browser, live)
        yield g
        browser.close()


def _text_ok(page: Any) -> str:
    text = page.locator("main").inner_text()
    for broken in ("[object ", "undefined", "NaN"):
        assert broken not in text, (broken, text[:500])
    return str(text)


def test_drift_pages_in_chromium(guarded: Guarded, run: Path) -> None:
    page = guarded.open("#/", "home")
    assert "Meaning drift" in _text_ok(page) and "summary only" in _text_ok(page)
    page.click(f"#nav >> text=drift {ORG}")
    guarded.ready("drift")
    assert plots(page) >= 5  # voices, score vs null, histogram, genealogy, loss curve
    text = _text_ok(page)
    assert "switch fraction" in text and "(n = " in text and "drifted" in text
    guarded.shot("drift")
    overview = json.loads((run / "explorer" / "drift" / f"{ORG}.json").read_text())
    stable = overview["picks"]["stable"][0]
    page.select_option("#drift-pick", str(stable))  # the picker: the stable neuron
    guarded.ready("drift")
    assert page.locator("main h2").first.inner_text() == f"neuron {stable}"
    page.fill("#drift-neuron", "3")
    page.click("#drift-goto button")
    guarded.ready("drift")
    assert page.locator("main h2").first.inner_text() == "neuron 3"
    page = guarded.open(f"#/drift/{TOY}/4", "drift")
    assert plots(page) >= 4 and "instance 1, neuron 1" in _text_ok(page)
    assert "all-zero output" in _text_ok(page)  # the toy's loss at its snapshots
    page = guarded.open(f"#/drift/{ORG}/640", "notfound")
    assert "no neuron 640" in page.locator("main").inner_text()
    page = guarded.open("#/drift/analyses-drift-broken", "drift")
    text = _text_ok(page)
    assert "summary only" in text and "within null" in text and "Other results" in text
    guarded.open("#/drift/nothing", "notfound")
    guarded.check()
