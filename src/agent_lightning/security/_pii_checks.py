"""Checksum and validity helpers for the PII detectors (private to :mod:`.pii`).

Kept separate so the arithmetic can be read and tested without the regex machinery.
Every function takes an already-normalised string (separators removed) and is pure.
"""

from __future__ import annotations

import ipaddress

# ISO 13616 IBAN lengths per country (SWIFT IBAN registry). A candidate whose length does
# not match its country is rejected before the mod-97 arithmetic runs.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# SSNs the SSA has publicly voided (used in advertising), so they are never real people.
_VOID_SSNS = frozenset({"078051120", "219099999"})


def luhn_valid(digits: str) -> bool:
    """Return True if the decimal string passes the Luhn (mod-10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand_ok(digits: str) -> bool:
    """Return True if the number's issuer prefix (IIN) and length fit a real card network.

    Luhn alone accepts one random number in ten; requiring a known IIN range cuts the false
    positives on order/reference numbers that happen to pass it.
    """
    n = len(digits)
    d1 = digits[0]
    p2 = int(digits[:2])
    p4 = int(digits[:4])
    if d1 == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p2 in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:  # Diners Club
        return 14 <= n <= 19
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if p4 == 6011 or p2 == 65 or 644 <= int(digits[:3]) <= 649:  # Discover
        return 16 <= n <= 19
    if p2 == 62:  # UnionPay
        return 16 <= n <= 19
    if p2 in (50, 56, 57, 58, 60, 63, 67, 68, 69):  # Maestro and friends
        return 13 <= n <= 19
    return False


def iban_valid(iban: str) -> bool:
    """Return True for a compact, upper-case IBAN with the right length and mod-97 == 1."""
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is None or len(iban) != expected:
        return False
    check = iban[2:4]
    if not check.isdigit() or check in ("00", "01", "99"):
        return False
    rearranged = iban[4:] + iban[:4]
    if not rearranged.isalnum() or not rearranged.isascii():
        return False
    # int(c, 36) maps 0-9 to themselves and A-Z to 10-35, exactly the ISO 7064 letter values.
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return int(numeric) % 97 == 1


def ssn_valid(digits: str) -> bool:
    """US SSN structural rules: area not 000/666/9xx, group not 00, serial not 0000."""
    if len(digits) != 9 or digits in _VOID_SSNS:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9":
        return False
    return group != "00" and serial != "0000"


def ipv6_valid(candidate: str) -> bool:
    """Return True if ``candidate`` parses as an IPv6 address worth redacting.

    Besides parsing, at least four hex digits are required (``::1`` excepted): Python slices
    such as ``a[1::2]`` or ``[-2::]`` are syntactically valid compressed addresses.
    """
    if candidate.count(":") < 2:
        return False
    if candidate != "::1" and sum(c != ":" and c != "." for c in candidate) < 4:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True
