"""SecretBox: encryption at rest, key rotation, key files."""

from __future__ import annotations

import stat
import threading
import traceback
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from agent_lightning.security.crypto import (
    SecretBox,
    generate_key,
    load_or_create_keyfile,
    write_private_file,
)
from agent_lightning.security.errors import DecryptionError, SecurityError


def test_round_trip_str_and_bytes() -> None:
    box = SecretBox([generate_key()])
    token = box.encrypt("pa55wörd")
    assert isinstance(token, str) and "pa55" not in token
    assert box.decrypt(token) == "pa55wörd".encode()
    assert box.decrypt(box.encrypt(b"\x00\xff")) == b"\x00\xff"
    assert box.encrypt("same") != box.encrypt("same")  # random IV


def test_rotation_to_a_new_primary() -> None:
    old, new = generate_key(), generate_key()
    token = SecretBox([old]).encrypt("db-password")

    rotated_box = SecretBox([new, old])
    assert rotated_box.decrypt(token) == b"db-password"  # old ciphertext still readable
    rotated = rotated_box.rotate(token)
    assert rotated != token
    # The rotated token is under the new primary: readable with the new key alone...
    assert SecretBox([new]).decrypt(rotated) == b"db-password"
    # ...and no longer with the old one, so the old key can now be retired.
    with pytest.raises(DecryptionError):
        SecretBox([old]).decrypt(rotated)
    # Fresh encryptions use the primary too.
    assert Fernet(new.encode()).decrypt(rotated_box.encrypt("x").encode()) == b"x"


def test_wrong_key_and_garbage_raise_decryption_error() -> None:
    secret_value = "hunter2-secret-value"
    key = generate_key()
    token = SecretBox([key]).encrypt(secret_value)
    other = SecretBox([generate_key()])
    with pytest.raises(DecryptionError) as info:
        other.decrypt(token)
    assert isinstance(info.value, SecurityError)
    rendered = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert secret_value not in rendered and key not in rendered and token not in rendered
    for bad in ["", "not a token", token[:-4] + "AAAA", "é" * 10, b"\xff\xfe"]:
        with pytest.raises(DecryptionError):
            other.decrypt(bad)
    with pytest.raises(DecryptionError):
        other.rotate(token)


def test_tampered_ciphertext_is_refused() -> None:
    box = SecretBox([generate_key()])
    raw = bytearray(box.encrypt("value").encode())
    raw[40] = ord("A") if raw[40] != ord("A") else ord("B")
    with pytest.raises(DecryptionError):
        box.decrypt(bytes(raw))


def test_invalid_keys_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError) as info:
        SecretBox([generate_key(), "definitely-not-a-fernet-key"])
    assert "definitely-not" not in str(info.value) and "#2" in str(info.value)
    with pytest.raises(ValueError):
        SecretBox([])
    with pytest.raises(TypeError):
        SecretBox(generate_key())  # type: ignore[arg-type]


def test_from_env() -> None:
    a, b = generate_key(), generate_key()
    token = SecretBox([b]).encrypt("v")
    box = SecretBox.from_env(environ={"AGL_ENCRYPTION_KEYS": f" {a} , {b} ,"})
    assert box.key_count == 2
    assert box.decrypt(token) == b"v"
    assert SecretBox([a]).decrypt(box.encrypt("w")) == b"w"  # first key is primary
    with pytest.raises(ValueError):
        SecretBox.from_env(environ={})
    assert a not in repr(box)


def test_from_env_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    monkeypatch.setenv("AGL_ENCRYPTION_KEYS", key)
    assert SecretBox([key]).decrypt(SecretBox.from_env().encrypt("z")) == b"z"


def test_keyfile_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "encryption.keys"
    keys = load_or_create_keyfile(path)
    assert len(keys) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_keyfile(path) == keys
    token = SecretBox.from_keyfile(path).encrypt("v")
    # Operator rotation: prepend a new key, keep the old one below it, with a comment.
    new = generate_key()
    path.write_text(f"{new}\n\n# previous primary\n{keys[0]}\n")
    box = SecretBox(load_or_create_keyfile(path))
    assert box.key_count == 2
    assert SecretBox([new]).decrypt(box.rotate(token)) == b"v"
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary files left


def test_empty_keyfile_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# nothing here\n")
    with pytest.raises(ValueError):
        load_or_create_keyfile(path)


def test_write_private_file_never_overwrites_under_races(tmp_path: Path) -> None:
    path = tmp_path / "race.key"
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def writer(i: int) -> None:
        barrier.wait()
        results.append(write_private_file(path, f"content-{i}".encode()))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert path.read_bytes().startswith(b"content-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["race.key"]
