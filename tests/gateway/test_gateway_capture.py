"""Capture in isolation: stream assembly, the in-flight SSE check, and the batched writer."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from agent_lightning.gateway.app import span_id
from agent_lightning.gateway.capture import SpanRecord, SpanWriter, count_spans, list_spans
from agent_lightning.gateway.sse import SSEGuard, assemble
from agent_lightning.store import Store


def sse(*objects: dict, done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objects)
    return out + (b"data: [DONE]\n\n" if done else b"")


def test_assemble_merges_content_tool_calls_logprobs_and_usage() -> None:
    head = {"id": "c1", "model": "m", "created": 1}
    raw = sse(
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "lo"},
                              "logprobs": {"content": [{"token": "lo", "logprob": -1}]}}]},
        {**head, "choices": [{"index": 1, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": '{"a"'}}]}}]},
        {**head, "choices": [{"index": 1, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": ": 1}"}}]}, "finish_reason": "tool_calls"}]},
        {**head, "choices": [], "usage": {"total_tokens": 9}},
    )  # fmt: skip
    response, usage, problems = assemble(raw)
    assert problems == [] and usage == {"total_tokens": 9}
    first, second = response["choices"]
    assert first["message"] == {"role": "assistant", "content": "Hello"}
    assert first["logprobs"] == {"content": [{"token": "lo", "logprob": -1}]}
    assert second["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert second["finish_reason"] == "tool_calls" and response["id"] == "c1"


def test_assemble_reports_truncated_and_broken_streams() -> None:
    _, _, problems = assemble(
        sse({"choices": [{"index": 0, "delta": {"content": "x"}}]}, done=False)
    )
    assert problems == ["the stream ended without [DONE]"]
    _, _, problems = assemble(b"data: {not json\n\n")
    assert "an event is not JSON" in problems


def test_sse_guard_accepts_split_events_and_refuses_garbage() -> None:
    guard = SSEGuard()
    event = sse({"choices": []})
    assert all(guard.ok(event[i : i + 3]) for i in range(0, len(event), 3))
    assert guard.ok(b": keep-alive comment\n\nevent: ping\ndata: {}\n\n")
    assert not SSEGuard().ok(b"<html>oops</html>\n")
    assert not SSEGuard().ok(b"data: not json\n\n")
    assert not SSEGuard().ok(b"HTTP/1.1 500")


def record(app_id: str = "acme", **fields: object) -> SpanRecord:
    span = SpanRecord(span_id(), app_id, "chat/completions", 0.0)
    span.request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    span.response_raw = b'{"choices": [{"index": 0, "message": {"content": "ho"}}]}'
    span.http_status = 200
    for key, value in fields.items():
        setattr(span, key, value)
    return span


@pytest.mark.parametrize("isolate", [True, False], ids=["process", "thread"])
def test_writer_batches_flushes_and_drains_on_stop(tmp_path: Path, isolate: bool) -> None:
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    store.ensure_app("acme")
    writer = SpanWriter(store, batch_size=7, linger=0.01, isolate=isolate)
    threads = [
        threading.Thread(target=lambda: [writer.submit(record()) for _ in range(50)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.flush(10)
    assert count_spans(store, "acme") == 200
    for _ in range(30):
        writer.submit(record(session_id="late"))
    writer.stop()  # drains what is queued before returning
    assert count_spans(store, "acme", "late") == 30
    assert writer.stats() == {"enqueued": 230, "written": 230, "dropped": 0, "failed": 0,
                              "queued": 0}  # fmt: skip
    stored = list_spans(store, "acme", session_id="late")[0]
    assert stored.response == {"choices": [{"index": 0, "message": {"content": "ho"}}]}
    assert stored.request == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert (writer._sink is None) == isolate  # with a writer process, nothing was written here
    store.close()


def test_records_survive_the_trip_to_the_writer_process() -> None:
    span = record(chunks=[b"data: {}\n\n", b"data: [DONE]\n\n"], session_id="s", retries=2)
    back = SpanRecord.from_wire(span.to_wire())
    assert back.request_raw == b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    assert back.request is None and back.chunks == [b"data: {}\n\ndata: [DONE]\n\n"]
    assert (back.id, back.session_id, back.retries) == (span.id, "s", 2)


def test_a_bad_row_does_not_lose_its_batch_and_a_full_queue_drops(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    store.ensure_app("acme")
    writer = SpanWriter(store, queue_size=5)
    writer.start()
    writer.stop()  # not running: submissions queue up until the next start
    writer._thread = object()  # type: ignore[assignment]  # pretend it runs, so nothing drains
    spans = [record(), record(app_id="no-such-app"), record(), record(), record(), record()]
    assert [writer.submit(s) for s in spans] == [True] * 5 + [False]
    writer._thread = None
    writer.start()
    assert writer.flush(10)
    writer.stop()
    assert writer.stats()["written"] == 4 and writer.stats()["failed"] == 1
    assert writer.stats()["dropped"] == 1
    assert count_spans(store, "acme") == 4
    store.close()
