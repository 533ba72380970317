"""Hugging Face datasets as a corpus: `hf:NAME[:SPLIT]` or `hf:NAME:CONFIG:SPLIT`.

The `datasets` package is an optional extra (`pip install 'polysemy[datasets]'`) and is
imported only here, when such a spec is opened. The dataset is streamed, so nothing larger
than a shard is held in memory. Offline (HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1, or no
network) it works only from the local cache; otherwise it fails with one clear line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from polysemy.corpora.corpus import Corpus

logger = logging.getLogger(__name__)


def parse_hub_spec(spec: str) -> tuple[str, str | None, str]:
    """(name, config, split) of an `hf:` spec; split defaults to `train`."""
    if not spec.startswith("hf:"):
        raise ValueError(f"a Hugging Face corpus must start with 'hf:'; got {spec!r}")
    parts = spec[3:].split(":")
    if any(not p for p in parts) or len(parts) > 3:
        raise ValueError(
            f"corpus must look like hf:NAME, hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT; got {spec!r}"
        )
    if len(parts) == 1:
        return parts[0], None, "train"
    if len(parts) == 2:
        return parts[0], None, parts[1]
    return parts[0], parts[1], parts[2]


def hub_corpus(spec: str, *, text_field: str = "text") -> Corpus:
    """A streamed Hugging Face dataset split; its `text_field` column gives the documents."""
    name, config, split = parse_hub_spec(spec)
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"corpus {spec!r} needs the optional `datasets` package: "
            "pip install 'polysemy[datasets]'"
        ) from None
    offline = any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )

    try:
        dataset: Any = datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as exc:  # datasets raises many types; all mean "cannot open"
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        hint = " (offline: only cached datasets can be read)" if offline else ""
        raise ValueError(f"cannot open Hugging Face dataset {spec!r}{hint}: {first}") from None
    label = f"hf({name}{':' + config if config else ''}:{split})"

    def rows() -> Iterator[Any]:
        # A streamed dataset restarts from its first row on each iteration. The network can
        # fail mid-stream too: that is one line naming the dataset, not a traceback.
        iterator = iter(dataset)
        while True:
            try:
                row = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise ValueError(f"reading Hugging Face dataset {spec!r} failed: {first}") from None
            yield row

    def documents() -> Iterator[str]:
        for number, row in enumerate(rows()):
            if text_field not in row:
                raise ValueError(
                    f"dataset {spec!r} has no column {text_field!r}; columns are {sorted(row)}"
                )
            text = row[text_field]
            if text is None:
                continue
            if not isinstance(text, str):
                raise ValueError(
                    f"dataset {spec!r} row {number}: column {text_field!r} must hold strings; "
                    f"got {type(text).__name__}"
                )
            if text.strip():
                yield text

    return Corpus(label, documents)
