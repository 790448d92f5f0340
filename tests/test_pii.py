"""Tests for PII detection and redaction (agent_lightning.security.pii)."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from collections import namedtuple
from types import SimpleNamespace

import pytest

from agent_lightning.security import pii
from agent_lightning.security._pii_checks import iban_valid, luhn_valid, ssn_valid
from agent_lightning.security.pii import (
    Finding,
    PIIRedactor,
    PIIType,
    PresidioDetector,
    PresidioNotInstalledError,
    RedactionResult,
    default_redactor,
    placeholder,
)

R = default_redactor()


def redact(text: str) -> str:
    return R.redact(text).text


def types_found(text: str) -> list[str]:
    return [f.type.value for f in R.detect(text)]


# --------------------------------------------------------------------------- API shape


def test_type_values_and_placeholders() -> None:
    assert [t.value for t in pii.BUILTIN_TYPES] != []
    for name in ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "UK_NINO"):
        assert PIIType(name).value == name
    assert PIIType.SECRET == "SECRET"
    assert placeholder(PIIType.CREDIT_CARD) == "<CREDIT_CARD>"


def test_default_redactor_is_cached_singleton() -> None:
    assert default_redactor() is default_redactor()


def test_finding_does_not_hold_the_value() -> None:
    text = "mail bob@example.com now"
    result = R.redact(text)
    assert isinstance(result, RedactionResult)
    (finding,) = result.findings
    assert finding == Finding(PIIType.EMAIL, 5, 20)
    assert "bob" not in repr(finding) and "example" not in repr(result.findings)
    assert text[finding.start : finding.end] == "bob@example.com"


def test_builtin_detectors_satisfy_protocol() -> None:
    for detector in pii.builtin_detectors():
        assert isinstance(detector, pii.Detector)
        assert detector.name


# --------------------------------------------------------------------------- each type

POSITIVES = [
    # e-mail
    ("Email me at john.doe+tag@example.co.uk.", "john.doe+tag@example.co.uk", "EMAIL"),
    ("<MARIA.GARCIA@MAIL.EXAMPLE.ORG>", "MARIA.GARCIA@MAIL.EXAMPLE.ORG", "EMAIL"),
    ("écrivez à josé.müller@exemple.fr svp", "josé.müller@exemple.fr", "EMAIL"),
    # phones: US, UK, DE, FR, international, context word
    ("call (555) 123-4567 today", "(555) 123-4567", "PHONE"),
    ("my number: 555-123-4567.", "555-123-4567", "PHONE"),
    ("555.123.4567", "555.123.4567", "PHONE"),
    ("toll free 1-800-555-0199!", "1-800-555-0199", "PHONE"),
    ("ring +1 555 123 4567", "+1 555 123 4567", "PHONE"),
    ("London office 020 7946 0958", "020 7946 0958", "PHONE"),
    ("mobile 07700 900123", "07700 900123", "PHONE"),
    ("UK +44 20 7946 0958 or", "+44 20 7946 0958", "PHONE"),
    ("UK +44 (0)20 7946 0958", "+44 (0)20 7946 0958", "PHONE"),
    ("Berlin 030 12345678", "030 12345678", "PHONE"),
    ("Berlin 030/1234567", "030/1234567", "PHONE"),
    ("Handy +49 151 12345678", "+49 151 12345678", "PHONE"),
    ("Paris 01 23 45 67 89", "01 23 45 67 89", "PHONE"),
    ("portable 06.12.34.56.78", "06.12.34.56.78", "PHONE"),
    ("+33 6 12 34 56 78", "+33 6 12 34 56 78", "PHONE"),
    ("compact +4915112345678", "+4915112345678", "PHONE"),
    ("Moscow +7 (495) 123-45-67", "+7 (495) 123-45-67", "PHONE"),
    ("call me on 5551234567 please", "5551234567", "PHONE"),
    ("call +91 94569 23757 2022-08-03T13:20:29Z", "+91 94569 23757", "PHONE"),
    ("Zürich 0041 44 668 18 00", "0041 44 668 18 00", "PHONE"),
    ("tel: 07700900123", "07700900123", "PHONE"),
    # payment cards (valid Luhn, several brands and layouts)
    ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111", "CREDIT_CARD"),
    ("4111-1111-1111-1111", "4111-1111-1111-1111", "CREDIT_CARD"),
    ("mc 5555555555554444.", "5555555555554444", "CREDIT_CARD"),
    ("amex 3782 822463 10005", "3782 822463 10005", "CREDIT_CARD"),
    ("amex 378282246310005", "378282246310005", "CREDIT_CARD"),
    ("discover 6011 1111 1111 1117", "6011 1111 1111 1117", "CREDIT_CARD"),
    ("diners 3056 930902 5904", "3056 930902 5904", "CREDIT_CARD"),
    ("jcb 3530111333300000", "3530111333300000", "CREDIT_CARD"),
    ("exp 4111 1111 1111 1111 12/26", "4111 1111 1111 1111", "CREDIT_CARD"),
    # IBANs, grouped and compact
    ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "GB82 WEST 1234 5698 7654 32", "IBAN"),
    ("to DE89370400440532013000.", "DE89370400440532013000", "IBAN"),
    ("FR14 2004 1010 0505 0001 3M02 606", "FR14 2004 1010 0505 0001 3M02 606", "IBAN"),
    ("nl: NL91ABNA0417164300", "NL91ABNA0417164300", "IBAN"),
    ("lower gb82west12345698765432 ok", "gb82west12345698765432", "IBAN"),
    # IP addresses
    ("login from 192.168.1.10.", "192.168.1.10", "IP_ADDRESS"),
    ("host 10.0.0.1:8080", "10.0.0.1", "IP_ADDRESS"),
    ("version 1.2.3.4 is an address too", "1.2.3.4", "IP_ADDRESS"),
    ("v6 2001:db8:85a3::8a2e:370:7334 seen", "2001:db8:85a3::8a2e:370:7334", "IP_ADDRESS"),
    ("[fe80::1ff:fe23:4567:890a]:443", "fe80::1ff:fe23:4567:890a", "IP_ADDRESS"),
    ("mapped ::ffff:192.0.2.128", "::ffff:192.0.2.128", "IP_ADDRESS"),
    ("loopback ::1.", "::1", "IP_ADDRESS"),
    # national ids
    ("SSN 536-22-1234", "536-22-1234", "US_SSN"),
    ("ssn 536 22 1234", "536 22 1234", "US_SSN"),
    ("my SSN is 536221234", "536221234", "US_SSN"),
    ("NI AB 12 34 56 C", "AB 12 34 56 C", "UK_NINO"),
    ("NINO: JG103759A.", "JG103759A", "UK_NINO"),
    # secrets
    (
        "key sk-proj-abcDEF1234567890abcdef1234 leaked",
        "sk-proj-abcDEF1234567890abcdef1234",
        "SECRET",
    ),
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "SECRET"),
    (
        "ghp_1234567890abcdefghijABCDEFGHIJ123456",
        "ghp_1234567890abcdefghijABCDEFGHIJ123456",
        "SECRET",
    ),
    (
        "github_pat_11ABCDEFG0123456789abc_defGHIJKLmnopQRSTuvwxYZ0123456789",
        "github_pat_11ABCDEFG0123456789abc_defGHIJKLmnopQRSTuvwxYZ0123456789",
        "SECRET",
    ),
    ("slack xoxb-1234-5678-abcdefghij", "xoxb-1234-5678-abcdefghij", "SECRET"),
    (
        "AIzaSyA1234567890abcdefghijklmnopqrstuv",
        "AIzaSyA1234567890abcdefghijklmnopqrstuv",
        "SECRET",
    ),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "SECRET"),
    ("pk_live_51H8abcdefGHIJKL1234", "pk_live_51H8abcdefGHIJKL1234", "SECRET"),
    ("Authorization: Bearer abcdef1234567890XYZ", "abcdef1234567890XYZ", "SECRET"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r",
        "SECRET",
    ),
    ("api_key=abc123XYZ&x=1", "abc123XYZ", "SECRET"),
    ("export OPENAI_API_KEY='hunter2hunter2'", "hunter2hunter2", "SECRET"),
    ('{"password": "correct horse battery"}', "correct horse battery", "SECRET"),
    ("password: Hunter2!", "Hunter2!", "SECRET"),
    ("secret = s3cr3t-value", "s3cr3t-value", "SECRET"),
    ("DB_PASSWORD=letmein", "letmein", "SECRET"),
    ("?access_token=h480djs93hd8&x=1", "h480djs93hd8", "SECRET"),
]


@pytest.mark.parametrize(("text", "value", "kind"), POSITIVES)
def test_each_type_is_detected_and_replaced(text: str, value: str, kind: str) -> None:
    result = R.redact(text)
    expected = text.replace(value, f"<{kind}>")
    assert result.text == expected, (result.text, result.findings)
    assert result.counts == {kind: 1}


def test_pem_private_key_block_is_redacted() -> None:
    key = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEowIBAAKCAQEAx4fLmVt9kz0y8lQ+H2aW\n"
        "aBcD3fGhIjKlMnOpQrStUvWxYz0123456789==\n"
        "-----END RSA PRIVATE KEY-----"
    )
    result = R.redact(f"oops here:\n{key}\nsorry")
    assert result.text == "oops here:\n<SECRET>\nsorry"
    assert result.counts == {"SECRET": 1}


def test_truncated_pem_block_is_still_redacted() -> None:
    result = R.redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
    assert result.text == "<SECRET>"
    result = R.redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n...(cut)")
    assert result.text == "<SECRET>\n...(cut)"


# --------------------------------------------------------------------------- look-alikes

NEGATIVES = [
    "card 4111 1111 1111 1112 (fails Luhn)",
    "4111111111111112",
    "order ORD-2024-118822 shipped",
    "ticket #48213 and TKT-553201",
    "invoice INV-2023-004217",
    "IBAN GB82 WEST 1234 5698 7654 33 (bad checksum)",
    "DE89370400440532013001",
    "XX82WEST12345698765432",  # not a country
    "999.1.1.1 is not an IP",
    "256.100.50.25",
    "1.2.3.4.5 is a version, not an address",
    "v1.2.3.4",
    "dotted date 01.02.2024 and 15.03.2024",
    "SSN 000-12-3456 is invalid",
    "SSN 666-12-3456 and 912-34-5678",
    "SSN 123-00-4567 and 123-45-0000",
    "QQ123456C is not a NINO, nor is GB123456A",
    "$1,234.56 and €2.500,00 and £99.99",
    "on 2024-03-15 at 10:32:45, i.e. 2024-03-15T10:32:45Z",
    "dates 15/03/2024 and 03/15/2024",
    "tracking 1Z999AA10123456784",
    "USPS 9400 1000 0000 0000 0000 00",
    "FedEx 748912345678",
    "account 12345678 sort code 12-34-56",
    "transaction id 4839201774",
    "ref 555 123 4567 8901 is a reference, not a phone",
    "IBAN ie27 hxwb 0041 0552 2731 67 (bad checksum)",
    "reference 2614888595",
    "MAC 00:1A:2B:3C:4D:5E",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "the password reset link did not work",
    "password: reset",
    "my token expired yesterday",
    "max_tokens=1500 and prompt_tokens: 23",
    "public_key=ssh-ed25519",
    "primary_key: 12345678",
    "sk-learn is a library",
    "Bearer token authentication",
    "api_key=<SECRET>",
    "email me at john at example dot com",
    "user@localhost",
    # Code and docs pass through the gateway too: variables, calls and placeholders are not
    # credentials, and version pins / slices are not IP addresses.
    "key = Fernet.generate_key()",
    "token = f.encrypt(b'data')",
    "api_key=os.environ.get('OPENAI_API_KEY')",
    "login(password=password, pwd=pwd)",
    'private_key: "_RSAPrivateKey"',
    "tiktoken==0.2.0 and brotlicffi>=1.2.0.0",
    "pairs = zip(xs[::2], xs[1::2]); rev = path[-2::-1]",
    'OPENAI_API_KEY="your-api-key"',
    "export OPENAI_API_KEY=sk-...",
    'proxy_url="socks5h://<username>:<password>@proxy-host"',
    '_SK_START = b"-----BEGIN OPENSSH PRIVATE KEY-----"',
    "Decimal('+35236450.6')",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_look_alikes_are_not_redacted(text: str) -> None:
    result = R.redact(text)
    assert result.text == text, result.findings
    assert result.counts == {}


# --------------------------------------------------------------------------- checksums


def test_checksum_helpers() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB82WEST12345698765433")
    assert not iban_valid("GB82WEST1234569876543")  # wrong length for GB
    assert not iban_valid("ZZ82WEST12345698765432")
    assert ssn_valid("536221234")
    for bad in ("000221234", "666221234", "936221234", "536001234", "536220000"):
        assert not ssn_valid(bad)


# --------------------------------------------------------------------------- counts, overlap


def test_counts_per_type() -> None:
    text = (
        "a@example.com and b@example.org, call 555-123-4567, "
        "card 4111 1111 1111 1111, from 10.0.0.1 and 10.0.0.2"
    )
    result = R.redact(text)
    assert result.counts == {"EMAIL": 2, "PHONE": 1, "CREDIT_CARD": 1, "IP_ADDRESS": 2}
    assert len(result.findings) == 6
    assert result.text == (
        "<EMAIL> and <EMAIL>, call <PHONE>, card <CREDIT_CARD>, from <IP_ADDRESS> and <IP_ADDRESS>"
    )


def test_adjacent_values_are_replaced_separately() -> None:
    result = R.redact("call me at 07267678953 6217-7739-2184-6091,")
    assert result.counts == {"PHONE": 1, "CREDIT_CARD": 1}


class _Fixed:
    """Test detector that reports fixed spans."""

    def __init__(self, name: str, findings: list[Finding]) -> None:
        self.name = name
        self._findings = findings

    def find(self, text: str) -> list[Finding]:
        return list(self._findings)


def test_overlapping_findings_resolve_to_one_replacement() -> None:
    text = "0123456789ABCDEFGHIJ"
    detectors = [
        _Fixed("a", [Finding(PIIType.PHONE, 2, 8)]),
        _Fixed("b", [Finding(PIIType.CREDIT_CARD, 0, 12)]),  # contains the phone: wins
        _Fixed("c", [Finding(PIIType.EMAIL, 15, 18), Finding(PIIType.SECRET, 16, 20)]),
    ]
    result = PIIRedactor(detectors).redact(text)
    # Nested: the outer finding wins. Partial overlap: the more specific type (SECRET) wins
    # and the placeholder covers both spans so nothing of either leaks.
    assert result.text == "<CREDIT_CARD>CDE<SECRET>"
    assert result.counts == {"CREDIT_CARD": 1, "SECRET": 1}
    assert result.findings == (Finding(PIIType.CREDIT_CARD, 0, 12), Finding(PIIType.SECRET, 15, 20))


def test_real_overlap_card_inside_iban_and_ipv4_inside_ipv6() -> None:
    assert types_found("GB82 WEST 1234 5698 7654 32") == ["IBAN"]
    assert types_found("::ffff:192.0.2.128") == ["IP_ADDRESS"]
    # URL credentials beat the e-mail-shaped "pass@host" they overlap.
    result = R.redact("postgres://bob:pa55word@db.example.com/app")
    assert result.text == "postgres://<SECRET>/app"
    assert result.counts == {"SECRET": 1}
    assert "bob" not in result.text and "pa55word" not in result.text


def test_invalid_custom_spans_are_ignored() -> None:
    detectors = [_Fixed("bad", [Finding(PIIType.EMAIL, -1, 3), Finding(PIIType.EMAIL, 5, 99)])]
    assert PIIRedactor(detectors).redact("short").text == "short"


def test_types_filter() -> None:
    text = "mail a@example.com, ip 10.0.0.1"
    only_email = PIIRedactor(types=[PIIType.EMAIL])
    assert only_email.redact(text).text == "mail <EMAIL>, ip 10.0.0.1"
    assert all(PIIType.EMAIL in d.types for d in only_email.detectors)  # type: ignore[attr-defined]


def test_detect_returns_sorted_non_overlapping_findings() -> None:
    text = "x 10.0.0.1 y a@example.com z 4111 1111 1111 1111"
    found = R.detect(text)
    assert [f.type for f in found] == [PIIType.IP_ADDRESS, PIIType.EMAIL, PIIType.CREDIT_CARD]
    assert all(a.end <= b.start for a, b in zip(found, found[1:], strict=False))


# --------------------------------------------------------------------------- redact_value


def test_redact_value_nested_without_mutating_input() -> None:
    Pair = namedtuple("Pair", "left right")
    value = {
        "user": {"email": "bob@example.com", "age": 42, "tags": ["ok", "call 555-123-4567"]},
        "cards": ("4111 1111 1111 1111", None, 3.5, True),
        "pair": Pair("10.0.0.1", "nothing here"),
        "bob@example.com": "keys are personal data too",
        "ann@example.com": "and two that redact alike keep both values",
    }
    before = copy.deepcopy(value)
    redacted, counts = R.redact_value(value)
    assert value == before  # input untouched
    assert redacted["user"] == {"email": "<EMAIL>", "age": 42, "tags": ["ok", "call <PHONE>"]}
    assert redacted["cards"] == ("<CREDIT_CARD>", None, 3.5, True)
    assert isinstance(redacted["pair"], Pair) and redacted["pair"].left == "<IP_ADDRESS>"
    assert redacted["<EMAIL>"] == "keys are personal data too"
    assert redacted["<EMAIL>#2"] == "and two that redact alike keep both values"
    assert not any("@" in key for key in redacted)
    assert counts == {"EMAIL": 3, "PHONE": 1, "CREDIT_CARD": 1, "IP_ADDRESS": 1}
    assert redacted["user"] is not value["user"]


def test_redact_value_scalars() -> None:
    assert R.redact_value("a@example.com") == ("<EMAIL>", {"EMAIL": 1})
    assert R.redact_value(12345) == (12345, {})
    assert R.redact_value(None) == (None, {})


# --------------------------------------------------------------------------- edge cases


def test_empty_string() -> None:
    result = R.redact("")
    assert result == RedactionResult("", {}, ())
    assert R.detect("") == []


def test_unicode_text_offsets_stay_aligned() -> None:
    text = "Привет 👋, напишите на ivan@example.ru или позвоните +7 (495) 123-45-67 — спасибо ✓"
    result = R.redact(text)
    assert result.text == "Привет 👋, напишите на <EMAIL> или позвоните <PHONE> — спасибо ✓"
    for f in result.findings:
        assert text[f.start : f.end] in ("ivan@example.ru", "+7 (495) 123-45-67")


def test_non_ascii_lowercasing_keeps_offsets() -> None:
    # "İ".lower() is two characters; context look-ups must not shift offsets.
    text = "İİİİ call me on 5551234567 İ"
    assert R.redact(text).text == "İİİİ call me on <PHONE> İ"


def test_no_pii_text_is_returned_unchanged() -> None:
    text = "Why is there a pending charge of $12.99 from 2024-03-15 on my statement?"
    result = R.redact(text)
    assert result.text is text and result.counts == {} and result.findings == ()


def test_one_megabyte_inputs_complete() -> None:
    base = (
        "Hi, email john.doe@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, "
        "ORD-2024-118822 on 2024-03-15 10:32:45, ip 10.0.0.1. "
    )
    text = (base * (1_000_000 // len(base) + 1))[:1_000_000]
    result = R.redact(text)
    assert result.counts["EMAIL"] >= 1_000_000 // len(base)
    assert "4111 1111" not in result.text
    # Adversarial shapes must stay linear (no catastrophic backtracking).
    for shape in ("1" * 1_000_000, "1 " * 500_000, "a" * 999_999 + "@", "key=" * 250_000):
        R.redact(shape)


# --------------------------------------------------------------------------- Presidio


@pytest.mark.skipif(
    importlib.util.find_spec("presidio_analyzer") is not None, reason="presidio is installed"
)
def test_presidio_detector_without_presidio_raises_clear_error() -> None:
    with pytest.raises(ImportError) as excinfo:
        PresidioDetector()
    assert isinstance(excinfo.value, PresidioNotInstalledError)
    assert "pip install 'agent-lightning[presidio]'" in str(excinfo.value)


def test_importing_pii_does_not_import_presidio() -> None:
    code = (
        "import sys, agent_lightning.security.pii as p; "
        "assert 'presidio_analyzer' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_presidio_adapter_maps_results_with_an_injected_analyzer() -> None:
    class FakeAnalyzer:
        def analyze(
            self, text: str, entities: list[str], language: str, score_threshold: float
        ) -> list[SimpleNamespace]:
            assert entities == ["PERSON", "LOCATION"] and language == "en"
            return [
                SimpleNamespace(entity_type="PERSON", start=0, end=5, score=0.9),
                SimpleNamespace(entity_type="LOCATION", start=15, end=21, score=0.8),
                SimpleNamespace(entity_type="PERSON", start=22, end=25, score=0.1),
            ]

    detector = PresidioDetector(analyzer=FakeAnalyzer())
    redactor = PIIRedactor([*pii.builtin_detectors(), detector])
    result = redactor.redact("Alice moved to London bob@example.com")
    assert result.text == "<PERSON> moved to <LOCATION> <EMAIL>"
    assert result.counts == {"PERSON": 1, "LOCATION": 1, "EMAIL": 1}


def test_presidio_rejects_unknown_entities() -> None:
    with pytest.raises(ValueError):
        PresidioDetector(entities=["CREDIT_CARD"], analyzer=object())
