"""DataIngestionPipeline: per-record validation, redaction before storage, idempotency."""

from __future__ import annotations

import math

import pytest

from agent_lightning.ingestion import BatchTooLarge, DataIngestionPipeline
from agent_lightning.store import Store


@pytest.fixture
def pipeline(store: Store) -> DataIngestionPipeline:
    store.ensure_app("acme")
    return DataIngestionPipeline(store, max_batch=50)


def test_valid_records_are_stored_and_acknowledged(pipeline: DataIngestionPipeline) -> None:
    result = pipeline.ingest_events(
        "acme",
        [
            {"text": "where is my card?", "user_id": "u1", "session_id": "s1", "confidence": 0.7},
            {"text": "thanks", "intent_prediction": "gratitude", "feedback_score": 5},
        ],
    )
    assert result.rejected == []
    assert [a.status for a in result.accepted] == ["created", "created"]
    stored = pipeline.store.get_record("events", "acme", result.accepted[0].id)
    assert stored.text == "where is my card?" and stored.confidence == 0.7


def test_bad_records_are_refused_with_reasons_and_the_rest_is_kept(
    pipeline: DataIngestionPipeline,
) -> None:
    result = pipeline.ingest_events(
        "acme",
        [
            {"text": "ok 1"},
            {"text": "bad", "confidence": "very"},  # wrong type
            {"text": "bad", "colour": "blue"},  # unknown field
            "not an object",
            {"text": "bad", "confidence": 1.5},  # out of range
            {"text": "x" * 40_000},  # oversized string
            {"text": "ok 2"},
        ],
    )
    assert [a.index for a in result.accepted] == [0, 6]
    reasons = {r.index: r for r in result.rejected}
    assert sorted(reasons) == [1, 2, 3, 4, 5]
    assert "confidence" in reasons[1].message
    assert "colour" in reasons[2].message
    assert reasons[3].message == "each record must be a JSON object"
    assert all(r.reason == "invalid" for r in result.rejected)
    assert pipeline.store.count_records("events", "acme") == 2


def test_pii_is_redacted_before_it_is_stored(pipeline: DataIngestionPipeline) -> None:
    result = pipeline.ingest_events(
        "acme",
        [
            {
                "text": "my card 4111 1111 1111 1111 and mail jane.doe@example.com",
                "attributes": {"note": "call +44 20 7946 0958", "n": 3},
            }
        ],
    )
    row = pipeline.store.get_record("events", "acme", result.accepted[0].id)
    assert "4111" not in row.text and "jane.doe" not in row.text
    assert "<CREDIT_CARD>" in row.text and "<EMAIL>" in row.text
    assert "7946" not in row.attributes["note"] and row.attributes["n"] == 3
    assert row.pii_counts["CREDIT_CARD"] == 1 and row.pii_counts["EMAIL"] == 1
    assert result.pii_counts["PHONE"] == 1


def test_pii_in_action_descriptions_and_dict_keys_is_redacted_too(
    pipeline: DataIngestionPipeline,
) -> None:
    callback = "call the customer back on +1 415-555-2671 or mail john.smith@example.com"
    decisions = [
        _decision(
            id=f"d{i}",
            actions=[{"id": "card_lost", "description": callback}, {"id": "refund"}],
            context={"text": "lost card", "features": {"email=john.smith@example.com": 1.0}},
            attributes={"contacts": {"john.smith@example.com": "primary"}},
        )
        for i in range(2)  # the second meets the descriptions already scanned
    ]
    result = pipeline.ingest_decisions("acme", decisions)
    assert not result.rejected
    for i in range(2):
        row = pipeline.store.get_record("decisions", "acme", f"d{i}")
        assert [a["id"] for a in row.actions] == ["card_lost", "refund"]  # ids untouched
        stored = f"{row.actions} {row.context} {row.attributes}"
        assert "john.smith" not in stored and "555-2671" not in stored
        assert row.actions[0]["description"] == "call the customer back on <PHONE> or mail <EMAIL>"
        assert row.context["features"] == {"email=<EMAIL>": 1.0}
        assert row.pii_counts == {"PHONE": 1, "EMAIL": 3}
    assert result.pii_counts == {"PHONE": 2, "EMAIL": 6}


def test_client_ids_make_retries_idempotent_and_reuse_with_other_content_conflicts(
    pipeline: DataIngestionPipeline,
) -> None:
    batch = [{"id": "evt-1", "text": "hello"}, {"id": "evt-2", "text": "world"}]
    assert [a.status for a in pipeline.ingest_events("acme", batch).accepted] == [
        "created",
        "created",
    ]
    retry = pipeline.ingest_events("acme", batch)
    assert [a.status for a in retry.accepted] == ["duplicate", "duplicate"]
    clash = pipeline.ingest_events("acme", [{"id": "evt-1", "text": "different"}])
    assert clash.rejected[0].reason == "id_conflict"
    assert pipeline.store.count_records("events", "acme") == 2
    # A retry of a record carrying PII still matches: the hash is over what the client sent.
    pii = [{"id": "evt-3", "text": "mail me at a.b@example.org"}]
    pipeline.ingest_events("acme", pii)
    assert pipeline.ingest_events("acme", pii).accepted[0].status == "duplicate"


def test_batch_limit(pipeline: DataIngestionPipeline) -> None:
    with pytest.raises(BatchTooLarge):
        pipeline.ingest_events("acme", [{"text": "x"}] * 51)
    assert pipeline.store.count_records("events", "acme") == 0


def _decision(**extra) -> dict:
    return {
        "decision_point": "intent",
        "context": {"text": "lost card"},
        "actions": [{"id": "card_lost"}, {"id": "refund"}],
        "action_id": "card_lost",
        "propensity": 0.8,
        **extra,
    }


def test_rewards_need_a_known_decision_a_finite_value_in_range(
    pipeline: DataIngestionPipeline,
) -> None:
    decision = pipeline.ingest_decisions("acme", [_decision(id="d1")])
    assert decision.accepted[0].id == "d1"
    result = pipeline.ingest_rewards(
        "acme",
        [
            {"decision_id": "d1", "value": 1.0},
            {"decision_id": "nope", "value": 1.0},
            {"decision_id": "d1", "value": math.nan},
            {"decision_id": "d1", "value": math.inf},
            {"decision_id": "d1", "value": 7.0},
            {"value": 1.0},
            {"session_id": "s1", "value": 0.5},
        ],
    )
    assert [a.index for a in result.accepted] == [0, 6]
    reasons = {r.index: r.reason for r in result.rejected}
    assert reasons == {
        1: "unknown_decision",
        2: "invalid",
        3: "invalid",
        4: "reward_out_of_range",
        5: "invalid",
    }


def test_a_logged_decisions_policy_name_is_a_name_not_free_text(
    pipeline: DataIngestionPipeline,
) -> None:
    result = pipeline.ingest_decisions(
        "acme",
        [_decision(policy_name="support-ticket"), _decision(policy_name="session 8c1f <x>")],
    )
    assert [a.index for a in result.accepted] == [0]
    assert result.rejected[0].index == 1 and "policy_name" in result.rejected[0].message


def test_a_correction_must_name_an_action_the_decision_offered(
    pipeline: DataIngestionPipeline,
) -> None:
    # Stored, such a correction made every later learning task of the policy fail.
    pipeline.ingest_decisions("acme", [_decision(id="d1"), _decision(id="d2")])
    result = pipeline.ingest_rewards(
        "acme",
        [
            {"decision_id": "d1", "value": 0.0, "correct_action_id": "refund"},
            {"decision_id": "d2", "value": 0.0, "correct_action_id": "refnud"},
            {"session_id": "s1", "value": 0.0, "correct_action_id": "anything"},
        ],
    )
    assert [a.index for a in result.accepted] == [0, 2]
    (refused,) = result.rejected
    assert (refused.index, refused.reason) == (1, "unknown_action")
    assert "'refnud'" in refused.message and "(card_lost, refund)" in refused.message
    assert pipeline.store.count_records("rewards", "acme") == 2


def test_rewards_cannot_target_another_apps_decision(
    pipeline: DataIngestionPipeline,
) -> None:
    pipeline.store.ensure_app("globex")
    pipeline.ingest_decisions("globex", [_decision(id="theirs")])
    result = pipeline.ingest_rewards("acme", [{"decision_id": "theirs", "value": 1.0}])
    assert result.rejected[0].reason == "unknown_decision"


def test_decision_schema_checks_the_choice(pipeline: DataIngestionPipeline) -> None:
    result = pipeline.ingest_decisions(
        "acme",
        [
            _decision(action_id="not-a-candidate"),
            _decision(propensity=0.0),
            _decision(actions=[{"id": "a"}, {"id": "a"}], action_id="a"),
            _decision(context={"text": "card 4111-1111-1111-1111"}),
        ],
    )
    assert [r.index for r in result.rejected] == [0, 1, 2]
    stored = pipeline.store.get_record("decisions", "acme", result.accepted[0].id)
    assert stored.context["text"] == "card <CREDIT_CARD>"
    assert stored.probabilities == {"card_lost": 0.8}


def test_nul_bytes_are_refused_on_every_database(pipeline: DataIngestionPipeline) -> None:
    result = pipeline.ingest_events(
        "acme", [{"text": "a\x00b"}, {"attributes": {"k": "v\x00"}}, {"text": "fine"}]
    )
    assert [r.index for r in result.rejected] == [0, 1]
    assert pipeline.store.count_records("events", "acme") == 1
