"""Verdicts on claims: `supported`, `partial`, `refuted` or `inconclusive`, and one sentence.

Each test compares an interval with its pre-registered threshold: it *passes* when the whole
interval is at or above the threshold, *fails* when the whole interval is below it, and is
*undecided* when the interval straddles it. The edit test passes when the edits analysis
calls the concept's edits an effect, fails when it calls them no effect.

    core tests       held-out AUROC >= auroc; the concept's edits move the target
    secondary tests  shifted AUROC >= auroc; strongest-context precision >= precision;
                     recall >= recall; specificity >= specificity (a share of the other
                     concepts, compared as a number); a neuron's top feature share >=
                     dominance (when a neurons analysis is given)

    refuted        a core test fails
    inconclusive   no core test fails but one is undecided, or the core passes and a
                   secondary test is undecided while none fails
    partial        the core passes and a secondary test fails: the story holds on the
                   sample but does not travel, is not specific, or the neuron is a chorus
    supported      every test passes

Ablation is reported beside the verdict but does not enter it: its readout is a probe of the
concept at the last layer, a second interpretation that can be wrong on its own.
"""

from __future__ import annotations

from typing import Any, Literal

from polysemy.analysis.stats import Interval

ClaimVerdict = Literal["supported", "partial", "refuted", "inconclusive"]
Outcome = Literal["pass", "fail", "undecided"]


def against(interval: Interval, threshold: float) -> Outcome:
    """pass / fail / undecided of an interval against a threshold it must reach."""
    if interval.low >= threshold:
        return "pass"
    if interval.high < threshold:
        return "fail"
    return "undecided"


def edit_outcome(verdict: str) -> Outcome:
    return {"effect": "pass", "no effect": "fail"}.get(verdict, "undecided")  # type: ignore[return-value]


def decide(core: dict[str, Outcome], secondary: dict[str, Outcome]) -> ClaimVerdict:
    """The verdict from the tests' outcomes (module docstring)."""
    if "fail" in core.values():
        return "refuted"
    if "undecided" in core.values():
        return "inconclusive"
    if "fail" in secondary.values():
        return "partial"
    if "undecided" in secondary.values():
        return "inconclusive"
    return "supported"


_CALLED = {
    "supported": "supported",
    "partial": "only partly supported",
    "refuted": "refuted",
    "inconclusive": "inconclusive (the intervals cannot decide)",
}


def sentence(claim: Any, verdict: ClaimVerdict, evidence: dict[str, Any]) -> str:
    """One plain sentence: what the target does, and what calling it that concept comes to."""
    concept = claim.concept if claim.value is None else f"{claim.concept}={claim.value}"
    if claim.kind == "neuron":
        who, label = f"Neuron {claim.index}", f"the {concept} neuron"
    elif claim.kind == "feature":
        who, label = f"Feature {claim.index} of SAE {claim.sae}", f"the {concept} feature"
    else:
        who, label = f"The {claim.direction} direction", f"the {concept} direction"
    held = evidence.get("heldout")
    if held is None:
        return f"{who} was not tested ({evidence.get('skipped')}); {label} is inconclusive."
    top = held["top_precision"]
    parts = [f"{who} fires for {concept} in {top['estimate']:.0%} of its {top['n']} "
             f"strongest held-out contexts (AUROC {held['auroc']['estimate']:.2f}"]  # fmt: skip
    shifted = evidence.get("shifted")
    if shifted is not None:
        parts.append(f", {shifted['auroc']['estimate']:.2f} on new templates)")
    else:
        parts.append(")")
    chorus = evidence.get("chorus")
    if chorus:
        parts.append(f" and is a chorus of about {chorus['effective_features']:.0f} features")
    edits = evidence.get("edits")
    if edits is not None and edits.get("sensitivity", {}).get("verdict") != "effect":
        parts.append(f"; editing {concept} does not clearly move it")
    failed = [k for k, v in evidence.get("tests", {}).get("secondary", {}).items() if v == "fail"]
    if verdict == "partial" and failed:
        why = {
            "shifted_auroc": "it does not travel to new templates",
            "precision": "most of its strongest contexts are about something else",
            "recall": f"it misses most sentences with {concept}",
            "specificity": "edits of other concepts move it too"
            + (f" (most: {edits['leak']})" if edits and edits.get("leak") else ""),
            "dominance": "its activity is shared among many SAE features",
        }
        parts.append("; but " + " and ".join(why[k] for k in failed))
    return "".join(parts) + f"; calling it '{label}' is {_CALLED[verdict]}."
