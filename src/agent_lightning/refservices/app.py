"""The reference knowledge-base / ticketing / CRM service (FastAPI + SQLite).

Templates and tests run against it for real: ``agent-lightning refservices serve``. Every route
except ``GET /health`` needs the service token, presented any of three ways so each connector
auth type can be exercised: ``Authorization: Bearer <token>``, ``X-API-Key: <token>``, or HTTP
basic with user ``basic_user`` and the token as password.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent_lightning.refservices.faults import Fault, Faults, parse_fault_header
from agent_lightning.refservices.store import Conflict, RefStore, SearchBackend

Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["open", "pending", "resolved", "closed"]
PUBLIC = {("GET", "/health")}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ArticleIn(_In):
    id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=20_000)
    tags: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(
        default_factory=list, max_length=20
    )
    category: str | None = Field(default=None, max_length=50)


class TicketIn(_In):
    subject: str = Field(min_length=1, max_length=1000)
    body: str | None = Field(default=None, max_length=10_000)
    user_id: str | None = Field(default=None, min_length=1, max_length=64)
    priority: Priority = "normal"

    @field_validator("user_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # Templates render a missing user as "", which means "no user", not a user named "".
        return None if value == "" else value


class TicketPatch(_In):
    status: Status | None = None
    priority: Priority | None = None

    @model_validator(mode="after")
    def _something(self) -> TicketPatch:
        if self.status is None and self.priority is None:
            raise ValueError("give status and/or priority")
        return self


def _validation_response(_: Request, exc: Exception) -> JSONResponse:
    """422 with one readable line (``body.subject: Field required``) plus the details."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif e.get("type") == "missing":
            msg = "required field missing"
        errors.append({"loc": loc, "msg": msg})
    detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors) or "invalid request"
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


def _authorized(request: Request, token: str, basic_user: str, api_key_header: str) -> bool:
    expected = token.encode()
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), expected)
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user_ok = hmac.compare_digest(user.encode(), basic_user.encode())
        return hmac.compare_digest(password.encode(), expected) and user_ok
    key = request.headers.get(api_key_header)
    return key is not None and hmac.compare_digest(key.encode(), expected)


def create_app(
    db_path: str | Path,
    token: str | None,
    *,
    faults: Faults | None = None,
    fault_header: bool = True,
    basic_user: str = "agent",
    api_key_header: str = "X-API-Key",
    search: SearchBackend = "auto",
) -> FastAPI:
    """The service over the SQLite file ``db_path`` (seeded on first open).

    ``token=None`` disables authentication (``serve --no-auth``); ``faults`` and the ``X-Fault``
    header inject latency and errors. ``app.state.hits`` counts requests per ``"METHOD /path"``
    so tests can see how many attempts really reached the server.
    """
    store = RefStore(db_path, search=search)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="agent-lightning reference services",
        description="Knowledge base, tickets and CRM for agent-lightning templates and tests.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.faults = faults
    app.state.hits = Counter()
    app.add_exception_handler(RequestValidationError, _validation_response)

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        method, path = request.method, request.url.path
        app.state.hits[f"{method} {path}"] += 1
        if token is not None and (method, path) not in PUBLIC:
            if not _authorized(request, token, basic_user, api_key_header):
                return JSONResponse(
                    {"detail": "missing or invalid credentials"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="refservices"'},
                )
        fault: Fault | None = faults.take(method, path) if faults is not None else None
        header = request.headers.get("x-fault") if fault_header else None
        if fault is None and header:
            try:
                fault = parse_fault_header(header)
            except ValueError as exc:
                return JSONResponse({"detail": f"X-Fault: {exc}"}, status_code=400)
        if fault is not None:
            if fault.delay_ms > 0:
                await asyncio.sleep(fault.delay_ms / 1000)
            if fault.status is not None:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                return JSONResponse(
                    {"detail": f"injected fault: HTTP {fault.status}"},
                    status_code=fault.status,
                    headers=headers,
                )
        return await call_next(request)

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        # Public, but says whether the caller's credentials are good, so a connector's test
        # endpoint can check them: response_schema {properties: {authenticated: {const: true}}}.
        authenticated = token is None or _authorized(request, token, basic_user, api_key_header)
        return {
            "status": "ok",
            "authenticated": authenticated,
            "articles": store.article_count(),
            "search": store.search_backend,
        }

    # -- knowledge base ------------------------------------------------------------------------

    @app.get("/kb/search")
    def kb_search(
        q: Annotated[str, Query(min_length=1, max_length=500, description="the question")],
        limit: Annotated[int, Query(ge=1, le=50)] = 5,
    ) -> dict[str, Any]:
        return {"query": q, "results": store.search(q, limit)}

    @app.get("/kb/articles/{article_id}")
    def kb_article(article_id: str) -> dict[str, Any]:
        article = store.get_article(article_id)
        if article is None:
            raise HTTPException(404, f"article {article_id!r} not found")
        return article

    @app.post("/kb/articles", status_code=201)
    def kb_add(article: ArticleIn) -> dict[str, Any]:
        try:
            return store.add_article(article.model_dump())
        except Conflict as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/kb/export")
    def kb_export(response: Response, if_none_match: Annotated[str | None, Header()] = None) -> Any:
        snapshot = store.export()
        etag = f'"{snapshot["version"]}"'
        if if_none_match is not None and etag in (t.strip() for t in if_none_match.split(",")):
            return Response(status_code=304, headers={"ETag": etag})
        response.headers["ETag"] = etag
        return snapshot

    # -- tickets -------------------------------------------------------------------------------

    @app.post("/tickets", status_code=201)
    def ticket_create(
        ticket: TicketIn,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> dict[str, Any]:
        created, _ = store.create_ticket(
            ticket.subject, ticket.body, ticket.user_id, ticket.priority, idempotency_key
        )
        return created

    @app.get("/tickets")
    def ticket_list(
        user_id: Annotated[str | None, Query(max_length=64)] = None,
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        return {"tickets": store.list_tickets(user_id, status, limit)}

    @app.get("/tickets/{ticket_id}")
    def ticket_get(ticket_id: int) -> dict[str, Any]:
        ticket = store.get_ticket(ticket_id)
        if ticket is None:
            raise HTTPException(404, f"ticket {ticket_id} not found")
        return ticket

    @app.patch("/tickets/{ticket_id}")
    def ticket_patch(ticket_id: int, patch: TicketPatch) -> dict[str, Any]:
        ticket = store.update_ticket(ticket_id, patch.model_dump(exclude_none=True))
        if ticket is None:
            raise HTTPException(404, f"ticket {ticket_id} not found")
        return ticket

    # -- CRM -----------------------------------------------------------------------------------

    @app.get("/crm/customers/{customer_id}")
    def crm_customer(customer_id: str) -> dict[str, Any]:
        customer = store.get_customer(customer_id)
        if customer is None:
            raise HTTPException(404, f"customer {customer_id!r} not found")
        return customer

    return app
