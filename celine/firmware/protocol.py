"""The host's side of the protocol: the frame and payload codecs of celine.spec.protocol,
and an incremental reply decoder (docs/protocol.md)."""

import struct
from dataclasses import dataclass

from celine.spec.protocol import *  # noqa: F401,F403  (the host's protocol API)
from celine.spec.protocol import CRC_BYTES, HEADER_BYTES, REPLY_START, Status, crc16
from celine.spec.protocol import __all__ as _spec_all

__all__ = [*_spec_all, "Reply", "ReplyDecoder"]


@dataclass(frozen=True)
class Reply:
    """A decoded reply frame. *status* is a Status, or the raw int if the code is unknown;
    *crc_ok* is False when the frame failed its CRC (its fields are then untrustworthy)."""
    status: object
    seq: int
    payload: bytes
    crc_ok: bool = True


class ReplyDecoder:
    """Incremental reply-frame decoder: ``feed(bytes)`` returns the replies completed so far.

    Bytes before a 0x5A start byte are discarded. A frame whose CRC fails is returned
    with ``crc_ok=False`` (the caller decides what to do); ``pending`` tells whether a
    partial frame is buffered.
    """

    def __init__(self, *, start=REPLY_START):
        self.start = start
        self._buffer = bytearray()

    @property
    def pending(self):
        return bool(self._buffer)

    @property
    def needed(self):
        """Bytes still missing from the frame in progress (a lower bound before its
        header is complete); reading exactly this many never reads past the frame."""
        start = self._buffer.find(self.start)
        have = len(self._buffer) - start if start >= 0 else 0
        if have < HEADER_BYTES:
            return HEADER_BYTES - have
        (length,) = struct.unpack_from("<H", self._buffer, start + 3)
        return HEADER_BYTES + length + CRC_BYTES - have

    def reset(self):
        self._buffer.clear()

    def feed(self, data):
        self._buffer += data
        replies = []
        while True:
            first = self._buffer.find(self.start)
            if first < 0:
                self._buffer.clear()
                return replies
            del self._buffer[:first]
            if len(self._buffer) < HEADER_BYTES:
                return replies
            code, seq, length = struct.unpack_from("<BBH", self._buffer, 1)
            end = HEADER_BYTES + length + CRC_BYTES
            if len(self._buffer) < end:
                return replies
            body = bytes(self._buffer[1:HEADER_BYTES + length])
            (crc,) = struct.unpack_from("<H", self._buffer, HEADER_BYTES + length)
            del self._buffer[:end]
            try:
                code = Status(code)
            except ValueError:
                pass
            replies.append(Reply(code, seq, body[HEADER_BYTES - 1:], crc16(body) == crc))
