"""The explorer screenshots in docs/images/ (explorer-*.png), reproducibly.

Builds a small real run (MiniLM layer-3 MLP on 30,000 pydocs tokens, a TopK SAE with
d_sae 3072 and k 16 trained on 150,000 tokens, the features, neurons and geometry analyses,
a toy sweep), builds its explorer index, serves it on 127.0.0.1 and screenshots each page
kind in headless Chromium (900 px wide, 128-colour PNGs). About 5 minutes on 2 shared cores.
`--run` screenshots a finished run folder instead; the claims page in docs/images comes from
`polysemy demo`'s run, whose verdicts the claims battery wrote (without `--run` it is taken
from the explorer tests' tiny run, whose claims are hand-written). The circuit page comes from
its own small run (`circuits_run`: two TopK SAEs on MiniLM's residual stream after layers 1
and 3, their features analyses, and `analyze_circuits` between them; a few minutes).

    python benchmarks/explorer_screenshots.py --work /tmp/explorer-shots --out docs/images
    python benchmarks/explorer_screenshots.py --run runs/demo --pages claims
    python benchmarks/explorer_screenshots.py --pages circuits
    python benchmarks/explorer_screenshots.py --pages drift-corpora

`drift-corpora` adds a cross-corpus drift (`corpora_run`: pydocs vs concepts on the run's
MLP neurons with its SAE; a minute or two more) to the small run.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import torch

import polysemy as ps
from polysemy.analysis.features import analyze_features
from polysemy.analysis.geometry import analyze_geometry
from polysemy.analysis.neurons import analyze_neurons
from polysemy.explorer import build_index

SITE = "encoder.layer.3.intermediate.intermediate_act_fn.output"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def minilm_run(run: Path) -> None:
    if (run / "analyses" / "geometry-mlp").is_dir():
        return
    model = ps.load_model("minilm")
    store = ps.harvest(model, ps.open_corpus("pydocs"), site=SITE, tokens=30_000,
                       out=run / "stores" / "mlp", progress=False)  # fmt: skip
    ps.train_sae(store, out=run / "saes" / "mlp", arch="topk", d_sae=3072, k=16,
                 tokens=150_000, progress=False)  # fmt: skip
    sae = ps.load_sae(run / "saes" / "mlp")
    analyze_features(sae, store, out=run / "analyses" / "features-mlp")
    analyze_neurons(sae, store, out=run / "analyses" / "neurons-mlp", rows=30_000)
    analyze_geometry(sae, store, out=run / "analyses" / "geometry-mlp", split="all",
                     min_count=10, top_features=128,
                     inputs={"sae_path": str(run / "saes" / "mlp")})  # fmt: skip
    ps.toy.train(out=run / "toy" / "relu-output", n_features=20, n_hidden=5,
                 sparsity=(0.0, 0.7, 0.9, 0.97, 0.99), importance_decay=0.7, steps=3000,
                 progress=False)  # fmt: skip


CIRCUIT_SITES = ("encoder.layer.1.output", "encoder.layer.3.output")


def circuits_run(run: Path) -> None:
    """Two SAEs on MiniLM's residual stream (after layers 1 and 3) and the circuits between
    them. Different seeds: with one seed, the two SAEs of a residual stream that changes
    little between layers share their feature indices, and every edge is f -> f."""
    from polysemy.analysis.circuits import analyze_circuits

    if (run / "analyses" / "circuits-l1-l3").is_dir():
        return
    model = ps.load_model("minilm")
    stores = ps.harvest(model, ps.open_corpus("pydocs"), sites=CIRCUIT_SITES, tokens=30_000,
                        out=run / "stores", progress=False)  # fmt: skip
    assert isinstance(stores, dict)  # sites=: one store per site
    saes = []
    for seed, (site, name) in enumerate(zip(CIRCUIT_SITES, ("l1", "l3"), strict=True)):
        ps.train_sae(stores[site], out=run / "saes" / name, arch="topk", d_sae=768, k=16,
                     tokens=120_000, seed=seed, progress=False)  # fmt: skip
        sae = ps.load_sae(run / "saes" / name)
        assert sae.metadata is not None  # load_sae keeps config.json there
        sae.metadata["path"] = str(run / "saes" / name)
        analyze_features(sae, stores[site], out=run / "analyses" / f"features-{name}")
        saes.append(sae)
    analyze_circuits(model, saes[0], saes[1], ps.open_corpus("pydocs"), examples=64,
                     seq_len=48, top=30, out=run / "analyses" / "circuits-l1-l3")  # fmt: skip


def corpora_run(run: Path) -> None:
    """The minilm run plus a cross-corpus drift of its MLP neurons with its SAE: pydocs (A)
    against concepts (B), 16,384 tokens each (docs/drift.md, "Across data")."""
    from polysemy.analysis.corpus_drift import corpus_drift

    minilm_run(run)
    if (run / "analyses" / "drift-corpora-mlp").is_dir():
        return
    corpus_drift("minilm", SITE, run / "saes" / "mlp", "pydocs", "concepts",
                 out=run / "analyses" / "drift-corpora-mlp")  # fmt: skip


def shoot(run: Path, out: Path, pages: dict[str, tuple[str, str]]) -> None:
    import uvicorn
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from polysemy.explorer.server import create_app, url_of

    server = uvicorn.Server(
        uvicorn.Config(create_app(run), host="127.0.0.1", port=0, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = url_of(server, "127.0.0.1")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            for name, (route, kind) in pages.items():
                page.goto(base + route)
                page.wait_for_selector(f"#main[data-ready='{kind}']", timeout=30_000)
                path = out / f"explorer-{name}.png"
                page.screenshot(path=str(path))
                im = Image.open(path).convert("RGB")
                im = im.resize((900, im.height * 900 // im.width), Image.LANCZOS)
                im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
                print(f"{path}: {path.stat().st_size / 1e3:.0f} kB")
            browser.close()
    finally:
        server.should_exit = True


PAGES = {
    "home": ("#/", "home"),
    "dictionary": ("#/dict/mlp", "dictionary"),
    "feature": ("#/feature/mlp/333", "feature"),
    "neurons": ("#/neurons/mlp", "neurons"),
    "neuron": ("#/neuron/mlp/100", "neuron"),
    "geometry": ("#/geometry/mlp", "geometry"),
    "toy": ("#/toy/toy-relu-output", "toy"),
    "search": ("#/search/read", "search"),
    "claims": ("#/claims", "claims"),
    "circuits": ("#/circuit/analyses-circuits-l1-l3", "circuit"),
    "drift-corpora": ("#/drift/analyses-drift-corpora-mlp", "drift"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/explorer-shots")
    ap.add_argument("--out", default="docs/images")
    ap.add_argument(
        "--run",
        default=None,
        help="screenshot this finished run folder (e.g. a `polysemy demo` run, whose claims "
        "are real) instead of building the small one",
    )
    ap.add_argument("--pages", default=",".join(PAGES), help="comma list of page kinds")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work, out = Path(args.work), Path(args.out)
    pages = {name: PAGES[name] for name in args.pages.split(",")}
    if args.run is not None:
        build_index(Path(args.run))
        shoot(Path(args.run), out, pages)
        return
    if "circuits" in pages:
        circuits_run(work / "circuits")
        build_index(work / "circuits")
        shoot(work / "circuits", out, {"circuits": pages.pop("circuits")})
    if not pages:
        return
    minilm_run(work / "run")
    if "drift-corpora" in pages:
        corpora_run(work / "run")
    build_index(work / "run")
    shoot(work / "run", out, {k: v for k, v in pages.items() if k != "claims"})
    if "claims" not in pages:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "explorer"))
    from conftest import make_run  # the tests' tiny run, with its hand-written claims

    (work / "tiny").mkdir(exist_ok=True)
    tiny = work / "tiny" / "run"
    if not tiny.is_dir():
        make_run(work / "tiny")
    build_index(tiny)
    shoot(tiny, out, {"claims": pages["claims"]})


if __name__ == "__main__":
    main()
