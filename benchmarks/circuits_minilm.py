"""Circuits and braids on MiniLM: edges from SAE features at layer 2's output into SAE
features at layer 3's MLP input, over held-out sentences.

Harvests both sites in one pass from `pydocs` and `concepts:train` interleaved (one pydocs
document, then eight concept sentences), trains a TopK SAE at each (same width, k and
budget), then runs `analyze_circuits` (edges, intervals, virtual weights, null, braids) on
held-out contexts: pydocs documents the harvest never read and `concepts:heldout` sentences,
alternating. Prints the table (top edges, null quantiles, braided fraction against its null)
and the top-activating contexts of the features at both ends of the strongest edges; writes
it to OUT/table.md and OUT/circuits-run.json beside the run folder (stores/, saes/,
analyses/).

The two sites have exactly one attention block between them (layer 3's self-attention, its
output projection and LayerNorm: `encoder.layer.3.intermediate.input` is the attention
block's output): the site pair a factored edge computation covers. The issue's size is
`--d-sae 4096`; the default is smaller so that the run fits a few minutes on a shared CPU.

    PYTHONPATH=src python benchmarks/circuits_minilm.py --out runs/circuits-minilm
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterator

import torch

from circuits_common import add_circuit_flags, run_circuits, train_pair

SITE_UP = "encoder.layer.2.output"
SITE_DOWN = "encoder.layer.3.intermediate.input"


class Interleaved:
    """One pydocs document, then `per` concept sentences, repeated; counts the pydocs
    documents it has handed out (an upper bound of those the harvest read)."""

    def __init__(self, pydocs: list[str], concepts: list[str], per: int = 8) -> None:
        self.pydocs, self.concepts, self.per = pydocs, concepts, per
        self.pydocs_used = 0

    def __iter__(self) -> Iterator[str]:
        sentences = iter(self.concepts)
        for doc in self.pydocs:
            self.pydocs_used += 1
            yield doc
            yield from itertools.islice(sentences, self.per)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_circuit_flags(p, d_sae=1536, k=32, examples=128, features_down=512)
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep OUT's stores and SAEs if there (the harvest and SAE flags are then ignored)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import polysemy as ps

    t0 = time.perf_counter()
    loaded = ps.load_model("minilm")
    # Generous slices: the harvest stops at --harvest-tokens, the interleaving counts what
    # it handed out.
    pydocs = ps.open_corpus("pydocs").take(args.harvest_tokens // 40 + 4 * args.examples)
    concepts = ps.open_corpus("concepts:train").take(args.harvest_tokens // 12)
    texts = Interleaved(pydocs, concepts)
    saes = args.out / "saes"
    if args.reuse and (saes / "down" / "config.json").is_file():
        stores = {s: ps.ActivationStore(args.out / "stores" / s) for s in (SITE_UP, SITE_DOWN)}
        texts.pydocs_used = json.loads((args.out / "harvest.json").read_text())["pydocs_used"]
        sae_up, sae_down = ps.load_sae(saes / "up"), ps.load_sae(saes / "down")
    else:
        harvested = ps.harvest(loaded, texts, sites=(SITE_UP, SITE_DOWN),
                            tokens=args.harvest_tokens, seq_len=128, dtype="float32",
                            out=args.out / "stores", force=True, progress=False)  # fmt: skip
        assert isinstance(harvested, dict)
        stores = harvested
        (args.out / "harvest.json").write_text(json.dumps({"pydocs_used": texts.pydocs_used}))
        print(f"# harvested {len(stores[SITE_UP])} rows at {SITE_UP} and {SITE_DOWN} "
              f"({texts.pydocs_used} pydocs documents handed out)", flush=True)  # fmt: skip
        sae_up, sae_down = train_pair(stores[SITE_UP], stores[SITE_DOWN], args)

    # Held out: pydocs documents after every one handed to the harvest, with some text to
    # them, alternating with concept sentences from the held-out split.
    later = [d for d in pydocs[texts.pydocs_used :] if len(d) > 200][: args.examples // 2]
    heldout = ps.open_corpus("concepts:heldout").take(args.examples - len(later))
    pairs = itertools.zip_longest(later, heldout)
    contexts = [t for pair in pairs for t in pair if t is not None]
    run_circuits(loaded, sae_up, sae_down, contexts, (stores[SITE_UP], stores[SITE_DOWN]),
                 args, label="minilm")  # fmt: skip
    print(f"# total {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
