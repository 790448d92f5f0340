"""What of a call is stored: personal data in free text redacted, inline data summarised."""

from __future__ import annotations

import base64
import json

import openai
from gateway_harness import Harness, gw, harness  # noqa: F401

EMAIL = "jane.doe@example.com"
SSN = "123-45-6789"
IMAGE = "data:image/png;base64," + base64.b64encode(b"\x89PNG not really " * 2000).decode()


def client(gw: Harness) -> openai.OpenAI:  # noqa: F811
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.token, max_retries=0)


def test_responses_input_images_are_summarised_and_text_redacted(gw: Harness) -> None:  # noqa: F811
    raw = client(gw).responses.with_raw_response.create(
        model="gpt-4o-mini",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": f"I am {EMAIL}, what is this?"},
                    {"type": "input_image", "image_url": IMAGE},
                ],
            }
        ],
    )
    assert raw.parse().output_text
    assert gw.upstream.requests[-1].body["input"][0]["content"][1]["image_url"] == IMAGE
    span = gw.span(raw.headers["x-agl-span-id"])
    text, image = span.request["input"][0]["content"]
    assert image == {"type": "input_image", "image_url": f"<inline data, {len(IMAGE)} chars>"}
    assert text == {"type": "input_text", "text": "I am <EMAIL>, what is this?"}
    stored = json.dumps([span.request, span.response])
    assert "base64," not in stored and EMAIL not in stored
    assert len(stored) < 5_000


def test_prediction_and_tool_descriptions_are_redacted(gw: Harness) -> None:  # noqa: F811
    tools = [
        {
            "type": "function",
            "function": {
                "name": "update_profile",
                "description": f"Update the profile of {EMAIL}",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "rewrite my profile"}],
        tools=tools,
        prediction={"type": "content", "content": f"email {EMAIL}, SSN {SSN}"},
    )
    raw.parse()
    assert gw.upstream.requests[-1].body["prediction"]["content"] == f"email {EMAIL}, SSN {SSN}"
    span = gw.span(raw.headers["x-agl-span-id"])
    assert span.request["prediction"] == {
        "type": "content",
        "content": "email <EMAIL>, SSN <US_SSN>",
    }
    function = span.request["tools"][0]["function"]
    assert function["description"] == "Update the profile of <EMAIL>"
    assert function["name"] == "update_profile"
    assert span.pii_counts == {"EMAIL": 2, "US_SSN": 1}


def test_audio_transcripts_and_citations_in_the_answer_are_redacted(gw: Harness) -> None:  # noqa: F811
    audio = base64.b64encode(b"RIFF not really a wav " * 400).decode()
    message = {
        "role": "assistant",
        "content": "see the link",
        "audio": {"id": "audio_1", "expires_at": 1, "data": audio,
                  "transcript": f"I emailed {EMAIL} about SSN {SSN}"},
        "annotations": [{"type": "url_citation", "url_citation": {
            "url": f"https://people.example/?email={EMAIL}", "title": f"Profile of {EMAIL}",
            "start_index": 0, "end_index": 3}}],
    }  # fmt: skip
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
              "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip
    gw.upstream.fail_next("json:" + json.dumps(answer))
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "search"}]
    )
    # The agent gets the answer as it came; the store keeps it redacted.
    assert raw.parse().choices[0].message.audio.transcript == message["audio"]["transcript"]
    span = gw.span(raw.headers["x-agl-span-id"])
    stored = span.response["choices"][0]["message"]
    assert stored["audio"] == {"id": "audio_1", "expires_at": 1,
                               "data": f"<inline data, {len(audio)} chars>",
                               "transcript": "I emailed <EMAIL> about SSN <US_SSN>"}  # fmt: skip
    citation = stored["annotations"][0]["url_citation"]
    assert citation["title"] == "Profile of <EMAIL>" and EMAIL not in citation["url"]
    assert EMAIL not in json.dumps(span.response)
    assert span.pii_counts == {"EMAIL": 3, "US_SSN": 1}
