"""The host <-> device protocol as data: frames, codes, payload layouts (docs/protocol.md).

A request frame is ``A5 cmd seq len(2) payload crc(2)``, a reply ``5A status seq len(2)
payload crc(2)``; integers are little-endian and the CRC-16/CCITT-FALSE covers every byte
after the start byte up to the end of the payload. The RTL link (rtl/shell), the golden
shell model (golden/shell.py) and the host runtime (firmware/) all take these from here.
Pure bytes in, bytes out: no I/O.
"""

import json
import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

__all__ = ["REQUEST_START", "REPLY_START", "HEADER_BYTES", "CRC_BYTES", "ADDRESS_BYTES",
           "FRAME_OVERHEAD", "DEFAULT_MAX_PAYLOAD", "DEFAULT_TIMEOUT_BITS", "BREAK_BITS", "Command",
           "Status", "StatusFlags", "crc16", "encode_frame", "encode_request",
           "encode_reply", "write_payload", "read_payload", "configure_payload",
           "parse_address", "parse_read", "parse_configure", "StatusReport", "STATUS_BYTES",
           "status_payload", "parse_status", "engine_description", "info_bytes", "parse_info"]

REQUEST_START = 0xA5
REPLY_START = 0x5A
HEADER_BYTES = 5          # start, command/status, sequence, length (2)
CRC_BYTES = 2
FRAME_OVERHEAD = HEADER_BYTES + CRC_BYTES
ADDRESS_BYTES = 5         # buffer (1), offset (4)
DEFAULT_MAX_PAYLOAD = 1024
DEFAULT_TIMEOUT_BITS = 64  # the inter-byte timeout, in bit times of the line
# A break: the line held low (space) this many bit times or more resets the whole device
# but its buffers' contents (docs/protocol.md, "Break"). No byte holds it low longer than 9.
BREAK_BITS = 32

CRC_POLY, CRC_INIT = 0x1021, 0xFFFF


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


class StatusFlags(IntFlag):
    """Byte 0 of the STATUS payload."""
    BUSY = 0x01           # a run is in progress
    OVERRUN = 0x02        # the receiver lost a byte since the last STATUS (sticky; cleared
                          # by the STATUS reply that reports it); never set by the golden model


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, unreflected, no final XOR)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


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
    """The STATUS payload. `overrun`: the device's receiver lost a byte since the last
    STATUS (a host that keeps one request in flight never causes it)."""
    busy: bool
    engine_errors: int
    cycles: int
    result_words: int
    overrun: bool = False


STATUS_FORMAT = "<BBIH"   # flags, engine error flags, cycles, result words
STATUS_BYTES = struct.calcsize(STATUS_FORMAT)


def status_payload(report):
    flags = (StatusFlags.BUSY if report.busy else 0) | \
        (StatusFlags.OVERRUN if report.overrun else 0)
    return struct.pack(STATUS_FORMAT, int(flags), report.engine_errors, report.cycles & 0xFFFFFFFF,
                       report.result_words & 0xFFFF)


def parse_status(payload):
    flags, errors, cycles, words = struct.unpack(STATUS_FORMAT, payload)
    return StatusReport(bool(flags & StatusFlags.BUSY), errors, cycles, words,
                        bool(flags & StatusFlags.OVERRUN))


def engine_description(name, params, buffers, registers):
    """The engine's part of the INFO description: its name, generator parameters,
    buffers (BufferSpecs in id order) and registers (a RegisterMap)."""
    return {"engine": name, "params": params.to_dict(),
            "buffers": [b.describe() for b in buffers], "registers": registers.ids()}


def info_bytes(description):
    """The INFO reply payload of a device description (compact JSON, sorted keys)."""
    return json.dumps(description, sort_keys=True, separators=(",", ":")).encode()


def parse_info(payload):
    """The device description of an INFO reply (a dict from its JSON text)."""
    return json.loads(bytes(payload).decode("utf-8"))
