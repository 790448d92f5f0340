"""Connector credentials, encrypted at rest; the API stores them but never returns them."""

from __future__ import annotations

from sqlalchemy import select

from agent_lightning.store import NotFound, Secret, Store, utcnow


def put_secret(store: Store, box, app_id: str, name: str, value: str) -> None:  # noqa: ANN001
    ciphertext = box.encrypt(value)
    with store.session() as s:
        row = s.scalar(select(Secret).where(Secret.app_id == app_id, Secret.name == name))
        if row is None:
            s.add(Secret(app_id=app_id, name=name, ciphertext=ciphertext))
        else:
            row.ciphertext, row.updated_at = ciphertext, utcnow()


def get_secret(store: Store, box, app_id: str, name: str) -> str:  # noqa: ANN001
    with store.session() as s:
        row = s.scalar(select(Secret).where(Secret.app_id == app_id, Secret.name == name))
    if row is None:
        raise NotFound(f"secret {name!r} not found")
    return box.decrypt(row.ciphertext).decode()


def secret_names(store: Store, app_id: str) -> list[str]:
    with store.session() as s:
        return list(
            s.scalars(select(Secret.name).where(Secret.app_id == app_id).order_by(Secret.name))
        )


def rotate_all(store: Store, box) -> int:  # noqa: ANN001
    """Re-encrypt every stored secret under the current primary key (after adding a new key)."""
    count = 0
    with store.session() as s:
        for row in s.scalars(select(Secret)):
            row.ciphertext = box.rotate(row.ciphertext)
            count += 1
    return count
