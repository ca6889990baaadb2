"""Small setting types every config model shares: durations, sizes, strict models, addresses.

A leaf module (it imports nothing from mcpwall), so guards can use these types without importing
the full config model, which itself imports every guard through the registry.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2, "GB": 1000**3, "GiB": 1024**3}


def parse_duration(value: Any) -> Any:
    """``"90d"`` → 7776000.0 seconds; numbers pass through as seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 500ms, 30s, 5m, 1h or 7d")
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return value


def parse_size(value: Any) -> Any:
    """``"4MiB"`` → 4194304 bytes; numbers pass through as bytes."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError("expected a size such as 4096, 64KiB or 4MiB")
        return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    return value


# config/schema.py recognises these two validators and documents their string forms (with the
# patterns above) in docs/config.schema.json.
Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Bytes = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]


def check_http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def check_time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def check_signing_secret(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 32:
        raise ValueError("must be at least 32 characters")
    return value


HttpUrl = Annotated[str, AfterValidator(check_http_url)]
SigningSecret = Annotated[SecretStr, AfterValidator(check_signing_secret)]  # an HMAC key, never printed
TimeZone = Annotated[str, AfterValidator(check_time_zone)]  # an IANA name such as Europe/Berlin


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
