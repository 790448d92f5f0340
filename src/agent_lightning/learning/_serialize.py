"""Binary policy format: magic, format version, checksum, JSON metadata, numpy arrays (npz).

Layout (big-endian)::

    b"AGLPOLICY\\n"   magic (10 bytes)
    uint16           format version
    uint32           length of the JSON metadata
    32 bytes         SHA-256 of everything after the header (metadata + npz)
    metadata         UTF-8 JSON
    npz              numpy arrays, read with allow_pickle=False (never pickle)

Format versions: 1 the first; 2 LinUCB keeps the rows of all its actions in one table of
distinct rows (a correction's row sits in up to five actions); 3 the nearest-neighbour memory
refers to that table for the rows it shares with LinUCB. Older versions still load; an older
agent-lightning refuses a newer version with "upgrade agent-lightning".
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from agent_lightning.learning.errors import PolicyFormatError

MAGIC = b"AGLPOLICY\n"
FORMAT_VERSION = 3
_HEADER = struct.Struct(">HI32s")


def dump(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise metadata and arrays into the policy format."""
    meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    body = meta_bytes + buf.getvalue()
    digest = hashlib.sha256(body).digest()
    return MAGIC + _HEADER.pack(FORMAT_VERSION, len(meta_bytes), digest) + body


def load(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse bytes written by `dump`; raise `PolicyFormatError` with a clear sentence if not."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PolicyFormatError("policy data must be bytes")
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise PolicyFormatError(
            "these bytes are not an agent-lightning policy (the magic header is missing)"
        )
    head = len(MAGIC)
    if len(data) < head + _HEADER.size:
        raise PolicyFormatError("the policy data is truncated (incomplete header)")
    version, meta_len, digest = _HEADER.unpack_from(data, head)
    if version > FORMAT_VERSION:
        raise PolicyFormatError(
            f"this policy uses format version {version}, but this agent-lightning reads only up "
            f"to version {FORMAT_VERSION}; upgrade agent-lightning to load it"
        )
    if version < 1:
        raise PolicyFormatError(f"the policy data has an invalid format version {version}")
    body = data[head + _HEADER.size :]
    if len(body) < meta_len or hashlib.sha256(body).digest() != digest:
        raise PolicyFormatError("the policy data is corrupt (checksum mismatch or truncated)")
    try:
        meta = json.loads(body[:meta_len].decode("utf-8"))
        with np.load(io.BytesIO(body[meta_len:]), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
        raise PolicyFormatError(f"the policy data is corrupt and cannot be read: {exc}") from exc
    if not isinstance(meta, dict):
        raise PolicyFormatError("the policy data is corrupt (metadata is not an object)")
    return meta, arrays
