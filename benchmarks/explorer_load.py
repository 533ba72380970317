"""Explorer load test: a synthetic 24k-feature run, a fixed number of loopback requests.

Writes analysis folders in the real formats (features: `features.safetensors` and
`examples.json`; neurons: `neurons.json`, `contexts.json`, `neurons.safetensors`) with seeded
random numbers at d_sae = 24,576 and 1,536 neurons, builds the explorer index with the library
(timed), serves it with `polysemy explore` in its own process on 127.0.0.1, and sends
`--requests` GETs (feature and neuron page shards of 64, search shards, index.json; a fixed
seeded mix) from `--clients` threads, then stops. Prints errors and p50/p99 latency per kind,
against the reference of a static file of the same server (style.css), and, when
/usr/bin/chromium is there, the load time of feature pages in the browser (first visit:
text shown, then plots drawn once plotly is parsed; then moving to other features).

    python benchmarks/explorer_load.py --requests 2000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from polysemy.analysis.folder import write_analysis
from polysemy.explorer import build_index

_TEXT = (
    "the river bank was full of fish today she opened an account at downtown interest rates "
    "central rose again heron waited on muddy stream python lists keep their items insertion "
    "order cat sat warm mat near door model layer neuron feature chorus voice context"
)
WORDS = tuple(_TEXT.split(" "))


def synthetic_run(root: Path, d_sae: int, d_in: int, examples: int, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    run = root / "run"
    bins = 48
    density = torch.rand(d_sae, generator=g).pow(4) * 0.05
    arrays = {
        "density": density.double(),
        "mean_activation": torch.rand(d_sae, generator=g).double(),
        "histogram": torch.randint(0, 500, (d_sae, bins), generator=g),
        "histogram_edges": torch.logspace(-3, 3, bins + 1),
        "participation_ratio": torch.rand(d_sae, generator=g).double() * d_in / 2,
        "neurons_50": torch.randint(1, 50, (d_sae,), generator=g),
        "neurons_90": torch.randint(50, 300, (d_sae,), generator=g),
        "null_participation_ratio": torch.rand(4096, generator=g).double() * 10 + d_in / 3,
        "top_rows": torch.randint(0, 10**6, (d_sae, examples), generator=g),
        "top_values": torch.rand(d_sae, examples, generator=g).sort(1, descending=True).values,
        "quantile_rows": torch.randint(0, 10**6, (d_sae, 8), generator=g),
        "quantile_values": torch.rand(d_sae, 8, generator=g).sort(1).values,
        "neighbours": torch.randint(0, d_sae, (d_sae, 8), generator=g),
        "neighbour_cosine": torch.rand(d_sae, 8, generator=g),
        "partners": torch.randint(0, d_sae, (d_sae, 8), generator=g),
        "partner_count": torch.randint(1, 900, (d_sae, 8), generator=g).float(),
        "partner_lift": torch.rand(d_sae, 8, generator=g) * 5,
    }

    def text() -> str:
        w = [rng.choice(WORDS) for _ in range(17)]
        w[8] = f"[[{w[8]}]]"
        return " ".join(w)

    ex = [
        {
            "feature": f,
            "top": [
                {"row": int(r), "activation": float(v), "text": text()}
                for r, v in zip(arrays["top_rows"][f], arrays["top_values"][f], strict=True)
            ],
            "quantiles": [
                {"row": int(r), "activation": float(v), "text": text()}
                for r, v in zip(
                    arrays["quantile_rows"][f], arrays["quantile_values"][f], strict=True
                )
            ],
        }
        for f in range(d_sae)
    ]
    acts = str(run / "stores" / "mlp")
    write_analysis(
        run / "analyses" / "features-mlp",
        "features",
        inputs={"sae": None, "acts": acts, "site": "synthetic"},
        summary={"n_features": d_sae, "rows": 10**6, "dead_fraction": 0.0},
        files={"features.safetensors": arrays, "examples.json": ex},
    )
    n_neurons = d_in
    shares = torch.rand(n_neurons, 20, generator=g).sort(1, descending=True).values * 0.04
    feats = torch.randint(0, d_sae, (n_neurons, 20), generator=g)
    records = [
        {
            "neuron": j,
            "effective_features": float(10 + 40 * torch.rand(1, generator=g)),
            "participation_ratio": 8.0,
            "error_share": 0.1,
            "features": [[int(f), float(s)] for f, s in zip(feats[j], shares[j], strict=True)],
        }
        for j in range(n_neurons)
    ]
    contexts = [
        {
            "neuron": j,
            "groups": [
                {
                    "feature": int(feats[j, k]),
                    "contexts": [{"row": 1, "activation": 1.0, "contribution": 0.5, "text": text()}]
                    * 3,
                }
                for k in range(4)
            ],
        }
        for j in range(n_neurons)
    ]
    write_analysis(
        run / "analyses" / "neurons-mlp",
        "neurons",
        inputs={"sae": None, "acts": acts, "site": "synthetic"},
        summary={"n_neurons": n_neurons, "rows": 65536, "verdict": "effect"},
        files={
            "neurons.json": records,
            "contexts.json": contexts,
            "neurons.safetensors": {
                "baseline_effective_features": torch.rand(n_neurons, generator=g) * 60 + 10
            },
        },
    )
    return run


def start_server(run: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "polysemy", "explore", str(run), "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "explorer at http://127.0.0.1:PORT/ ..."
    if "http://127.0.0.1:" not in line:
        proc.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return proc, line.split()[2]


def load(base: str, paths: list[tuple[str, str]], clients: int) -> dict[str, list[float]]:
    import httpx

    times: dict[str, list[float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    chunks = [paths[i::clients] for i in range(clients)]

    def worker(chunk: list[tuple[str, str]]) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for kind, path in chunk:
                t0 = time.perf_counter()
                try:
                    r = client.get(path)
                    ok = r.status_code == 200 and len(r.content) > 0
                except httpx.HTTPError as exc:
                    ok, r = False, exc  # type: ignore[assignment]
                dt = time.perf_counter() - t0
                with lock:
                    times.setdefault(kind, []).append(dt)
                    if not ok:
                        errors.append(f"{path}: {r}")

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times["errors"] = [float(len(errors))]
    return times


def browser_times(base: str, d_sae: int, visits: int) -> tuple[float, float, list[float]] | None:
    if not Path("/usr/bin/chromium").exists():
        return None
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage"]  # fmt: skip
    rng = random.Random(1)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        t0 = time.perf_counter()
        page.goto(base + f"#/feature/mlp/{rng.randrange(d_sae)}")
        page.wait_for_selector("#main[data-shown='feature']", timeout=30_000)
        shown = time.perf_counter() - t0  # text and examples on screen
        page.wait_for_selector("#main[data-ready='feature']", timeout=30_000)
        first = time.perf_counter() - t0  # plots drawn too
        later = []
        for _ in range(visits):
            f = rng.randrange(d_sae)
            t0 = time.perf_counter()
            page.evaluate("h => { document.getElementById('main').dataset.ready = ''; "
                          "location.hash = h; }", f"#/feature/mlp/{f}")  # fmt: skip
            page.wait_for_selector("#main[data-ready='feature']", timeout=30_000)
            later.append(time.perf_counter() - t0)
        browser.close()
    return shown, first, later


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--d-sae", type=int, default=24576)
    ap.add_argument("--d-in", type=int, default=1536)
    ap.add_argument("--visits", type=int, default=20, help="feature pages opened in the browser")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = synthetic_run(Path(tmp), args.d_sae, args.d_in, examples=10)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = build_index(run)
        t_build = time.perf_counter() - t0
        n_files = sum(1 for _ in out.rglob("*.json"))
        size = sum(p.stat().st_size for p in out.rglob("*.json"))
        print(f"synthetic run: d_sae {args.d_sae}, {args.d_in} neurons, written in {t_write:.1f} s")
        print(f"build_index: {t_build:.1f} s, {n_files} JSON files, {size / 1e6:.0f} MB")
        index = json.loads((out / "index.json").read_text())
        shards = index["search_shards"]
        rng = random.Random(0)
        mix = [
            ("feature", 0.6),
            ("neuron", 0.2),
            ("search", 0.1),
            ("index", 0.05),
            ("static", 0.05),
        ]
        paths = []
        for _ in range(args.requests):
            kind = rng.choices([k for k, _ in mix], [w for _, w in mix])[0]
            path = {
                "feature": lambda: (
                    f"/data/dicts/mlp/features/{rng.randrange(args.d_sae) // 64}.json"
                ),
                "neuron": lambda: f"/data/dicts/mlp/neurons/{rng.randrange(args.d_in) // 64}.json",
                "search": lambda: f"/data/search/{rng.choice(shards)}.json",
                "index": lambda: "/data/index.json",
                "static": lambda: "/static/style.css",
            }[kind]()
            paths.append((kind, path))
        proc, base = start_server(run)
        try:
            t0 = time.perf_counter()
            times = load(base, paths, args.clients)
            wall = time.perf_counter() - t0
            errors = int(times.pop("errors")[0])
            print(
                f"{args.requests} requests from {args.clients} clients in {wall:.1f} s "
                f"({args.requests / wall:.0f}/s), errors: {errors}"
            )
            ref = statistics.median(times["static"])
            print("| request | n | p50 ms | p99 ms | p50 vs static file |")
            print("|---|---:|---:|---:|---:|")
            for kind in ("static", "index", "feature", "neuron", "search"):
                t = sorted(times.get(kind, []))
                if not t:
                    continue
                p50 = statistics.median(t)
                p99 = t[min(len(t) - 1, int(0.99 * len(t)))]
                print(
                    f"| {kind} | {len(t)} | {p50 * 1e3:.1f} | {p99 * 1e3:.1f} | {p50 / ref:.2f} |"
                )
            pages = browser_times(base, args.d_sae, args.visits)
            if pages is not None:
                shown, first, later = pages
                later.sort()
                print(
                    f"browser: first feature page: text shown {shown * 1e3:.0f} ms, plots drawn "
                    f"(plotly.min.js parsed) {first * 1e3:.0f} ms; "
                    f"next {len(later)} feature pages p50 {statistics.median(later) * 1e3:.0f} ms, "
                    f"max {later[-1] * 1e3:.0f} ms"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
