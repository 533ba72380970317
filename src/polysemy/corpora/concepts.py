"""The built-in `concepts` corpus: generated English sentences with ground-truth labels.

Each sentence is rendered from a template and a sampled state (which word fills each concept
slot, tense, grammatical number, negation, question), so its labels are known exactly:

- sentence-level `labels`: one entry per concept in `CONCEPTS`; a word (its lemma) for the
  content concepts present, `None` for those absent, and a value for the four grammatical
  concepts that every sentence has (`tense`: past/present, `plurality`: singular/plural of
  the subject, `negation`: negated/affirmative, `question`: question/statement);
- token-level `spans`: character spans (`start`, `end`, `concept`, `value`) of the words that
  carry each concept, so any tokenizer can map them to its tokens (`token_labels`);
- `twins`: one *counterfactual* twin per labelled concept, re-rendered from the same state
  with exactly that concept changed (dog -> cat, past -> present, ...), and one *control*
  twin in which a free word with no label is swapped for a synonym (labels unchanged).

Templates come from 20 template families of four frames each, wrapped in optional time,
place and weather adjuncts (544 templates). The families in `HELDOUT_FAMILIES` make the
`heldout` split and never appear in `train`: a shift in sentence structure, not just new
samples. Sentence `i` of (`seed`, `split`) is generated from its own random stream, so it is
the same however many sentences are asked for and in which order.

>>> s = generate_concepts(1, seed=0)[0]
>>> s.text
'At night, the librarians cooked ten lemons for dinner in the museum.'
>>> s.labels["profession"], s.labels["tense"], s.twin("tense").text
('librarian', 'past', 'At night, the librarians cook ten lemons for dinner in the museum.')
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from polysemy.corpora import _concept_data as data
from polysemy.corpora.corpus import Corpus
from polysemy.validation import check_int

if TYPE_CHECKING:  # annotations only: the corpora do not need torch to run
    pass

VERSION = 1
"""Version of the generator; bumped whenever the same seed would give different sentences."""

DEFAULT_SENTENCES = 100_000
"""Sentences in `open_corpus("concepts")` when the spec gives no count: about 1.2M MiniLM
tokens, enough for a default harvest; generated lazily, so an unread tail costs nothing."""

Split = Literal["train", "heldout"]
SPLITS: tuple[Split, ...] = ("train", "heldout")

CONTENT_CONCEPTS = (
    "animal", "profession", "food", "color", "emotion", "sentiment", "number", "place",
    "sport", "vehicle", "weather", "time", "clothing",
)  # fmt: skip
GRAMMAR_CONCEPTS = ("tense", "plurality", "negation", "question")
CONCEPTS: tuple[str, ...] = CONTENT_CONCEPTS + GRAMMAR_CONCEPTS
"""Every concept a sentence is labelled with, in a fixed order."""

GRAMMAR_VALUES: dict[str, tuple[str, str]] = {
    "tense": ("present", "past"),
    "plurality": ("singular", "plural"),
    "negation": ("affirmative", "negated"),
    "question": ("statement", "question"),
}
"""The two values of each grammatical concept (off, on)."""

# How often each grammatical feature is on: balanced tense and number; negation and
# questions rarer, as in natural text, but frequent enough for probes.
_P_ON = {"tense": 0.5, "plurality": 0.5, "negation": 0.3, "question": 0.25}

_SENTIMENT = {w: pol for pol, words in data.SENTIMENT_WORDS.items() for w in words}
# Vocabulary per content concept: label value -> ordered choices.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "animal": tuple(sg for sg, _ in data.ANIMALS),
    "profession": tuple(sg for sg, _ in data.PROFESSIONS),
    "food": tuple(sg for sg, _ in data.FOODS),
    "color": data.COLORS,
    "emotion": data.EMOTIONS,
    "sentiment": tuple(_SENTIMENT),  # the words; the label is their polarity
    "number": data.NUMBERS,
    "place": tuple(n for n, _ in data.PLACES),
    "sport": data.SPORTS,
    "vehicle": tuple(sg for sg, _ in data.VEHICLES),
    "weather": data.WEATHER,
    "time": tuple(n for n, _ in data.TIMES),
    "clothing": data.CLOTHING,
}
"""The words each content concept is filled with (label value = the word, or its polarity)."""

_PLURAL = dict(data.ANIMALS + data.PROFESSIONS + data.FOODS + data.VEHICLES)
_PREP = dict(data.PLACES + data.TIMES)
# Slot name in a template -> concept it fills.
_SLOT_CONCEPT = {
    "food": "food", "animal": "animal", "vehicle": "vehicle", "num": "number",
    "color": "color", "emotion": "emotion", "sent": "sentiment", "sport": "sport",
    "weather": "weather", "cloth": "clothing", "place": "place", "time": "time",
}  # fmt: skip
_TOKEN = re.compile(r"\{[^}]*\}|[^\s{}]+")


# ---- public results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """Characters `text[start:end]` carry `concept` with label `value`."""

    start: int
    """Index of the first character."""
    end: int
    """Index one past the last character."""
    concept: str
    """One of `CONCEPTS`."""
    value: str
    """The label value this word carries (e.g. `dog`, `past`, `negative`)."""


@dataclass(frozen=True)
class ConceptTwin:
    """A copy of a sentence with one edit: to one concept (counterfactual) or to none."""

    text: str
    """The edited sentence."""
    labels: Mapping[str, str | None]
    """Sentence-level labels; differ from the original's in `concept` only (none: control)."""
    spans: tuple[Span, ...]
    """Character spans of the concept words in `text`."""
    kind: Literal["counterfactual", "control"]
    """`counterfactual` changes exactly `concept`; `control` swaps an unlabelled word."""
    concept: str | None
    """The concept the edit targets; None for a control edit."""
    old: str
    """What was there: a label value, or the replaced free word for a control edit."""
    new: str
    """What is there now."""


@dataclass(frozen=True)
class ConceptSentence:
    """One generated sentence with its labels, spans and twins."""

    index: int
    """Position in its (seed, split) stream."""
    text: str
    """The sentence."""
    labels: Mapping[str, str | None]
    """Sentence-level labels: every concept in `CONCEPTS`, None where absent."""
    spans: tuple[Span, ...]
    """Character spans of the words that carry each concept (several per concept possible)."""
    template_id: str
    """Template this sentence was rendered from, e.g. `meal/0/time-first`."""
    template_family: str
    """Template family (the unit of the train / held-out split)."""
    split: Split
    """`train` or `heldout`."""
    twins: tuple[ConceptTwin, ...] = field(default=())
    """One counterfactual twin per labelled concept, then one control twin (may be empty)."""

    def twin(self, concept: str) -> ConceptTwin:
        """The counterfactual twin that changes `concept`."""
        for t in self.twins:
            if t.concept == concept:
                return t
        present = [t.concept for t in self.twins if t.concept]
        raise ValueError(f"sentence {self.index} has no twin for {concept!r}; it has {present}")

    @property
    def control(self) -> ConceptTwin:
        """The control twin (an edit that changes no label)."""
        for t in self.twins:
            if t.kind == "control":
                return t
        raise ValueError(f"sentence {self.index} was generated without twins")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (spans as [start, end, concept, value] lists)."""

        def spans(ss: tuple[Span, ...]) -> list[list[Any]]:
            return [[s.start, s.end, s.concept, s.value] for s in ss]

        return {
            "index": self.index,
            "text": self.text,
            "labels": dict(self.labels),
            "spans": spans(self.spans),
            "template_id": self.template_id,
            "template_family": self.template_family,
            "split": self.split,
            "twins": [
                {
                    "text": t.text,
                    "labels": dict(t.labels),
                    "spans": spans(t.spans),
                    "kind": t.kind,
                    "concept": t.concept,
                    "old": t.old,
                    "new": t.new,
                }
                for t in self.twins
            ],
        }


@dataclass(frozen=True)
class ConceptTemplate:
    """A sentence template: a frame of a template family wrapped in an adjunct."""

    template_id: str
    """`family/frame/adjunct`, e.g. `meal/0/time-first`."""
    template_family: str
    """Family of frames; the unit of the held-out split."""
    split: Split
    """`heldout` when its family is in `HELDOUT_FAMILIES`, else `train`."""
    text: str
    """The template in the slot syntax of `_concept_data`."""
    concepts: tuple[str, ...]
    """Content concepts its slots fill (the grammatical four are in every sentence)."""
    free_slots: int
    """Number of free (synonym) slots, the targets of control edits."""


# ---- templates ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _all_templates() -> tuple[ConceptTemplate, ...]:
    out: list[ConceptTemplate] = []
    for family, frames in data.FRAMES.items():
        split: Split = "heldout" if family in data.HELDOUT_FAMILIES else "train"
        for f, frame in enumerate(frames):
            frame_concepts = _template_concepts(frame)
            for name, prefix, suffix in data.ADJUNCTS:
                extra = _template_concepts(prefix + suffix)
                if set(extra) & set(frame_concepts):
                    continue  # one slot per concept: skip adjuncts the frame already has
                text = prefix + frame + suffix
                out.append(
                    ConceptTemplate(
                        template_id=f"{family}/{f}/{name}",
                        template_family=family,
                        split=split,
                        text=text,
                        concepts=tuple(c for c in CONTENT_CONCEPTS if c in frame_concepts + extra),
                        free_slots=text.count("{~"),
                    )
                )
    return tuple(out)


def _template_concepts(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for token in _TOKEN.findall(text):
        if not token.startswith("{") or token.startswith("{~"):
            continue
        head, *rest = token[1:-1].split(":")
        if head == "S":
            found.append(rest[0])
            if "color" in rest[1:]:
                found.append("color")
        elif head in _SLOT_CONCEPT:
            found.append(_SLOT_CONCEPT[head])
    return tuple(found)


def concept_templates(split: Split | None = None) -> list[ConceptTemplate]:
    """All templates, or those of one split, in a fixed order."""
    if split is not None:
        _check_split(split)
    return [t for t in _all_templates() if split is None or t.split == split]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")


# ---- state and rendering --------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    template: ConceptTemplate
    words: Mapping[str, str]  # content concept -> chosen word
    grammar: Mapping[str, bool]  # grammatical concept -> on?
    free: tuple[int, ...]  # chosen option of each free slot


def _labels(state: _State) -> dict[str, str | None]:
    labels: dict[str, str | None] = dict.fromkeys(CONCEPTS)
    for concept, word in state.words.items():
        labels[concept] = _SENTIMENT[word] if concept == "sentiment" else word
    for concept, on in state.grammar.items():
        labels[concept] = GRAMMAR_VALUES[concept][int(on)]
    return labels


@dataclass
class _Piece:
    text: str
    tags: tuple[tuple[str, str], ...] = ()
    attach: bool = False  # no space before it
    article: bool = False  # resolves to a/an from the next piece


def _render(state: _State) -> tuple[str, tuple[Span, ...]]:
    g = state.grammar
    past, plural, negated, question = g["tense"], g["plurality"], g["negation"], g["question"]
    tense_tag = ("tense", GRAMMAR_VALUES["tense"][int(past)])
    pieces: list[_Piece] = []
    free_index = 0
    aux_slot: int | None = None  # where a question's fronted auxiliary goes
    prev_end = 0
    text = state.template.text
    for match in _TOKEN.finditer(text):
        token = match.group()
        attach = match.start() == prev_end and match.start() > 0
        prev_end = match.end()
        if not token.startswith("{"):
            pieces.append(_Piece(token, attach=attach))
            continue
        head, *rest = token[1:-1].split(":")
        if head.startswith("~"):
            options = head[1:].split("|")
            pieces.append(_Piece(options[state.free[free_index]], attach=attach))
            free_index += 1
        elif head == "S":
            concept = rest[0]
            word = state.words[concept]
            if question:
                # Questions front the auxiliary ("Did the dog ...", "Were the dogs ..."):
                # keep its place, filled in once the verb group is known.
                aux_slot = len(pieces)
                pieces.append(_Piece(""))
            pieces.append(_Piece("the"))
            if "color" in rest[1:]:
                pieces.append(_Piece(state.words["color"], (("color", state.words["color"]),)))
            noun = _PLURAL[word] if plural else word
            number_tag = ("plurality", GRAMMAR_VALUES["plurality"][int(plural)])
            pieces.append(_Piece(noun, ((concept, word), number_tag)))
        elif head == "V":
            _verb_group(pieces, rest[0], past, plural, negated, aux_slot, tense_tag)
        elif head == "BE_IT":
            pieces.append(_Piece("was" if past else "is", (tense_tag,)))
        elif head == "a":
            pieces.append(_Piece("a", article=True))
        else:
            concept = _SLOT_CONCEPT[head]
            word = state.words[concept]
            value = _SENTIMENT[word] if concept == "sentiment" else word
            if concept in ("place", "time"):
                pieces.append(_Piece(_PREP[word], attach=attach))
                pieces.append(_Piece(word, ((concept, value),)))
            else:
                surface = _PLURAL[word] if "pl" in rest else word
                pieces.append(_Piece(surface, ((concept, value),), attach=attach))
    pieces.append(_Piece("?" if question else ".", attach=True))
    if question:
        pieces[-1].tags = (("question", "question"),)
    return _join(pieces)


def _verb_group(
    pieces: list[_Piece],
    lemma: str,
    past: bool,
    plural: bool,
    negated: bool,
    aux_slot: int | None,
    tense_tag: tuple[str, str],
) -> None:
    """Append the verb group; in a question (`aux_slot` set) also fill the fronted auxiliary."""
    question = aux_slot is not None
    neg = _Piece("not", (("negation", "negated"),))
    if lemma == "be":
        finite = ("were" if plural else "was") if past else ("are" if plural else "is")
        aux_text, rest = finite, []
    else:
        base, third, past_form = data.VERBS[lemma]
        if not question and not negated:
            finite = past_form if past else (base if plural else third)
            pieces.append(_Piece(finite, (tense_tag,)))
            return
        aux_text = "did" if past else ("do" if plural else "does")
        rest = [_Piece(base)]
    if aux_slot is not None:
        pieces[aux_slot] = _Piece(aux_text, (tense_tag, ("question", "question")))
        if negated:
            pieces.append(neg)
    else:
        pieces.append(_Piece(aux_text, (tense_tag,)))
        if negated:
            pieces.append(neg)
    pieces.extend(rest)


def _join(pieces: list[_Piece]) -> tuple[str, tuple[Span, ...]]:
    for i, p in enumerate(pieces):
        if p.article:
            nxt = next((q.text for q in pieces[i + 1 :] if q.text), "")
            p.text = "an" if nxt[:1].lower() in "aeiou" and nxt else "a"
    out: list[str] = []
    spans: list[Span] = []
    length = 0
    first = True
    for p in pieces:
        if not p.text:
            continue
        if not first and not p.attach:
            out.append(" ")
            length += 1
        piece = p.text[0].upper() + p.text[1:] if first else p.text
        first = False
        for concept, value in p.tags:
            spans.append(Span(length, length + len(piece), concept, value))
        out.append(piece)
        length += len(piece)
    order = {c: i for i, c in enumerate(CONCEPTS)}
    spans.sort(key=lambda s: (s.start, order[s.concept]))
    return "".join(out), tuple(spans)


# ---- sampling -------------------------------------------------------------------------------


def _sample_state(rng: random.Random, template: ConceptTemplate) -> _State:
    words = {c: rng.choice(VOCABULARY[c]) for c in template.concepts}
    grammar = {c: rng.random() < _P_ON[c] for c in GRAMMAR_CONCEPTS}
    free = tuple(rng.randrange(len(opts)) for opts in _free_options(template))
    return _State(template, words, grammar, free)


def _free_options(template: ConceptTemplate) -> list[list[str]]:
    return [tok[2:-1].split("|") for tok in _TOKEN.findall(template.text) if tok.startswith("{~")]


def _twins(rng: random.Random, state: _State) -> tuple[ConceptTwin, ...]:
    labels = _labels(state)
    out: list[ConceptTwin] = []
    for concept in CONCEPTS:
        old = labels[concept]
        if old is None:
            continue
        if concept in GRAMMAR_VALUES:
            grammar = dict(state.grammar)
            grammar[concept] = not grammar[concept]
            edited = replace(state, grammar=grammar)
        else:
            word = state.words[concept]
            choices: tuple[str, ...]
            if concept == "sentiment":
                # The label is the polarity, so the edit must cross to the other polarity.
                choices = data.SENTIMENT_WORDS["negative" if old == "positive" else "positive"]
            else:
                choices = tuple(w for w in VOCABULARY[concept] if w != word)
            words = dict(state.words)
            words[concept] = rng.choice(choices)
            edited = replace(state, words=words)
        new_labels = _labels(edited)
        text, spans = _render(edited)
        new = new_labels[concept]
        assert new is not None and new != old
        out.append(ConceptTwin(text, new_labels, spans, "counterfactual", concept, old, new))
    options = _free_options(state.template)
    slot = rng.randrange(len(options))
    choice = rng.choice([i for i in range(len(options[slot])) if i != state.free[slot]])
    free = (*state.free[:slot], choice, *state.free[slot + 1 :])
    text, spans = _render(replace(state, free=free))
    old_word, new_word = options[slot][state.free[slot]], options[slot][choice]
    out.append(ConceptTwin(text, labels, spans, "control", None, old_word, new_word))
    return tuple(out)


def concept_sentence(
    index: int, *, seed: int = 0, split: Split = "train", twins: bool = True
) -> ConceptSentence:
    """Sentence `index` of the (`seed`, `split`) stream; `twins=False` skips the twins."""
    _check_split(split)
    check_int("index", index, least=0)
    # A private stream per sentence: sentence i never depends on how many came before.
    rng = random.Random(f"polysemy.concepts/{VERSION}/{seed}/{split}/{index}")
    template = rng.choice(concept_templates(split))
    state = _sample_state(rng, template)
    text, spans = _render(state)
    return ConceptSentence(
        index=index,
        text=text,
        labels=_labels(state),
        spans=spans,
        template_id=template.template_id,
        template_family=template.template_family,
        split=split,
        twins=_twins(rng, state) if twins else (),
    )


def generate_concepts(
    n: int, *, seed: int = 0, split: Split = "train", start: int = 0, twins: bool = True
) -> list[ConceptSentence]:
    """Sentences `start .. start+n-1` of the (`seed`, `split`) stream, with their twins."""
    check_int("n", n, least=0)
    check_int("seed", seed)
    check_int("start", start, least=0)
    _check_split(split)
    return [
        concept_sentence(i, seed=seed, split=split, twins=twins) for i in range(start, start + n)
    ]


# ---- as a corpus ----------------------------------------------------------------------------


def parse_concepts_spec(spec: str) -> tuple[Split, int]:
    """(split, n) of `concepts[:train|heldout][:N]`."""
    parts = spec.split(":")
    if parts[0] != "concepts" or len(parts) > 3:
        raise ValueError(f"corpus must look like concepts[:train|heldout][:N]; got {spec!r}")
    split: str = "train"
    n = DEFAULT_SENTENCES
    for part in parts[1:]:
        if part in SPLITS:
            split = part
        elif part.isdigit() and int(part) > 0:
            n = int(part)
        else:
            raise ValueError(
                f"corpus must look like concepts[:train|heldout][:N] with N >= 1; "
                f"got {part!r} in {spec!r}"
            )
    return split, n  # type: ignore[return-value]


def concepts_corpus(spec: str = "concepts", *, seed: int = 0) -> Corpus:
    """The texts of the first N sentences of a split (no twins) as a corpus."""
    split, n = parse_concepts_spec(spec)
    name = f"concepts(split={split}, n={n}, seed={seed}, version={VERSION})"

    def documents() -> Iterator[str]:
        for i in range(n):
            yield concept_sentence(i, seed=seed, split=split, twins=False).text

    return Corpus(name, documents)
