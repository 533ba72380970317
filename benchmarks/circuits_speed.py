"""Speed of `analyze_circuits` on MiniLM: many downstream features per backward pass against
one backward pass per downstream feature, in the same run, on the same contexts.

    python benchmarks/circuits_speed.py [--contexts 64] [--seq-len 128] [--d-sae 4096]
        [--features 64] [--chunk 32] [--threads N]

The SAEs are random TopK SAEs, k = 32 (speed does not depend on training, but a trained
dictionary's skewed feature frequencies leave more features silent per batch, which the
analysis skips), at
`encoder.layer.1.output` (upstream) and `encoder.layer.3.output` (downstream), d_sae each.
Both runs draw edges into the same `--features` downstream features over the same
`--contexts` `pydocs` sentences; the reference is `chunk=1` (one backward per feature; the
layers below the upstream site still run once per batch in both, as the library caches
them). Printed: seconds of each, the ratio, that their top edges agree, and the time for
all d_sae downstream features extrapolated linearly from the batched run (stated as such).

    python benchmarks/circuits_speed.py --issue [--contexts 1000] [--seq-len 128]
        [--d-sae 4096] [--ref-contexts 8] [--features 64] [--threads N]

The issue's size, with the factored path (`method="factored"`, no backward pass): edges
between random TopK SAEs (k = 32, d_sae each) at `encoder.layer.3.output` and
`encoder.layer.4.attention.output` (one attention block between them), every downstream
feature, over `--contexts` windows of `--seq-len` tokens ([CLS], `pydocs` text, [SEP]).
The two autograd runs, vmapped (`chunk`) and one backward per feature (`chunk=1`), are too
slow at that size: they run on the first `--ref-contexts` windows and `--features`
downstream features, with the factored path on the same subset (its top edges must agree),
and their time is extrapolated linearly in features and contexts (stated as such).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch


def random_sae(d_in: int, d_sae: int, site: str, seed: int):  # type: ignore[no-untyped-def]
    from polysemy.sae import sae_from_weights

    g = torch.Generator().manual_seed(seed)
    W = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=g), dim=-1)
    sae = sae_from_weights("topk", W_enc=W.T.clone(), b_enc=torch.zeros(d_sae), W_dec=W,
                           b_dec=torch.zeros(d_in), k=32)  # fmt: skip
    sae.metadata = {"source": {"site": site}}
    return sae


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contexts", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--d-sae", type=int, default=4096)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--issue", action="store_true", help="the issue's size, factored path")
    p.add_argument("--ref-contexts", type=int, default=8)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.issue:
        issue(args)
        return

    from polysemy.analysis.circuits import analyze_circuits
    from polysemy.corpora import open_corpus
    from polysemy.models import load_model

    loaded = load_model("minilm")
    docs = open_corpus("pydocs").take(4 * args.contexts)
    up = random_sae(384, args.d_sae, "encoder.layer.1.output", 0)
    down = random_sae(384, args.d_sae, "encoder.layer.3.output", 1)
    kw = dict(
        examples=args.contexts,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        features_down=tuple(range(args.features)),
        top_k=8,
        top=10,
        resamples=200,
    )
    times = {}
    results = {}
    for name, chunk in (("batched", args.chunk), ("one_per_feature", 1)):
        t0 = time.perf_counter()
        results[name] = analyze_circuits(loaded, up, down, docs, chunk=chunk, **kw)
        times[name] = time.perf_counter() - t0
    a, b = results["batched"], results["one_per_feature"]
    agree = torch.equal(a.top_up, b.top_up) and torch.allclose(
        a.top_weight, b.top_weight, rtol=1e-4, atol=1e-6
    )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(
        f"MiniLM layer 1 -> layer 3, d_sae {args.d_sae} x {args.d_sae}, {args.contexts} pydocs "
        f"sentences of <= {args.seq_len} tokens, {args.features} downstream features"
    )
    print(f"batched (chunk {args.chunk}): {times['batched']:.1f} s")
    print(f"one backward per feature:     {times['one_per_feature']:.1f} s")
    print(f"ratio: {times['one_per_feature'] / times['batched']:.1f}x; top edges agree: {agree}")
    full = times["batched"] * args.d_sae / args.features
    print(f"all {args.d_sae} downstream features, extrapolated linearly: {full / 60:.1f} min")


def windows(tokenizer, n: int, seq_len: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """`[n, seq_len]` token ids: [CLS], consecutive `pydocs` text, [SEP]."""
    from polysemy.corpora import open_corpus

    body = seq_len - 2
    ids: list[int] = []
    for doc in open_corpus("pydocs").take(20 * n):
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"]
        if len(ids) >= n * body:
            break
    if len(ids) < n * body:
        raise SystemExit(f"pydocs holds {len(ids)} tokens, fewer than {n} x {body}")
    text = torch.tensor(ids[: n * body]).view(n, body)
    cls = torch.full((n, 1), tokenizer.cls_token_id)
    sep = torch.full((n, 1), tokenizer.sep_token_id)
    return torch.cat([cls, text, sep], dim=1)


def issue(args: argparse.Namespace) -> None:
    from polysemy.analysis.circuits import analyze_circuits
    from polysemy.models import load_model

    loaded = load_model("minilm")
    ids = windows(loaded.tokenizer, args.contexts, args.seq_len)
    site_up, site_down = "encoder.layer.3.output", "encoder.layer.4.attention.output"
    up = random_sae(384, args.d_sae, site_up, 0)
    down = random_sae(384, args.d_sae, site_down, 1)
    base = dict(seq_len=args.seq_len, batch_size=args.batch_size, top_k=8, top=10,
                resamples=200)  # fmt: skip
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"MiniLM {site_up} -> {site_down}, random TopK SAEs k 32, d_sae {args.d_sae} x "
          f"{args.d_sae}, windows of {args.seq_len} tokens")  # fmt: skip

    # The subset: every method on the same windows and downstream features.
    sub = dict(base, examples=args.ref_contexts, features_down=tuple(range(args.features)))
    times, results = {}, {}
    for name, kw in (("factored", dict(method="factored")),
                     ("vmapped", dict(method="autograd", chunk=args.chunk)),
                     ("one_per_feature", dict(method="autograd", chunk=1))):  # fmt: skip
        t0 = time.perf_counter()
        results[name] = analyze_circuits(loaded, up, down, ids[: args.ref_contexts], **sub, **kw)
        times[name] = time.perf_counter() - t0
    f = results["factored"]
    agree = all(
        torch.equal(f.top_up, r.top_up)
        and torch.allclose(f.top_weight, r.top_weight, rtol=1e-4, atol=1e-6)
        for r in (results["vmapped"], results["one_per_feature"])
    )
    scale = (args.d_sae / args.features) * (args.contexts / args.ref_contexts)
    print(f"subset: {args.ref_contexts} windows x {args.features} downstream features "
          f"(all {args.d_sae} upstream)")  # fmt: skip
    for name in times:
        print(f"  {name:<16} {times[name]:8.1f} s")
    print(f"  top edges of the three agree: {agree}")

    t0 = time.perf_counter()
    full = analyze_circuits(loaded, up, down, ids, **base, examples=args.contexts,
                            method="factored", progress=True)  # fmt: skip
    t_full = time.perf_counter() - t0
    print(
        f"full: {args.contexts} windows x {args.d_sae} downstream features, factored "
        f"({full.method}), measured: {t_full:.1f} s = {t_full / 60:.1f} min"
    )
    for name in ("vmapped", "one_per_feature"):
        est = times[name] * scale
        print(
            f"  {name:<16} extrapolated x{scale:.0f} from the subset: {est / 3600:.1f} h "
            f"({est / t_full:.0f}x the factored run)"
        )


if __name__ == "__main__":
    main()
