"""The one exception tree of bothways, mirrored class for class in ``js/src/errors.js``.

::

    BothwaysError                       .code (stable string), .to_json()
    ├─ EncodeError(ValueError)          local: we were asked to send something invalid (.path)
    ├─ DecodeError(ValueError)          remote input: .line, .column, .excerpt
    │  ├─ FrameTooLarge                 a line longer than the limit (.limit)
    │  └─ TruncatedLine                 the stream ended in the middle of a line (.delivered)
    ├─ UrlError(ValueError)             a channel URL we cannot use: .url, .reason
    ├─ TransportError(OSError)
    │  ├─ ConnectError                  .url
    │  ├─ TransportClosed
    │  └─ ChildExited                   .returncode, .signal, .stderr_tail
    ├─ RemoteError                      .reason, .rpc_code, .remote_type, .remote_traceback, .data
    ├─ CallTimeout(TimeoutError)
    └─ HandleError                     a remote object handle that cannot be used, a bad marker

Rules:
- ``EncodeError`` is *our* mistake (a value that cannot cross); ``DecodeError`` is the *peer's*
  (bytes that are not a message). Keep them apart, as h11 does.
- Every class has a ``code`` spelled the same in both languages and listed in spec/PROTOCOL.md.
- Each also inherits the builtin that fits, so ``except ValueError:`` keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BothwaysError",
    "CallTimeout",
    "ChildExited",
    "ConnectError",
    "DecodeError",
    "EncodeError",
    "FrameTooLarge",
    "HandleError",
    "RemoteError",
    "TransportClosed",
    "TransportError",
    "TruncatedLine",
    "UrlError",
]


class BothwaysError(Exception):
    """Base of every error bothways raises; ``code`` is stable across versions and languages."""

    code = "BOTHWAYS_ERROR"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def details(self) -> dict[str, Any]:
        """The class-specific fields, as JSON values (empty for the base class)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """Returns ``{"code", "message", ...details}``: what crosses the wire for this error."""
        return {"code": self.code, "message": self.message, **self.details()}


class EncodeError(BothwaysError, ValueError):
    """A value cannot be sent: unsupported type, unsafe integer, lone surrogate, NaN in strict mode.

    ``path`` names the offending place in JSONPath style, e.g. ``$.readings[3].celsius``.
    """

    code = "ENCODE_ERROR"

    def __init__(self, message: str, *, path: str = "$") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message

    def details(self) -> dict[str, Any]:
        return {"path": self.path}


class DecodeError(BothwaysError, ValueError):
    """Bytes from the peer are not a JSON message.

    ``line`` and ``column`` are 1-based (``column`` counts characters, 0 when unknown);
    ``excerpt`` is a short piece of the offending line around the error.
    """

    code = "DECODE_ERROR"

    def __init__(self, reason: str, *, line: int = 1, column: int = 0, excerpt: str = "") -> None:
        where = f"line {line}, col {column}" if column else f"line {line}"
        text = f"{where}: {reason}"
        if excerpt:
            text += f" in {excerpt!r}"
        super().__init__(text)
        self.reason = reason
        self.line = line
        self.column = column
        self.excerpt = excerpt

    def details(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "excerpt": self.excerpt}


class FrameTooLarge(DecodeError):
    """A line is longer than the decoder's ``max_line``; the stream resumes at the next newline."""

    code = "FRAME_TOO_LARGE"

    def __init__(self, *, line: int, limit: int, excerpt: str = "", reason: str | None = None) -> None:
        super().__init__(
            reason or f"line is longer than the limit of {limit} bytes (skipped up to the next newline)",
            line=line,
            excerpt=excerpt,
        )
        self.limit = limit

    def details(self) -> dict[str, Any]:
        return {**super().details(), "limit": self.limit}


class TruncatedLine(DecodeError):
    """The stream ended without a final newline.

    ``delivered`` tells whether the unterminated line still parsed and was delivered as a message
    (it may be a cut-off number such as ``4`` from ``42.5``, hence the report).
    """

    code = "TRUNCATED_LINE"

    def __init__(self, reason: str, *, line: int, excerpt: str, delivered: bool) -> None:
        super().__init__(reason, line=line, excerpt=excerpt)
        self.delivered = delivered

    def details(self) -> dict[str, Any]:
        return {**super().details(), "delivered": self.delivered}


class UrlError(BothwaysError, ValueError):
    """A channel URL that cannot be used: ``reason`` says what is wrong with ``url``."""

    code = "URL_ERROR"

    def __init__(self, reason: str, *, url: str) -> None:
        super().__init__(f"bad URL {url!r}: {reason}")
        self.url = url
        self.reason = reason

    def details(self) -> dict[str, Any]:
        return {"url": self.url, "reason": self.reason}


class TransportError(BothwaysError, OSError):
    """A channel failed below the message layer."""

    code = "TRANSPORT_ERROR"


class ConnectError(TransportError):
    """Could not reach ``url`` (refused, unresolvable, wrong token...)."""

    code = "CONNECT_ERROR"

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url

    def details(self) -> dict[str, Any]:
        return {"url": self.url}


class TransportClosed(TransportError):
    """The channel is closed (by us or by the peer); nothing more can be sent or received."""

    code = "TRANSPORT_CLOSED"


class ChildExited(TransportError):
    """A spawned child ended badly: non-zero ``returncode`` or a ``signal``, with its stderr tail."""

    code = "CHILD_EXITED"

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None,
        signal: str | None = None,
        stderr_tail: str = "",
    ) -> None:
        text = message + (f"\n--- stderr tail ---\n{stderr_tail}" if stderr_tail else "")
        super().__init__(text)
        self.returncode = returncode
        self.signal = signal
        self.stderr_tail = stderr_tail

    def details(self) -> dict[str, Any]:
        return {"returncode": self.returncode, "signal": self.signal, "stderr_tail": self.stderr_tail}


class RemoteError(BothwaysError):
    """The other side raised while serving our call."""

    code = "REMOTE_ERROR"

    def __init__(
        self,
        message: str,
        *,
        rpc_code: int = -32000,
        remote_type: str = "",
        remote_traceback: str = "",
        data: Any = None,
    ) -> None:
        text = f"{remote_type}: {message}" if remote_type else message
        if remote_traceback:
            text += f"\n--- remote traceback ---\n{remote_traceback}"
        super().__init__(text)
        self.reason = message
        self.rpc_code = rpc_code
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        self.data = data

    def details(self) -> dict[str, Any]:
        return {
            "rpc_code": self.rpc_code,
            "remote_type": self.remote_type,
            "remote_traceback": self.remote_traceback,
            "data": self.data,
        }


class CallTimeout(BothwaysError, TimeoutError):
    """A call got no answer in time."""

    code = "CALL_TIMEOUT"


class HandleError(BothwaysError):
    """A remote object handle cannot be used (released, or never lent), or a marker that should
    stand for an object, bytes or an array is malformed (the message names its path)."""

    code = "HANDLE_ERROR"
