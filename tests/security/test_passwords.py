"""Secret hashing (scrypt), secret/id generation and API key parsing."""

from __future__ import annotations

import base64

import pytest

from agent_lightning.security import passwords as pw

FAST_N = 2**10  # cheap KDF for everything except the one real-parameters test


def test_real_parameters_round_trip() -> None:
    encoded = pw.hash_secret("correct horse battery staple")
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.urlsafe_b64decode(salt + "==")) == 16
    assert len(base64.urlsafe_b64decode(digest + "=")) == 32
    assert pw.verify_secret("correct horse battery staple", encoded)
    assert not pw.verify_secret("correct horse battery stapl", encoded)
    assert not pw.needs_rehash(encoded)


def test_salt_is_random_and_bytes_accepted() -> None:
    a = pw.hash_secret("same", n=FAST_N)
    b = pw.hash_secret(b"same", n=FAST_N)
    assert a != b
    assert pw.verify_secret(b"same", a) and pw.verify_secret("same", b)
    assert not pw.verify_secret("Same", a)
    assert not pw.verify_secret("", a)


def test_weaker_parameters_need_rehash() -> None:
    assert pw.needs_rehash(pw.hash_secret("x", n=FAST_N))
    assert pw.needs_rehash("garbage")


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "scrypt",
        "scrypt$$$$$",
        "bcrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$+1024$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$1024$0$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$1024$8$1$$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA$",
        "scrypt$1024$8$1$not*base64$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$x",
        "scrypt$１０２４$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x" * 10_000,
    ],
)
def test_malformed_encodings_are_false_not_errors(encoded: str) -> None:
    assert pw.verify_secret("secret", encoded) is False


def test_non_canonical_variants_of_a_valid_hash_are_refused() -> None:
    encoded = pw.hash_secret("secret", n=FAST_N)
    assert pw.verify_secret("secret", encoded)
    _, n, r, p, salt, digest = encoded.split("$")
    for variant in (
        f"scrypt$+{n}${r}${p}${salt}${digest}",
        f"scrypt$ {n}${r}${p}${salt}${digest}",
        f"scrypt${n}${r}$１${salt}${digest}",  # int() would read the full-width digit
        f"scrypt${n}${r}${p}${salt}!${digest}",
        f"SCRYPT${n}${r}${p}${salt}${digest}",
    ):
        assert pw.verify_secret("secret", variant) is False, variant


@pytest.mark.parametrize(
    "n, r, p",
    [(2**30, 8, 1), (2**17, 8, 1), (2**14, 64, 1), (2**14, 8, 64), (1, 8, 1)],
)
def test_hostile_parameters_never_reach_the_kdf(
    monkeypatch: pytest.MonkeyPatch, n: int, r: int, p: int
) -> None:
    # 2**30 with r=8 would need 128 GiB: such rows must be refused before scrypt runs.
    def forbidden(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("scrypt must not run for out-of-range parameters")

    monkeypatch.setattr(pw.hashlib, "scrypt", forbidden)
    hostile = f"scrypt${n}${r}${p}$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43
    assert pw.verify_secret("secret", hostile) is False


def test_non_string_inputs_are_false() -> None:
    encoded = pw.hash_secret("s", n=FAST_N)
    assert pw.verify_secret(None, encoded) is False  # type: ignore[arg-type]
    assert pw.verify_secret("s", None) is False  # type: ignore[arg-type]
    assert pw.verify_secret("s" * 5000, encoded) is False


def test_hash_secret_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        pw.hash_secret("s", n=1000)


def test_generated_secrets_and_ids() -> None:
    secrets_ = {pw.generate_secret() for _ in range(50)}
    assert len(secrets_) == 50
    assert all(len(s) >= 43 and s.replace("-", "").replace("_", "").isalnum() for s in secrets_)
    with pytest.raises(ValueError):
        pw.generate_secret(8)
    client_id = pw.generate_client_id()
    assert client_id.startswith("agl_") and len(client_id) > 16
    assert pw.generate_client_id(prefix="svc-").startswith("svc-")
    assert pw.generate_client_id() != client_id


def test_fingerprint_is_sha256_hex() -> None:
    fp = pw.hash_token_fingerprint("aglk_abc_def")
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert fp == pw.hash_token_fingerprint(b"aglk_abc_def")
    assert fp != pw.hash_token_fingerprint("aglk_abc_deg")


def test_api_key_round_trip() -> None:
    for _ in range(200):  # url-safe secrets often contain "_" and "-": parsing must survive
        key_id, full_key = pw.make_api_key()
        assert full_key.startswith(f"aglk_{key_id}_")
        parsed = pw.parse_api_key(full_key)
        assert parsed is not None
        assert parsed[0] == key_id
        assert full_key == f"aglk_{parsed[0]}_{parsed[1]}"


def test_api_key_secret_verifies_against_its_hash() -> None:
    _, full_key = pw.make_api_key()
    parsed = pw.parse_api_key(full_key)
    assert parsed is not None
    encoded = pw.hash_secret(parsed[1], n=FAST_N)
    assert pw.verify_secret(parsed[1], encoded)
    assert not pw.verify_secret(full_key, encoded)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "aglk_",
        "aglk_abc",
        "aglk_abc_",
        "aglk__" + "s" * 43,
        "aglk_ab-c_" + "s" * 43,
        "aglk_abc_short",
        "aglk_abc_" + "s" * 300,
        "aglk_abc_" + "s" * 42 + "!",
        "agl_abc_" + "s" * 43,
        "Bearer aglk_abc_" + "s" * 43,
        None,
    ],
)
def test_parse_api_key_rejects_malformed(value: str) -> None:
    assert pw.parse_api_key(value) is None
