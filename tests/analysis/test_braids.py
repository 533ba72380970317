"""braid_scores on a planted two-topic world: shared edges braided, unshared ones not, the
shuffled-context null apart; validation."""

from __future__ import annotations

import pytest
import torch

from polysemy.analysis.braids import braid_scores
from polysemy.validation import ParameterError


def two_topics(
    contexts: int = 120, seed: int = 0, pools: int = 2
) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Contexts of topic 0 use features 1-8, topic 1 features 9-16 (3 each); feature 0 is on
    everywhere, feature 17 only in topic 0. Edges: two shared (carried in both topics), two
    unshared (one topic each)."""
    g = torch.Generator().manual_seed(seed)
    topic = torch.arange(contexts) % 2
    active = torch.zeros(contexts, 20, dtype=torch.bool)
    for c in range(contexts):
        pool = 1 + 8 * (int(topic[c]) % pools) + torch.randperm(8, generator=g)[:3]
        active[c, pool] = True
    active[:, 0] = True
    active[topic == 0, 17] = True
    strength = 0.5 + torch.rand(4, contexts, generator=g)
    values = torch.stack([
        strength[0],                            # shared: feature 0 -> b in both topics
        strength[1] * (topic == 0),             # unshared: feature 17, topic 0 only
        -strength[2],                           # shared, inhibitory
        strength[3] * (topic == 1),             # unshared: feature 0 in topic 1 only
    ]).double()  # fmt: skip
    return values, active, [0, 17, 0, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_edges_braided_unshared_not(seed: int) -> None:
    values, active, up = two_topics(seed=seed)
    r = braid_scores(values, active, up, shuffles=20, seed=seed)
    assert r.braided.tolist() == [True, False, True, False]
    assert r.clusters.tolist() == [2, 1, 2, 1]
    assert r.braided_fraction.estimate == 0.5
    assert r.null.low > 0.9  # random context sets span both topics
    s = r.summary()
    assert set(s) >= {"braided_fraction", "ci", "null_ci"}


def test_one_topic_world_has_no_braids() -> None:
    values, active, up = two_topics(pools=1)  # both "topics" draw from features 1-8
    r = braid_scores(values, active, up, shuffles=10)
    assert not r.braided.any() and r.null.high == 0.0


def test_validation() -> None:
    values, active, up = two_topics()
    with pytest.raises(ParameterError, match="values must be"):
        braid_scores(values[:, :5], active, up)
    with pytest.raises(ParameterError, match="up must be 4 upstream features"):
        braid_scores(values, active, up[:2])
    with pytest.raises(ParameterError, match="link must be"):
        braid_scores(values, active, up, link=0.0)


def test_salient_features_find_the_topics_under_many_weak_ones() -> None:
    # Real sentences hold hundreds of active features: add 150 weak random ones per context
    # to the two-topic world. Whole sets then drown the topics and no edge is braided; the 6
    # most active features per context (the topic's, at 10x the mass) find the braids again.
    values, active, up = two_topics(seed=0)
    g = torch.Generator().manual_seed(5)
    mass = active.double() * 10
    noise = torch.rand(active.shape[0], 400, generator=g) < 150 / 400
    mass = torch.cat([mass, noise.double() * torch.rand(noise.shape, generator=g)], dim=1)
    whole = braid_scores(values, mass > 0, up, shuffles=5)
    assert not whole.braided.any()
    salient = braid_scores(values, mass, up, salient=6, shuffles=5)
    assert salient.braided.tolist() == [True, False, True, False]
    with pytest.raises(ParameterError, match="active must be summed activations"):
        braid_scores(values, mass > 0, up, salient=6)
