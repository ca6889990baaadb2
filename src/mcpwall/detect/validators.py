"""Checks that turn a pattern match into a finding: checksums, ranges, entropy, placeholders.

A pattern says "this looks like a card number"; a validator says "and it is one" (Luhn passes,
the issuer prefix exists). Each validator takes the matched text and returns True to keep the
match. They are pure functions of that text, so both engines apply them identically.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable

import orjson

Validator = Callable[[str], bool]

_DIGITS = re.compile(r"\d")
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")


def digits(text: str) -> str:
    return "".join(_DIGITS.findall(text))


def shannon_entropy(text: str) -> float:
    """Bits per character."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in Counter(text).values())


def luhn(text: str) -> bool:
    nums = digits(text)
    if len(nums) < 8:
        return False
    total = 0
    for i, ch in enumerate(reversed(nums)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Issuer identification ranges (first digits) and lengths of the card brands in use.
_CARD_BRANDS: tuple[tuple[tuple[int, int], tuple[int, ...]], ...] = (
    ((4, 4), (13, 16, 19)),  # Visa
    ((51, 55), (16,)), ((2221, 2720), (16,)),  # Mastercard
    ((34, 34), (15,)), ((37, 37), (15,)),  # American Express
    ((6011, 6011), (16, 19)), ((644, 649), (16, 19)), ((65, 65), (16, 19)),  # Discover
    ((3528, 3589), (16, 17, 18, 19)),  # JCB
    ((300, 305), (14, 16, 19)), ((36, 36), (14, 16, 19)), ((38, 39), (14, 16, 19)),  # Diners Club
    ((62, 62), (16, 17, 18, 19)),  # UnionPay
    ((50, 50), (12, 13, 14, 15, 16, 17, 18, 19)), ((56, 58), (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro
    ((63, 63), (12, 13, 14, 15, 16, 17, 18, 19)), ((67, 67), (12, 13, 14, 15, 16, 17, 18, 19)),
    ((1800, 1800), (15,)), ((2131, 2131), (15,)),  # JCB (15-digit legacy ranges)
    ((2200, 2204), (16, 17, 18, 19)),  # Mir
)


def credit_card(text: str) -> bool:
    nums = digits(text)
    if not 12 <= len(nums) <= 19 or len(set(nums)) < 2:
        return False
    known = False
    for (low, high), lengths in _CARD_BRANDS:
        width = len(str(low))
        if low <= int(nums[:width]) <= high and len(nums) in lengths:
            known = True
            break
    return known and luhn(nums)


# IBAN length per country (ISO 13616 registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban(text: str) -> bool:
    compact = _NON_ALNUM.sub("", text).upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


_SSN_FAKES = {"078051120", "219099999", "123456789", "111111111", "333333333"}


def us_ssn(text: str) -> bool:
    """Area 001-899 except 666, group 01-99, serial 0001-9999, and not a famous fake."""
    nums = digits(text)
    if len(nums) != 9 or nums in _SSN_FAKES:
        return False
    area, group, serial = int(nums[:3]), int(nums[3:5]), int(nums[5:])
    return 0 < area < 900 and area != 666 and group > 0 and serial > 0


def uk_nino(text: str) -> bool:
    compact = _NON_ALNUM.sub("", text).upper()
    if len(compact) != 9:
        return False
    prefix = compact[:2]
    if prefix[0] in "DFIQUV" or prefix[1] in "DFIOQUV" or prefix in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
        return False
    return compact[2:8].isdigit() and compact[8] in "ABCD"


def ca_sin(text: str) -> bool:
    nums = digits(text)
    return len(nums) == 9 and nums[0] not in "08" and luhn(nums)


def nl_bsn(text: str) -> bool:
    nums = digits(text)
    if len(nums) != 9 or len(set(nums)) < 3:
        return False
    total = sum(int(d) * w for d, w in zip(nums[:8], range(9, 1, -1), strict=True)) - int(nums[8])
    return total % 11 == 0


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni(text: str) -> bool:
    compact = _NON_ALNUM.sub("", text).upper()
    if len(compact) != 9:
        return False
    head = compact[:8]
    if head[0] in "XYZ":
        head = str("XYZ".index(head[0])) + head[1:]
    return head.isdigit() and _DNI_LETTERS[int(head) % 23] == compact[8]


def br_cpf(text: str) -> bool:
    nums = digits(text)
    if len(nums) != 11 or len(set(nums)) == 1:
        return False
    for size in (9, 10):
        total = sum(int(d) * w for d, w in zip(nums[:size], range(size + 1, 1, -1), strict=True))
        check = (total * 10) % 11 % 10
        if check != int(nums[size]):
            return False
    return True


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0))
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8))


def in_aadhaar(text: str) -> bool:
    nums = digits(text)
    if len(nums) != 12 or nums[0] in "01" or len(set(nums)) < 3:
        return False
    check = 0
    for i, ch in enumerate(reversed(nums)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][int(ch)]]
    return check == 0


def ipv4(text: str) -> bool:
    parts = text.split(".")
    if len(parts) != 4:
        return False
    return all(part.isdigit() and int(part) <= 255 and (len(part) == 1 or part[0] != "0") for part in parts)


def ipv6(text: str) -> bool:
    colons = text.count(":")
    if colons < 2:
        return False
    if colons != 7 and "::" not in text and "." not in text and "%" not in text:
        return False  # the parser's own verdict (8 groups unless compressed), without its exception cost
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return False
    # "::" alone and tiny compressed forms are usually C++ scopes or times, not addresses.
    return not address.is_unspecified and sum(ch.isalnum() for ch in text) >= 6


_PHONE_GROUPS = re.compile(r"[ .()-]+")
_PHONE_EXTENSION = re.compile(r"\s?(?:x|ext)", re.IGNORECASE)
_DATE_LIKE = re.compile(r"(?:19|20)[0-9]{2}[-./][0-9]{1,2}[-./][0-9]{1,2}.*")
_OTHER_NUMBER = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9]{3}-[0-9]{2}-[0-9]{4}")


def phone(text: str) -> bool:
    """10-15 digits; or 9 when written the way people write phone numbers (a +country code,
    an (area) code, or three separated groups)."""
    main = _PHONE_EXTENSION.split(text, maxsplit=1)[0]
    nums = digits(main)
    if not 9 <= len(nums) <= 15:
        return False  # most candidates (dates, times, short numbers) stop here, before the costlier checks
    groups = [g for g in _PHONE_GROUPS.split(main.strip()) if g]
    styled = main.lstrip().startswith(("+", "(")) or len(groups) >= 3
    if not (10 <= len(nums) <= 15 or (len(nums) == 9 and styled)) or len(set(nums)) < 3:
        return False
    # Dates and times are not phone numbers.
    if _DATE_LIKE.fullmatch(main.strip()):
        return False
    # Addresses and US SSN-shaped numbers have their own detectors.
    return not _OTHER_NUMBER.fullmatch(main.strip())


def email(text: str) -> bool:
    local, _, domain = text.rpartition("@")
    if not local or local[0] == "." or local[-1] == "." or ".." in local:
        return False
    labels = domain.split(".")
    return all(label and label[0] != "-" and label[-1] != "-" for label in labels) and labels[-1].isalpha()


def jwt(text: str) -> bool:
    parts = text.split(".")
    if len(parts) != 3:
        return False
    header = _b64json(parts[0])
    return isinstance(header, dict) and isinstance(header.get("alg"), str)


def jwt_base64(text: str) -> bool:
    """A JSON Web Token that was base64-encoded once more (as in Kubernetes secrets)."""
    try:
        inner = base64.b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        return False
    return jwt(inner.strip())


def basic_auth(text: str) -> bool:
    """A base64 ``user:password`` pair, as in ``Authorization: Basic …``."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    _user, sep, password = decoded.partition(":")
    return bool(sep) and bool(password) and decoded.isprintable() and not placeholder(password)


def _b64json(part: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        return orjson.loads(raw)
    except (binascii.Error, ValueError):
        return None


_PLACEHOLDER = re.compile(
    r"(?i)x{5,}|\*{3,}|#{4,}|\.{2,}|example|sample|dummy|placeholder|your[_-]?(?:api[_-]?)?(?:key|token|secret)"
    r"|redacted|changeme|<[^>]{0,40}>|\$\{|\{\{|%\(|\$\(|(?-i:\$[A-Z_]{3,})|insert[_-]|replace[_-]?me"
    r"|^(?:true|false|null|none|undefined|password|secret|token)$")
_RUN = re.compile(r"(.)\1{7,}|(..)\2{5,}|(...)\3{4,}")
_SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "1234567890")


_PLACEHOLDER_WORDS = frozenset({
    "password", "passwd", "pass", "pwd", "token", "secret", "apikey", "key", "changeme", "none", "null",
    "username", "user", "accesstoken", "secretkey", "clientsecret", "privatekey", "value", "string", "mypassword",
    "yourpassword", "yourtoken", "mytoken", "foo", "bar", "foobar", "test", "testing", "hunter2"})


def placeholder(text: str) -> bool:
    """True for obvious stand-ins: ``xxxx``, ``<YOUR_KEY>``, ``${TOKEN}``, ``EXAMPLE``, ``aaaaaaaa``…"""
    if _PLACEHOLDER.search(text) or _RUN.search(text):
        return True
    if _NON_ALNUM.sub("", text).lower() in _PLACEHOLDER_WORDS:
        return True
    lowered = text.lower()
    return any(seq[:10] in lowered for seq in _SEQUENCES) and len(set(lowered)) < len(lowered) * 0.6


def mixed(text: str) -> bool:
    """At least two of: upper-case letters, lower-case letters, digits — random tokens have that."""
    return sum((any(c.isupper() for c in text), any(c.islower() for c in text), any(c.isdigit() for c in text))) >= 2


def all_classes(text: str) -> bool:
    """Upper-case letters, lower-case letters and digits all present."""
    return any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)


_DOTTED_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:(?:\.|::|->)[A-Za-z_$][A-Za-z0-9_$]*)+(?:\(\)?)?")
_SNAKE_OR_CAMEL = re.compile(r"[a-z]+(?:_[a-z]+)+|[A-Z]+(?:_[A-Z]+)+|[a-z]+(?:[A-Z][a-z]+)+"
                             r"|[A-Z][a-z]+(?:[A-Z][a-z]+)+")


def secret_value(text: str) -> bool:
    """A value in ``key = value`` that looks like a credential rather than code or prose."""
    if len(text) < 8 or not mixed(text) or "://" in text or text[0] in "./~":
        return False
    if _DOTTED_NAME.fullmatch(text) or _SNAKE_OR_CAMEL.fullmatch(text):
        return False
    return shannon_entropy(text) >= 2.8


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check(text: str) -> bool:
    """Base58Check: the last four bytes are the double-SHA-256 of the rest (Bitcoin WIF, xprv)."""
    number = 0
    for ch in text:
        index = _B58.find(ch)
        if index < 0:
            return False
        number = number * 58 + index
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(text) - len(text.lstrip("1"))) + raw
    if len(raw) < 5:
        return False
    body, check = raw[:-4], raw[-4:]
    return hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4] == check


VALIDATORS: dict[str, Validator] = {
    "mixed": mixed,
    "all_classes": all_classes,
    "secret_value": secret_value,
    "base58check": base58check,
    "luhn": luhn,
    "credit_card": credit_card,
    "iban": iban,
    "us_ssn": us_ssn,
    "uk_nino": uk_nino,
    "ca_sin": ca_sin,
    "nl_bsn": nl_bsn,
    "es_dni": es_dni,
    "br_cpf": br_cpf,
    "in_aadhaar": in_aadhaar,
    "ipv4": ipv4,
    "ipv6": ipv6,
    "phone": phone,
    "email": email,
    "jwt": jwt,
    "jwt_base64": jwt_base64,
    "basic_auth": basic_auth,
}
