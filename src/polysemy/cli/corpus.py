"""`polysemy corpus ...`: look at a corpus before harvesting it, export the concepts corpus.

polysemy corpus show pydocs --n 3
polysemy corpus stats data/*.jsonl --json
polysemy corpus concepts --n 2000 --split heldout --seed 0 --out concepts.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from polysemy import runfolder
from polysemy.cli._common import add_json_flag, emit, nonnegative_int, positive_int
from polysemy.corpora import generate_concepts, open_corpus
from polysemy.progress import progress_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `corpus` command group to `subparsers`."""
    group = subparsers.add_parser(
        "corpus",
        help="inspect a text corpus or export the labelled concepts corpus",
        description="Inspect a text corpus (pydocs, concepts, hf:NAME, files) or export "
        "the labelled concepts corpus with its twins as JSON lines.",
    )
    sub = group.add_subparsers(title="corpus commands", metavar="COMMAND", required=True)

    show = sub.add_parser(
        "show", help="print the first documents of a corpus", description=_SPEC_HELP
    )
    _add_spec(show)
    show.add_argument("--n", type=positive_int, default=3, help="documents to print")
    add_json_flag(show)
    show.set_defaults(handler=_show)

    stats = sub.add_parser(
        "stats",
        help="read a whole corpus (or its first --limit documents) and count it",
        description=_SPEC_HELP + " Reading every document also checks that each file is "
        "valid UTF-8 and well formed before a long harvest starts, and a whole pass over "
        "pydocs fills its cache (see docs/corpora.md).",
    )
    _add_spec(stats)
    stats.add_argument(
        "--limit", type=positive_int, default=None, help="stop after this many documents"
    )
    add_json_flag(stats)
    stats.set_defaults(handler=_stats)

    concepts = sub.add_parser(
        "concepts",
        help="write labelled concept sentences with their twins as JSON lines",
        description="Write N generated sentences of one split, each with its sentence-level "
        "labels, character spans and counterfactual/control twins, one JSON object a line.",
    )
    concepts.add_argument("--n", type=positive_int, default=1000, help="sentences")
    concepts.add_argument(
        "--split", choices=("train", "heldout"), default="train", help="template split"
    )
    concepts.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    concepts.add_argument("--no-twins", action="store_true", help="leave out the twins")
    concepts.add_argument("--out", required=True, help="output .jsonl file (written atomically)")
    concepts.add_argument("--force", action="store_true", help="replace an existing --out")
    add_json_flag(concepts)
    concepts.set_defaults(handler=_concepts)


_SPEC_HELP = (
    "CORPUS is pydocs, concepts[:train|heldout][:N], hf:NAME[:SPLIT], or a .txt/.jsonl/"
    ".parquet file, folder or glob (quote globs)."
)


def _add_spec(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", metavar="CORPUS", help="the corpus spec")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of generated corpora")
    p.add_argument("--text-field", default="text", help="JSON field / column holding the text")


def _show(args: argparse.Namespace) -> int:
    corpus = open_corpus(args.corpus, seed=args.seed, text_field=args.text_field)
    docs = corpus.take(args.n)
    text = "\n".join(
        [f"corpus: {corpus.name}"] + [f"--- document {i}\n{d}" for i, d in enumerate(docs)]
    )
    emit(args, {"corpus": corpus.name, "documents": docs}, text)
    return 0


def _stats(args: argparse.Namespace) -> int:
    corpus = open_corpus(args.corpus, seed=args.seed, text_field=args.text_field)
    documents = chars = words = 0
    start = time.perf_counter()
    with progress_bar(total=args.limit, desc="reading", unit="doc") as bar:
        for doc in corpus:
            documents += 1
            chars += len(doc)
            words += len(doc.split())
            bar.update(1)
            if args.limit is not None and documents >= args.limit:
                break
    seconds = time.perf_counter() - start
    result = {
        "corpus": corpus.name,
        "documents": documents,
        "chars": chars,
        "words": words,
        "complete": args.limit is None or documents < args.limit,
        "seconds": round(seconds, 3),
    }
    emit(
        args,
        result,
        f"{corpus.name}: {documents} documents, {words} words, {chars} characters "
        f"({'whole corpus' if result['complete'] else 'first documents only'}, "
        f"read in {seconds:.1f} s)",
    )
    return 0


def _concepts(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".jsonl":
        raise ValueError(f"--out must end in .jsonl; got {args.out!r}")
    if out.is_dir():
        raise IsADirectoryError(f"--out {args.out!r} is a folder; expected a .jsonl file")
    if out.exists() and not args.force:
        raise FileExistsError(f"--out {args.out!r} exists; pass --force to replace it")
    sentences = generate_concepts(args.n, seed=args.seed, split=args.split, twins=not args.no_twins)
    lines = [json.dumps(s.to_dict(), ensure_ascii=False) for s in sentences]
    runfolder.atomic_write_text(out, "\n".join(lines) + "\n")
    families = sorted({s.template_family for s in sentences})
    result = {
        "out": str(out),
        "sentences": len(sentences),
        "twins": sum(len(s.twins) for s in sentences),
        "split": args.split,
        "seed": args.seed,
        "template_families": families,
    }
    emit(
        args,
        result,
        f"wrote {len(sentences)} {args.split} sentences ({result['twins']} twins, "
        f"{len(families)} template families) to {out}",
    )
    return 0
