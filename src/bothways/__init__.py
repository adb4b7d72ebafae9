"""bothways: JSON between Python and JavaScript, both ways.

The wire core (``bothways.wire``) and the error tree (``bothways.errors``) are re-exported here;
transports live in ``bothways.transports``.
"""

from .errors import (
    BothwaysError,
    CallTimeout,
    ChildExited,
    ConnectError,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    RemoteError,
    TransportClosed,
    TransportError,
    TruncatedLine,
)
from .wire import (
    MAX_LINE,
    MAX_SAFE_INTEGER,
    Decoder,
    Event,
    Malformed,
    Messages,
    Truncated,
    decode,
    encode,
    encode_many,
)

__version__ = "0.1.0"

__all__ = [
    "MAX_LINE",
    "MAX_SAFE_INTEGER",
    "BothwaysError",
    "CallTimeout",
    "ChildExited",
    "ConnectError",
    "DecodeError",
    "Decoder",
    "EncodeError",
    "Event",
    "FrameTooLarge",
    "Malformed",
    "Messages",
    "RemoteError",
    "TransportClosed",
    "TransportError",
    "Truncated",
    "TruncatedLine",
    "decode",
    "encode",
    "encode_many",
]
