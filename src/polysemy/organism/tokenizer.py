"""A byte-level BPE tokenizer trained on the organism's own corpus.

Trained with the `tokenizers` library (GPT-2's scheme: bytes first, so no text is ever
unknown; merges learned from the corpus) and wrapped as a transformers
`PreTrainedTokenizerFast`, so `save_pretrained` writes a folder that `AutoTokenizer` (and
`ps.load_model`) reads back. One special token, `<|endoftext|>`, separates documents in the
packed training stream and serves as bos, eos and unk.

>>> tok = train_tokenizer(["the cat sat on the mat"] * 50, vocab_size=300)  # doctest: +SKIP
>>> tok.decode(tok("the cat")["input_ids"])                                  # doctest: +SKIP
'the cat'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from polysemy.validation import ParameterError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["EOS", "train_tokenizer"]

EOS = "<|endoftext|>"
"""The one special token: document separator, bos, eos and unk."""


def train_tokenizer(texts: Iterable[str], *, vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of exactly `vocab_size` tokens learned from `texts`.

    Raises ParameterError (naming `vocab_size`) when the texts are too small to learn that
    many merges: a larger vocabulary would hold tokens that never occur.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,  # a merge seen once is noise, not vocabulary
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    got = tok.get_vocab_size()
    if got < vocab_size:
        raise ParameterError(
            "vocab_size",
            f"<= {got} for this corpus (it has too little text to learn more merges; "
            "read more of it or choose a smaller vocabulary)",
            vocab_size,
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        model_max_length=1_000_000_000,  # packed windows are cut by the trainer, not here
    )
