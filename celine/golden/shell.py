"""Byte-level model of the accelerator shell, with an engine model inside (docs/protocol.md).

``ShellModel(engine).feed(bytes)`` takes what the host sends and returns the reply bytes
the device sends; ``idle(bit_times)`` says the line stayed quiet that long (the inter-byte
timeout, and the progress of a run when ``run_bit_times`` > 0). The inter-byte timeout
counts quiet line time only, from the end of one byte to the start bit of the next (bytes
given to one ``feed`` follow each other with no gap): a frame times out once the quiet time
since its last byte exceeds ``timeout_bits`` (the RTL decides between timeout_bits and
timeout_bits + 1, docs/protocol.md). The model receives every byte: the device's receive
overrun (StatusFlags.OVERRUN) has no counterpart here. It is the golden model of
rtl/shell; the host runtime's unit tests talk to it through firmware.transport. The engine
is a golden engine model (`EngineModel`), as the RTL shell takes an engine adapter;
`shell_model(accel, params, **options)` builds one for a registered engine.

Order of checks on a complete frame (the first that fails gives the status): CRC,
command, length for the command, then BAD_ADDRESS (unknown or read-only buffer, range) or
BAD_REGISTER, then BUSY (WRITE, READ, CONFIGURE and RUN while a run is in progress). A
READ count of 0 or above max_payload is BAD_LENGTH.

A RUN whose sequence number is that of a RUN that started and that was the last frame to
pass the CRC check is a replay (the host repeating a RUN whose reply it lost): OK, and
nothing starts, even while busy (checked after the register check, before BUSY). Any other
frame that passes the CRC check forgets the RUN.

A RUN computes at once with the engine model; its results, ``cycles`` and
``result_words`` appear when it completes: at once, or after ``run_bit_times`` of idle
line (``busy`` until then). Engine error flags (STATUS) belong to the last run, cleared
when a run starts.
"""

import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..spec.lanes import pack_lanes, unpack_lanes
from ..spec.protocol import (REQUEST_START, Command, Status, StatusReport, crc16, encode_reply,
                             engine_description, info_bytes, status_payload)

__all__ = ["ShellModel", "EngineModel", "RunResult", "Buffer", "shell_model", "pack_lanes",
           "unpack_lanes"]


class Buffer:
    """The words of one BufferSpec; word i at bytes i*word_stride .. +word_bytes-1."""

    def __init__(self, spec):
        self.spec = spec
        self.name, self.width, self.depth = spec.name, spec.width, spec.depth
        self.writable, self.word_bytes, self.word_stride = \
            spec.writable, spec.word_bytes, spec.word_stride
        self.words = [0] * spec.depth

    @property
    def size(self):
        return self.spec.size

    def write(self, offset, data):
        for address, byte in enumerate(data, offset):
            index, lane = divmod(address, self.word_stride)
            if lane < self.word_bytes:
                mask = 0xFF << (8 * lane)
                self.words[index] = (self.words[index] & ~mask) | (byte << (8 * lane))

    def read(self, offset, count):
        out = bytearray()
        for address in range(offset, offset + count):
            index, lane = divmod(address, self.word_stride)
            out.append((self.words[index] >> (8 * lane)) & 0xFF if lane < self.word_bytes else 0)
        return bytes(out)


@dataclass
class RunResult:
    """What a run does: `writes` {buffer name: {word index: word}} applied when it
    completes, and the STATUS figures it leaves."""
    writes: dict = field(default_factory=dict)
    cycles: int = 0
    result_words: int = 0
    errors: int = 0


class EngineModel(ABC):
    """The golden model of an engine in the shell: subclasses set `name`, `params`,
    `buffer_specs` (BufferSpecs in id order) and `register_map` (a RegisterMap), and
    implement `run(registers, buffers)`: registers {name: 32-bit value}, buffers {name:
    Buffer}; returns a RunResult. `cycles` may be an estimate (the RTL counts real
    cycles)."""

    name = None

    @abstractmethod
    def run(self, registers, buffers):
        """Run the engine over `buffers` with `registers`; a RunResult."""


class ShellModel:
    """The device: UART framing, command decoder, the engine's buffers and registers."""

    def __init__(self, engine, *, max_payload=256, clock_hz=48_000_000, baud=115_200,
                 timeout_bits=64, run_bit_times=0):
        if not isinstance(engine, EngineModel):
            raise TypeError(f"engine must be a golden.shell.EngineModel, not {engine!r}")
        for name, value in [("max_payload", max_payload), ("timeout_bits", timeout_bits)]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.engine = engine
        self.params = engine.params
        self.max_payload = max_payload
        self.clock_hz, self.baud, self.timeout_bits = clock_hz, baud, timeout_bits
        self.run_bit_times = run_bit_times
        self.buffers = [Buffer(spec) for spec in engine.buffer_specs]
        self.registers = engine.register_map.reset_values()
        self.engine_errors = 0
        self.cycles = self.result_words = 0
        self.runs = 0                # RUNs executed (started)
        self._pending_run = None     # (bit times left, completion function)
        self._run_seq = None         # seq of the RUN that started, if the last checked frame
        self._frame = None           # bytes of the frame after its start byte, or None
        self._gap = 0                # quiet bit times since the last byte of a frame

    # -- description -------------------------------------------------------------------

    def info(self):
        engine = self.engine
        return {**engine_description(engine.name, engine.params, engine.buffer_specs,
                                     engine.register_map),
                "clock_hz": self.clock_hz, "baud": self.baud, "max_payload": self.max_payload}

    def info_bytes(self):
        return info_bytes(self.info())

    @property
    def busy(self):
        return self._pending_run is not None

    def buffer(self, name):
        return next(buffer for buffer in self.buffers if buffer.name == name)

    # -- the receiver ------------------------------------------------------------------

    def feed(self, data):
        """Bytes from the host, back to back (no quiet time between them); returns the reply
        bytes they caused."""
        out = bytearray()
        for byte in bytes(data):
            self._gap = 0
            if self._frame is None:
                if byte == REQUEST_START:
                    self._frame = bytearray()
                continue
            self._frame.append(byte)
            if len(self._frame) < 4:
                continue
            command, seq, length = struct.unpack_from("<BBH", self._frame)
            if length > self.max_payload:
                out += encode_reply(Status.BAD_LENGTH, seq)
                self._frame = None      # the rest is garbage until a start byte
            elif len(self._frame) == 4 + length + 2:
                frame, self._frame = bytes(self._frame), None
                out += self._execute(frame)
        return bytes(out)

    def idle(self, bit_times):
        """The line stays quiet for `bit_times` after the last byte: a frame in progress
        times out when its quiet time since its last byte exceeds `timeout_bits`, and a run
        in progress advances. Returns the reply bytes this caused."""
        out = b""
        if self._frame is not None:
            self._gap += bit_times
            if self._gap > self.timeout_bits:
                seq = self._frame[1] if len(self._frame) >= 2 else 0
                self._frame = None
                out = encode_reply(Status.TIMEOUT, seq)
        if self._pending_run is not None:
            left, complete = self._pending_run
            if left <= bit_times:
                self._pending_run = None
                complete()
            else:
                self._pending_run = (left - bit_times, complete)
        return out

    def line_break(self):
        """A break on the line (docs/protocol.md, "Break"): the device resets, all but its
        buffers' contents: a frame in progress is dropped without a reply, a run in
        progress is abandoned (its results never appear), the registers take their reset
        values, STATUS reads idle and zero, and no RUN is remembered."""
        self._frame = None
        self._gap = 0
        self._pending_run = None
        self._run_seq = None
        self.registers = self.engine.register_map.reset_values()
        self.engine_errors = 0
        self.cycles = self.result_words = 0

    # -- commands ----------------------------------------------------------------------

    def _execute(self, frame):
        command, seq, length = struct.unpack_from("<BBH", frame)
        payload = frame[4:4 + length]
        (crc,) = struct.unpack_from("<H", frame, 4 + length)
        if crc16(frame[:4 + length]) != crc:
            return encode_reply(Status.BAD_CRC, seq)
        replay = command == Command.RUN and self._run_seq == seq
        self._run_seq = None
        handler = {Command.WRITE: self._write, Command.READ: self._read,
                   Command.CONFIGURE: self._configure, Command.RUN: self._run,
                   Command.STATUS: self._status, Command.INFO: self._info}.get(command)
        if handler is None:
            return encode_reply(Status.UNKNOWN_COMMAND, seq)
        if command == Command.RUN:
            status, reply = self._run(payload, replay)
            if status == Status.OK:
                self._run_seq = seq
        else:
            status, reply = handler(payload)
        return encode_reply(status, seq, reply)

    def _address(self, payload, size):
        """(status, buffer) of a WRITE/READ address: Status.BAD_ADDRESS or Status.OK."""
        index, offset = struct.unpack_from("<BI", payload)
        if index >= len(self.buffers) or offset + size > self.buffers[index].size:
            return Status.BAD_ADDRESS, None
        return Status.OK, self.buffers[index]

    def _write(self, payload):
        if len(payload) < 6:
            return Status.BAD_LENGTH, b""
        data = payload[5:]
        status, buffer = self._address(payload, len(data))
        if status != Status.OK or not buffer.writable:
            return Status.BAD_ADDRESS, b""
        if self.busy:
            return Status.BUSY, b""
        buffer.write(struct.unpack_from("<I", payload, 1)[0], data)
        return Status.OK, b""

    def _read(self, payload):
        if len(payload) != 7:
            return Status.BAD_LENGTH, b""
        _, offset, count = struct.unpack("<BIH", payload)
        if not 1 <= count <= self.max_payload:
            return Status.BAD_LENGTH, b""
        status, buffer = self._address(payload, count)
        if status != Status.OK:
            return status, b""
        if self.busy:
            return Status.BUSY, b""
        return Status.OK, buffer.read(offset, count)

    def _configure(self, payload):
        if len(payload) != 5:
            return Status.BAD_LENGTH, b""
        register, value = struct.unpack("<BI", payload)
        names = dict(enumerate(self.engine.register_map.names))
        if register not in names:
            return Status.BAD_REGISTER, b""
        if self.busy:
            return Status.BUSY, b""
        self.registers[names[register]] = value
        return Status.OK, b""

    def _status(self, payload):
        if payload:
            return Status.BAD_LENGTH, b""
        return Status.OK, status_payload(StatusReport(self.busy, self.engine_errors, self.cycles,
                                               self.result_words))

    def _info(self, payload):
        if payload:
            return Status.BAD_LENGTH, b""
        return Status.OK, self.info_bytes()

    def _run(self, payload, replay=False):
        if payload:
            return Status.BAD_LENGTH, b""
        if replay:
            return Status.OK, b""
        if self.busy:
            return Status.BUSY, b""
        complete = self._compute()
        if self.run_bit_times > 0:
            self._pending_run = (self.run_bit_times, complete)
        else:
            complete()
        return Status.OK, b""

    def _compute(self):
        """Run the engine now; return the function that publishes the results."""
        self.runs += 1
        result = self.engine.run(dict(self.registers),
                                 {buffer.name: buffer for buffer in self.buffers})
        self.engine_errors = 0

        def complete():
            for name, words in result.writes.items():
                buffer = self.buffer(name)
                for index, word in words.items():
                    buffer.words[index] = word
            self.cycles, self.result_words = result.cycles, result.result_words
            self.engine_errors = result.errors
        return complete


def shell_model(accel, params=None, *, max_payload=256, clock_hz=48_000_000, baud=115_200,
                timeout_bits=64, run_bit_times=0, **options):
    """The golden shell around registered engine `accel` (generator parameters `params`,
    default the engine's defaults; `options` its shell options, e.g. buffer depths)."""
    from .. import registry
    record = registry.get(accel)
    params = record.params() if params is None else params
    engine = record.golden.load()(params, **record.resolve_options(options))
    return ShellModel(engine, max_payload=max_payload, clock_hz=clock_hz, baud=baud,
                      timeout_bits=timeout_bits, run_bit_times=run_bit_times)
