"""Serving the browser app: `/` is the page, `/static/...` its scripts and styles.

The page and its assets are public and hold no data: everything shown comes from the `/v1` API
with the bearer token the user signs in for, under the same roles as any other client. Nothing
is fetched from elsewhere (no CDN): the Content-Security-Policy allows only this origin, so a
stray third-party URL would fail loudly in the browser instead of leaking who looks at what.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).with_name("static")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class _Assets(StaticFiles):
    """Static files with the security headers, revalidated on each load (no stale UI code)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at `/` (call after `create_app`; the API stays under `/v1`)."""
    index = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    def page() -> HTMLResponse:
        return HTMLResponse(index, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount("/static", _Assets(directory=STATIC_DIR), name="dashboard-static")
