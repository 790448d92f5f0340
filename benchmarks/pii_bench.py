"""Recall/precision and throughput benchmark for the PII redactor.

Generates a labelled set of support-chat messages (phrasing from the Banking77 training
queries when ``shared/data/banking77/train.csv`` is present, built-in templates otherwise)
with planted PII of every supported type and with look-alikes that must be left alone
(invalid-Luhn numbers, order/ticket/invoice ids, bad-checksum IBANs, invalid IPs, amounts,
dates, timestamps, tracking numbers, version strings). Values are generated independently
of the detector code: card numbers get real Luhn check digits, IBANs real mod-97 check
digits, and so on.

Scoring is span level: a prediction is a true positive when it overlaps a planted span of
the same type; a planted span is recalled when some prediction of its type overlaps it.
The generator and the detectors were written side by side, so treat the scores as a
regression gate over many formats and placements, not as an estimate of real-world recall.

    python benchmarks/pii_bench.py [--n 2000] [--seed 7] [--json OUT]

Exits non-zero if any structured type (EMAIL, CREDIT_CARD, IBAN, PHONE, IP_ADDRESS, SECRET)
has recall < 0.99 or precision < 0.95.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import random
import statistics
import string
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BANKING77 = REPO.parent / "shared/data/banking77/train.csv"

try:
    from agent_lightning.security.pii import PIIRedactor, PIIType
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
    from agent_lightning.security.pii import PIIRedactor, PIIType

GATED = ("EMAIL", "CREDIT_CARD", "IBAN", "PHONE", "IP_ADDRESS", "SECRET")
MIN_RECALL = 0.99
MIN_PRECISION = 0.95

FALLBACK_QUERIES = [
    "I am still waiting on my card?",
    "Why was I charged an extra fee on my statement?",
    "How do I top up my account with a transfer?",
    "My payment was declined at the shop, can you check?",
    "I think someone else is using my card.",
    "Can you tell me why my transfer has not arrived yet?",
    "I would like to close my account please.",
    "The exchange rate I got seems wrong.",
    "How long does a refund usually take?",
    "I forgot my passcode and the app locked me out.",
    "Is there a limit on how much I can withdraw from an ATM?",
    "I need to change the address on my profile.",
]

FIRST = ["john", "maria", "li", "ahmed", "olga", "pierre", "sven", "aisha", "kenji", "lucia"]
LAST = ["smith", "garcia", "wang", "khan", "ivanova", "dubois", "larsen", "okafor", "sato"]
DOMAINS = [
    "example.com",
    "mail.example.org",
    "gmail.com",
    "outlook.co.uk",
    "bank-mail.de",
    "post.example.fr",
    "uni.edu",
    "company.io",
    "yahoo.com",
    "sub.domain.example.net",
]


# --------------------------------------------------------------------------- value makers


def luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    # Position parity counted from the check digit that will be appended.
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


CARD_BRANDS: list[tuple[Callable[[random.Random], str], int, str]] = [
    (lambda r: "4", 16, "4444"),
    (lambda r: "4", 13, "none"),
    (lambda r: "4", 19, "44443"),
    (lambda r: str(r.randint(51, 55)), 16, "4444"),
    (lambda r: str(r.randint(2221, 2720)), 16, "4444"),
    (lambda r: r.choice(["34", "37"]), 15, "465"),
    (lambda r: r.choice(["6011", "65"]), 16, "4444"),
    (lambda r: str(r.randint(3528, 3589)), 16, "4444"),
    (lambda r: "36", 14, "464"),
    (lambda r: "62", 16, "4444"),
    (lambda r: "62", 19, "none"),
]


def fmt_groups(digits: str, layout: str, sep: str) -> str:
    if layout == "none" or not sep:
        return digits
    out, pos = [], 0
    for size in layout:
        out.append(digits[pos : pos + int(size)])
        pos += int(size)
    return sep.join(out)


def make_card(rng: random.Random, valid: bool = True) -> str:
    prefix_fn, length, layout = rng.choice(CARD_BRANDS)
    digits = luhn_complete(rng, prefix_fn(rng), length)
    if not valid:  # any single-digit change breaks Luhn
        last = int(digits[-1])
        digits = digits[:-1] + str((last + rng.randint(1, 9)) % 10)
    sep = rng.choice(["", " ", "-", " "]) if layout != "none" else ""
    return fmt_groups(digits, layout, sep)


# (country, BBAN spec): 'n' digit, 'a' upper letter, 'c' alnum
IBAN_SPECS = {
    "GB": "aaaa" + "n" * 14,
    "DE": "n" * 18,
    "FR": "n" * 10 + "c" * 11 + "nn",
    "ES": "n" * 20,
    "IT": "a" + "n" * 10 + "c" * 12,
    "NL": "aaaa" + "n" * 10,
    "BE": "n" * 12,
    "CH": "n" * 5 + "c" * 12,
    "PL": "n" * 24,
    "AT": "n" * 16,
    "IE": "aaaa" + "n" * 14,
    "PT": "n" * 21,
    "SE": "n" * 20,
    "NO": "n" * 11,
    "DK": "n" * 14,
}


def iban_check(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


def make_iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(list(IBAN_SPECS))
    pools = {"n": string.digits, "a": string.ascii_uppercase}
    pools["c"] = string.digits + string.ascii_uppercase
    bban = "".join(rng.choice(pools[k]) for k in IBAN_SPECS[country])
    check = iban_check(country, bban)
    if not valid:
        good = check
        while check == good:
            check = f"{rng.randint(2, 98):02d}"
    iban = country + check + bban
    style = rng.random()
    if style < 0.5:
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    if rng.random() < 0.05:
        iban = iban.lower()
    return iban


def d(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def make_phone(rng: random.Random) -> str:
    area = str(rng.randint(201, 989))
    makers: list[Callable[[], str]] = [
        lambda: f"({area}) {d(rng, 3)}-{d(rng, 4)}",
        lambda: f"({area}){d(rng, 3)}-{d(rng, 4)}",
        lambda: f"{area}-{d(rng, 3)}-{d(rng, 4)}",
        lambda: f"{area}.{d(rng, 3)}.{d(rng, 4)}",
        lambda: f"{area} {d(rng, 3)} {d(rng, 4)}",
        lambda: f"+1 {area} {d(rng, 3)} {d(rng, 4)}",
        lambda: f"+1-{area}-{d(rng, 3)}-{d(rng, 4)}",
        lambda: f"+1 ({area}) {d(rng, 3)}-{d(rng, 4)}",
        lambda: f"1-800-{d(rng, 3)}-{d(rng, 4)}",
        lambda: f"+44 20 {d(rng, 4)} {d(rng, 4)}",
        lambda: f"020 {d(rng, 4)} {d(rng, 4)}",
        lambda: f"07{d(rng, 3)} {d(rng, 6)}",
        lambda: f"+44 7{d(rng, 3)} {d(rng, 6)}",
        lambda: f"+44 (0)20 {d(rng, 4)} {d(rng, 4)}",
        lambda: f"(020) {d(rng, 4)} {d(rng, 4)}",
        lambda: f"0161 {d(rng, 3)} {d(rng, 4)}",
        lambda: f"+49 30 {d(rng, 8)}",
        lambda: f"030 {d(rng, 8)}",
        lambda: f"030/{d(rng, 7)}",
        lambda: f"+49 151 {d(rng, 8)}",
        lambda: f"0151 {d(rng, 8)}",
        lambda: f"+49 (0)89 {d(rng, 4)} {d(rng, 4)}",
        lambda: f"089 {d(rng, 4)} {d(rng, 4)}",
        lambda: f"0{rng.randint(1, 9)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}",
        lambda: f"06.{d(rng, 2)}.{d(rng, 2)}.{d(rng, 2)}.{d(rng, 2)}",
        lambda: f"07-{d(rng, 2)}-{d(rng, 2)}-{d(rng, 2)}-{d(rng, 2)}",
        lambda: f"+33 6 {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}",
        lambda: f"+33 1 {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}",
        lambda: f"+91 9{d(rng, 4)} {d(rng, 5)}",
        lambda: f"+61 2 {d(rng, 4)} {d(rng, 4)}",
        lambda: f"+81 3-{d(rng, 4)}-{d(rng, 4)}",
        lambda: f"+4915{d(rng, 9)}",
        lambda: f"+1{area}{d(rng, 7)}",
        lambda: f"+1.{area}.{d(rng, 3)}.{d(rng, 4)}",
        lambda: f"(+44) 20 {d(rng, 4)} {d(rng, 4)}",
        lambda: f"0049 30 {d(rng, 8)}",
        lambda: f"+353 1 {d(rng, 3)} {d(rng, 4)}",
        lambda: f"+34 6{d(rng, 2)} {d(rng, 3)} {d(rng, 3)}",
        lambda: f"+39 06 {d(rng, 4)} {d(rng, 4)}",
        lambda: f"+7 (495) {d(rng, 3)}-{d(rng, 2)}-{d(rng, 2)}",
        lambda: f"+55 11 9{d(rng, 4)}-{d(rng, 4)}",
    ]
    return rng.choice(makers)()


def make_email(rng: random.Random) -> str:
    f, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [
            f"{f}.{last}",
            f"{f}{last}{rng.randint(1, 999)}",
            f"{f[0]}_{last}+{rng.choice(['bank', 'news', 'x'])}",
            f"{f}-{last}",
            f"{f.upper()}.{last.upper()}",
            f"{f}",
            "josé.müller",
        ]
    )
    return f"{local}@{rng.choice(DOMAINS)}"


def make_ipv4(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if kind < 0.5:
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return ".".join(str(rng.randint(1, 255) if i == 0 else rng.randint(0, 255)) for i in range(4))


def h(rng: random.Random, n: int = 4) -> str:
    return (
        "".join(rng.choice("0123456789abcdef") for _ in range(rng.randint(1, n))).lstrip("0") or "0"
    )


def make_ipv6(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return ":".join(f"{rng.randint(0, 0xFFFF):04x}" for _ in range(8))
    if kind == 1:
        return f"2001:db8:{h(rng)}:{h(rng)}::{h(rng)}"
    if kind == 2:
        return f"fe80::{h(rng)}:{h(rng)}:{h(rng)}:{h(rng)}"
    if kind == 3:
        return f"::ffff:{make_ipv4(rng)}"
    if kind == 4:
        return "::1"
    return ":".join(h(rng) for _ in range(8)).upper()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def rand_token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits):
    return "".join(rng.choice(alphabet) for _ in range(n))


def make_ssn(rng: random.Random, valid: bool = True) -> str:
    if valid:
        area = rng.choice([rng.randint(1, 665), rng.randint(667, 899)])
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
    else:
        area, group, serial = rng.choice(
            [
                (0, rng.randint(1, 99), rng.randint(1, 9999)),
                (666, rng.randint(1, 99), rng.randint(1, 9999)),
                (rng.randint(900, 999), rng.randint(1, 99), rng.randint(1, 9999)),
                (rng.randint(1, 665), 0, rng.randint(1, 9999)),
                (rng.randint(1, 665), rng.randint(1, 99), 0),
            ]
        )
    sep = rng.choice(["-", "-", " "])
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def make_nino(rng: random.Random) -> str:
    while True:
        prefix = rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)
        if prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            break
    digits = d(rng, 6)
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{prefix}{digits}{suffix}"


# --------------------------------------------------------------------------- snippets

Snippet = tuple[str, list[tuple[int, int, str]]]  # text, [(start, end, type)] within it


def pii_snippet(rng: random.Random, kind: str) -> Snippet:
    """A phrase containing one planted value; returns text and the value's span."""

    def wrap(template: str, value: str, vtype: str) -> Snippet:
        i = template.index("{v}")
        text = template.replace("{v}", value)
        return text, [(i, i + len(value), vtype)]

    if kind == "EMAIL":
        v = make_email(rng)
        t = rng.choice(
            [
                "my email is {v}",
                "email me at {v}",
                "({v})",
                "<{v}>",
                "contact: {v}",
                "send it to {v}",
                '"{v}"',
                "mailto:{v}",
                "{v}",
            ]
        )
        return wrap(t, v, kind)
    if kind == "PHONE":
        v = make_phone(rng)
        t = rng.choice(
            [
                "call me on {v}",
                "my number is {v}",
                "phone: {v}",
                "({v})",
                "you can reach me at {v}",
                "tel. {v}",
                "my mobile {v}",
                "{v}",
                "ring {v} after 5pm",
            ]
        )
        return wrap(t, v, kind)
    if kind == "PHONE_CTX":  # bare digit run made a phone by a context word
        v = rng.choice([f"{rng.randint(201, 989)}{d(rng, 7)}", f"07{d(rng, 9)}"])
        t = rng.choice(["call me on {v}", "my phone number is {v}", "tel: {v}", "text me at {v}"])
        return wrap(t, v, "PHONE")
    if kind == "CREDIT_CARD":
        v = make_card(rng)
        t = rng.choice(
            [
                "my card {v} was declined",
                "card number: {v}",
                "the card ending in {v}",
                "({v})",
                "{v}",
                "I used {v} yesterday",
            ]
        )
        return wrap(t, v, kind)
    if kind == "IBAN":
        v = make_iban(rng)
        t = rng.choice(
            [
                "IBAN: {v}",
                "send it to {v}",
                "my IBAN is {v}",
                "account {v}",
                "({v})",
                "{v}",
                "transfer to IBAN {v} please",
            ]
        )
        return wrap(t, v, kind)
    if kind == "IP_ADDRESS":
        v = make_ipv6(rng) if rng.random() < 0.4 else make_ipv4(rng)
        t = rng.choice(
            [
                "login from {v}",
                "my IP is {v}",
                "IP address: {v}",
                "({v})",
                "{v}",
                "the app says blocked {v}",
            ]
        )
        if ":" not in v and rng.random() < 0.2:
            t = "host {v}:8443"
        if ":" in v and rng.random() < 0.2:
            t = "[{v}]:443"
        return wrap(t, v, kind)
    if kind == "US_SSN":
        v = make_ssn(rng)
        t = rng.choice(["my SSN is {v}", "SSN: {v}", "social security number {v}", "({v})"])
        return wrap(t, v, kind)
    if kind == "UK_NINO":
        v = make_nino(rng)
        t = rng.choice(["my NI number is {v}", "NINO: {v}", "national insurance {v}", "{v}"])
        return wrap(t, v, kind)
    if kind == "SECRET":
        return secret_snippet(rng)
    raise ValueError(kind)


def secret_snippet(rng: random.Random) -> Snippet:
    alnum = string.ascii_letters + string.digits
    style = rng.randrange(18)
    if style == 0:
        v = "sk-" + rand_token(rng, 48)
    elif style == 1:
        v = "sk-proj-" + rand_token(rng, 56, alnum + "_-")
    elif style == 2:
        v = "AKIA" + rand_token(rng, 16, string.ascii_uppercase + string.digits)
    elif style == 3:
        v = rng.choice(["ghp_", "gho_"]) + rand_token(rng, 36)
    elif style == 4:
        v = "github_pat_" + rand_token(rng, 22) + "_" + rand_token(rng, 59)
    elif style == 5:
        v = f"xox{rng.choice('bpars')}-{d(rng, 12)}-{d(rng, 12)}-{rand_token(rng, 24)}"
    elif style == 6:
        v = "AIza" + rand_token(rng, 35, alnum + "_-")
    elif style == 7:
        v = rng.choice(["sk_live_", "pk_live_", "sk_test_"]) + rand_token(rng, 24)
    elif style == 8:
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = b64url(json.dumps({"sub": d(rng, 8), "iat": 1700000000}).encode())
        v = f"{header}.{payload}.{b64url(rng.randbytes(32))}"
    elif style == 9:
        tok = rand_token(rng, rng.randint(24, 40), alnum + "-._")
        text = rng.choice(["Authorization: Bearer ", "bearer ", "header was Bearer "])
        return text + tok, [(len(text), len(text) + len(tok), "SECRET")]
    elif style == 10:
        key = rng.choice(["api_key", "API_KEY", "apikey", "OPENAI_API_KEY", "secret", "token"])
        val = rand_token(rng, rng.randint(16, 40))
        quote = rng.choice(["", '"', "'"])
        op = rng.choice(["=", ": ", " = "])
        text = f"{key}{op}{quote}"
        return text + val + quote, [(len(text), len(text) + len(val), "SECRET")]
    elif style == 11:
        val = rand_token(rng, 6, string.ascii_letters) + d(rng, 3) + rng.choice("!#$%")
        text = rng.choice(["password=", "password: ", "pwd=", '"password": "'])
        tail = '"' if text.endswith('"') else ""
        return text + val + tail, [(len(text), len(text) + len(val), "SECRET")]
    elif style == 12:
        body = "\n".join(
            base64.b64encode(rng.randbytes(48)).decode() for _ in range(rng.randint(2, 5))
        )
        kind = rng.choice(["RSA ", "EC ", "", "OPENSSH "])
        v = f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"
    elif style == 14:
        v = "sk-ant-api03-" + rand_token(rng, 80, alnum + "_-")
    elif style == 15:
        v = rng.choice(["rk_live_", "whsec_"]) + rand_token(rng, 32)
    elif style == 16:
        key = rng.choice(["client_secret", "DB_PASSWORD", "aws_secret_access_key", "auth_token"])
        val = rand_token(rng, 40, alnum + "/+")
        text = f"{key}={val}" if rng.random() < 0.5 else f'{{"{key}": "{val}"}}'
        i = text.index(val)
        return text, [(i, i + len(val), "SECRET")]
    elif style == 17:
        tok = base64.b64encode(f"{rng.choice(FIRST)}:{rand_token(rng, 12)}".encode()).decode()
        text = "Authorization: Basic "
        return text + tok, [(len(text), len(text) + len(tok), "SECRET")]
    else:
        user = rng.choice(FIRST)
        pw = rand_token(rng, 10)
        text = f"postgres://{user}:"
        v_full = f"{text}{pw}@db.internal:5432/app"
        start = len("postgres://")
        return v_full, [(start, start + len(user) + 1 + len(pw), "SECRET")]
    t = rng.choice(["my key is {v}", "key: {v}", "({v})", "{v}", "I leaked {v} in a chat"])
    i = t.index("{v}")
    return t.replace("{v}", v), [(i, i + len(v), "SECRET")]


def lookalike_snippet(rng: random.Random) -> str:
    """A phrase with a value that resembles PII but must not be redacted."""
    makers: list[Callable[[], str]] = [
        lambda: f"card {make_card(rng, valid=False)} (a typo, it fails Luhn)",
        lambda: f"order ORD-{rng.randint(2019, 2025)}-{d(rng, 6)}",
        lambda: f"order #{d(rng, 7)}",
        lambda: f"ticket #{d(rng, 5)}",
        lambda: f"ticket TKT-{d(rng, 6)}",
        lambda: f"invoice INV-{rng.randint(2019, 2025)}-{d(rng, 6)}",
        lambda: f"IBAN {make_iban(rng, valid=False)}",
        lambda: f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.1",
        lambda: f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 30)}.{d(rng, 3)}.1",
        lambda: f"version v{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 30)}",
        lambda: f"${rng.randint(1, 9)},{d(rng, 3)}.{d(rng, 2)}",
        lambda: f"€{rng.randint(1, 9)}.{d(rng, 3)},{d(rng, 2)}",
        lambda: f"£{rng.randint(1, 999)}.{d(rng, 2)}",
        lambda: f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        lambda: f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2019, 2025)}",
        lambda: f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2019, 2025)}",
        lambda: (
            f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
        ),
        lambda: f"at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        lambda: (
            f"tracking 1Z{rand_token(rng, 6, string.ascii_uppercase + string.digits)}{d(rng, 10)}"
        ),
        lambda: "tracking 9400 " + " ".join(d(rng, 4) for _ in range(4)) + " " + d(rng, 2),
        lambda: f"FedEx {rng.randint(1, 9)}{d(rng, 11)}",
        lambda: f"SSN {make_ssn(rng, valid=False)} was rejected",
        lambda: f"account {d(rng, 8)} sort code {d(rng, 2)}-{d(rng, 2)}-{d(rng, 2)}",
        lambda: f"reference {d(rng, 10)}",
        lambda: f"transaction id {rng.randint(1, 9)}{d(rng, 11)}",
        lambda: "device " + ":".join(f"{rng.randint(0, 255):02X}" for _ in range(6)),
        lambda: f"commit {rand_token(rng, 40, '0123456789abcdef')}",
        lambda: (
            "request " + "-".join(rand_token(rng, n, "0123456789abcdef") for n in (8, 4, 4, 4, 12))
        ),
        lambda: f"{rng.randint(2, 40)}% cashback on {rng.randint(2, 12)} purchases",
        lambda: "the password reset link did not work",
        lambda: "my token expired",
        lambda: f"max_tokens={rng.randint(100, 4000)}",
        lambda: rng.choice(
            [
                "api_key=os.environ['OPENAI_API_KEY']",
                "key = settings.SECRET_KEY",
                'OPENAI_API_KEY="your-api-key-here"',
                "token = response.json()['token']",
            ]
        ),
        lambda: f"pin brotli>={rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.0",
        lambda: f"step {rng.randint(1, 9)} of {rng.randint(10, 99)}: xs[1::2]",
    ]
    return rng.choice(makers)()


# --------------------------------------------------------------------------- messages


@dataclass
class Message:
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)


def load_queries() -> list[str]:
    if BANKING77.is_file():
        with BANKING77.open(newline="", encoding="utf-8") as fh:
            rows = [r["text"].strip() for r in csv.DictReader(fh)]
        rows = [r for r in rows if r]
        if rows:
            return rows
    return FALLBACK_QUERIES


PII_KINDS = [
    "EMAIL",
    "PHONE",
    "PHONE_CTX",
    "CREDIT_CARD",
    "IBAN",
    "IP_ADDRESS",
    "US_SSN",
    "UK_NINO",
    "SECRET",
    "SECRET",
]
LEADS = ["", "", "(", '"', "'", "[", ": "]
TRAILS = ["", ".", ",", "!", "?", ")", ";", ":", " -", '"', "."]


def build_message(rng: random.Random, queries: list[str]) -> Message:
    query = rng.choice(queries)
    roll = rng.random()
    snippets: list[Snippet] = []
    if roll < 0.1:
        return Message(query)  # untouched real query
    n_pii = 0 if roll < 0.35 else rng.choice([1, 1, 1, 2, 2, 3])
    for _ in range(n_pii):
        snippets.append(pii_snippet(rng, rng.choice(PII_KINDS)))
    for _ in range(rng.choice([0, 1, 1, 2]) if n_pii else rng.choice([1, 2, 3])):
        snippets.append((lookalike_snippet(rng), []))
    rng.shuffle(snippets)

    # Place snippets at the start, inside (at a word boundary) or at the end of the query.
    words = query.split(" ")
    slots: dict[int, list[Snippet]] = {}
    for snip in snippets:
        where = rng.choice([0, len(words), rng.randint(0, len(words))])
        slots.setdefault(where, []).append(snip)
    text = ""
    spans: list[tuple[int, int, str]] = []

    def add(piece: str) -> None:
        nonlocal text
        if text and not text.endswith((" ", "\n")):
            text += " "
        text += piece

    for idx in range(len(words) + 1):
        for snip_text, snip_spans in slots.get(idx, []):
            lead, trail = rng.choice(LEADS), rng.choice(TRAILS)
            add("")
            base = len(text) + len(lead)
            text += lead + snip_text + trail
            spans.extend((base + s, base + e, t) for s, e, t in snip_spans)
        if idx < len(words):
            add(words[idx])
    return Message(text.rstrip(), spans)  # no leading space, offsets hold


def generate(n: int, seed: int) -> list[Message]:
    rng = random.Random(seed)
    queries = load_queries()
    return [build_message(rng, queries) for _ in range(n)]


# --------------------------------------------------------------------------- scoring


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(msgs: list[Message], redactor: PIIRedactor) -> dict[str, dict[str, float]]:
    planted, recalled, predicted, correct = Counter(), Counter(), Counter(), Counter()
    for m in msgs:
        preds = redactor.detect(m.text)
        for s, e, t in m.spans:
            planted[t] += 1
            if any(p.type == t and overlaps((p.start, p.end), (s, e)) for p in preds):
                recalled[t] += 1
        for p in preds:
            predicted[p.type.value] += 1
            if any(t == p.type and overlaps((p.start, p.end), (s, e)) for s, e, t in m.spans):
                correct[p.type.value] += 1
    out: dict[str, dict[str, float]] = {}
    for t in [x.value for x in PIIType if x.value in planted or x.value in predicted]:
        out[t] = {
            "planted": planted[t],
            "recall": recalled[t] / planted[t] if planted[t] else 1.0,
            "predicted": predicted[t],
            "precision": correct[t] / predicted[t] if predicted[t] else 1.0,
        }
    tp_p, tot_p = sum(planted.values()), sum(predicted.values())
    out["OVERALL"] = {
        "planted": tp_p,
        "recall": sum(recalled.values()) / tp_p if tp_p else 1.0,
        "predicted": tot_p,
        "precision": sum(correct.values()) / tot_p if tot_p else 1.0,
    }
    return out


def throughput(texts: list[str], redactor: PIIRedactor, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` wall time for redacting every text once (best = least noise),
    plus per-message latency percentiles (each message's best time over the repeats)."""
    if not texts:
        return {"messages": 0, "avg_chars": 0.0, "msgs_per_s": 0.0, "us_per_msg": 0.0}
    runs = []
    per_msg = [float("inf")] * len(texts)
    clock = time.perf_counter
    for _ in range(repeats):
        t0 = clock()
        for t in texts:
            redactor.redact(t)
        runs.append(clock() - t0)
        for i, t in enumerate(texts):
            s = clock()
            redactor.redact(t)
            per_msg[i] = min(per_msg[i], clock() - s)
    best = min(runs)
    per_msg.sort()
    return {
        "messages": len(texts),
        "avg_chars": statistics.fmean(len(t) for t in texts),
        "msgs_per_s": len(texts) / best,
        "us_per_msg": best / len(texts) * 1e6,
        "p50_us": per_msg[len(per_msg) // 2] * 1e6,
        "p99_us": per_msg[min(len(per_msg) - 1, int(len(per_msg) * 0.99))] * 1e6,
        "max_us": per_msg[-1] * 1e6,
    }


def clean_200(queries: list[str], rng: random.Random, count: int = 500) -> list[str]:
    """~200-character no-PII messages made by joining real queries."""
    out = []
    for _ in range(count):
        text = ""
        while len(text) < 200:
            text += rng.choice(queries) + " "
        out.append(text[:200])
    return out


def print_report(scores: dict, perf: dict[str, dict[str, float]], failures: list[str]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain fallback
        print(f"{'type':<12}{'planted':>9}{'recall':>9}{'predicted':>11}{'precision':>11}")
        for t, s in scores.items():
            print(
                f"{t:<12}{s['planted']:>9}{s['recall']:>9.4f}{s['predicted']:>11}"
                f"{s['precision']:>11.4f}"
            )
        for name, p in perf.items():
            print(
                f"{name}: {p['msgs_per_s']:.0f} msg/s, {p['us_per_msg']:.1f} us/msg, "
                f"p50 {p['p50_us']:.1f} us, p99 {p['p99_us']:.1f} us, max {p['max_us']:.1f} us"
            )
    else:
        console = Console(width=max(Console().width, 110))
        table = Table(title="PII redaction: span-level recall / precision")
        for col in ("type", "planted", "recall", "predicted", "precision", "gated"):
            table.add_column(col, justify="left" if col == "type" else "right")
        for t, s in scores.items():
            table.add_row(
                t,
                str(s["planted"]),
                f"{s['recall']:.4f}",
                str(s["predicted"]),
                f"{s['precision']:.4f}",
                "yes" if t in GATED else "",
            )
        console.print(table)
        perf_table = Table(title="Throughput (best of 5 passes, 1 core)")
        for col in (
            "set",
            "messages",
            "avg chars",
            "msgs/s",
            "µs/msg",
            "p50 µs",
            "p99 µs",
            "max µs",
        ):
            perf_table.add_column(col, justify="left" if col == "set" else "right")
        for name, p in perf.items():
            perf_table.add_row(
                name,
                str(p["messages"]),
                f"{p['avg_chars']:.0f}",
                f"{p['msgs_per_s']:,.0f}",
                f"{p['us_per_msg']:.1f}",
                f"{p['p50_us']:.1f}",
                f"{p['p99_us']:.1f}",
                f"{p['max_us']:.1f}",
            )
        console.print(perf_table)
    if failures:
        print("FAIL: " + "; ".join(failures))
    else:
        print(f"OK: every gated type has recall >= {MIN_RECALL} and precision >= {MIN_PRECISION}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="messages to generate (>= 1000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="write results as JSON here")
    args = parser.parse_args(argv)
    if args.n < 1000:
        parser.error("--n must be at least 1000")

    msgs = generate(args.n, args.seed)
    redactor = PIIRedactor()
    scores = score(msgs, redactor)
    queries = load_queries()
    perf = {
        "all generated": throughput([m.text for m in msgs], redactor),
        "generated, no PII": throughput([m.text for m in msgs if not m.spans], redactor),
        "200-char clean": throughput(clean_200(queries, random.Random(args.seed)), redactor),
    }
    failures = [
        f"{t} {k} {scores[t][k]:.4f} < {lim}"
        for t in GATED
        if t in scores
        for k, lim in (("recall", MIN_RECALL), ("precision", MIN_PRECISION))
        if scores[t][k] < lim
    ]
    failures += [f"{t} never planted" for t in GATED if t not in scores]
    print(
        f"{len(msgs)} messages, {sum(len(m.spans) for m in msgs)} planted values, "
        f"source: {'Banking77 train.csv' if BANKING77.is_file() else 'built-in templates'}"
    )
    print_report(scores, perf, failures)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"n": args.n, "seed": args.seed, "scores": scores, "throughput": perf},
                indent=2,
            )
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
