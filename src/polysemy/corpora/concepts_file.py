"""The labelled `concepts` sentences written out as JSON lines, for tools outside polysemy.

One object a line: the sentence's text, labels, character spans, template family and split,
and (unless `twins=False`) its counterfactual and control twins (`ConceptSentence.to_dict`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polysemy import runfolder
from polysemy.corpora.concepts import Split, generate_concepts
from polysemy.validation import ParameterError, check_choice, check_int, configured


@dataclass(frozen=True)
class ConceptsConfig:
    """Which sentences to write."""

    n: int = 1000
    """Sentences to write."""
    split: Split = "train"
    """Template split: train, or heldout (template families never seen in train)."""
    seed: int = 0
    """Seed of the sentence stream (sentence i is the same whatever n is)."""
    twins: bool = True
    """Write each sentence's counterfactual and control twins with it."""

    def __post_init__(self) -> None:
        check_int("n", self.n, least=1)
        check_choice("split", self.split, ("train", "heldout"))
        check_int("seed", self.seed)
        if not isinstance(self.twins, bool):
            raise ParameterError("twins", "True or False", self.twins)


@dataclass(frozen=True)
class ConceptsFile:
    """What `write_concepts` wrote."""

    path: Path
    sentences: int
    twins: int
    template_families: tuple[str, ...]


def write_concepts(
    out: str | os.PathLike[str],
    config: ConceptsConfig | None = None,
    *,
    force: bool = False,
    **options: Any,
) -> ConceptsFile:
    """Write `config.n` sentences to the `.jsonl` file `out`, atomically (`config`'s fields
    may also come as keywords); an existing file is replaced only with `force=True`."""
    config = configured(ConceptsConfig, config, options)
    path = Path(out)
    if path.suffix != ".jsonl":
        raise ParameterError("out", "a path ending in .jsonl", str(out))
    if path.is_dir():
        raise IsADirectoryError(f"out {str(out)!r} is a folder; expected a .jsonl file")
    if path.exists() and not force:
        raise FileExistsError(f"out {str(out)!r} exists; pass force=True to replace it")
    sentences = generate_concepts(
        config.n, seed=config.seed, split=config.split, twins=config.twins
    )
    lines = [json.dumps(s.to_dict(), ensure_ascii=False) for s in sentences]
    runfolder.atomic_write_text(path, "\n".join(lines) + "\n")
    return ConceptsFile(
        path=path,
        sentences=len(sentences),
        twins=sum(len(s.twins) for s in sentences),
        template_families=tuple(sorted({s.template_family for s in sentences})),
    )
