"""bothways: JSON between Python and JavaScript, both ways.

The wire core (``bothways.wire``), the error tree (``bothways.errors``) and the channel entry
points (``connect``/``listen`` and their asyncio flavours, ``bothways.channels``) are re-exported
here; transports live in ``bothways.transports``.
"""

from ._version import __version__ as __version__
from .channels import async_connect, async_listen, connect, listen
from .errors import (
    BothwaysError,
    CallTimeout,
    ChildExited,
    ConnectError,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    HandleError,
    RemoteError,
    TransportClosed,
    TransportError,
    TruncatedLine,
    UrlError,
)
from .wire import (
    MAX_LINE,
    MAX_SAFE_INTEGER,
    Binary,
    Decoder,
    Event,
    Malformed,
    Messages,
    Truncated,
    decode,
    encode,
    encode_many,
)

__all__ = [
    "MAX_LINE",
    "MAX_SAFE_INTEGER",
    "Binary",
    "BothwaysError",
    "CallTimeout",
    "ChildExited",
    "ConnectError",
    "DecodeError",
    "Decoder",
    "EncodeError",
    "Event",
    "FrameTooLarge",
    "HandleError",
    "Malformed",
    "Messages",
    "RemoteError",
    "TransportClosed",
    "TransportError",
    "Truncated",
    "TruncatedLine",
    "UrlError",
    "async_connect",
    "async_listen",
    "connect",
    "decode",
    "encode",
    "encode_many",
    "listen",
]
