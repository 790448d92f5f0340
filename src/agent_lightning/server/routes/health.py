"""Liveness and readiness; public, and they reveal nothing but up or down."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from agent_lightning import __version__

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
def health():
    return {"status": "ok", "version": __version__}


@router.get("/ready", summary="Readiness: the database answers")
def ready(request: Request):
    try:
        request.app.state.agl.store.ping()
    except Exception:  # noqa: BLE001 - any failure means not ready
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return {"status": "ready", "database": request.app.state.agl.store.dialect}
