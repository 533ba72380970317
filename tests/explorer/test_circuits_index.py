"""The explorer's circuits pages on a real small circuits run: a tiny random BERT, two tiny SAEs
saved as checkpoints with their features analyses, and analyze_circuits between them. The
index (graph page data, back-links from feature pages, search terms), the server (page data,
404 for an unknown id) and the page in headless Chromium (no console errors, nothing off
127.0.0.1, an edge's endpoint clicked through to its feature page and back)."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from starlette.testclient import TestClient
from tests.explorer.test_browser import Guarded, _require_browser

from polysemy.explorer import build_index
from polysemy.explorer.server import create_app, url_of

SITES = ("encoder.layer.0.output", "encoder.layer.1.output")
NAMES = ("l0", "l1")
CIRCUIT = "analyses-circuits-l0-l1"


def make_circuits_run(root: Path) -> Path:
    """run/stores/l0,l1 (harvested), run/saes/l0,l1 (random ReLU SAEs saved as checkpoints),
    run/analyses/features-l0,l1 and run/analyses/circuits-l0-l1, all by the real library."""
    from polysemy.activations.harvest import HarvestConfig, harvest
    from polysemy.activations.store import ActivationStore
    from polysemy.analysis.ablation_calibration import tiny_encoder
    from polysemy.analysis.circuits import analyze_circuits
    from polysemy.analysis.features import analyze_features
    from polysemy.corpora import open_corpus
    from polysemy.sae import load_sae, sae_from_weights
    from polysemy.sae.io import save_sae

    run = root / "run"
    loaded = tiny_encoder(seed=0)
    docs = open_corpus("concepts:train:60").take(60)
    harvest(
        loaded,
        docs,
        HarvestConfig(sites=SITES, tokens=2000, seq_len=32, dtype="float32"),
        out={s: run / "stores" / n for s, n in zip(SITES, NAMES, strict=True)},
    )
    g = torch.Generator().manual_seed(0)
    saes = []
    for site, name in zip(SITES, NAMES, strict=True):
        W = F.normalize(torch.randn(24, 32, generator=g), dim=-1)
        sae = sae_from_weights(
            "relu", W_enc=W.T.clone(), b_enc=torch.zeros(24) + 0.1, W_dec=W, b_dec=torch.zeros(32)
        )
        folder = run / "saes" / name
        save_sae(
            sae, folder, source={"site": site, "acts": str(run / "stores" / name)}, training={}
        )
        sae = load_sae(folder)
        assert sae.metadata is not None  # load_sae keeps config.json there
        sae.metadata["path"] = str(folder)  # as the CLI's --sae-up/--sae-down load it
        analyze_features(
            sae,
            ActivationStore(run / "stores" / name),
            out=run / "analyses" / f"features-{name}",
            examples=4,
            quantile_examples=3,
            sample_size=8,
            bins=12,
            null_directions=100,
        )
        saes.append(sae)
    analyze_circuits(
        loaded,
        saes[0],
        saes[1],
        docs,
        examples=16,
        seq_len=32,
        top_k=4,
        top=12,
        resamples=200,
        shuffles=20,
        out=run / "analyses" / "circuits-l0-l1",
    )
    return run


@pytest.fixture(scope="module")
def circuits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_circuits_run(tmp_path_factory.mktemp("circuits"))
    build_index(run)
    return run


def _page(run: Path) -> dict[str, Any]:
    return json.loads((run / "explorer" / "circuits" / f"{CIRCUIT}.json").read_text())


def test_index_lists_the_circuit_with_its_braids(circuits_run: Path) -> None:
    index = json.loads((circuits_run / "explorer" / "index.json").read_text())
    assert [d["id"] for d in index["dictionaries"]] == ["l0", "l1"]
    (entry,) = index["circuits"]
    assert entry["id"] == CIRCUIT and entry["n_edges"] == 12 and entry["contexts"] == 16
    assert (entry["dict_up"], entry["dict_down"]) == ("l0", "l1")
    assert entry["ci"]["n"] == 12 and entry["ci"]["low"] <= entry["braided_fraction"]
    assert entry["null_ci"]["n"] == 20
    assert {"circuits", "l0", "l1", "tiny-bert"} <= set(entry["terms"].split())


def test_graph_page_holds_every_edge_with_its_numbers(circuits_run: Path) -> None:
    page = _page(circuits_run)
    written = json.loads((circuits_run / "analyses" / "circuits-l0-l1" / "edges.json").read_text())
    assert [(e["up"], e["down"], e["weight"]) for e in page["edges"]] == [
        (e["up"], e["down"], e["weight"]) for e in written
    ]
    assert page["matched"] == {"up": "path", "down": "path"}
    for e in page["edges"]:
        assert e["ci"]["low"] <= e["weight"] <= e["ci"]["high"] and e["ci"]["n"] == 16
        assert e["virtual"] is not None and e["clusters"] >= 1
        assert "[[" in e["label_up"] and "[[" in e["label_down"]  # strongest example texts
    assert page["summary"]["null"]["quantiles"]["q95"] > 0
    assert "edges" not in page["summary"]


def test_feature_pages_link_back_to_their_edges(circuits_run: Path) -> None:
    page = _page(circuits_run)
    out = circuits_run / "explorer" / "circuits" / "features"
    up = json.loads((out / "l0.json").read_text())
    down = json.loads((out / "l1.json").read_text())
    assert sum(len(v) for v in up.values()) == sum(len(v) for v in down.values()) == 12
    for i, e in enumerate(page["edges"]):
        there = [x for x in up[str(e["up"])] if x["edge"] == i]
        assert there and there[0]["role"] == "up" and there[0]["other"] == e["down"]
        assert there[0]["other_dict"] == "l1" and there[0]["weight"] == e["weight"]
        assert any(x["edge"] == i and x["other"] == e["up"] for x in down[str(e["down"])])


def test_endpoints_fall_back_to_the_folder_name_then_the_site(
    circuits_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "moved"
    shutil.copytree(circuits_run, run, ignore=shutil.ignore_patterns("explorer"))
    record_path = run / "analyses" / "circuits-l0-l1" / "analysis.json"
    record = json.loads(record_path.read_text())
    record["inputs"]["sae_up"] = "/elsewhere/l0"  # moved: the name still matches
    record["inputs"]["sae_down"] = None  # older folders: matched by site
    record_path.write_text(json.dumps(record))
    page = json.loads((build_index(run) / "circuits" / f"{CIRCUIT}.json").read_text())
    assert (page["dict_up"], page["dict_down"]) == ("l0", "l1")
    assert page["matched"] == {"up": "name", "down": "site"}


def test_a_dictionary_too_small_for_the_edges_is_not_linked(
    circuits_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "wrong"
    shutil.copytree(circuits_run, run, ignore=shutil.ignore_patterns("explorer"))
    edges_path = run / "analyses" / "circuits-l0-l1" / "edges.json"
    edges = json.loads(edges_path.read_text())
    edges[0]["down"] = 99  # beyond l1's d_sae = 24: another SAE than l1
    edges_path.write_text(json.dumps(edges))
    page = json.loads((build_index(run) / "circuits" / f"{CIRCUIT}.json").read_text())
    assert (page["dict_up"], page["dict_down"]) == ("l0", None)
    assert page["matched"] == {"up": "name", "down": None}  # a copy: the name matches
    assert not (run / "explorer" / "circuits" / "features" / "l1.json").exists()


def test_a_circuits_folder_alone_has_no_links(circuits_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "alone"
    shutil.copytree(circuits_run / "analyses" / "circuits-l0-l1", folder)
    index = json.loads((build_index(folder) / "index.json").read_text())
    (entry,) = index["circuits"]
    assert entry["id"] == "circuits" and entry["dict_up"] is None and entry["n_edges"] == 12
    assert not any((folder / "explorer" / "circuits" / "features").iterdir())


def test_server_returns_the_page_data_and_404_for_unknown_ids(circuits_run: Path) -> None:
    client = TestClient(create_app(circuits_run), base_url="http://127.0.0.1")
    assert client.get("/static/circuits.js").status_code == 200
    assert "/static/circuits.js" in client.get("/").text
    r = client.get(f"/data/circuits/{CIRCUIT}.json")
    assert r.status_code == 200 and len(r.json()["edges"]) == 12
    assert client.get("/data/circuits/no-such-circuit.json").status_code == 404
    assert client.get("/data/circuits/features/l0.json").status_code == 200
    assert client.get("/data/circuits/%2e%2e/index.json").status_code == 400


# ---- in a real browser


@contextlib.contextmanager
def _serving(run: Path) -> Iterator[str]:
    """The explorer of `run` on 127.0.0.1 (an ephemeral port): its base URL."""
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
    try:
        yield url_of(server, "127.0.0.1")
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.explorer.test_browser import ARGS, CHROMIUM

    sync_playwright = _require_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def guarded(circuits_run: Path, browser: Any) -> Iterator[Guarded]:
    with _serving(circuits_run) as url:
        g = Guarded(browser, url)
        yield g
        g.page.close()


def test_graph_page_in_a_browser(guarded: Guarded, circuits_run: Path) -> None:
    page = guarded.open(f"#/circuit/{CIRCUIT}", "circuit")
    edges = _page(circuits_run)["edges"]
    assert page.locator("#circuit-graph path.edge").count() == len(edges)
    widths = [
        float(w)
        for w in page.locator("path.edge").evaluate_all(
            "ps => ps.map(p => p.getAttribute('stroke-width'))"
        )
    ]
    assert widths[0] == max(widths)  # the strongest edge is drawn the widest
    colours = set(
        page.locator("path.edge").evaluate_all("ps => ps.map(p => p.getAttribute('stroke'))")
    )
    assert colours <= {"#1565c0", "#c62828"}
    text = page.locator("main").inner_text()
    for broken in ("[object ", "undefined", "NaN"):
        assert broken not in text, (broken, text[:500])
    assert "braided fraction" in text and "n = 12" in text
    page.locator("path.edge").first.hover()
    hover = page.locator("#circuit-hover").inner_text()
    assert f"feature {edges[0]['up']} → feature {edges[0]['down']}" in hover
    assert "virtual weight" in hover and "braid clusters" in hover and "n = 16" in hover
    guarded.shot("circuit")
    guarded.check()


def test_edge_table_sorts_by_weight(guarded: Guarded) -> None:
    page = guarded.open(f"#/circuit/{CIRCUIT}", "circuit")
    page.click("#edge-table th >> text=weight")
    cells = page.locator("#edge-table tbody tr td:nth-child(3)").all_inner_texts()
    values = [float(c) for c in cells]
    assert values == sorted(values)
    page.click("#edge-table th >> text=weight")
    values = [
        float(c) for c in page.locator("#edge-table tbody tr td:nth-child(3)").all_inner_texts()
    ]
    assert values == sorted(values, reverse=True)
    guarded.check()


def test_endpoint_clicks_through_to_the_feature_and_back(
    guarded: Guarded, circuits_run: Path
) -> None:
    edge = _page(circuits_run)["edges"][0]
    page = guarded.open(f"#/circuit/{CIRCUIT}", "circuit")
    page.locator(f"#circuit-graph g.node.down[data-feature='{edge['down']}']").click()
    guarded.ready("feature")
    assert page.locator("h1").inner_text().startswith(f"Feature {edge['down']}")
    assert "of l1" in page.locator("h1").inner_text()
    section = page.locator("main table").filter(has_text=CIRCUIT)
    assert section.count() == 1 and "fed by" in section.inner_text()
    section.locator(f"a[href='#/feature/l0/{edge['up']}']").first.click()  # the other end
    guarded.ready("feature")
    assert page.locator("h1").inner_text().startswith(f"Feature {edge['up']}")
    page.locator(f"main a[href='#/circuit/{CIRCUIT}']").first.click()  # back to the graph
    guarded.ready("circuit")
    guarded.check()


def test_home_nav_and_search_find_the_circuit(guarded: Guarded) -> None:
    page = guarded.open("#/", "home")
    assert page.locator(f"#circuits-list a[href='#/circuit/{CIRCUIT}']").count() == 1
    page.fill("#search", "circuits l1")
    page.press("#search", "Enter")
    guarded.ready("search")
    page.locator(f"ul.circuits a[href='#/circuit/{CIRCUIT}']").click()
    guarded.ready("circuit")
    page.click(f"#nav >> text=circuit {CIRCUIT}")
    guarded.ready("circuit")
    guarded.open("#/circuit/nope", "notfound")
    assert "no circuits analysis nope" in page.locator("main").inner_text()
    guarded.check()


def test_ablation_and_method_drawn_when_recorded(
    circuits_run: Path, browser: Any, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(circuits_run, run, ignore=shutil.ignore_patterns("explorer"))
    folder = run / "analyses" / "circuits-l0-l1"
    record = json.loads((folder / "analysis.json").read_text())
    record["summary"]["method"] = "attribution"
    record["summary"]["ablation"] = {
        "effect": {"estimate": 0.31, "low": 0.2, "high": 0.42, "n": 12},
        "null_range": [0.01, 0.05],
    }
    edges = json.loads((folder / "edges.json").read_text())
    # the per-edge list of analysis.edge_ablation: a table of its own, not a line of JSON
    record["summary"]["ablation"]["edges"] = [
        {"up": edges[0]["up"], "down": edges[0]["down"], "weight": 0.3, "effect": 0.31,
         "ci": {"estimate": 0.31, "low": 0.2, "high": 0.42, "n": 12}, "null": {"band": 0.05},
         "verdict": "causal", "null_edges": {"band": 0.5}, "verdict_edges": "inconclusive"}
    ]  # fmt: skip
    (folder / "analysis.json").write_text(json.dumps(record))
    edges[0]["ablation"] = {"estimate": 0.5, "low": 0.25, "high": 0.75, "n": 12}
    (folder / "edges.json").write_text(json.dumps(edges))
    build_index(run)
    with _serving(run) as url:
        g = Guarded(browser, url)
        page = g.open(f"#/circuit/{CIRCUIT}", "circuit")
        assert "method: attribution" in page.locator("main").inner_text()
        ablation = page.locator("#ablation").inner_text()
        assert "effect: 0.310 [0.200, 0.420] (n = 12)" in ablation
        assert "null_range: [0.010, 0.050]" in ablation
        assert "edges:" not in ablation
        rows = page.locator("#ablation-edges tbody tr")
        assert rows.count() == 1
        row = rows.first.inner_text()
        assert "0.310 [0.200, 0.420] (n = 12)" in row and "±0.050" in row and "±0.500" in row
        assert "causal" in row and "inconclusive" in row
        assert rows.first.locator("a").count() == 2  # both ends link to their feature pages
        assert page.locator("#edge-table th", has_text="ablation").count() == 1
        page.locator("path.edge").first.hover()
        assert "ablation 0.500 [0.250, 0.750]" in page.locator("#circuit-hover").inner_text()
        g.check()
        g.page.close()
