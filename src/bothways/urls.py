"""The channel URL scheme, parsed by the same rules as ``js/src/urls.js`` (spec/PROTOCOL.md §7).

``parse(url)`` returns an :class:`Address`; it does no I/O. The rules are pinned by
``spec/vectors/urls.json``, which both test suites run::

    tcp://host:port?token=...            ws://host:port/path?token=...
    fifo:/path   fifo:relative/path      file:/path?state=/path.offset&poll=0.05
    stdio:       mqtt://host:port/topic/levels?qos=1   (also mqtts:, mqtt+ws:, mqtt+wss:)

- The scheme is case-insensitive. Network schemes need ``//host:port``; an empty host means
  127.0.0.1, IPv6 goes in brackets, port 0 asks ``listen`` for a free port. ``ws`` defaults to
  port 80 and path ``/``; ``tcp`` takes no path.
- ``fifo:`` and ``file:`` name a local path (``fifo:///p`` is ``fifo:/p``; a host is refused);
  the path is percent-decoded.
- The query holds the options each scheme knows (a typo is an error, not silently ignored), with
  typed values (spec/PROTOCOL.md §7 lists them): ``max_line`` everywhere; ``token``,
  ``reconnect``, ``timeout`` on tcp and ws; ``timeout``, ``reopen`` on fifo; ``state``,
  ``poll``, ``follow``, ``max_bytes``, ``keep`` on file; the MQTT options on mqtt (§7).
  ``+`` is not a space. A key given twice and a ``#fragment`` are errors.
- ``mqtt:`` (and ``mqtts:`` with TLS, ``mqtt+ws:``/``mqtt+wss:`` through the broker's WebSocket
  listener) names a broker and a topic: the path, percent-decoded, without its first ``/``. There
  ``#`` is the multi-level wildcard, not a fragment; ``+`` and ``#`` stand alone in a level.
  Default ports 1883, 8883, 80, 443.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from .errors import UrlError

__all__ = ["SCHEMES", "Address", "parse"]

MQTT = ("mqtt", "mqtts", "mqtt+ws", "mqtt+wss")
NETWORK = ("tcp", "ws", *MQTT)
PATHS = ("fifo", "file")
SCHEMES = ("stdio", *NETWORK, *PATHS)
"""Every scheme with a transport, in both languages."""

_PARAMS: dict[str, tuple[str, ...]] = {
    "stdio": ("max_line",),
    "tcp": ("max_line", "token", "reconnect", "timeout", "backlog"),
    "ws": ("max_line", "token", "reconnect", "timeout", "backlog"),
    "fifo": ("max_line", "timeout", "reopen"),
    "file": ("max_line", "state", "poll", "follow", "max_bytes", "keep"),
}
_MQTT_PARAMS = (
    "max_line",
    "qos",
    "client_id",
    "clean",
    "session",
    "share",
    "protocol",
    "timeout",
    "keepalive",
)
_PARAMS.update({scheme: _MQTT_PARAMS for scheme in ("mqtt", "mqtts")})
_PARAMS.update({scheme: (*_MQTT_PARAMS, "ws_path") for scheme in ("mqtt+ws", "mqtt+wss")})
_SIDE = {  # options for one end only; the rest apply to both
    "reconnect": "connect",
    "timeout": "connect",
    "max_bytes": "connect",
    "keep": "connect",
    "reopen": "listen",
    "backlog": "listen",
    "state": "listen",
    "poll": "listen",
    "follow": "listen",
}
_SIDE_MQTT = {"share": "listen"}  # on mqtt, both ends are clients of the broker
_DEFAULT_PORT = {"ws": 80, "mqtt": 1883, "mqtts": 8883, "mqtt+ws": 80, "mqtt+wss": 443}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_WHOLE = ("max_line", "max_bytes", "keep", "backlog", "keepalive")
_FLAGS = ("reconnect", "reopen", "follow", "clean")
_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
_MAX_WHOLE = 2**53 - 1  # the largest whole number both languages hold exactly


@dataclass(frozen=True)
class Address:
    """A parsed channel URL: what ``connect`` and ``listen`` dispatch on.

    ``host`` and ``port`` are set for network schemes (``None`` otherwise), ``path`` for ws
    (the raw request path), mqtt (the topic), fifo and file (the decoded file path); ``params``
    holds the typed query options.
    """

    scheme: str
    host: str | None = None
    port: int | None = None
    path: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The canonical form: lower-case scheme and host, options sorted by name."""
        if self.scheme in NETWORK:
            host = f"[{self.host}]" if self.host and ":" in self.host else self.host
            path = "/" + quote(self.path, safe=_TOPIC_SAFE) if self.scheme in MQTT else self.path
            text = f"{self.scheme}://{host}:{self.port}{path}"
        elif self.scheme in PATHS:
            path = quote(self.path, safe="/")
            # a path starting with // gets an empty authority first, or it would read as a host
            text = f"{self.scheme}:{'//' if path.startswith('//') else ''}{path}"
        else:
            text = f"{self.scheme}:"
        if self.params:
            text += "?" + "&".join(f"{k}={_format(v)}" for k, v in sorted(self.params.items()))
        return text

    def params_for(self, side: str) -> dict[str, Any]:
        """The options that apply to one end, ``"connect"`` or ``"listen"``: one URL serves both
        (a writer's ``max_bytes`` means nothing to the reader, a reader's ``state`` nothing to the
        writer)."""
        sides = _SIDE_MQTT if self.scheme in MQTT else _SIDE
        return {k: v for k, v in self.params.items() if sides.get(k, side) == side}

    def with_port(self, port: int) -> Address:
        """The same address on another port (a listener reports the port it got for 0)."""
        return Address(self.scheme, self.host, port, self.path, dict(self.params))

    def __str__(self) -> str:
        return self.url


def _format(value: Any) -> str:
    if value is True or value is False:
        return "1" if value else "0"
    if isinstance(value, float):
        # plain decimals, never an exponent (which parse refuses), digit for digit as in JS
        value = int(value) if value.is_integer() else format(Decimal(repr(value)), "f")
    return quote(str(value), safe="/")


def _decode(text: str, url: str, what: str) -> str:
    try:
        if re.search(r"%(?![0-9A-Fa-f]{2})", text):
            raise ValueError
        return unquote_to_bytes(text).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise UrlError(f"{what} {text!r} has a bad percent-escape", url=url) from None


def parse(url: str) -> Address:
    """Parses a channel URL; raises UrlError saying what is wrong and where."""
    if not isinstance(url, str):
        raise UrlError(f"expected a string, got {type(url).__name__}", url=repr(url))
    match = _SCHEME.match(url)
    if not match:
        raise UrlError("no scheme (expected one of " + ", ".join(f"{s}:" for s in SCHEMES) + ")", url=url)
    scheme = match.group(1).lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}:" for s in SCHEMES)
        raise UrlError(f"unknown scheme {scheme + ':'!r} (known: {known})", url=url)
    rest = url[match.end() :]
    if "#" in rest and scheme not in MQTT:
        raise UrlError("a fragment (#...) means nothing here", url=url)
    rest, _, query = rest.partition("?")
    params = _params(scheme, query, url) if query else {}
    if scheme in NETWORK:
        return _network(scheme, rest, params, url)
    if scheme in PATHS:
        return Address(scheme, path=_path(scheme, rest, url), params=params)
    if rest:
        raise UrlError(f"stdio: takes no path, got {rest!r}", url=url)
    return Address(scheme, params=params)


def _network(scheme: str, rest: str, params: dict[str, Any], url: str) -> Address:
    if not rest.startswith("//"):
        raise UrlError(f"{scheme}: needs //host:port", url=url)
    authority, slash, path = rest[2:].partition("/")
    path = slash + path
    if "@" in authority:
        use = "pass username= and password= as options" if scheme in MQTT else "use ?token="
        raise UrlError(f"user names and passwords do not go in the URL ({use})", url=url)
    if authority.startswith("["):
        end = authority.find("]")
        host, after = authority[1:end], authority[end + 1 :]
        if end < 0 or not _IPV6.fullmatch(host) or ":" not in host:
            raise UrlError(f"bad IPv6 address in {authority!r}", url=url)
    else:
        host, colon, port_text = authority.partition(":")
        after = colon + port_text
        if host and not _HOSTNAME.fullmatch(host):
            raise UrlError(f"bad host name {host!r}", url=url)
    if after and not after.startswith(":"):
        raise UrlError(f"unexpected {after!r} after the host", url=url)
    port_text = after[1:]
    if not after or not port_text:
        if scheme not in _DEFAULT_PORT:
            raise UrlError(f"{scheme}: needs a port (0 lets listen() pick a free one)", url=url)
        port = _DEFAULT_PORT[scheme]
    elif not port_text.isdigit() or not port_text.isascii():
        raise UrlError(f"port {port_text!r} is not a number", url=url)
    else:
        digits = port_text.lstrip("0") or "0"  # (int() refuses 4,300 digits and more)
        if len(digits) > 5 or int(digits) > 65535:
            raise UrlError(f"port {digits} is out of range (0-65535)", url=url)
        port = int(digits)
    if scheme == "tcp" and path not in ("", "/"):
        raise UrlError(f"tcp: takes no path, got {path!r}", url=url)
    if scheme == "ws":
        path = path or "/"
    elif scheme in MQTT:
        path = _topic(scheme, path, url)
    else:
        path = ""
    return Address(scheme, host.lower() or "127.0.0.1", port, path, params)


_TOPIC_SAFE = "/+#$"  # kept as they are in a canonical mqtt URL


def _topic(scheme: str, path: str, url: str) -> str:
    """The MQTT topic (or filter) of an mqtt URL's path: decoded, its first / dropped."""
    topic = _decode(path[1:], url, "topic")
    if not topic:
        raise UrlError(f"{scheme}: needs a topic, as in {scheme}://127.0.0.1:1883/sensors/kitchen", url=url)
    if "\0" in topic:
        raise UrlError("a topic cannot hold a NUL character", url=url)
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if ("+" in level or "#" in level) and (len(level) > 1 or (level == "#" and index < len(levels) - 1)):
            raise UrlError(
                f"bad topic {topic!r}: '+' and '#' stand alone in a level, and '#' only in the last", url=url
            )
    return topic


def _path(scheme: str, rest: str, url: str) -> str:
    if rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        if authority:
            raise UrlError(f"{scheme}: names a local path; got a host {authority!r}", url=url)
        rest = slash + tail
    if not rest:
        raise UrlError(f"{scheme}: needs a path, as in {scheme}:/tmp/readings", url=url)
    return _decode(rest, url, "path")


def _params(scheme: str, query: str, url: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in query.split("&"):
        if not item:
            continue
        key, eq, raw = item.partition("=")
        key = _decode(key, url, "option")
        if key not in _PARAMS[scheme]:
            known = ", ".join(_PARAMS[scheme])
            raise UrlError(f"{scheme}: has no option {key!r} (known: {known})", url=url)
        if key in params:
            raise UrlError(f"option {key!r} is given twice", url=url)
        if not eq:
            raise UrlError(f"option {key!r} needs a value ({key}=...)", url=url)
        params[key] = _typed(key, _decode(raw, url, f"option {key!r}"), url)
    return params


def _typed(key: str, value: str, url: str) -> Any:
    if key in _WHOLE:
        number = _whole(key, value, url) if value.isdigit() and value.isascii() else 0
        if number < 1:
            raise UrlError(f"{key} must be a whole number >= 1, got {value!r}", url=url)
        return number
    if key in _FLAGS:
        if value.lower() not in _BOOLEANS:
            raise UrlError(f"{key} must be 1/0, true/false or yes/no, got {value!r}", url=url)
        return _BOOLEANS[value.lower()]
    if key == "qos":
        if value not in ("0", "1", "2"):
            raise UrlError(f"qos must be 0, 1 or 2, got {value!r}", url=url)
        return int(value)
    if key == "session":
        if not value.isdigit() or not value.isascii():
            raise UrlError(f"session must be a whole number of seconds >= 0, got {value!r}", url=url)
        return _whole(key, value, url)
    if key == "protocol" and value not in ("5", "3.1.1"):
        raise UrlError(f"protocol must be 5 or 3.1.1, got {value!r}", url=url)
    if key == "share" and (not value or any(c in value for c in "/+#")):
        raise UrlError(f"share must be a group name without '/', '+' or '#', got {value!r}", url=url)
    if key == "ws_path" and not value.startswith("/"):
        raise UrlError(f"ws_path must start with '/', got {value!r}", url=url)
    if key in ("timeout", "poll"):
        if not _NUMBER.fullmatch(value) or float(value) <= 0:
            raise UrlError(f"{key} must be a number of seconds > 0, got {value!r}", url=url)
        if not math.isfinite(float(value)):
            raise UrlError(f"{key} is too large, got {value!r}", url=url)
        return float(value)
    if not value:
        raise UrlError(f"option {key!r} is empty", url=url)
    return value


def _whole(key: str, value: str, url: str) -> int:
    """ASCII digits as an int, at most 2**53 - 1 (what JavaScript holds exactly)."""
    digits = value.lstrip("0") or "0"  # (int() refuses 4,300 digits and more)
    if len(digits) > 16 or int(digits) > _MAX_WHOLE:
        raise UrlError(f"{key} must be at most {_MAX_WHOLE}, got {value!r}", url=url)
    return int(digits)
