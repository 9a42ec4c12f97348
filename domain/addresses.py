"""Portal addresses: one canonical host name per portal."""

import ipaddress
import re
from urllib.parse import urlsplit

MAX_HOST_LENGTH = 253
LABEL_PATTERN = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class AddressError(ValueError):
    """The text is not a portal address; `reason` is a stable code for the message catalogue."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical_address(raw: str) -> str:
    """The host name a portal is stored under: lower case, IDNA form, nothing around it.

    `https://Shop.Example.ru/` and `shop.example.ru` give the same result. IP addresses,
    `http://` and other schemes, ports, user info and non-host text are refused.
    """
    text = raw.strip()
    if not text:
        raise AddressError("empty")

    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme.lower() != "https":
            raise AddressError("not_https")
        if parts.username or parts.password:
            raise AddressError("malformed")
        try:
            port = parts.port
        except ValueError:
            raise AddressError("malformed") from None
        if port not in (None, 443):
            raise AddressError("port")
        host = parts.hostname or ""
    else:
        if any(char in text for char in "/?#@: \t"):
            raise AddressError("malformed")
        host = text

    host = host.rstrip(".").lower()
    if not host:
        raise AddressError("malformed")
    if _is_ip(host):
        raise AddressError("ip")

    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise AddressError("malformed") from None

    labels = ascii_host.split(".")
    if len(ascii_host) > MAX_HOST_LENGTH or len(labels) < 2:
        raise AddressError("malformed")
    if not all(LABEL_PATTERN.match(label) for label in labels) or labels[-1].isdigit():
        raise AddressError("malformed")
    return ascii_host


def display_address(host: str) -> str:
    """The host as people read it: international names in Unicode."""
    try:
        return host.encode("ascii").decode("idna")
    except UnicodeError:
        return host


def portal_url(host: str) -> str:
    """The address a portal opens at."""
    return f"https://{host}/"


def _is_ip(host: str) -> bool:
    candidate = host.strip("[]")
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return bool(re.fullmatch(r"[0-9.]+", candidate))
    return True
