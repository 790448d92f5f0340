"""Policy behaviour: spec validation, serialisation, warm starts, feedback kinds."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from learning_helpers import ACTIONS, make_examples

import agent_lightning.learning as learning
from agent_lightning.learning import (
    Action,
    LearningError,
    LoggedDecision,
    Policy,
    PolicyFormatError,
    SpecError,
    UniformPolicy,
    _serialize,
    make_policy,
)


def test_all_is_sorted_and_complete():
    assert learning.__all__ == sorted(learning.__all__)
    public = {n for n in dir(learning) if not n.startswith("_")}
    modules = {"candidates", "errors", "exploration", "featurizers", "learners", "ope", "policy",
               "simulation", "types"}  # fmt: skip
    assert public - modules == set(learning.__all__)


def test_make_policy_validation_names_the_bad_key():
    with pytest.raises(SpecError, match="^colour"):
        make_policy({"colour": "blue"})
    with pytest.raises(SpecError, match="learner.kind"):
        make_policy({"learner": "deep_magic"})
    with pytest.raises(SpecError, match="exploration"):
        make_policy({"exploration": {"kind": "squarecb", "gama": 3}})
    with pytest.raises(SpecError, match="warm_start"):
        make_policy({"warm_start": "telepathy"})
    with pytest.raises(SpecError, match="seed"):
        make_policy({"seed": "zero"})
    with pytest.raises(SpecError, match="seed: must be a non-negative integer, got -1"):
        make_policy({"seed": -1})  # numpy would say only "expected non-negative integer"
    with pytest.raises(SpecError, match="featurizer"):
        make_policy({"featurizer": {"kind": "hashing", "n_features": 1000}})
    assert issubclass(SpecError, ValueError) and issubclass(SpecError, LearningError)


def test_spec_from_the_docs_builds():
    p = make_policy(
        {"featurizer": "hashing", "learner": "linucb",
         "exploration": {"kind": "squarecb", "gamma": 50}, "warm_start": "zero_shot", "seed": 0}
    )  # fmt: skip
    d = p.decide({"text": "my card has not arrived"}, ACTIONS)
    assert sum(d.probabilities.values()) == pytest.approx(1.0)
    assert p.greedy({"text": "my card has not arrived"}, ACTIONS) == "card_arrival"


def test_zero_shot_prior_names_the_matching_action_and_scores_are_similarities():
    p = make_policy({"exploration": "greedy"})
    ctx = {"text": "I want to change my PIN"}
    assert p.greedy(ctx, ACTIONS) == "change_pin"
    none = make_policy({"warm_start": "none", "exploration": "greedy"})
    assert set(none.decide(ctx, ACTIONS).scores.values()) == {0.0}


def test_corrupt_and_foreign_bytes_raise_clear_errors():
    data = make_policy().to_bytes()
    with pytest.raises(PolicyFormatError, match="not an agent-lightning policy"):
        Policy.from_bytes(b"PK\x03\x04 a zip file")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    with pytest.raises(PolicyFormatError, match="corrupt"):
        Policy.from_bytes(bytes(flipped))
    with pytest.raises(PolicyFormatError, match="truncated|corrupt"):
        Policy.from_bytes(data[: len(data) // 2])


def test_newer_format_version_asks_for_an_upgrade():
    data = bytearray(make_policy().to_bytes())
    struct.pack_into(">H", data, len(_serialize.MAGIC), _serialize.FORMAT_VERSION + 1)
    newer = _serialize.FORMAT_VERSION + 1
    with pytest.raises(PolicyFormatError, match=rf"version {newer}.*upgrade agent-lightning"):
        Policy.from_bytes(bytes(data))


def test_format_is_not_pickle():
    data = make_policy().to_bytes()
    assert data.startswith(b"AGLPOLICY\n")
    assert b"\x80\x04\x95" not in data[:200]  # no pickle protocol header in the metadata


def test_correction_feedback_teaches_the_right_action():
    p = make_policy({"exploration": "greedy", "seed": 1})
    ctx = {"text": "change where my parcel goes"}
    before = p.decide(ctx, ACTIONS).scores
    assert p.greedy(ctx, ACTIONS) == "change_pin"
    logs = [LoggedDecision(ctx, tuple(ACTIONS), "change_pin", 1.0, 0.0, "card_arrival")] * 3
    learned = p.clone().learn(logs)
    assert learned.greedy(ctx, ACTIONS) == "card_arrival"
    s = learned.decide(ctx, ACTIONS).scores
    # Both halves of the label were used.
    assert s["change_pin"] < before["change_pin"] and s["card_arrival"] > before["card_arrival"]


def test_bandit_reward_only_moves_the_taken_action():
    p = make_policy({"exploration": "greedy"})
    ctx = {"text": "where is my parcel"}
    before = p.decide(ctx, ACTIONS).scores
    after = p.clone().learn([LoggedDecision(ctx, tuple(ACTIONS), "top_up_failed", 0.5, 1.0)])
    s = after.decide(ctx, ACTIONS).scores
    assert s["top_up_failed"] > before["top_up_failed"]
    for a in ACTIONS:
        if a.id != "top_up_failed":
            assert s[a.id] == pytest.approx(before[a.id])


# Words of every intent, so that every action has a non-zero prior score to push down.
MIXED = "new card pin, top up money, exchange rate, close account"


def _ranked(policy, ctx):
    scores = policy.decide(ctx, ACTIONS).scores
    return sorted(scores, key=scores.get, reverse=True), scores


@pytest.mark.parametrize("k", [0, 1, 2])
def test_a_correction_pushes_down_the_top_ranked_wrong_actions(k):
    p = make_policy({"exploration": "greedy", "hard_negatives": k})
    ctx = {"text": MIXED}
    ranking, before = _ranked(p, ctx)
    chosen, right = ranking[0], ranking[-1]  # the worst-ranked one is the right answer
    log = LoggedDecision(ctx, tuple(ACTIONS), chosen, 1.0, 0.0, right)
    _, after = _ranked(p.clone().learn([log]), ctx)
    negatives = ranking[1 : 1 + k]  # the highest-ranked others, skipping the chosen one
    for a in ACTIONS:
        if a.id in negatives or a.id == chosen:
            assert after[a.id] < before[a.id], a.id
        elif a.id == right:
            assert after[a.id] > before[a.id]
        else:
            assert after[a.id] == pytest.approx(before[a.id]), a.id


def test_each_examples_rows_reach_the_learner_together_and_in_log_order():
    # Learners that keep only their newest rows (KNNMemory) or learn in order (IWRegression)
    # must not see a batch's hard negatives bunched after every example's own rows.
    p = make_policy({"exploration": "greedy", "hard_negatives": 2})
    seen: list[str] = []
    learn = p.learner.learn
    p.learner.learn = lambda X, ids, t, w=None, observed=None: (
        seen.extend(ids),
        learn(X, ids, t, w, observed=observed),
    )
    examples = make_examples(3, seed=8)
    logs = []
    for ctx, label in examples:
        wrong = next(a.id for a in ACTIONS if a.id != label)
        logs.append(LoggedDecision(ctx, tuple(ACTIONS), wrong, 0.5, 0.0, label))
    p.learn(logs)
    # Per example: the chosen action, the correction, then its 2 hard negatives.
    assert len(seen) == 3 * 4
    for i, (_, label) in enumerate(examples):
        block = seen[4 * i : 4 * i + 4]
        assert block[0] == logs[i].action_id and block[1] == label
        assert label not in block[2:] and logs[i].action_id not in block[2:]


def test_one_right_action_reads_a_success_as_a_label():
    ctx = {"text": MIXED}
    plain = make_policy({"exploration": "greedy", "hard_negatives": 2})
    ranking, before = _ranked(plain, ctx)
    log = LoggedDecision(ctx, tuple(ACTIONS), ranking[0], 1.0, 1.0)
    # A plain bandit reward says nothing about the other actions...
    _, after = _ranked(plain.clone().learn([log]), ctx)
    assert all(after[a] == pytest.approx(before[a]) for a in ranking[1:])
    # ...but when exactly one action can be right, a success rules out the runners-up.
    single = make_policy({"exploration": "greedy", "hard_negatives": 2, "one_right_action": True})
    _, after = _ranked(single.clone().learn([log]), ctx)
    assert after[ranking[1]] < before[ranking[1]] and after[ranking[2]] < before[ranking[2]]
    assert after[ranking[3]] == pytest.approx(before[ranking[3]])
    # A failure is not a label, even then.
    failed = LoggedDecision(ctx, tuple(ACTIONS), ranking[0], 1.0, 0.0)
    _, after = _ranked(single.clone().learn([failed]), ctx)
    assert all(after[a] == pytest.approx(before[a]) for a in ranking[1:])


def test_hard_negative_settings_are_validated_and_saved():
    for bad in (-1, 65, "3", True):
        with pytest.raises(SpecError, match="hard_negatives"):
            make_policy({"hard_negatives": bad})
    p = make_policy({"hard_negatives": 5, "one_right_action": True})
    q = Policy.from_bytes(p.to_bytes())
    assert (q.hard_negatives, q.one_right_action) == (5, True)
    assert make_policy().hard_negatives == 3  # the product default


def test_apprentice_imitates_rules_then_learns_where_they_are_wrong():
    def rules(context, actions):
        return "terminate_account" if "close" in context.get("text", "") else "card_arrival"

    p = make_policy({"warm_start": "rules", "exploration": "greedy"}, rules=rules)
    assert p.greedy({"text": "exchange rate for euro"}, ACTIONS) == "card_arrival"  # imitation
    assert p.greedy({"text": "close it"}, ACTIONS) == "terminate_account"
    wrong = {"text": "exchange rate for euro"}
    logs = [LoggedDecision(wrong, tuple(ACTIONS), "card_arrival", 1.0, 0.0, "exchange_rate")] * 5
    learned = p.clone().learn(logs)
    assert learned.greedy(wrong, ACTIONS) == "exchange_rate"
    assert learned.greedy({"text": "close it"}, ACTIONS) == "terminate_account"
    with pytest.raises(PolicyFormatError, match="rules"):
        Policy.from_bytes(learned.to_bytes())
    again = Policy.from_bytes(learned.to_bytes(), rules=rules)
    assert again.greedy(wrong, ACTIONS) == "exchange_rate"
    with pytest.raises(SpecError, match="rules"):
        make_policy({"warm_start": "rules"})


def test_structured_context_features_reach_the_learner():
    p = make_policy({"warm_start": "none", "exploration": "greedy"})
    vip, normal = {"features": {"vip": 1.0}}, {"features": {"vip": 0.0}}
    logs = [LoggedDecision(vip, tuple(ACTIONS), "terminate_account", 1.0, 1.0)] * 3
    learned = p.clone().learn(logs)
    assert learned.greedy(vip, ACTIONS) == "terminate_account"
    assert learned.decide(normal, ACTIONS).scores["terminate_account"] == pytest.approx(0.0)


def test_action_features_enter_the_prior():
    p = make_policy({"exploration": "greedy"})
    acts = [Action("plan_a", features={"premium": 1.0}), Action("plan_b")]
    assert p.greedy({"features": {"premium": 1.0}}, acts) == "plan_a"


def test_decide_validates_actions():
    p = make_policy()
    with pytest.raises(SpecError):
        p.decide({"text": "x"}, [])
    with pytest.raises(SpecError, match="unique"):
        p.decide({"text": "x"}, [Action("a"), Action("a")])
    with pytest.raises(SpecError, match="excluded"):
        p.decide({"text": "x"}, [Action("a")], exclude=["a"])
    with pytest.raises(SpecError):
        LoggedDecision({"text": "x"}, (Action("a"),), "b", 0.5, 1.0)
    with pytest.raises(SpecError):
        LoggedDecision({"text": "x"}, (Action("a"),), "a", 0.0, 1.0)


def test_uniform_policy():
    u = UniformPolicy(seed=3)
    d = u.decide({"text": "x"}, ACTIONS, exclude=["change_pin"])
    assert d.probabilities == {a.id: 0.25 for a in ACTIONS if a.id != "change_pin"}
    chosen = [u.decide({}, ACTIONS).action_id for _ in range(200)]
    assert set(chosen) == {a.id for a in ACTIONS}
    loaded = Policy.from_bytes(u.to_bytes())
    assert isinstance(loaded, UniformPolicy)
    assert [loaded.decide({}, ACTIONS).action_id for _ in range(20)] == [
        u.decide({}, ACTIONS).action_id for _ in range(20)
    ]
    with pytest.raises(PolicyFormatError):
        UniformPolicy.from_bytes(make_policy().to_bytes())


def test_decide_with_77_actions_gives_a_full_distribution():
    # How fast this is, is measured by benchmarks/decide_bench.py, not here.
    p = make_policy()  # the default spec, on texts it has never featurized
    actions = [Action(f"intent_{i}_name") for i in range(77)]
    ids = {a.id for a in actions}
    for ctx, _ in make_examples(20, seed=3):
        d = p.decide({"text": ctx["text"] + " unique"}, actions)
        assert set(d.probabilities) == set(d.scores) == ids
        assert sum(d.probabilities.values()) == pytest.approx(1.0)
        assert min(d.probabilities.values()) >= 0.0
        assert d.action_id in ids and d.propensity == d.probabilities[d.action_id] > 0


def test_learning_is_deterministic_and_version_metadata_survives():
    logs = [LoggedDecision(c, tuple(ACTIONS), y, 1.0, 1.0) for c, y in make_examples(50, seed=9)]
    a = make_policy({"seed": 4}).learn(logs)
    a.version, a.metadata = 7, {"parent_version": 6}
    b = Policy.from_bytes(a.to_bytes())
    assert (b.version, b.metadata, b.examples_seen) == (7, {"parent_version": 6}, 50)
    ctxs = [c for c, _ in make_examples(10, seed=10)]
    np.testing.assert_allclose(a.scores(ctxs, ACTIONS), b.scores(ctxs, ACTIONS), atol=1e-9)


def test_thompson_probabilities_match_the_posterior_and_can_be_recomputed():
    from math import erf, sqrt

    from agent_lightning.learning import Thompson

    t = Thompson(scale=1.0, draws=20000)
    scores = np.array([[0.6, 0.5, -5.0]])
    widths = np.array([[0.1, 0.3, 0.0]])
    p = t.probabilities(scores, widths)
    # P(first beats second) for independent normals; the third can never win.
    z = (0.6 - 0.5) / sqrt(0.1**2 + 0.3**2)
    assert p[0, 0] == pytest.approx(0.5 * (1 + erf(z / sqrt(2))), abs=0.02)
    assert p[0, 2] == 0.0 and p.sum() == pytest.approx(1.0)
    assert np.array_equal(p, t.probabilities(scores, widths))  # a logged propensity is exact
    # Without widths (a learner with no posterior) it is greedy.
    assert t.probabilities(scores).tolist() == [[1.0, 0.0, 0.0]]
    with pytest.raises(SpecError, match="widths"):
        t.probabilities(scores, -widths)
    with pytest.raises(SpecError, match="draws"):
        make_policy({"exploration": {"kind": "thompson", "draws": 0}})


def test_thompson_explores_what_the_learner_is_unsure_of():
    p = make_policy({"exploration": {"kind": "thompson", "scale": 1.0}, "seed": 3})
    ctx = {"text": MIXED}
    fresh = p.decide(ctx, ACTIONS).probabilities
    assert sum(v > 0 for v in fresh.values()) >= 3  # nothing learned yet: wide posteriors
    # Many failures of the favourite here shrink its posterior and its share.
    favourite = max(fresh, key=fresh.get)
    logs = [LoggedDecision(ctx, tuple(ACTIONS), favourite, fresh[favourite], 0.0)] * 20
    learned = p.clone().learn(logs)
    after = learned.decide(ctx, ACTIONS)
    assert after.probabilities[favourite] < fresh[favourite]
    assert after.propensity == pytest.approx(
        learned.probabilities([ctx], ACTIONS)[0][[a.id for a in ACTIONS].index(after.action_id)]
    )
