"""Chorus cards: the sentence, token highlighting (escaped) and the Markdown form."""

from __future__ import annotations

from polysemy.report.chorus import ChorusCard, Context, card_html, card_markdown, highlight


def card(text: str | None) -> ChorusCard:
    return ChorusCard(
        neuron=17, effective_features=4.23, baseline=6.07,
        voices=((3, 0.41), (12, 0.22), (40, 0.09)), error_share=0.12,
        contexts=(Context(3, 5, 101, 2.5, text), Context(12, 2, 7, 1.25, None)),
    )  # fmt: skip


def test_small_voices_keep_a_size() -> None:
    c = card(None)
    c = ChorusCard(**{**c.__dict__, "voices": ((3, 0.41), (12, 0.004))})
    assert "feature 3 (41%) and feature 12 (0.4%)" in c.sentence()


def test_sentence_names_a_chorus_never_one_concept() -> None:
    assert card(None).sentence() == (
        "Neuron 17 is a chorus of about 4.2 features (effective number; rotation baseline "
        "6.1); its strongest voices are feature 3 (41%), feature 12 (22%) and feature 40 "
        "(9%), and which one you hear depends on context:"
    )
    assert "12% of this neuron's activation" in card(None).error_line()


def test_highlight_marks_the_token_and_escapes_the_rest() -> None:
    assert highlight("a <b> [[bank]] & c") == "a &lt;b&gt; <mark>bank</mark> &amp; c"
    assert highlight("no marker") == "no marker"


def test_card_html_and_markdown() -> None:
    html = card_html(card("the river [[bank]] was"))
    assert '<div class="chorus" id="neuron-17">' in html
    assert "the river <mark>bank</mark> was" in html
    assert "row 7 (activation 1.25; the store holds no text)" in html
    assert "feature 3 (dominates 5 of the top rows)" in html
    md = card_markdown(card("the river [[bank]] was"))
    assert "the river **bank** was" in md and "SAE error line" in md


def test_cards_pick_best_reconstructed_neurons_and_skip_silent_rows(tmp_path) -> None:
    import json

    from polysemy.report.chorus import chorus_cards

    (tmp_path / "analysis.json").write_text(json.dumps({
        "format": "polysemy.analysis/1", "kind": "neurons", "inputs": {},
        "summary": {"baseline": {"effective_features_median": 9.5}},
    }))  # fmt: skip
    neurons = [
        {"neuron": 0, "effective_features": 3.0, "error_share": 0.5, "features": [[1, 0.3]]},
        {"neuron": 1, "effective_features": 2.0, "error_share": 0.1, "features": [[4, 0.6]]},
    ]
    ctx = lambda f, a, text=None: {"feature": f, "contexts": [  # noqa: E731
        {"row": 10 + f, "activation": a, "contribution": a, **({"text": text} if text else {})}
    ]}  # fmt: skip
    contexts = [
        {"neuron": 0, "groups": [ctx(1, 1.0)]},
        {"neuron": 1, "groups": [ctx(4, 0.0), ctx(5, 2.0, "a [[b]] c")]},
    ]
    (tmp_path / "neurons.json").write_text(json.dumps(neurons))
    (tmp_path / "contexts.json").write_text(json.dumps(contexts))
    cards = chorus_cards(tmp_path, cards=1)
    # A neuron never seen firing comes after those that were, whatever its error share.
    neurons[0]["error_share"] = 0.01
    contexts[0]["groups"] = [ctx(1, -0.5)]
    (tmp_path / "neurons.json").write_text(json.dumps(neurons))
    (tmp_path / "contexts.json").write_text(json.dumps(contexts))
    assert [c.neuron for c in chorus_cards(tmp_path, cards=2)] == [1, 0]
    assert [c.neuron for c in cards] == [1]  # lower error share, and seen firing
    assert cards[0].baseline == 9.5
    assert [(c.feature, c.text) for c in cards[0].contexts] == [(5, "a [[b]] c")]
    assert "<mark>b</mark>" in card_html(cards[0])
