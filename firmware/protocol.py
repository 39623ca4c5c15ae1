"""Frames, codes and payloads of the host <-> device UART protocol (docs/protocol.md).

A request frame is ``A5 cmd seq len(2) payload crc(2)``, a reply ``5A status seq len(2)
payload crc(2)``; integers are little-endian and the CRC-16/CCITT-FALSE covers every byte
after the start byte up to the end of the payload. Everything here is pure bytes in,
bytes out: no I/O.
"""

import json
import struct
from dataclasses import dataclass
from enum import IntEnum

from golden.shell import crc16   # the device model's CRC is the reference

__all__ = ["REQUEST_START", "REPLY_START", "HEADER_BYTES", "CRC_BYTES", "Command", "Status",
           "Reply", "crc16", "encode_frame", "encode_request", "encode_reply", "ReplyDecoder",
           "write_payload", "read_payload", "configure_payload", "parse_address",
           "parse_read", "parse_configure", "StatusReport", "parse_status", "status_payload",
           "parse_info"]

REQUEST_START = 0xA5
REPLY_START = 0x5A
HEADER_BYTES = 5      # start, command/status, sequence, length (2)
CRC_BYTES = 2
ADDRESS_BYTES = 5     # buffer (1), offset (4)


class Command(IntEnum):
    WRITE = 0x01
    READ = 0x02
    CONFIGURE = 0x03
    RUN = 0x04
    STATUS = 0x05
    INFO = 0x06


class Status(IntEnum):
    OK = 0x00
    BAD_CRC = 0x01
    UNKNOWN_COMMAND = 0x02
    BAD_LENGTH = 0x03
    BAD_ADDRESS = 0x04
    TIMEOUT = 0x05
    BUSY = 0x06
    BAD_REGISTER = 0x07


def encode_frame(start, code, seq, payload=b""):
    """A frame with start byte *start*, command or status *code*, sequence number *seq*."""
    payload = bytes(payload)
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"seq must be between 0 and 255, not {seq!r}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload must be at most 65535 bytes, not {len(payload)}")
    body = struct.pack("<BBH", code, seq, len(payload)) + payload
    return bytes([start]) + body + struct.pack("<H", crc16(body))


def encode_request(command, seq, payload=b""):
    return encode_frame(REQUEST_START, command, seq, payload)


def encode_reply(status, seq, payload=b""):
    return encode_frame(REPLY_START, status, seq, payload)


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


# -- payloads ------------------------------------------------------------------------------

def write_payload(buffer, offset, data):
    return struct.pack("<BI", buffer, offset) + bytes(data)


def read_payload(buffer, offset, count):
    return struct.pack("<BIH", buffer, offset, count)


def configure_payload(register, value):
    return struct.pack("<BI", register, value)


def parse_address(payload):
    """(buffer, offset, rest) of a WRITE or READ payload (at least 5 bytes)."""
    buffer, offset = struct.unpack_from("<BI", payload)
    return buffer, offset, bytes(payload[ADDRESS_BYTES:])


def parse_read(payload):
    """(buffer, offset, count) of a 7-byte READ payload."""
    return struct.unpack("<BIH", payload)


def parse_configure(payload):
    """(register, value) of a 5-byte CONFIGURE payload."""
    return struct.unpack("<BI", payload)


@dataclass(frozen=True)
class StatusReport:
    busy: bool
    engine_errors: int
    cycles: int
    result_words: int


STATUS_BYTES = 8


def status_payload(report):
    return struct.pack("<BBIH", int(report.busy), report.engine_errors, report.cycles,
                       report.result_words)


def parse_status(payload):
    flags, errors, cycles, words = struct.unpack("<BBIH", payload)
    return StatusReport(bool(flags & 1), errors, cycles, words)


def parse_info(payload):
    """The device description of an INFO reply (a dict from its JSON text)."""
    return json.loads(bytes(payload).decode("utf-8"))
