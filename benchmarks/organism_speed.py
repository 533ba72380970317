"""Training speed of the organism's step against a plain `transformers` loop, same run.

Same model (transformers' GPT2LMHeadModel at the organism's default shape), same documents
(the quick organism's slice of pydocs and its tokenizer), same batch of `batch_size` rows of
`n_ctx` positions:

    plain padded   the common hand loop: one document per row (truncated to n_ctx), rows
                   padded to the longest in the batch, attention mask, `labels=` with -100 on
                   pads (the model's own loss), `torch.optim.AdamW` with its defaults
    plain packed   the same loop fed packed windows (no pads, no mask): isolates the packing
    organism       `polysemy.organism.train.train_step`: packed windows, fused AdamW, bfloat16
                   autocast where the CPU has it (as `train_organism` resolves it)
    organism float32   the same step without autocast (isolates bfloat16)
    organism compiled  the same step through torch.compile (compile time not counted)

Rates are *real* target tokens per second (pad positions do not count), so the padded loop
is charged for the compute it spends on pads. Methods run interleaved in rounds and each
ratio to "plain padded" is the median over rounds, because the shared 2-core machine makes
absolute figures swing.

    .venv/bin/python benchmarks/organism_speed.py [--rounds 5] [--steps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from polysemy.organism import OrganismConfig
from polysemy.organism.data import prepare_data, windows
from polysemy.organism.tokenizer import EOS
from polysemy.organism.train import build_model, make_optimizer, resolve_precision, train_step


def padded_batches(docs: list[list[int]], batch: int, n_ctx: int, pad: int):
    """Rows of one document each (n_ctx tokens at most), padded to the longest row."""
    i = 0
    while True:
        rows = [docs[(i + j) % len(docs)][:n_ctx] for j in range(batch)]
        i += batch
        width = max(len(r) for r in rows)
        ids = torch.full((batch, width), pad, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        yield ids, mask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per method per round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = OrganismConfig(quick=True)
    data = prepare_data(config)
    tok = data.tokenizer
    eos = tok.convert_tokens_to_ids(EOS)
    batch, n_ctx = config.batch_size, config.n_ctx

    # Documents again, one list of ids each (with eos), for the padded loop.
    stream = data.train.tolist()
    docs, cur = [], []
    for t in stream:
        cur.append(t)
        if t == eos:
            docs.append(cur)
            cur = []
    lengths = [min(len(d), n_ctx) - 1 for d in docs]
    print(
        f"{len(docs)} documents, mean {statistics.mean(lengths):.0f} targets per row of "
        f"{n_ctx} positions (packed rows: {n_ctx}); batch {batch}, threads {args.threads}"
    )
    packed = windows(data.train, n_ctx)

    def packed_batches():
        g = torch.Generator().manual_seed(0)
        while True:
            yield packed[torch.randint(0, packed.shape[0], (batch,), generator=g)]

    def plain_padded() -> Callable[[], int]:
        model = build_model(config, eos)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
        it = padded_batches(docs, batch, n_ctx, eos)

        def step() -> int:
            ids, mask = next(it)
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            return int(mask[:, 1:].sum())

        return step

    def plain_packed() -> Callable[[], int]:
        model = build_model(config, eos)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
        it = packed_batches()

        def step() -> int:
            w = next(it)[:, :-1]  # n_ctx positions, the model's limit
            loss = model(input_ids=w, labels=w).loss  # shifted inside: n_ctx - 1 targets
            opt.zero_grad()
            loss.backward()
            opt.step()
            return batch * (n_ctx - 1)

        return step

    def organism_fp32() -> Callable[[], int]:
        model = build_model(config, eos)
        model.train()
        opt = make_optimizer(model, config)
        it = packed_batches()
        return lambda: (train_step(model, opt, next(it)), batch * n_ctx)[1]

    def organism(compiled: bool) -> Callable[[], Callable[[], int]]:
        def make() -> Callable[[], int]:
            model = build_model(config, eos)
            model.train()
            opt = make_optimizer(model, config)
            fn = torch.compile(model) if compiled else model
            it = packed_batches()
            autocast = resolve_precision(config.precision, torch.device("cpu"))

            def step() -> int:
                train_step(fn, opt, next(it), autocast)
                return batch * n_ctx

            return step

        return make

    methods: dict[str, Callable[[], Callable[[], int]]] = {
        "plain padded": plain_padded,
        "plain packed": plain_packed,
        "organism": organism(False),
        "organism float32": organism_fp32,
    }
    if not args.no_compile:
        methods["organism compiled"] = organism(True)
    steps = {}
    for name, make in methods.items():
        t = time.perf_counter()
        steps[name] = make()
        for _ in range(2):  # warm-up (and compilation)
            steps[name]()
        print(f"{name}: ready in {time.perf_counter() - t:.1f} s")
    rates: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            tokens = sum(step() for _ in range(args.steps))
            rates[name].append(tokens / (time.perf_counter() - t))
    padded, packed_ref = rates["plain padded"], rates["plain packed"]
    print(f"{'method':<18} {'tokens/s':>9} {'x plain padded':>22} {'x plain packed':>22}")
    for name, r in rates.items():
        cols = []
        for ref in (padded, packed_ref):
            ratios = [a / b for a, b in zip(r, ref, strict=True)]
            cols.append(f"{statistics.median(ratios):>6.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
        print(f"{name:<18} {statistics.median(r):>9.0f} {cols[0]:>22} {cols[1]:>22}")
    print("tokens/s: median over rounds; ratios: median (min-max) of per-round ratios")


if __name__ == "__main__":
    main()
