"""`polysemy corpus ...`: look at a corpus before harvesting it, export the concepts corpus.

polysemy corpus show pydocs --n 3
polysemy corpus stats data/*.jsonl --json
polysemy corpus concepts --n 2000 --split heldout --seed 0 --out concepts.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses

from polysemy.cli._common import add_command, emit, positive_int
from polysemy.cli._flags import add_config_flags, config_from_args
from polysemy.corpora import open_corpus
from polysemy.corpora.concepts_file import ConceptsConfig, write_concepts
from polysemy.corpora.corpus import corpus_stats


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `corpus` command group to `subparsers`."""
    group = subparsers.add_parser(
        "corpus",
        help="inspect a text corpus or export the labelled concepts corpus",
        description="Inspect a text corpus (pydocs, concepts, hf:NAME, files) or export "
        "the labelled concepts corpus with its twins as JSON lines.",
    )
    sub = group.add_subparsers(title="corpus commands", metavar="COMMAND", required=True)

    show = add_command(
        sub,
        "show",
        help="print the first documents of a corpus",
        description=_SPEC_HELP,
        handler=_show,
        runtime=("seed",),
    )
    _add_spec(show)
    show.add_argument("--n", type=positive_int, default=3, help="documents to print (default 3)")

    stats = add_command(
        sub,
        "stats",
        help="read a whole corpus (or its first --limit documents) and count it",
        description=_SPEC_HELP + " Reading every document also checks that each file is "
        "valid UTF-8 and well formed before a long harvest starts, and a whole pass over "
        "pydocs fills its cache (see docs/corpora.md).",
        handler=_stats,
        runtime=("seed",),
    )
    _add_spec(stats)
    stats.add_argument(
        "--limit", type=positive_int, default=None, help="stop after this many documents"
    )

    concepts = add_command(
        sub,
        "concepts",
        help="write labelled concept sentences with their twins as JSON lines",
        description="Write N generated sentences of one split, each with its sentence-level "
        "labels, character spans and counterfactual/control twins, one JSON object a line.",
        handler=_concepts,
        runtime=("seed",),
    )
    add_config_flags(concepts, ConceptsConfig)
    concepts.add_argument("--out", required=True, help="output .jsonl file (written atomically)")
    concepts.add_argument("--force", action="store_true", help="replace an existing --out")


_SPEC_HELP = (
    "CORPUS is pydocs, concepts[:train|heldout][:N], hf:NAME[:SPLIT], or a .txt/.jsonl/"
    ".parquet file, folder or glob (quote globs). --seed drives the generated concepts corpus."
)


def _add_spec(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", metavar="CORPUS", help="the corpus spec")
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
    stats = corpus_stats(corpus, limit=args.limit)
    result = dataclasses.asdict(stats) | {"seconds": round(stats.seconds, 3)}
    emit(
        args,
        result,
        f"{stats.corpus}: {stats.documents} documents, {stats.words} words, {stats.chars} "
        f"characters ({'whole corpus' if stats.complete else 'first documents only'}, "
        f"read in {stats.seconds:.1f} s)",
    )
    return 0


def _concepts(args: argparse.Namespace) -> int:
    config = config_from_args(ConceptsConfig, args)
    written = write_concepts(args.out, config, force=args.force)
    result = {
        "out": str(written.path),
        "sentences": written.sentences,
        "twins": written.twins,
        "split": config.split,
        "seed": config.seed,
        "template_families": list(written.template_families),
    }
    emit(
        args,
        result,
        f"wrote {written.sentences} {config.split} sentences ({written.twins} twins, "
        f"{len(written.template_families)} template families) to {written.path}",
    )
    return 0
