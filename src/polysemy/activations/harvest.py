"""Harvest: text -> a model held fixed -> one activation store per site.

The pipeline, and what each stored row means:

1. Documents are tokenized in bulk with the fast tokenizer, *without* special tokens.
2. Each document is cut into consecutive, non-overlapping chunks of `seq_len - n_special`
   tokens (126 for BERT-style models, which add `[CLS]` and `[SEP]`), and every chunk becomes
   one sequence `[CLS] chunk [SEP]`, exactly as the model would see that text alone. Chunks of
   different documents are never packed into one sequence: BERT-style attention is
   bidirectional with absolute positions, so a neighbour document would change every
   activation. Long documents therefore fill whole sequences; the last, shorter chunk of each
   document is the only source of padding.
3. To cut that padding, chunks are grouped in windows of `window_batches` batches, sorted
   by length (stable, so the order is deterministic), and cut into batches padded only to the
   longest chunk of the batch. A batch holds `batch_size * seq_len` token slots, so short
   chunks travel many to a batch (the matmuls stay large). With an attention mask, padding
   does not change the real tokens' activations (up to float rounding), so this is compute
   saved, not meaning changed.
4. The forward pass stops right after the last requested site (early exit), inside
   `torch.inference_mode`.
5. Only real text tokens are stored: special tokens (`[CLS]`, `[SEP]`, BOS/EOS) and padding
   are skipped. Each row keeps `tokens` (its token id), `doc` (index of its document in the
   corpus, counting empty ones) and `pos` (index of the token in that document's tokenization
   without special tokens). The position inside its sequence follows:
   `pos % chunk_len + len(prefix)`.

Harvesting is deterministic: the same corpus and settings produce byte-identical shards, which
is what lets `resume=True` continue a killed run: the batch stream is rebuilt, the rows already
in complete shards are skipped (batches wholly inside them are not even run) and the rest is
appended to the same shards.

Under torchrun (`WORLD_SIZE` > 1) every rank builds the same batch stream (and so cuts the
same `tokens` rows from it) and runs batches `rank, rank + N, rank + 2N, ...` of it: the very
batches, padding included, that one process would run, so the rows are those of the
one-process store, in another order. Each rank writes its own shards
(`rank-<r>-shard-<i>.safetensors`) and progress manifest (`rank-<r>.manifest.json`); once
every rank is done, rank 0 writes the one `manifest.json`, whose `row_order` is "by rank"
(rank 0's rows, then rank 1's, ...). A killed rank is resumed with `resume=True` under the
same world size: each rank redoes only what its own manifest lacks, to the same bytes. The
price of this identity is that every rank tokenizes the whole stream it cuts (cheap beside
the forward passes; see benchmarks/harvest_distributed.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from polysemy.activations.shards import DTYPES, MANIFEST, StoreDtype, is_store_member, read_manifest
from polysemy.activations.store import DEFAULT_SHARD_ROWS, StoreWriter, join_parts, list_parts
from polysemy.models.loading import LoadedModel
from polysemy.models.sites import Site, get_site, read_sites
from polysemy.progress import progress_bar
from polysemy.runfolder import ACTIVATIONS, check_out, detect_kind
from polysemy.sae import distributed as dist_utils
from polysemy.sae.distributed import DistInfo
from polysemy.validation import ParameterError, check_choice, check_int

logger = logging.getLogger(__name__)

_TOKENIZE_DOCS = 256  # documents per bulk call of the fast tokenizer
_MAX_PAD = 0.1  # most padding a chunk may get, as a share of its batch's width
_MIN_FILL = 0.5  # share of the token budget a batch fills before _MAX_PAD may close it
HEARTBEAT_BATCHES = dist_utils.HEARTBEAT_BATCHES
"""Under torchrun, the ranks compare failure flags every this many batches of each rank, so a
rank that fails stops the others within that many batches."""
_JOB, _HINT = "harvest", "every rank's complete shards are kept: rerun with resume"
PACKING = "chunks"
"""How text becomes sequences (recorded in each manifest's source; see the module docstring)."""


@dataclass(frozen=True)
class HarvestConfig:
    """What to harvest and how; everything that changes the stored rows is recorded."""

    sites: tuple[str, ...]
    """Site names to store (one store each), e.g. `("encoder.layer.3.output",)`."""
    tokens: int
    """Rows to store per site (text tokens, specials and padding excluded); fewer if the
    corpus runs out."""
    seq_len: int = 128
    """Tokens per sequence including special tokens; at most the model's position limit."""
    batch_size: int = 64
    """Sequences of `seq_len` per forward pass: each pass holds `batch_size * seq_len` token
    slots, so batches of shorter sequences hold proportionally more of them."""
    dtype: StoreDtype = "float16"
    """Dtype of the stored activations (the model itself runs in its own dtype)."""
    shard_rows: int = DEFAULT_SHARD_ROWS
    """Rows per shard file."""
    window_batches: int = 16
    """Batches' worth of text tokens (`window_batches * batch_size * seq_len`) sorted by
    length together to cut padding."""
    early_exit: bool = True
    """Stop each forward pass after the last requested site."""

    def __post_init__(self) -> None:
        # A list (or any sequence) of names is as good as a tuple; one bare name is a mistake
        # that would otherwise be read letter by letter.
        if isinstance(self.sites, str) or not isinstance(self.sites, Sequence):
            raise ParameterError("sites", "a sequence of site names", self.sites)
        object.__setattr__(self, "sites", tuple(self.sites))
        if not self.sites or not all(isinstance(s, str) and s for s in self.sites):
            raise ParameterError("sites", "at least one site name", self.sites)
        if len(set(self.sites)) != len(self.sites):
            raise ParameterError("sites", "names that do not repeat", list(self.sites))
        for name in ("tokens", "seq_len", "batch_size", "shard_rows", "window_batches"):
            check_int(name, getattr(self, name), least=1)
        check_choice("dtype", self.dtype, DTYPES)


class HarvestBatch(NamedTuple):
    """One padded batch of sequences and the trace of the rows it yields."""

    input_ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    keep: Bool[Tensor, "batch seq"]
    """True at real text tokens: the rows to store, in row-major order."""
    tokens: Int[Tensor, " rows"]
    doc: Int[Tensor, " rows"]
    pos: Int[Tensor, " rows"]
    documents_seen: int
    """Documents read from the corpus when this batch was made (for progress reports)."""

    @property
    def rows(self) -> int:
        return int(self.tokens.shape[0])


class HarvestResult(NamedTuple):
    """What `harvest` wrote."""

    stores: dict[str, Path]
    """Site name -> its store folder."""
    rows: int
    """Rows in each store."""
    rows_resumed: int
    """Rows that were already in complete shards and were skipped (0 without resume)."""
    documents: int
    """Documents read from the corpus."""
    exhausted: bool
    """True when the corpus ran out before `tokens` rows."""
    seconds: float
    """Wall time of the harvest loop (model loading excluded)."""
    tokens_per_second: float
    """Rows harvested (not skipped) per second of `seconds`."""


class _Template(NamedTuple):
    prefix: list[int]
    suffix: list[int]
    pad: int


def special_template(tokenizer: Any) -> tuple[list[int], list[int], int]:
    """(prefix ids, suffix ids, pad id) the tokenizer wraps one sequence in.

    Found by encoding a probe with and without special tokens, so it works for any tokenizer
    (`[CLS] ... [SEP]` for BERT, nothing for GPT-2, `<s> ...` for Llama-style models).
    """
    probe = "hello world"
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    start = next(
        (i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare), None
    )
    if not bare or start is None:
        raise ValueError(
            f"cannot tell the special tokens of tokenizer {type(tokenizer).__name__}: "
            f"{probe!r} encodes to {full} with them and {bare} without"
        )
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return full[:start], full[start + len(bare) :], int(pad)


def iter_batches(
    tokenizer: Any,
    documents: Iterable[str],
    *,
    seq_len: int,
    batch_size: int,
    window_batches: int = 16,
) -> Iterator[HarvestBatch]:
    """The deterministic stream of padded batches that `harvest` runs (see module docstring).

    Memory stays constant: documents are tokenized `_TOKENIZE_DOCS` at a time and about
    `window_batches * batch_size * seq_len` tokens are held.
    """
    prefix, suffix, pad = special_template(tokenizer)
    chunk_len = seq_len - len(prefix) - len(suffix)
    if chunk_len < 1:
        raise ValueError(
            f"seq_len must be > {len(prefix) + len(suffix)} (the special tokens of this "
            f"tokenizer); got {seq_len}"
        )
    template = _Template(prefix, suffix, pad)
    n_special = len(prefix) + len(suffix)
    budget = batch_size * seq_len  # token slots per forward pass, padding included
    window = budget * window_batches  # text tokens sorted together
    pool: list[tuple[int, int, list[int]]] = []  # (doc, pos of first token, token ids)
    pooled = 0  # text tokens in pool
    seen = 0
    for doc_ids in _tokenized(tokenizer, documents):
        doc = seen
        seen += 1
        for start in range(0, len(doc_ids), chunk_len):
            pool.append((doc, start, doc_ids[start : start + chunk_len]))
        pooled += len(doc_ids)
        if pooled >= window:
            groups = _cut(pool, budget, n_special)
            # The last, least full batch waits for the next window's chunks.
            pool = groups.pop()
            pooled = sum(len(c[2]) for c in pool)
            for group in groups:
                yield _make_batch(group, template, seen)
    if pool:
        for group in _cut(pool, budget, n_special):
            yield _make_batch(group, template, seen)


def _cut(
    pool: list[tuple[int, int, list[int]]], budget: int, n_special: int
) -> list[list[tuple[int, int, list[int]]]]:
    """Sort chunks longest first (stable: ties keep corpus order) and cut them into batches
    of at most `budget` padded token slots, each padded to its first (longest) chunk."""
    pool = sorted(pool, key=lambda c: -len(c[2]))
    groups: list[list[tuple[int, int, list[int]]]] = []
    i = 0
    while i < len(pool):
        width = len(pool[i][2]) + n_special
        # Close the batch at the budget, or earlier where chunks get so much shorter that
        # padding them to `width` would waste more than `_MAX_PAD` of their slots.
        end = min(i + max(budget // width, 1), len(pool))
        j = i + 1
        while j < end and (
            (j - i) * width < _MIN_FILL * budget
            or len(pool[j][2]) + n_special >= (1 - _MAX_PAD) * width
        ):
            j += 1
        groups.append(pool[i:j])
        i = j
    return groups


def _tokenized(tokenizer: Any, documents: Iterable[str]) -> Iterator[list[int]]:
    group: list[str] = []
    for text in documents:
        if not isinstance(text, str):
            raise TypeError(f"documents must be strings; got {type(text).__name__}")
        group.append(text)
        if len(group) == _TOKENIZE_DOCS:
            yield from tokenizer(group, add_special_tokens=False, verbose=False)["input_ids"]
            group = []
    if group:
        yield from tokenizer(group, add_special_tokens=False, verbose=False)["input_ids"]


def _make_batch(
    chunks: list[tuple[int, int, list[int]]], template: _Template, seen: int
) -> HarvestBatch:
    n_pre, n_suf = len(template.prefix), len(template.suffix)
    width = n_pre + max(len(c[2]) for c in chunks) + n_suf
    ids = torch.full((len(chunks), width), template.pad, dtype=torch.long)
    mask = torch.zeros((len(chunks), width), dtype=torch.long)
    keep = torch.zeros((len(chunks), width), dtype=torch.bool)
    tokens: list[int] = []
    docs: list[int] = []
    poss: list[int] = []
    for row, (doc, start, chunk) in enumerate(chunks):
        n = len(chunk)
        ids[row, : n_pre + n + n_suf] = torch.tensor(template.prefix + chunk + template.suffix)
        mask[row, : n_pre + n + n_suf] = 1
        keep[row, n_pre : n_pre + n] = True
        tokens.extend(chunk)
        docs.extend([doc] * n)
        poss.extend(range(start, start + n))
    return HarvestBatch(
        input_ids=ids,
        attention_mask=mask,
        keep=keep,
        tokens=torch.tensor(tokens, dtype=torch.int32),
        doc=torch.tensor(docs, dtype=torch.int64),
        pos=torch.tensor(poss, dtype=torch.int32),
        documents_seen=seen,
    )


def store_paths(out: str | os.PathLike[str], sites: Sequence[str]) -> dict[str, Path]:
    """Where each site's store goes: `out` itself for one site, `out/<site>/` for several."""
    out = Path(out)
    if len(sites) == 1:
        return {sites[0]: out}
    return {site: out / site for site in sites}


def check_outs(paths: Mapping[str, Path], *, resume: bool, force: bool) -> None:
    """Refuse, before any work, store folders that cannot be written: a file, a folder holding
    another kind of run (unless `force`), or an existing store without `resume` or `force`."""
    parents = {path.parent for path in paths.values()} if len(paths) > 1 else set()
    for parent in parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"out must be a folder; got the existing file {str(parent)!r}")
        found = detect_kind(parent) if parent.is_dir() else None
        if found is not None and not force:
            raise ValueError(
                f"out {str(parent)!r} holds a {found} run; with several sites it must be a "
                "folder of one store per site: choose another folder or pass force=True"
            )
    for path in paths.values():
        check_out(path, ACTIVATIONS, force=force)
        holds_store = path.is_dir() and detect_kind(path) == ACTIVATIONS.format
        if holds_store and not resume and not force:
            raise ValueError(
                f"out {str(path)!r} already holds an activation store; pass resume=True to "
                "continue it or force=True to replace it"
            )


def _clear_foreign(paths: Mapping[str, Path]) -> None:
    """With force: remove what the out folders hold when it is not a store (a store is
    replaced by `StoreWriter` itself)."""
    folders = set(paths.values()) | (
        {p.parent for p in paths.values()} if len(paths) > 1 else set()
    )
    for path in folders:
        kind = detect_kind(path) if path.is_dir() else None
        if kind is not None and kind != ACTIVATIONS.format:
            shutil.rmtree(path)


def harvest(
    loaded: LoadedModel,
    documents: Iterable[str],
    config: HarvestConfig,
    *,
    out: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    corpus: str | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
) -> HarvestResult:
    """Run `documents` through `loaded.model` and store every site of `config.sites`.

    `out` is a folder (one site: the store itself; several: `out/<site>/` each) or a mapping
    site -> folder. `corpus` is the corpus description recorded in each manifest (default:
    the `name` of a `Corpus`). Each store gets `tokenizer/`. With `resume`, stores left by a
    killed harvest with the same settings are continued to the same result as an
    uninterrupted run; an existing store is otherwise refused unless `force` (which replaces
    whatever `out` holds, once the model, sites and corpus are known good).

    Under torchrun (`WORLD_SIZE` > 1, or a process group already initialised) every process
    calls this alike: each runs its share of the batches, and rank 0 writes the manifest once
    all are done (module docstring). Every rank returns the job's `rows`, `rows_resumed` and
    rate; a failure on any rank raises on every rank.

    Raises ValueError for an unknown or non-per-token site, a `seq_len` beyond the model's
    positions, an `out` holding something else, or a corpus without a single token (in which
    case nothing is written).
    """
    if corpus is None:
        corpus = str(getattr(documents, "name", "documents"))
    if loaded.tokenizer is None:
        raise ValueError(f"model {loaded.name!r} has no tokenizer; harvesting needs one")
    sites = [get_site(loaded, s) for s in config.sites]
    for site in sites:
        if not site.per_token:
            raise ValueError(
                f"site {site.name!r} has one vector per sequence, not per token; harvest a "
                "per-token site (e.g. a layer's output)"
            )
    max_pos = getattr(getattr(loaded.model, "config", None), "max_position_embeddings", None)
    if isinstance(max_pos, int) and config.seq_len > max_pos:
        raise ValueError(
            f"seq_len must be <= {max_pos} for model {loaded.name!r}; got {config.seq_len}"
        )
    paths = (
        {s: Path(p) for s, p in out.items()}
        if isinstance(out, Mapping)
        else store_paths(out, config.sites)
    )
    if sorted(paths) != sorted(config.sites):
        raise ValueError(
            f"out must map exactly the sites {list(config.sites)}; got {sorted(paths)}"
        )
    info = dist_utils.init_from_env(next(iter(loaded.model.parameters())).device)
    world, rank = info.world_size, info.rank
    # Every rank checks; all learn whether any refused, so none waits on a collective alone.
    refused = dist_utils.first_error(
        lambda: _check_outs_ranked(paths, info, resume=resume, force=force)
    )
    dist_utils.raise_if_any(info, refused, "refused out")

    model = loaded.model
    device = next(iter(model.parameters())).device
    store_dtype = DTYPES[config.dtype]
    batches = iter_batches(
        loaded.tokenizer,
        documents,
        seq_len=config.seq_len,
        batch_size=config.batch_size,
        window_batches=config.window_batches,
    )
    # Peek before creating any folder: an empty corpus must leave nothing behind. (Every
    # rank builds the same stream, so every rank raises here alike.)
    first = next(batches, None)
    if first is None or first.rows == 0:
        raise ValueError(f"corpus {corpus!r} holds no text tokens; nothing to harvest")
    if info.is_main:
        failed = dist_utils.first_error(lambda: _prepare(paths, info, resume=resume, force=force))
    else:
        failed = None
    dist_utils.raise_if_any(info, failed, "could not prepare out")

    def source(site: Site) -> dict[str, Any]:
        return {
            "model": loaded.name,
            "site": site.name,
            "corpus": corpus,
            "seq_len": config.seq_len,
            "packing": PACKING,
            "skipped": "special tokens and padding",
            "batch_size": config.batch_size,
            "window_batches": config.window_batches,
            "tokens_requested": config.tokens,
            "model_dtype": str(next(iter(model.parameters())).dtype).removeprefix("torch."),
        }

    keep_now: list[Tensor] = []

    def select(value: Tensor) -> Tensor:
        # (batch, seq, width) -> (rows, width): real tokens only, row-major, converted once.
        return value[keep_now[0]].to("cpu", store_dtype)

    stream = _chain(first, batches)
    start_time = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            writers = {
                s.name: stack.enter_context(
                    StoreWriter(
                        paths[s.name],
                        d_in=s.width,
                        dtype=config.dtype,
                        source=source(s),
                        shard_rows=config.shard_rows,
                        resume=resume,
                        part=(rank, world) if info.enabled else None,
                    )
                )
                for s in sites
            }
            # Rows of this rank's slice already in its complete shards.
            committed = {name: w.rows_committed for name, w in writers.items()}
            skip = min(committed.values())
            if skip:
                logger.info("resuming: %d rows already stored per site", skip)
            if info.is_main:
                for w in writers.values():
                    w.copy_tokenizer(loaded.tokenizer)
            target = config.tokens
            done = 0  # rows of the whole stream consumed so far (every rank's batches)
            mine = 0  # rows of this rank's batches consumed so far (stored or skipped)
            documents_seen = 0
            bar = stack.enter_context(
                progress_bar(
                    target,
                    desc="harvest",
                    unit="tok",
                    enabled=progress and info.is_main,
                    initial=min(skip, target) if not info.enabled else 0,
                )
            )
            reader = stack.enter_context(
                read_sites(loaded, sites, early_exit=config.early_exit, select=select)
            )
            stack.enter_context(torch.inference_mode())
            beat = HEARTBEAT_BATCHES * world
            for index, batch in enumerate(stream):
                if done >= target:
                    break
                if info.enabled and index and index % beat == 0:
                    # Every rank walks the same stream, so all reach this point together.
                    dist_utils.stop_if_a_rank_failed(info, job=_JOB, hint=_HINT)
                documents_seen = batch.documents_seen
                n = min(batch.rows, target - done)
                done += n
                if index % world != rank:
                    continue  # another rank's batch
                lo, hi = mine, mine + n  # rows of this rank's slice this batch contributes
                mine = hi
                if hi <= skip:
                    continue  # wholly inside complete shards of every store: not even run
                keep_now[:] = [batch.keep.to(device)]
                values = reader.run(
                    input_ids=batch.input_ids.to(device),
                    attention_mask=batch.attention_mask.to(device),
                )
                for name, w in writers.items():
                    # Each writer drops what it already holds (stores can differ by a shard
                    # when a kill fell between two of them).
                    a = max(committed[name] - lo, 0)
                    if a < n:
                        w.append(
                            values[name][a:n],
                            tokens=batch.tokens[a:n],
                            doc=batch.doc[a:n],
                            pos=batch.pos[a:n],
                        )
                # Rank 0 shows the whole job's progress, estimated from its own share.
                bar.update(min((hi - max(lo, skip)) * world, max(target - bar.n, 0)))
        rows = min(done, target)
        resumed = min(skip, mine)
        harvested = max(mine - skip, 0)
    except Exception as exc:
        # Tell the other ranks before failing, so they end with an error instead of waiting
        # (when they are gone already, the error of this rank is the one worth raising). A
        # rank stopped by another's failure does not: the others learned it already.
        if not isinstance(exc, dist_utils.PeerFailed):
            dist_utils.report_failure(info)
        raise
    harvested, resumed, _ = dist_utils.stop_if_a_rank_failed(
        info, [harvested, resumed, 0], job=_JOB, hint=_HINT
    )
    if info.enabled:
        joined = None
        if info.is_main:
            joined = dist_utils.first_error(lambda: [join_parts(p, world) for p in paths.values()])
        dist_utils.raise_if_any(info, joined, "could not write the manifest")
    seconds = time.perf_counter() - start_time
    exhausted = rows < target
    if exhausted:
        logger.warning("corpus %r ran out after %d of %d tokens", corpus, rows, target)
    return HarvestResult(
        stores=dict(paths),
        rows=rows,
        rows_resumed=resumed,
        documents=documents_seen,
        exhausted=exhausted,
        seconds=seconds,
        tokens_per_second=harvested / seconds if seconds > 0 else 0.0,
    )


def _check_outs_ranked(
    paths: Mapping[str, Path], info: DistInfo, *, resume: bool, force: bool
) -> None:
    """`check_outs`, knowing the parts a killed harvest under torchrun leaves behind."""
    for path in paths.values():
        parts = list_parts(path)
        whole = path.is_dir() and (path / MANIFEST).is_file() and not parts
        if info.enabled and resume and whole and not force:
            raise ValueError(
                f"out {str(path)!r} holds a store harvested by one process; resume it with one "
                "process, or pass force=True to replace it"
            )
        if parts and not force:
            if not resume:
                raise ValueError(
                    f"out {str(path)!r} holds a harvest under torchrun ({len(parts)} rank "
                    "parts); pass resume=True to continue it or force=True to replace it"
                )
            part = read_manifest(path, parts[0].name)["source"].get("part", {})
            world = part.get("world_size", "?")
            if not info.enabled and not (path / MANIFEST).is_file():
                raise ValueError(
                    f"out {str(path)!r} holds an unfinished harvest under torchrun; resume it "
                    f"under torchrun with --nproc-per-node {world}"
                )
            if info.enabled and world != info.world_size:
                raise ValueError(
                    f"out {str(path)!r} was harvested by {world} ranks; resume it with "
                    f"--nproc-per-node {world} (got {info.world_size}), or pass force=True"
                )
    unfinished = {s: p for s, p in paths.items() if not (list_parts(p) and resume and not force)}
    check_outs(unfinished, resume=resume, force=force)


def _prepare(paths: Mapping[str, Path], info: DistInfo, *, resume: bool, force: bool) -> None:
    """Rank 0, before any rank writes: clear what a fresh start replaces."""
    if force:
        _clear_foreign(paths)
    if not info.enabled or resume:
        return
    for path in paths.values():
        if not path.is_dir():
            continue
        # A fresh harvest under torchrun replaces the whole store, every rank's files at once.
        with contextlib.suppress(FileNotFoundError):
            (path / MANIFEST).unlink()
        for member in path.iterdir():
            if is_store_member(member.name) and member.name != "tokenizer":
                if member.is_dir():
                    shutil.rmtree(member)
                else:
                    member.unlink()


def _chain(first: HarvestBatch, rest: Iterator[HarvestBatch]) -> Iterator[HarvestBatch]:
    yield first
    yield from rest
