"""Circuits and braids on the organism: a 2-layer GPT-2 trained here, edges from SAE
features at block 1's input (the residual stream after block 0) into SAE features at block
1's MLP input (`ln_2`'s output), over held-out pydocs documents.

Trains the organism (`ps.organism.train_organism`, a short budget, `--steps`), harvests both
sites in one pass from pydocs documents it trained on, trains a TopK SAE at each (same
width, k and budget), then runs `analyze_circuits` (edges, intervals, virtual weights, null,
braids) on pydocs documents the organism never read (after its whole corpus, train and
held-out). Prints the table and the top-activating contexts of the features at both ends of
the strongest edges; writes it to OUT/table.md and OUT/circuits-run.json beside the run
folder (organism/, stores/, saes/, analyses/). `--organism DIR` reuses a trained run.

The two sites have exactly one attention block between them (block 1's `ln_1`, attention
and residual sum, then `ln_2`): the site pair a factored edge computation covers.

    PYTHONPATH=src python benchmarks/circuits_organism.py --out runs/circuits-organism
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from circuits_common import add_circuit_flags, run_circuits, train_pair

SITE_UP = "h.1.input"
SITE_DOWN = "h.1.mlp.input"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_circuit_flags(p, d_sae=1024, k=16, examples=128, features_down=512)
    p.add_argument("--organism", type=Path, default=None, help="a trained organism run")
    p.add_argument("--steps", type=int, default=1500, help="organism training steps")
    p.add_argument("--corpus-chars", type=int, default=8_000_000)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep OUT's stores and SAEs if there (the harvest and SAE flags are then ignored)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import polysemy as ps

    t0 = time.perf_counter()
    trained = args.out / "organism" / "organism.json"
    finished = trained.is_file() and json.loads(trained.read_text())["status"] == "done"
    if args.organism is None and args.reuse and finished:
        args.organism = trained.parent
    if args.organism is None:
        args.organism = trained.parent
        run = ps.organism.train_organism(
            out=args.organism, n_layer=2, d_model=args.d_model, d_mlp=4 * args.d_model,
            steps=args.steps, corpus_chars=args.corpus_chars, snapshots=2, force=True,
            progress=False,
        )  # fmt: skip
        print(f"# organism: 2 layers, d_model {args.d_model}, {args.steps} steps; held-out "
              f"loss {run.heldout_loss:.3f}, bigram {run.baselines['bigram']:.3f}, unigram "
              f"{run.baselines['unigram']:.3f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)  # fmt: skip
    info = json.loads((args.organism / "organism.json").read_text())
    snapshot = args.organism / info["snapshots"][-1]["path"]  # the final weights
    loaded = ps.load_model(str(snapshot))
    read = info["documents"]["train"] + info["documents"]["heldout"]

    pydocs = ps.open_corpus("pydocs")
    train_docs = pydocs.take(read)
    saes = args.out / "saes"
    if args.reuse and (saes / "down" / "config.json").is_file():
        stores = {s: ps.ActivationStore(args.out / "stores" / s) for s in (SITE_UP, SITE_DOWN)}
        sae_up, sae_down = ps.load_sae(saes / "up"), ps.load_sae(saes / "down")
    else:
        harvested = ps.harvest(loaded, train_docs, sites=(SITE_UP, SITE_DOWN),
                            tokens=args.harvest_tokens, seq_len=128, dtype="float32",
                            out=args.out / "stores", force=True, progress=False)  # fmt: skip
        assert isinstance(harvested, dict)
        stores = harvested
        print(f"# harvested {len(stores[SITE_UP])} rows at {SITE_UP} and {SITE_DOWN}",
              flush=True)  # fmt: skip
        sae_up, sae_down = train_pair(stores[SITE_UP], stores[SITE_DOWN], args)

    # Held out: pydocs documents after all the organism read, with some text to them.
    later = pydocs.take(read + 8 * args.examples)[read:]
    contexts = [d for d in later if len(d) > 200][: args.examples]
    run_circuits(loaded, sae_up, sae_down, contexts, (stores[SITE_UP], stores[SITE_DOWN]),
                 args, label="organism")  # fmt: skip
    print(f"# total {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
