"""A small OpenAI-compatible server for tests and benchmarks, and a way to serve an app for real.

`FakeUpstream` is a real HTTP server on loopback (aiohttp, its own thread and event loop) that
answers chat completions (streaming or not, tool calls, `n`, logprobs, token ids,
`response_format`), legacy completions, embeddings and the model list, under both the OpenAI
paths and Azure's `/openai/deployments/{name}/...?api-version=`. Tests script its failures:

    upstream.fail_next("status:500")   # one 500, then normal answers again
    upstream.fail_next("hang")         # accept the request and never answer
    upstream.fail_next("reset")        # stream two chunks, then drop the connection
    upstream.fail_next("garbage")      # 200 with a body that is not JSON (or not SSE)
    upstream.fail_next("slow")         # stream one chunk every 0.2 s
    upstream.fail_next("json:" + text) # 200 with `text` as its JSON body, whatever was asked

Its answers are deterministic: the reply to a user message `text` is `echo: text`, and when tools
are offered and no tool has answered yet, it calls the first tool with arguments made from the
tool's JSON schema. Every request it received is kept in `requests` for assertions.

`serve_in_thread(app)` runs any ASGI app under uvicorn on 127.0.0.1 (port 0) in a thread, since
real client libraries need a real URL.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes


class FakeUpstream:
    def __init__(self, *, record: bool = True, delay: float = 0.0) -> None:
        self.record = record
        self.delay = delay
        self.requests: list[Received] = []
        self._faults: deque[str] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def fail_next(self, mode: str, times: int = 1) -> None:
        for _ in range(times):
            self._faults.append(mode)

    def clear(self) -> None:
        self.requests.clear()
        self._faults.clear()

    # -- lifecycle --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self.embeddings)
        return app

    def start(self, port: int = 0) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
            loop.run_until_complete(site.start())
            self._runner = runner
            self.port = runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handlers ---------------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> tuple[dict[str, Any] | None, str | None]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if self.record:
            self.requests.append(
                Received(request.path, dict(request.query), dict(request.headers), body, raw)
            )
        fault = self._faults.popleft() if self._faults else None
        if self.delay:
            await asyncio.sleep(self.delay)
        return body, fault

    async def _fault(self, fault: str | None, stream: bool) -> web.StreamResponse | None:
        if fault is None or fault in ("reset", "slow"):
            return None
        if fault == "hang":
            await asyncio.sleep(3600)
        if fault.startswith("status:"):
            status = int(fault.split(":")[1])
            body = {"error": {"message": f"fake upstream error {status}", "type": "server_error",
                              "param": None, "code": None}}  # fmt: skip
            headers = {"retry-after": "0"} if status == 429 else {}
            return web.json_response(body, status=status, headers=headers)
        if fault.startswith("json:"):
            return web.Response(body=fault[5:].encode(), content_type="application/json")
        if fault == "garbage" and not stream:
            return web.Response(
                body=b"<html>502 Bad Gateway</html>\x00\xff", content_type="application/json"
            )
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._receive(request)
        if not isinstance(body, dict) or "messages" not in body:
            return _error(400, "messages is required")
        stream = bool(body.get("stream"))
        failed = await self._fault(fault, stream)
        if failed is not None:
            return failed
        message = _reply(body)
        n = int(body.get("n") or 1)
        model = body.get("model") or request.match_info.get("deployment") or "fake"
        created = int(time.time())
        completion_id = "chatcmpl-" + hashlib.sha1(json.dumps(body).encode()).hexdigest()[:24]
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
        completion_tokens = len(str(message.get("content") or "").split()) or 1
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if not stream:
            choices = []
            for index in range(n):
                choice: dict[str, Any] = {
                    "index": index,
                    "message": message,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    "logprobs": _logprobs(message) if body.get("logprobs") else None,
                }
                if body.get("return_token_ids"):
                    choice["token_ids"] = _token_ids(message.get("content") or "")
                choices.append(choice)
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": choices,
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": model}  # fmt: skip
        chunks = list(_stream_chunks(message, n, bool(body.get("logprobs"))))
        if fault == "garbage":
            await response.write(_sse({**head, "choices": chunks[0]}))
            await response.write(b"<html>this is not an event stream</html>\n\n")
            return response
        for i, choices in enumerate(chunks):
            if fault == "slow":
                await asyncio.sleep(0.2)
            await response.write(_sse({**head, "choices": choices}))
            if fault == "reset" and i == 1:
                assert request.transport is not None
                request.transport.abort()
                return response
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(_sse({**head, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._receive(request)
        if not isinstance(body, dict):
            return _error(400, "a JSON body is required")
        failed = await self._fault(fault, bool(body.get("stream")))
        if failed is not None:
            return failed
        prompt = body.get("prompt")
        text = f" echo: {prompt if isinstance(prompt, str) else json.dumps(prompt)}"
        answer = {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }
        if not body.get("stream"):
            return web.json_response(answer)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for word in text.split(" "):
            chunk = {**answer, "choices": [{"index": 0, "text": word + " ", "finish_reason": None}]}
            chunk.pop("usage")
            await response.write(_sse(chunk))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._receive(request)
        if not isinstance(body, dict) or "input" not in body:
            return _error(400, "input is required")
        failed = await self._fault(fault, False)
        if failed is not None:
            return failed
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(json.dumps(x))}
            for i, x in enumerate(inputs)
        ]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            }
        )

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API (what the OpenAI Agents SDK uses by default)."""
        body, fault = await self._receive(request)
        if not isinstance(body, dict) or "input" not in body:
            return _error(400, "input is required")
        failed = await self._fault(fault, bool(body.get("stream")))
        if failed is not None:
            return failed
        output = _respond(body)
        text = "".join(c["text"] for o in output for c in o.get("content", ()))
        answer = {
            "id": "resp_" + hashlib.sha1(json.dumps(body).encode()).hexdigest()[:24],
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body.get("model"),
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "usage": {
                "input_tokens": 3,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": len(text.split()) or 1,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 3 + (len(text.split()) or 1),
            },
        }
        if not body.get("stream"):
            return web.json_response(answer)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        events = [{"type": "response.created", "response": {**answer, "status": "in_progress",
                                                            "output": []}}]  # fmt: skip
        for index, item in enumerate(output):
            added = {**item, "content": []} if "content" in item else item
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": added}
            )
            words = item["content"][0]["text"].split(" ") if item["type"] == "message" else []
            for position, word in enumerate(words):
                delta = word if position == 0 else " " + word
                events.append(
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "delta": delta,
                    }
                )
            events.append(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
        events.append({"type": "response.completed", "response": answer})
        for number, event in enumerate(events):
            event["sequence_number"] = number
            await response.write(f"event: {event['type']}\n".encode() + _sse(event))
        await response.write_eof()
        return response

    async def models(self, request: web.Request) -> web.StreamResponse:
        _, fault = await self._receive(request)
        failed = await self._fault(fault, False)
        if failed is not None:
            return failed
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS]
        return web.json_response({"object": "list", "data": data})


# -- the scripted model ------------------------------------------------------------------------


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    tools = body.get("tools") or []
    answered = any(m.get("role") == "tool" for m in messages if isinstance(m, dict))
    if tools and not answered and body.get("tool_choice") != "none":
        function = tools[0].get("function", {})
        arguments = {
            name: _example(spec)
            for name, spec in (function.get("parameters") or {}).get("properties", {}).items()
        }
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_" + hashlib.sha1(json.dumps(arguments).encode()).hexdigest()[:12],
                    "type": "function",
                    "function": {"name": function.get("name"), "arguments": json.dumps(arguments)},
                }
            ],
        }
    if answered:
        result = next(m for m in reversed(messages) if m.get("role") == "tool")
        text = f"the tool said {_text(result.get('content'))}"
    else:
        user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        text = f"echo: {_text(user.get('content'))}"
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        text = json.dumps({"answer": text})
    return {"role": "assistant", "content": text}


def _respond(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The scripted model, in the Responses API's shape."""
    items = (
        body["input"]
        if isinstance(body["input"], list)
        else [{"role": "user", "content": body["input"]}]
    )
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    results = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
    if tools and not results:
        arguments = {
            name: _example(spec)
            for name, spec in (tools[0].get("parameters") or {}).get("properties", {}).items()
        }
        return [{"type": "function_call", "id": "fc_1", "call_id": "call_1", "status": "completed",
                 "name": tools[0]["name"], "arguments": json.dumps(arguments)}]  # fmt: skip
    if results:
        text = f"the tool said {_text(results[-1].get('output'))}"
    else:
        user = next((i for i in reversed(items) if i.get("role") == "user"), {})
        text = f"echo: {_text(user.get('content'))}"
    return [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": text, "annotations": []}]}]  # fmt: skip


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _example(spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    if kind in ("integer", "number"):
        return 2
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return "test"


def _logprobs(message: dict[str, Any]) -> dict[str, Any]:
    words = str(message.get("content") or "").split(" ")
    return {
        "content": [
            {"token": w, "logprob": -0.1, "bytes": list(w.encode()), "top_logprobs": []}
            for w in words
        ]
    }


def _token_ids(text: str) -> list[int]:
    return [int(hashlib.sha1(w.encode()).hexdigest()[:6], 16) for w in text.split(" ")]


def _vector(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 6) for b in digest[:dims]]


def _stream_chunks(message: dict[str, Any], n: int, logprobs: bool):  # noqa: ANN202
    yield [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
           for i in range(n)]  # fmt: skip
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        name = call["function"]["name"]
        first = {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": name, "arguments": arguments[:half]}}  # fmt: skip
        yield [{"index": i, "delta": {"tool_calls": [first]}, "finish_reason": None}
               for i in range(n)]  # fmt: skip
        rest = {"index": 0, "function": {"arguments": arguments[half:]}}
        yield [{"index": i, "delta": {"tool_calls": [rest]}, "finish_reason": None}
               for i in range(n)]  # fmt: skip
        yield [{"index": i, "delta": {}, "finish_reason": "tool_calls"} for i in range(n)]
        return
    words = str(message.get("content") or "").split(" ")
    for position, word in enumerate(words):
        piece = word if position == 0 else " " + word
        choices = []
        for i in range(n):
            choice: dict[str, Any] = {
                "index": i,
                "delta": {"content": piece},
                "finish_reason": None,
            }
            if logprobs:
                choice["logprobs"] = {"content": [{"token": piece, "logprob": -0.1,
                                                   "bytes": list(piece.encode()),
                                                   "top_logprobs": []}]}  # fmt: skip
            choices.append(choice)
        yield choices
    yield [{"index": i, "delta": {}, "finish_reason": "stop"} for i in range(n)]


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": None}}  # fmt: skip
    return web.json_response(body, status=status)


# -- serving an ASGI app for real ------------------------------------------------------------


class ThreadedServer:
    """uvicorn on 127.0.0.1 in a background thread; `url` once started."""

    def __init__(self, app: Any, *, port: int = 0, lifespan: str = "on") -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan=lifespan,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(20)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(app: Any, **kwargs: Any) -> ThreadedServer:
    return ThreadedServer(app, **kwargs).start()


def main(argv: list[str] | None = None) -> None:
    """`python -m agent_lightning.gateway.testing --port 8900`: the fake upstream on its own."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8900)
    args = parser.parse_args(argv)
    upstream = FakeUpstream(record=False)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    web.run_app(upstream.app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
