"""PII detection and redaction for the ingestion pipeline and the LLM gateway.

Design
------
Every event and every LLM call passes through :class:`PIIRedactor` before anything is
stored, inside a gateway latency budget of ~2 ms, so the detectors are built for the common
case of text that contains *no* PII:

* Each built-in detector is a small class with a precompiled regex and a cheap pre-check
  (``"@" in text``, a digit count, a handful of literal trigger substrings) that skips the
  regex entirely when the text cannot contain a match. A typical 200-character chat message
  with no PII costs a few microseconds.
* Regexes only *propose* candidates; precision comes from validation in Python: Luhn plus
  issuer prefixes for cards, ISO 13616 length table plus mod-97 for IBANs, octet ranges and
  :mod:`ipaddress` for IP addresses, the SSA area/group/serial rules for SSNs, and phone
  numbers must have phone-like structure (a ``+`` prefix, national grouping with separators,
  or a context word such as "call"/"tel") so arbitrary digit runs, dates, order ids and
  amounts survive untouched.
* All quantifiers are bounded and candidates are anchored on non-word boundaries, so the
  run time stays linear even on megabyte-sized adversarial inputs.
* Digit-based detectors share one scan of the text for numeric "islands" (digits joined by
  separators) and run their regexes only in small windows around islands with enough
  digits; keyword- and prefix-based detectors are anchored on ``str.find`` hits. CPython's
  ``re`` cannot skip ahead for patterns that start with a lookbehind or an alternation, so
  scanning whole texts with them would cost a failed attempt at every character.
* Findings from all detectors are merged: overlapping findings form a cluster; a finding
  nested inside a longer one is part of it (a Luhn-valid run inside an IBAN), among the
  outermost the most specific type wins (``_SPECIFICITY``, then length), and the
  placeholder covers the cluster's whole extent so no fragment of a partially overlapped
  value leaks. The output is assembled from slices of the original string, which is
  equivalent to replacing right to left: offsets always refer to the input text.

A :class:`Finding` carries only the type and offsets, never the matched value, so findings
can be logged or counted without re-leaking what was removed.

Names and locations cannot be found with regexes; :class:`PresidioDetector` adapts
``presidio-analyzer`` for that when the optional extra is installed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from agent_lightning.security._pii_checks import (
    IBAN_LENGTHS,
    card_brand_ok,
    iban_valid,
    ipv6_valid,
    luhn_valid,
    ssn_valid,
)

__all__ = [
    "BUILTIN_TYPES",
    "CreditCardDetector",
    "Detector",
    "EmailDetector",
    "Finding",
    "IBANDetector",
    "IPAddressDetector",
    "PIIRedactor",
    "PIIType",
    "PhoneDetector",
    "PresidioDetector",
    "PresidioNotInstalledError",
    "RedactionResult",
    "SecretDetector",
    "UKNINODetector",
    "USSSNDetector",
    "builtin_detectors",
    "default_redactor",
    "placeholder",
]


class PIIType(StrEnum):
    """Kinds of sensitive data; the value is used in the placeholder, e.g. ``<EMAIL>``."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CREDIT_CARD = "CREDIT_CARD"
    IBAN = "IBAN"
    IP_ADDRESS = "IP_ADDRESS"
    US_SSN = "US_SSN"
    UK_NINO = "UK_NINO"
    SECRET = "SECRET"
    # Only produced by the optional PresidioDetector.
    PERSON = "PERSON"
    LOCATION = "LOCATION"


#: Types found by the built-in regex + checksum detectors.
BUILTIN_TYPES: frozenset[PIIType] = frozenset(
    {
        PIIType.EMAIL,
        PIIType.PHONE,
        PIIType.CREDIT_CARD,
        PIIType.IBAN,
        PIIType.IP_ADDRESS,
        PIIType.US_SSN,
        PIIType.UK_NINO,
        PIIType.SECRET,
    }
)

# Which type wins when overlapping findings are not nested: credentials and checksum-validated
# values beat structurally weaker ones (URL credentials "user:pass" against the e-mail-shaped
# "pass@host"). Equal spans are decided the same way ("password=<digits>" is a SECRET).
_SPECIFICITY: dict[PIIType, int] = {
    PIIType.SECRET: 90,
    PIIType.CREDIT_CARD: 80,
    PIIType.IBAN: 75,
    PIIType.US_SSN: 70,
    PIIType.UK_NINO: 65,
    PIIType.EMAIL: 60,
    PIIType.IP_ADDRESS: 50,
    PIIType.PHONE: 40,
    PIIType.PERSON: 20,
    PIIType.LOCATION: 10,
}


def placeholder(pii_type: PIIType) -> str:
    """Return the replacement text for a type, e.g. ``<CREDIT_CARD>``."""
    return f"<{pii_type.value}>"


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected span ``text[start:end]``. Deliberately holds no copy of the value."""

    type: PIIType
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class RedactionResult:
    """Redacted text, per-type counts (only non-zero types) and the resolved findings.

    ``findings`` offsets refer to the *input* text.
    """

    text: str
    counts: dict[str, int]
    findings: tuple[Finding, ...]


@runtime_checkable
class Detector(Protocol):
    """Anything that finds PII spans in a string."""

    name: str

    def find(self, text: str) -> list[Finding]: ...


# --------------------------------------------------------------------------- shared scan

_DIGIT_BYTES = b"0123456789"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_NUM_SEPARATORS = " -./:()"
_DROP_SEPARATORS = str.maketrans("", "", _NUM_SEPARATORS)
# A numeric "island": digits joined by at most two separator characters. Every digit-based
# detector only looks near islands that could hold its kind of value, so a message whose
# only numbers are "$12.99" and "2024-03-15" costs one cheap scan instead of eight regexes.
_ISLAND_RE = re.compile(r"[0-9]+(?:[ \-./:()]{1,2}[0-9]+)*", re.ASCII)


class _Scan:
    """Facts about one text, computed once and shared by all built-in detectors."""

    __slots__ = ("text", "lower", "digits", "_islands")

    def __init__(self, text: str) -> None:
        self.text = text
        # ASCII-only lowering keeps offsets aligned with ``text`` (str.lower may not).
        self.lower = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
        raw = text.encode("utf-8", "surrogatepass")
        self.digits = len(raw) - len(raw.translate(None, _DIGIT_BYTES))
        self._islands: list[tuple[int, int, int]] | None = None

    @property
    def islands(self) -> list[tuple[int, int, int]]:
        """(start, end, digit count) of every numeric island, in order.

        The count is exact for islands of 6+ characters; for shorter ones it is an upper
        bound (their length), which is all the detectors' thresholds (>= 6) need.
        """
        if self._islands is None:
            islands = []
            for m in _ISLAND_RE.finditer(self.text):
                g = m.group()
                # Every threshold is >= 6 digits, so short islands skip the exact count.
                n = len(g) if len(g) < 6 or g.isdigit() else len(g.translate(_DROP_SEPARATORS))
                islands.append((m.start(), m.end(), n))
            self._islands = islands
        return self._islands

    def windows(
        self, min_digits: int, before: int, after: int, max_digits: int = 10_000
    ) -> list[tuple[int, int]]:
        """Merged (lo, hi) search windows around islands with enough digits.

        ``after`` must cover the longest lookahead of the regex run in the window: a regex
        treats ``endpos`` as the end of the string.
        """
        out: list[tuple[int, int]] = []
        n = len(self.text)
        for start, end, count in self.islands:
            if count < min_digits or count > max_digits:
                continue
            lo, hi = max(0, start - before), min(n, end + after)
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
        return out


class _BuiltinDetector:
    """Base of the built-in detectors: ``find`` builds a scan, the redactor shares one."""

    name: str = ""
    types: frozenset[PIIType] = frozenset()

    def find(self, text: str) -> list[Finding]:
        return self._find(_Scan(text)) if text else []

    def _find(self, scan: _Scan) -> list[Finding]:
        raise NotImplementedError


def _looks_like_key(token: str) -> bool:
    """Generated keys and tokens contain digits, or are long and mixed case."""
    if any(ch.isdigit() for ch in token):
        return any(ch.isalpha() for ch in token)
    return len(token) >= 16 and token != token.lower() and token != token.upper()


def _looks_random(token: str) -> bool:
    """Credential-like value: letters mixed with digits/symbols, or long and mixed case."""
    if len(token) < 6 or not any(ch.isalpha() for ch in token):
        return False
    if not token.isalpha():
        return True  # letters plus digits or symbols
    return len(token) >= 16 and token != token.lower() and token != token.upper()


# --------------------------------------------------------------------------- email

_EMAIL_RE = re.compile(
    r"(?<![\w.%+'-])"
    r"[\w%+'-]{1,64}(?:\.[\w%+'-]{1,64}){0,8}"  # local part, dots only between atoms
    r"@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}"  # domain labels
    r"[^\W\d_]{2,24}"  # TLD: letters only
    r"(?![\w-])"
)


_LOCAL_PART_PUNCT = frozenset("_%+'-.")


class EmailDetector(_BuiltinDetector):
    """RFC-5322-ish addresses (Unicode letters allowed, TLD of 2-24 letters)."""

    name = "email"
    types = frozenset({PIIType.EMAIL})

    def _find(self, scan: _Scan) -> list[Finding]:
        text = scan.text
        out: list[Finding] = []
        # Anchor on each '@': walk back over local-part characters, then match forward once.
        # Scanning the whole text with the regex costs a failed attempt at every position.
        k = text.find("@")
        while k != -1:
            start = k
            while (
                start > 0
                and k - start < 600
                and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_PART_PUNCT)
            ):
                start -= 1
            while start < k and text[start] == ".":
                start += 1
            m = _EMAIL_RE.match(text, start) if start < k else None
            if m is not None and m.end() > k:
                out.append(Finding(PIIType.EMAIL, m.start(), m.end()))
                k = text.find("@", m.end())
            else:
                k = text.find("@", k + 1)
        return out


# --------------------------------------------------------------------------- phone

# Shared boundaries: not glued to a word, a '+', or another digit group (so we never cut a
# phone-shaped piece out of a longer number such as a card, an IBAN or an order id). A
# following " <digits>" is checked in Python (_continues_number): a date may follow a phone.
_PH_START = r"(?<![\w+\-./#$€£¥])(?:(?=[+(])|(?<!\d[ .\-/:]))"
_PH_END = r"(?![\w\-/])(?![.,:]\d)"

_PHONE_RE = re.compile(
    _PH_START + r"(?:"
    # International: +CC then 1-6 groups, optionally a (0) trunk or a bracketed area code.
    r"\+[1-9]\d{0,2}\)?(?:[ .\-]?\(0\))?(?:[ .\-]?\(\d{1,5}\))?(?:[ .\-]?\d{1,6}){1,6}"
    # International with the 00 exit code; separators required, no trunk 0: 0049 30 12345678
    r"|00[1-9]\d{0,2}[ .\-][1-9]\d{0,4}(?:[ .\-]\d{1,8}){1,4}"
    # NANP with brackets: (555) 123-4567
    r"|\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}"
    # NANP with one consistent separator, optional leading 1: 555-123-4567, 1-800-555-0199
    r"|(?:1[ .\-])?[2-9]\d{2}(?P<us>[ .\-])\d{3}(?P=us)\d{4}"
    # French pairs: 01 23 45 67 89, 06.12.34.56.78
    r"|0[1-9](?P<fr>[ .\-])\d{2}(?:(?P=fr)\d{2}){3}"
    # Trunk-0 national numbers in 2-3 groups: 020 7946 0958, 0161 496 0000, 030/1234567
    r"|\(0\d{1,4}\)[ ]?\d{3,4}(?:[ \-]?\d{3,4})?"
    r"|0\d{2,4}[ \-/]\d{3,4}[ \-]\d{3,4}"
    r"|0\d{2,4}[ \-/]\d{5,8}"
    r")" + _PH_END,
    re.ASCII,
)

# A context word right before a bare digit run makes it a phone number: "call 5551234567",
# "tel: 07700900123", "my phone number is ...". Checked on the few words before the number.
_PHONE_CONTEXT = frozenset(
    "call called calling phone phoned tel telephone mobile cell cellphone fax whatsapp sms "
    "text ring contact reach".split()
)
_PHONE_CONNECTORS = frozenset("me us him her them back on at is now via".split())
_PHONE_NUMBER_WORDS = frozenset(["number", "no", "nr", "num"])
_PHONE_OWNERS = frozenset(["my", "your", "his", "her", "our", "their"])
_CONTEXT_PUNCT = str.maketrans(dict.fromkeys(":#.,;!?()[]<>\"'-", " "))


def _continues_number(text: str, end: int) -> bool:
    """True if a space and a plain digit group follow ``end`` ("020 7946 0958 1234")."""
    if end + 1 >= len(text) or text[end] != " " or not text[end + 1].isdigit():
        return False
    stop = text.find(" ", end + 1)
    token = text[end + 1 : stop if stop != -1 else len(text)].rstrip(".,;:!?)]}\"'")
    return token.isdigit()


def _phone_context_before(lower: str, pos: int) -> bool:
    """True if the words just before ``pos`` announce a phone number."""
    words = lower[max(0, pos - 48) : pos].translate(_CONTEXT_PUNCT).split()
    while words and words[-1] in _PHONE_CONNECTORS:
        words.pop()
    if words and words[-1] in _PHONE_NUMBER_WORDS:
        # "phone number", "my number" - but not "account number" or "order no".
        words.pop()
        return bool(words) and (words[-1] in _PHONE_CONTEXT or words[-1] in _PHONE_OWNERS)
    return bool(words) and words[-1] in _PHONE_CONTEXT


# After a context word: a bare run of 7-15 digits or a 7-digit local number (555-1234).
_PHONE_BARE_RE = re.compile(r"(?:\+?\d{7,15}|\d{3}[ .\-]\d{4})(?![\w\-/])(?![.,]\d)", re.ASCII)


class PhoneDetector(_BuiltinDetector):
    """International ``+CC`` numbers, common US/UK/DE/FR national layouts, context words."""

    name = "phone"
    types = frozenset({PIIType.PHONE})

    def _find(self, scan: _Scan) -> list[Finding]:
        if scan.digits < 7:
            return []
        text = scan.text
        out: list[Finding] = []
        for lo, hi in scan.windows(7, 2, 3):
            for m in _PHONE_RE.finditer(text, lo, hi):
                g = m.group()
                n = len(g.translate(_DROP_SEPARATORS).lstrip("+"))
                if g[0] == "+":
                    # The open-ended "+CC" form may have run into a following number
                    # ("+1 (446) 913-2965 2021-02-17"): drop space-separated tails.
                    while n > 15 and " " in g:
                        g = g[: g.rindex(" ")]
                        n = len(g.translate(_DROP_SEPARATORS).lstrip("+"))
                if g[-2] in " .-" or not g[-1].isdigit():
                    continue  # phones end in a group of 2+ digits; "+35236450.6" is a number
                if g.startswith("00"):
                    n -= 2  # exit code
                end = m.start() + len(g)
                if (
                    ((8 <= n <= 15) if g.startswith(("+", "00")) else (9 <= n <= 13))
                    and not _continues_number(text, end)
                    and not _inside_iban_like(text, m.start())
                ):
                    out.append(Finding(PIIType.PHONE, m.start(), end))
        # Bare digit runs need a context word; islands are few, so look at the words before
        # each one rather than scanning the text for the words.
        for start, end, count in scan.islands:
            if count < 7:
                continue
            lead = start - 1 if start and text[start - 1] == "+" else start
            m = _PHONE_BARE_RE.match(text, lead, min(len(text), end + 3))
            if m is not None and _phone_context_before(scan.lower, lead):
                out.append(Finding(PIIType.PHONE, m.start(), m.end()))
        return out


# --------------------------------------------------------------------------- payment cards

# Loose candidate: 13-71 digits with single spaces/dashes; _card_windows splits it into runs
# of digit groups and keeps those that look like a printed card and pass Luhn.
# (The boundary check sits after the first digit so re can skip ahead to digits quickly.)
_CARD_RE = re.compile(r"\d(?<![\w\-.,/+]\d)(?:[ \-]?\d){12,70}(?!\w)", re.ASCII)
_CARD_SEP_RE = re.compile(r"[ \-]")


def _card_groups_ok(groups: list[str]) -> bool:
    if len(groups) == 1:
        return True
    # Printed cards group 4-4-4-4(-3), 4-6-5 (Amex) or 4-6-4 (Diners).
    return len(groups[0]) == 4 and all(3 <= len(g) <= 6 for g in groups)


def _card_windows(candidate: str) -> list[tuple[int, int]]:
    """Return (start, end) offsets within ``candidate`` of every valid card in it.

    The candidate may have swallowed neighbouring numbers ("call 07267678953 6217-7739-...",
    "id 173265334307 6217886150980528919"), so it is split into runs: a group of more than
    six digits stands alone, and shorter groups form a run while one kind of separator
    joins them. Runs are never cut into arbitrary sub-windows (a Luhn-valid 16-digit slice of
    a tracking number is not a card); only a group shared with the neighbouring run
    ("... 5690 2021-02-22") or a trailing group of one or two digits
    ("4111 1111 1111 1111 12/26") may be dropped.
    """
    groups: list[tuple[int, int]] = []
    seps: list[str] = []
    pos = 0
    for part in _CARD_SEP_RE.split(candidate):
        groups.append((pos, pos + len(part)))
        pos += len(part) + 1
        if pos <= len(candidate):
            seps.append(candidate[pos - 1])
    n = len(groups)
    glen = [b - a for a, b in groups]
    found: list[tuple[int, int]] = []
    used = 0  # groups before this index belong to a card already found
    i, head_shared = 0, False
    while i < n:
        j = i + 1
        if glen[i] <= 6:
            while j < n and glen[j] <= 6 and (j == i + 1 or seps[j - 1] == seps[j - 2]):
                j += 1
        # The run stopped at a change of separator: its last group may start the next run.
        tail_shared = glen[i] <= 6 and j < n and glen[j] <= 6
        tries = [(i, j)]
        if tail_shared or (j - i > 1 and glen[j - 1] <= 2):
            tries.append((i, j - 1))
        if head_shared:
            tries += [(i + 1, end) for _, end in tries]
        for start, end in tries:
            if end <= start or start < used or candidate[groups[start][0]] not in "23456":
                continue  # every card network's IIN starts with 2-6
            if not 13 <= sum(glen[start:end]) <= 19:
                continue
            parts = [candidate[a:b] for a, b in groups[start:end]]
            compact = "".join(parts)
            if (
                13 <= len(compact) <= 19
                and _card_groups_ok(parts)
                and card_brand_ok(compact)
                and luhn_valid(compact)
            ):
                found.append((groups[start][0], groups[end - 1][1]))
                used = end
                break
        i, head_shared = (j - 1, True) if tail_shared else (j, False)
    return found


# The numeric body of an IBAN-shaped code ("GB27 KTPI 0046 3586 4300 10") is neither a card
# nor a phone number, even when the IBAN's checksum fails.
_IBAN_PREFIX_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?: [A-Za-z0-9]{4}){0,7} \Z")


def _inside_iban_like(text: str, start: int) -> bool:
    return start > 4 and _IBAN_PREFIX_RE.search(text, max(0, start - 40), start) is not None


class CreditCardDetector(_BuiltinDetector):
    """13-19 digit card numbers (spaces/dashes allowed) passing Luhn and an issuer check."""

    name = "credit_card"
    types = frozenset({PIIType.CREDIT_CARD})

    def _find(self, scan: _Scan) -> list[Finding]:
        if scan.digits < 13:
            return []
        out: list[Finding] = []
        for lo, hi in scan.windows(13, 2, 2):
            for m in _CARD_RE.finditer(scan.text, lo, hi):
                s = m.start()
                for a, b in _card_windows(m.group()):
                    if not _inside_iban_like(scan.text, s + a):
                        out.append(Finding(PIIType.CREDIT_CARD, s + a, s + b))
        return out


# --------------------------------------------------------------------------- IBAN

# Candidate: country + check digits + up to 34 alphanumerics in optional single-space groups
# (ISO 13616 prints with spaces; dashes would let UUIDs in). It may run into following words;
# validation cuts it at the country's registered length.
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9\-])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,34}")


def _iban_span(candidate: str) -> int | None:
    """Return the length within ``candidate`` of a valid IBAN prefix, or None."""
    upper = candidate.upper()
    want = IBAN_LENGTHS.get(upper[:2])
    if want is None:
        return None
    count = 0
    for idx, ch in enumerate(upper):
        if ch.isalnum():
            count += 1
            if count == want:
                end = idx + 1
                # Must end on a token boundary, not in the middle of a longer code.
                if end < len(upper) and upper[end].isalnum():
                    return None
                compact = upper[:end].replace(" ", "")
                return end if iban_valid(compact) else None
    return None


class IBANDetector(_BuiltinDetector):
    """IBANs, compact or grouped, checked against the ISO 13616 length table and mod-97."""

    name = "iban"
    types = frozenset({PIIType.IBAN})

    def _find(self, scan: _Scan) -> list[Finding]:
        if scan.digits < 2:  # only the check digits are sure to be digits (CH, IT: alnum BBAN)
            return []
        text = scan.text
        out: list[Finding] = []
        # Every IBAN starts with two letters directly followed by the check-digit island.
        for start, _end, _count in scan.islands:
            if start < 2 or not text[start - 2 : start].isalpha():
                continue
            m = _IBAN_RE.match(text, start - 2)
            if m is None:
                continue
            n = _iban_span(m.group())
            if n is not None:
                out.append(Finding(PIIType.IBAN, m.start(), m.start() + n))
        return out


# --------------------------------------------------------------------------- IP addresses

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not after a version-pin operator: "brotli>=1.2.0.0" is a version, not an address.
_IPV4_RE = re.compile(
    rf"(?<![\w.])(?<![=<>~!]=)(?<![<>~^])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w)(?!\.\d)", re.ASCII
)
# Candidate: hex groups and colons, optionally ending in a dotted quad (::ffff:1.2.3.4);
# ipaddress does the real validation so times like 10:32:45 and MAC addresses are rejected.
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{2,39}"
    r"(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?!\w)(?!\.\d)",
    re.ASCII,
)


class IPAddressDetector(_BuiltinDetector):
    """IPv4 with valid octets (no leading zeros) and IPv6 in full/compressed/mixed forms."""

    name = "ip_address"
    types = frozenset({PIIType.IP_ADDRESS})

    def _find(self, scan: _Scan) -> list[Finding]:
        text = scan.text
        out: list[Finding] = []
        if scan.digits >= 4 and text.count(".") >= 3:
            for start, end, _count in scan.islands:
                if text.count(".", start, end) < 3:
                    continue
                lo, hi = max(0, start - 1), min(len(text), end + 2)
                for m in _IPV4_RE.finditer(text, lo, hi):
                    out.append(Finding(PIIType.IP_ADDRESS, m.start(), m.end()))
        # Compressed IPv6 always has '::'; the full form has seven colons.
        if "::" in text or text.count(":") >= 7:
            for m in _IPV6_RE.finditer(text):
                cand, end = m.group(), m.end()
                # A trailing ':' is punctuation ("fe80::1: failed"), unless it is '::'.
                if cand.endswith(":") and not cand.endswith("::"):
                    cand, end = cand[:-1], end - 1
                if ipv6_valid(cand):
                    out.append(Finding(PIIType.IP_ADDRESS, m.start(), end))
        return out


# --------------------------------------------------------------------------- national ids

_SSN_RE = re.compile(
    r"(?<![\w\-./])\d{3}(?P<sep>[\- ])\d{2}(?P=sep)\d{4}(?!\w)(?![\-./]\d)", re.ASCII
)
# Bare nine digits count only right after "SSN" / "social security (number)".
_SSN_CONTEXT_TAIL_RE = re.compile(
    r"(?:\bssn|\bsocial\s+security(?:\s+(?:number|no\.?|#))?)(?:\s+is)?\s*[:#]?\s*\Z"
)


class USSSNDetector(_BuiltinDetector):
    """US SSNs as ``123-45-6789``/``123 45 6789``, or 9 bare digits after "SSN"."""

    name = "us_ssn"
    types = frozenset({PIIType.US_SSN})

    def _find(self, scan: _Scan) -> list[Finding]:
        if scan.digits < 9:
            return []
        text = scan.text
        out: list[Finding] = []
        for lo, hi in scan.windows(9, 2, 3):
            for m in _SSN_RE.finditer(text, lo, hi):
                if ssn_valid(m.group().translate(_DROP_SEPARATORS)):
                    out.append(Finding(PIIType.US_SSN, m.start(), m.end()))
        if "ssn" in scan.lower or "social security" in scan.lower:
            for start, end, count in scan.islands:
                if (
                    count == 9
                    and end - start == 9
                    and (end == len(text) or not text[end].isalnum())
                    and ssn_valid(text[start:end])
                    and _SSN_CONTEXT_TAIL_RE.search(scan.lower, max(0, start - 40), start)
                ):
                    out.append(Finding(PIIType.US_SSN, start, end))
        return out


# HMRC format: two prefix letters (D, F, I, Q, U, V never used; O not second; some prefixes
# never allocated), six digits in optional pairs, suffix A-D.
_NINO_RE = re.compile(
    r"(?<![A-Za-z0-9])(?!(?i:BG|GB|KN|NK|NT|TN|ZZ))"
    r"(?i:[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])"
    r"(?P<sep> ?)\d{2}(?P=sep)\d{2}(?P=sep)\d{2}(?P=sep)(?i:[A-D])(?![A-Za-z0-9])",
    re.ASCII,
)


class UKNINODetector(_BuiltinDetector):
    """UK National Insurance numbers (strict HMRC prefix/suffix rules)."""

    name = "uk_nino"
    types = frozenset({PIIType.UK_NINO})

    def _find(self, scan: _Scan) -> list[Finding]:
        if scan.digits < 6:
            return []
        out: list[Finding] = []
        for lo, hi in scan.windows(6, 4, 4, max_digits=6):
            out.extend(
                Finding(PIIType.UK_NINO, m.start(), m.end())
                for m in _NINO_RE.finditer(scan.text, lo, hi)
            )
        return out


# --------------------------------------------------------------------------- secrets

# Vendor-prefixed credentials: (gate substring, literal prefixes, regex matched at each
# prefix occurrence). The gate is one cheap ``in`` test that rules out the whole group.
_PREFIXED_SECRETS: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    # PEM private keys, complete or truncated (up to the END line or the end of the base64).
    (
        "-----",
        ("-----BEGIN ",),
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----"
            r"[A-Za-z0-9+/=\s:,\-]{0,20000}?"
            # A truncated block counts once some key material follows the header; a bare
            # header string in code (b"-----BEGIN ... KEY-----") is not a secret.
            r"(?:-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----"
            r"|(?<=[A-Za-z0-9+/=]{16})(?=\s*(?:[^A-Za-z0-9+/=\s:,\-]|\Z)))"
        ),
    ),
    # JWTs: header.payload.signature; header and payload are base64url JSON ('eyJ' = '{"').
    (
        "eyJ",
        ("eyJ",),
        re.compile(
            r"(?<![\w\-])eyJ[A-Za-z0-9_\-]{5,4096}\.eyJ[A-Za-z0-9_\-]{5,8192}"
            r"\.[A-Za-z0-9_\-]{0,4096}",
            re.ASCII,
        ),
    ),
    # OpenAI / Anthropic style: sk-..., sk-proj-..., sk-ant-api03-...
    ("sk-", ("sk-",), re.compile(r"(?<![\w\-])sk-[A-Za-z0-9_\-]{20,256}(?![\w\-])", re.ASCII)),
    # Stripe secret/publishable/restricted keys and webhook secrets.
    (
        "_",
        ("sk_live_", "sk_test_", "pk_live_", "pk_test_", "rk_live_", "rk_test_", "whsec_"),
        re.compile(
            r"(?<![\w\-])(?:(?:sk|pk|rk)_(?:live|test)_|whsec_)[A-Za-z0-9]{16,256}(?!\w)",
            re.ASCII,
        ),
    ),
    # AWS access key ids (long-term AKIA, temporary ASIA).
    (
        "A",
        ("AKIA", "ASIA"),
        re.compile(r"(?<![A-Za-z0-9])A(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ),
    # GitHub tokens.
    (
        "_",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        re.compile(
            r"(?<![\w\-])(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})(?!\w)",
            re.ASCII,
        ),
    ),
    # Slack tokens: xoxb-, xoxp-, xoxa-, xoxr-, xoxs-, app-level xapp-.
    (
        "x",
        ("xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-"),
        re.compile(r"(?<![\w\-])(?:xox[bpars]|xapp)-[A-Za-z0-9\-]{10,255}(?![\w\-])", re.ASCII),
    ),
    # Google API keys.
    ("AIza", ("AIza",), re.compile(r"(?<![\w\-])AIza[0-9A-Za-z_\-]{35}(?![\w\-])", re.ASCII)),
)

# HTTP auth schemes; matched (on the lower-cased text) at each occurrence of the scheme.
_AUTH_SCHEMES = ("bearer", "basic", "token")
_AUTH_SCHEME_RE = re.compile(
    r"(?<![a-z0-9_])(?:bearer|basic|token)\s+(?P<tok>[A-Za-z0-9\-._~+/]{12,4096}=*)(?![\w\-])",
    re.ASCII,
)
_URL_CRED_PLACEHOLDERS = frozenset({"user:pass", "user:password", "username:password"})
_URL_CREDS_RE = re.compile(r"://(?P<cred>[^\s:/@]{1,128}:[^\s/@]{1,256})@")

# Generic "name = value" credentials. Anchored on keyword occurrences (found with str.find)
# rather than scanning the text with an alternation, which is ~10x slower in CPython's re.
_ASSIGN_KEYWORDS = ("key", "secret", "token", "pass", "pwd")
_PASSWORD_SUFFIXES = ("password", "passwd", "passphrase", "pwd", "pass")
_ASSIGN_SUFFIXES = ("key", "secret", "token", *_PASSWORD_SUFFIXES)
# Identifiers that end like a credential name but are not one.
_ASSIGN_DENY = (
    "publickey", "primarykey", "foreignkey", "sortkey", "partitionkey", "cachekey",
    "idempotencykey", "routingkey", "lookupkey", "hashkey", "hotkey", "monkey", "turkey",
    "donkey", "hockey", "whiskey", "jockey", "bypass", "compass", "surpass", "trespass",
    "overpass", "underpass", "boardingpass", "buspass",
)  # fmt: skip
_IDENT_RE = re.compile(r"[A-Za-z0-9_.\-]{0,64}")
# The operator is "=", ":" or "=>", never "==", "::" or ":=" (comparisons, code).
_ASSIGN_VALUE_RE = re.compile(
    r"[\"']?(?P<pre>[ \t]*)(?P<op>=>|:(?![:=])|=(?!=))(?P<post>[ \t]*)"
    r"(?:\"(?P<dq>[^\"\n]{3,256})\"|'(?P<sq>[^'\n]{3,256})'"
    r"|(?P<bare>[^\s\"'`<>,;&:=(\[{][^\s\"'`<>,;&]{2,255}))"
)
_NOT_A_SECRET = frozenset({"none", "null", "nil", "true", "false", "undefined"})
# Documentation placeholders ("your_api_key", "sk-...", "<token>") are not secrets.
_PLACEHOLDER_HINTS = ("your", "example", "placeholder", "changeme", "...", "…", "api key")
# Code on the right-hand side: a dotted name (``key = settings.SECRET_KEY``), a call or
# subscript (``token = f.encrypt(b"...")``, ``password = auth[2]``), a shell variable
# (``$API_KEY``) or a colour (``Token: '#ABB2BF'``).
_CODE_REF_RE = re.compile(
    r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:[(\[].*)?|[A-Za-z_]\w*[(\[].*"
    r"|\$\{?[A-Za-z_]\w*\}?|#[0-9A-Fa-f]{3,8}"
)
_WORD_RE = re.compile(r"[A-Za-z_]+")


def _assignment_findings(text: str, lower: str) -> list[Finding]:
    positions: list[int] = []
    for kw in _ASSIGN_KEYWORDS:
        i = lower.find(kw)
        while i != -1:
            positions.append(i)
            i = lower.find(kw, i + 1)
    positions.sort()
    out: list[Finding] = []
    seen: set[int] = set()
    covered = -1  # keywords inside a value already found ("key=key=...") are skipped
    for i in positions:
        if i < covered:
            continue
        ident_end = _IDENT_RE.match(lower, i).end()  # type: ignore[union-attr]
        # "-----END PRIVATE KEY-----:" is not an identifier; names end in a letter/digit.
        while ident_end > i and not lower[ident_end - 1].isalnum():
            ident_end -= 1
        if ident_end in seen:
            continue
        seen.add(ident_end)
        finding = _assignment_at(text, lower, i, ident_end)
        if finding is not None:
            out.append(finding)
            covered = finding.end
    return out


def _assignment_at(text: str, lower: str, kw_pos: int, ident_end: int) -> Finding | None:
    start = kw_pos
    while (
        start > 0
        and kw_pos - start < 64
        and (lower[start - 1].isalnum() or lower[start - 1] in "_.-")
    ):
        start -= 1
    if start > 0 and lower[start - 1] in "=<>!":
        return None  # right-hand side of a comparison
    ident = lower[start:ident_end].replace("_", "").replace("-", "").replace(".", "")
    # A bare "key" is a dict key or sort key far more often than a credential.
    if ident == "key" or not ident.endswith(_ASSIGN_SUFFIXES) or ident.endswith(_ASSIGN_DENY):
        return None
    m = _ASSIGN_VALUE_RE.match(text, ident_end)
    if m is None:
        return None
    group = "dq" if m.group("dq") else "sq" if m.group("sq") else "bare"
    value = m.group(group)
    end = m.end(group)
    if group == "bare":
        # Sentence punctuation after a bare value is not part of it ("password=abc123.").
        stripped = value.rstrip(".,;:)]}")
        end -= len(value) - len(stripped)
        value = stripped
        if len(value) < 3:
            return None
    low = value.lower()
    if low in _NOT_A_SECRET or value.startswith(("<", "${", "{{", "%(")):
        return None  # empty, already redacted, or a template reference
    if any(h in low for h in _PLACEHOLDER_HINTS) or len(set(low)) <= 2:
        return None  # "your_api_key", "sk-...", "xxxxxxxx", "********"
    if _CODE_REF_RE.fullmatch(value):
        return None
    if not ident.endswith(_PASSWORD_SUFFIXES):
        # Keys, tokens and secrets are generated strings; a plain word after "token=" or
        # "private_key:" is a variable, an enum value or a placeholder.
        return Finding(PIIType.SECRET, m.start(group), end) if _looks_like_key(value) else None
    if group == "bare" and _WORD_RE.fullmatch(value):
        # A bare word is a variable in code when it names a credential ("password=password"),
        # is snake_case, or sits in spaced code style ("passwd = getpass").
        spaced = bool(m.group("pre")) and bool(m.group("post"))
        if spaced or "_" in value or any(k in low for k in _ASSIGN_KEYWORDS):
            return None
    # "password: reset failed" is prose; "password: Hunter2!" is a credential.
    if m.group("op") == ":" and group == "bare" and not _looks_random(value):
        return None
    return Finding(PIIType.SECRET, m.start(group), end)


class SecretDetector(_BuiltinDetector):
    """API keys, tokens, passwords in assignments, bearer/basic credentials, PEM keys."""

    name = "secret"
    types = frozenset({PIIType.SECRET})

    def _find(self, scan: _Scan) -> list[Finding]:
        text, lower = scan.text, scan.lower
        out: list[Finding] = []
        for gate, prefixes, pattern in _PREFIXED_SECRETS:
            if gate not in text:
                continue
            for prefix in prefixes:
                i = text.find(prefix)
                while i != -1:
                    m = pattern.match(text, i)
                    if m is not None:
                        out.append(Finding(PIIType.SECRET, m.start(), m.end()))
                    i = text.find(prefix, m.end() if m is not None else i + 1)
        for scheme in _AUTH_SCHEMES:
            i = lower.find(scheme)
            while i != -1:
                # Match on ``lower`` for the scheme word, then read the token from ``text``.
                m = _AUTH_SCHEME_RE.match(lower, i)
                if m is not None:
                    tok = text[m.start("tok") : m.end("tok")].rstrip(".")  # sentence end
                    if len(tok) >= 12 and _looks_like_key(tok):
                        start = m.start("tok")
                        out.append(Finding(PIIType.SECRET, start, start + len(tok)))
                i = lower.find(scheme, i + 1)
        if "://" in text and "@" in text:
            out.extend(
                Finding(PIIType.SECRET, m.start("cred"), m.end("cred"))
                for m in _URL_CREDS_RE.finditer(text)
                # Not a placeholder: "<user>:<password>", "[user:passwd@]", "${USER}:..."
                if not any(c in m.group("cred") for c in "<{[$")
                and m.group("cred").lower() not in _URL_CRED_PLACEHOLDERS
            )
        if ("=" in text or ":" in text) and any(k in lower for k in _ASSIGN_KEYWORDS):
            out.extend(_assignment_findings(text, lower))
        return out


# --------------------------------------------------------------------------- Presidio


class PresidioNotInstalledError(ImportError):
    """Raised when :class:`PresidioDetector` is used without ``presidio-analyzer``."""


_PRESIDIO_TYPES: dict[str, PIIType] = {
    "PERSON": PIIType.PERSON,
    "LOCATION": PIIType.LOCATION,
    "GPE": PIIType.LOCATION,
}


class PresidioDetector:
    """Adapter that finds names and locations with Microsoft Presidio's NER analyzer.

    Optional: ``pip install 'agent-lightning[presidio]'`` (plus a spaCy model). Presidio is
    imported only when this class is instantiated, never when :mod:`pii` is imported. An
    already-built ``analyzer`` (anything with Presidio's ``analyze`` signature) can be passed
    in, which also skips the import.
    """

    name = "presidio"
    types = frozenset({PIIType.PERSON, PIIType.LOCATION})

    def __init__(
        self,
        entities: Sequence[str] = ("PERSON", "LOCATION"),
        language: str = "en",
        score_threshold: float = 0.5,
        analyzer: Any | None = None,
    ) -> None:
        unknown = [e for e in entities if e not in _PRESIDIO_TYPES]
        if unknown:
            raise ValueError(f"unsupported Presidio entities: {unknown}")
        if analyzer is None:
            try:
                from presidio_analyzer import AnalyzerEngine
            except ImportError as exc:
                raise PresidioNotInstalledError(
                    "PresidioDetector needs presidio-analyzer: "
                    "pip install 'agent-lightning[presidio]'"
                ) from exc
            analyzer = AnalyzerEngine()
        self._analyzer = analyzer
        self._entities = list(entities)
        self._language = language
        self._threshold = score_threshold

    def find(self, text: str) -> list[Finding]:
        if not text:
            return []
        results = self._analyzer.analyze(
            text=text,
            entities=self._entities,
            language=self._language,
            score_threshold=self._threshold,
        )
        return [
            Finding(_PRESIDIO_TYPES[r.entity_type], r.start, r.end)
            for r in results
            if r.entity_type in _PRESIDIO_TYPES and r.score >= self._threshold
        ]


# --------------------------------------------------------------------------- redactor


def builtin_detectors() -> list[Detector]:
    """Fresh instances of every built-in regex + checksum detector."""
    return [
        SecretDetector(),
        EmailDetector(),
        CreditCardDetector(),
        IBANDetector(),
        USSSNDetector(),
        UKNINODetector(),
        IPAddressDetector(),
        PhoneDetector(),
    ]


def _resolve(findings: list[Finding], length: int) -> list[Finding]:
    """Merge overlapping findings; return non-overlapping findings sorted by start."""
    valid = [f for f in findings if 0 <= f.start < f.end <= length]
    if len(valid) <= 1:
        return valid
    valid.sort(key=lambda f: (f.start, -f.end))
    out: list[Finding] = []
    cluster = [valid[0]]
    cluster_end = valid[0].end
    for f in valid[1:]:
        if f.start < cluster_end:
            cluster.append(f)
            cluster_end = max(cluster_end, f.end)
        else:
            out.append(_merge(cluster, cluster_end))
            cluster, cluster_end = [f], f.end
    out.append(_merge(cluster, cluster_end))
    return out


def _merge(cluster: list[Finding], end: int) -> Finding:
    if len(cluster) == 1:
        return cluster[0]
    # A finding nested inside a longer one is part of it (a Luhn-valid run inside an IBAN, an
    # IPv4 tail inside an IPv6); among the outermost findings the most specific type wins.
    # ``cluster`` is sorted by (start, -end), so a finding is nested iff an earlier one
    # reaches at least as far (identical spans are not nested in each other). O(k).
    outer: list[Finding] = []
    reach, reach_start = -1, -1
    for f in cluster:
        if f.end < reach or (f.end == reach and f.start > reach_start):
            continue
        outer.append(f)
        if f.end > reach:
            reach, reach_start = f.end, f.start
    winner = max(outer, key=lambda f: (_SPECIFICITY.get(f.type, 0), f.end - f.start))
    # The placeholder spans the whole cluster so no partially covered value leaks.
    return Finding(winner.type, cluster[0].start, end)


class PIIRedactor:
    """Runs detectors over text and replaces each finding with a typed placeholder.

    ``types`` restricts which kinds are redacted (default: every kind the detectors find).
    Instances are immutable after construction and safe to share between threads.
    """

    def __init__(
        self,
        detectors: Sequence[Detector] | None = None,
        types: Iterable[PIIType] | None = None,
    ) -> None:
        wanted = frozenset(PIIType(t) for t in types) if types is not None else None
        chosen = list(detectors) if detectors is not None else builtin_detectors()
        if wanted is not None:
            # Skip detectors that declare types none of which are wanted.
            chosen = [d for d in chosen if not getattr(d, "types", None) or wanted & d.types]
        self._detectors: tuple[Detector, ...] = tuple(chosen)
        self._types = wanted
        # Dict keys repeat from record to record ("text", feature names): remember the clean
        # ones, so redacting keys costs a lookup. A cache, not state: redaction is unchanged.
        self._clean_keys: set[str] = set()

    @property
    def detectors(self) -> tuple[Detector, ...]:
        return self._detectors

    def detect(self, text: str) -> list[Finding]:
        """Return resolved (non-overlapping, sorted) findings for ``text``."""
        if not text:
            return []
        raw: list[Finding] = []
        scan: _Scan | None = None
        for detector in self._detectors:
            if isinstance(detector, _BuiltinDetector):
                # Built-ins share one scan (lower-cased text, digit count, numeric islands).
                if scan is None:
                    scan = _Scan(text)
                raw.extend(detector._find(scan))
            else:
                raw.extend(detector.find(text))
        if self._types is not None:
            raw = [f for f in raw if f.type in self._types]
        return _resolve(raw, len(text))

    def redact(self, text: str) -> RedactionResult:
        """Replace every finding in ``text`` with its placeholder."""
        findings = self.detect(text)
        if not findings:
            return RedactionResult(text, {}, ())
        pieces: list[str] = []
        counts: dict[str, int] = {}
        pos = 0
        # Slicing the original by ascending offsets equals right-to-left in-place replacement.
        for f in findings:
            pieces.append(text[pos : f.start])
            pieces.append(placeholder(f.type))
            pos = f.end
            counts[f.type.value] = counts.get(f.type.value, 0) + 1
        pieces.append(text[pos:])
        return RedactionResult("".join(pieces), counts, tuple(findings))

    def redact_value(self, value: Any) -> tuple[Any, dict[str, int]]:
        """Redact every string inside a JSON-like value (dict/list/tuple nesting).

        Returns a new object and summed counts; the input is never mutated. String dict keys
        are redacted too (`{"john@example.com": "primary"}` is personal data as well); two keys
        that redact alike keep both values (`<EMAIL>`, `<EMAIL>#2`). Non-string scalars
        (numbers, bools, None) are kept as they are.
        """
        counts: dict[str, int] = {}
        return self._walk(value, counts), counts

    def _walk(self, value: Any, counts: dict[str, int]) -> Any:
        if isinstance(value, str):
            result = self.redact(value)
            for k, v in result.counts.items():
                counts[k] = counts.get(k, 0) + v
            return result.text
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if isinstance(key, str) and key not in self._clean_keys:
                    key = self._redact_key(key, out, counts)
                out[key] = self._walk(item, counts)
            return out
        if isinstance(value, list):
            return [self._walk(v, counts) for v in value]
        if isinstance(value, tuple):
            items = [self._walk(v, counts) for v in value]
            if hasattr(value, "_fields"):  # namedtuple keeps its type
                return type(value)(*items)
            return tuple(items)
        return value

    def _redact_key(self, key: str, taken: dict[Any, Any], counts: dict[str, int]) -> str:
        result = self.redact(key)
        if not result.counts:
            if len(self._clean_keys) >= 50_000:  # bounded: free-form keys would grow it forever
                self._clean_keys.clear()
            self._clean_keys.add(key)
            return key
        for k, v in result.counts.items():
            counts[k] = counts.get(k, 0) + v
        redacted, n = result.text, 2
        while redacted in taken:
            redacted, n = f"{result.text}#{n}", n + 1
        return redacted


@functools.cache
def default_redactor() -> PIIRedactor:
    """Process-wide redactor with all built-in detectors (built once, then shared)."""
    return PIIRedactor()
