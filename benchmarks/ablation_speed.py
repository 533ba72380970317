"""How fast `SiteReplay` runs N replacements of a site over many sentences (MiniLM).

Three ways to get the last hidden state of every sentence under each of N site values:

- plain loop: per direction, the whole model reruns with the site patched (`patch_site`);
- replay: one clean pass per batch, then the N directions batched through `SiteReplay`
  (lower layers answer from the cache; only the layers above the site run);
- bare: the forward passes this needs and nothing else, written by hand for BERT: one clean
  pass, then the layers above the site called directly on the patched hidden states, batched
  the same way.

Prints seconds and the ratios replay / bare (the overhead of the generic machinery; goal
<= 1.25) and plain / replay (the speed-up), all measured in the same run.

    PYTHONPATH=src python benchmarks/ablation_speed.py --sentences 1000 --directions 8
"""

from __future__ import annotations

import argparse
import time

import torch

from polysemy.analysis.replay import SiteReplay, encode_examples, pad_examples
from polysemy.corpora import open_corpus
from polysemy.models import load_model, patch_site


def _rep(v: object, batch: int, n: int) -> object:
    """`v` repeated n times along a leading batch dim (other values as they are)."""
    if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == batch:
        return v.repeat(n, *[1] * (v.dim() - 1))
    return v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--directions", type=int, default=8)
    parser.add_argument("--layer", type=int, default=3, help="site: encoder.layer.L.output")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--directions-per-pass", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    args = parser.parse_args()

    loaded = load_model("minilm", device=args.device)
    model = loaded.model
    site = f"encoder.layer.{args.layer}.output"
    docs = open_corpus(f"concepts:heldout:{args.sentences}").take(args.sentences)
    examples = encode_examples(loaded.tokenizer, docs, seq_len=args.seq_len)
    batches = [
        pad_examples(examples[i : i + args.batch_size], 0, args.device)
        for i in range(0, len(examples), args.batch_size)
    ]
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(args.directions, 384, generator=g), dim=-1)
    dirs = dirs.to(args.device)
    D = args.directions_per_pass

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def patched(x: torch.Tensor, text: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        values = x.repeat(len(group), 1, 1)  # (d*B, seq, width)
        b = x.shape[0]
        for k, d in enumerate(group):
            part = values[k * b : (k + 1) * b]
            part[text] += d
        return values

    @torch.inference_mode()
    def plain() -> float:
        total = 0.0
        for batch in batches:
            inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            for d in dirs:
                with patch_site(loaded, site, lambda x, d=d, t=batch.text: patched(x, t, d[None])):
                    total += float(model(**inputs).last_hidden_state[:, 0, 0].sum())
        return total

    replay = SiteReplay(loaded, site)

    @torch.inference_mode()
    def ours() -> float:
        total = 0.0
        for batch in batches:
            cache = replay.record(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            for start in range(0, len(dirs), D):
                values = patched(cache.site, batch.text, dirs[start : start + D])
                total += float(replay.replay(cache, values)[:, 0, 0].sum())
        return total

    upper = model.encoder.layer[args.layer + 1 :]

    @torch.inference_mode()
    def bare() -> float:
        total = 0.0
        for batch in batches:
            x: dict[str, object] = {}
            # The keyword arguments the model passes its layers (the attention mask in the
            # form this transformers version uses), read off the clean pass.
            handle = upper[0].register_forward_pre_hook(
                lambda m, a, kw, x=x: x.__setitem__("call", (a[1:], kw)), with_kwargs=True
            )
            try:
                with patch_site(loaded, site, lambda v, x=x: x.__setitem__("x", v) or v):
                    model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            finally:
                handle.remove()
            b = batch.input_ids.shape[0]
            for start in range(0, len(dirs), D):
                group = dirs[start : start + D]
                h = patched(x["x"], batch.text, group)
                rest, kw = x["call"]
                rest = [_rep(v, b, len(group)) for v in rest]
                kw = {k: _rep(v, b, len(group)) for k, v in kw.items()}
                for layer in upper:
                    out = layer(h, *rest, **kw)
                    h = out[0] if isinstance(out, tuple) else out
                total += float(h[:, 0, 0].sum())
        return total

    def timed(fn) -> tuple[float, float]:
        best, value = float("inf"), 0.0
        for _ in range(args.repeats):
            sync()
            t = time.perf_counter()
            value = fn()
            sync()
            best = min(best, time.perf_counter() - t)
        return best, value

    ours()  # warm-up (and the plan's dry run)
    t_ours, v_ours = timed(ours)
    t_bare, v_bare = timed(bare)
    t_plain, v_plain = timed(plain)
    assert abs(v_ours - v_plain) <= 1e-3 * max(1.0, abs(v_plain)), (v_ours, v_plain)
    assert abs(v_ours - v_bare) <= 1e-3 * max(1.0, abs(v_bare)), (v_ours, v_bare)
    tokens = sum(len(e.ids) for e in examples)
    print(
        f"MiniLM, site {site}, {len(examples)} sentences ({tokens} tokens), "
        f"{args.directions} directions, {D} per replay, batch {args.batch_size}, "
        f"{args.device}, {torch.get_num_threads()} threads"
    )
    print(f"  plain loop (whole model per direction): {t_plain:8.2f} s")
    print(f"  replay (SiteReplay):                    {t_ours:8.2f} s")
    print(f"  bare passes it needs (hand-written):    {t_bare:8.2f} s")
    print(f"  replay / bare  = {t_ours / t_bare:.3f}  (goal <= 1.25)")
    print(f"  plain / replay = {t_plain / t_ours:.2f}x faster")


if __name__ == "__main__":
    main()
