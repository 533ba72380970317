"""Rows traced back to text: the token window around a stored row, for example lists.

A harvested store keeps, per row, its token id (`tokens`), its document (`doc`) and its
position in that document's tokenization (`pos`). Harvesting stores each chunk of a document
as consecutive rows, so the window of a row is read from the store itself: the rows around it
that belong to the same document at consecutive positions. A window is cut where the chunk
ends (the next chunk may sit elsewhere in the store), so it can be shorter than asked near
chunk boundaries. Tokens are printed with the store's saved tokenizer; the row's own token is
marked `[[...]]`.

>>> windows = TextWindows(store, window=8)                       # doctest: +SKIP
>>> windows.text(torch.tensor([17, 4096]))                       # doctest: +SKIP
['... the river [[bank]] was ...', ...]
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from polysemy.activations.store import ActivationStore


def require_traces(store: ActivationStore, why: str) -> None:
    """Refuse a store without `tokens`/`doc`/`pos` (or without a tokenizer) where texts are
    needed: one line naming the way out."""
    if not store.traced:
        raise ValueError(
            f"acts {str(store.path)!r} has no tokens/doc/pos columns (not harvested from text), "
            f"so {why} cannot be traced to text; pass texts=False (--no-texts) to run without "
            "texts"
        )
    if store.tokenizer_path is None:
        raise ValueError(
            f"acts {str(store.path)!r} has no tokenizer/ folder, so {why} cannot be printed as "
            "text; pass texts=False (--no-texts) to run without texts"
        )


class TextWindows:
    """Token windows of store rows (whole trace columns held: 16 bytes a row)."""

    def __init__(self, store: ActivationStore, *, window: int) -> None:
        require_traces(store, "examples")
        from transformers import AutoTokenizer

        assert store.tokens is not None and store.doc is not None and store.pos is not None
        self.tokens, self.doc, self.pos = store.tokens, store.doc, store.pos.long()
        self.window = window
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(store.tokenizer_path))
        # One id -> piece table, so a window costs list lookups, not tokenizer calls.
        self.pieces: list[str] = list(
            self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        )

    def window_ids(self, rows: Int[Tensor, " n"]) -> tuple[Tensor, Tensor]:
        """`(ids [n, 2w+1], valid [n, 2w+1])`: token ids around each row (the row at column
        w), valid where the neighbour is the same document at the expected position."""
        n_rows = self.tokens.numel()
        offsets = torch.arange(-self.window, self.window + 1)  # (2w+1,)
        idx = rows.long()[:, None] + offsets  # (n, 2w+1)
        inside = (idx >= 0) & (idx < n_rows)
        safe = idx.clamp(0, n_rows - 1)
        valid = (
            inside
            & (self.doc[safe] == self.doc[rows.long()][:, None])
            & (self.pos[safe] == self.pos[rows.long()][:, None] + offsets)
        )
        return self.tokens[safe].long(), valid

    def text(self, rows: Int[Tensor, " n"]) -> list[str]:
        """The window of each row as text, the row's own token marked `[[...]]`."""
        if rows.numel() == 0:
            return []
        ids, valid = self.window_ids(rows)
        w, out = self.window, []
        to_string = self.tokenizer.convert_tokens_to_string
        for row_ids, row_valid in zip(ids.tolist(), valid.tolist(), strict=True):
            before = [self.pieces[t] for t, v in zip(row_ids[:w], row_valid[:w], strict=True) if v]
            after = [
                self.pieces[t]
                for t, v in zip(row_ids[w + 1 :], row_valid[w + 1 :], strict=True)
                if v
            ]
            center = to_string([self.pieces[row_ids[w]]]).strip()
            out.append(
                f"{to_string(before)} [[{center}]] {to_string(after)}".strip()
                if before or after
                else f"[[{center}]]"
            )
        return out
