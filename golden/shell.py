"""Byte-level model of the accelerator shell with its engines (docs/protocol.md).

``ShellModel.feed(bytes)`` takes what the host sends and returns the reply bytes the
device sends; ``idle(bit_times)`` says the line stayed quiet that long (the inter-byte
timeout, and the progress of a run when ``run_bit_times`` > 0). It is the golden model of
rtl/shell; the host runtime's unit tests talk to it through firmware.transport.

Order of checks on a complete frame (the first that fails gives the status): CRC,
command, length for the command, then BAD_ADDRESS (unknown or read-only buffer, range) or
BAD_REGISTER, then BUSY (WRITE, READ, CONFIGURE and RUN while a run is in progress). A
READ count of 0 or above max_payload is BAD_LENGTH.

A RUN computes its tiles at once with golden.mac.MacArrayModel; its results, ``cycles`` and
``result_words`` appear when it completes: at once, or after ``run_bit_times`` of idle
line (``busy`` until then). ``cycles`` is an estimate (K beats per tile, times the passes
at its precision): the RTL counts real cycles. Not defined by the protocol, so not to be
relied on: with T*K beyond a buffer the beat address wraps modulo its depth. Engine
error flags (STATUS) belong to the last run, cleared when a run starts: bit 1 when a tile
met an unsupported ``precision`` register (it runs at the largest precision, as the array
does), bit 2 when result rows past the end of the result buffer were dropped.

``TaylorShellModel`` is the same shell with the Taylor-attention engine: its RUN computes
each kept head with golden.taylor (docs/protocol.md, "The Taylor-attention engine").
"""

import json
import struct

import torch

from .mac import MacArrayModel, Requant
from .taylor import TaylorRegisters, taylor_head_int

REQUEST_START, REPLY_START = 0xA5, 0x5A
WRITE, READ, CONFIGURE, RUN, STATUS, INFO = range(1, 7)
OK, BAD_CRC, UNKNOWN_COMMAND, BAD_LENGTH, BAD_ADDRESS, TIMEOUT, BUSY, BAD_REGISTER = range(8)
REGISTERS = {"depth": 0, "tiles": 1, "precision": 2, "rps_enable": 3, "requant": 4}
ENGINE_ERROR_FRAMING, ENGINE_ERROR_PRECISION, ENGINE_ERROR_OVERFLOW = 1, 2, 4
TAYLOR_REGISTERS = {"tokens": 0, "head_mask": 1, "ctx_shift": 2, "v_mult": 3, "v_shift": 4,
                    "out_mult": 5, "out_shift": 6}
TAYLOR_ERROR_TOKENS = 2


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, unreflected, no final XOR)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def reply_frame(status, seq, payload=b""):
    body = struct.pack("<BBH", status, seq, len(payload)) + bytes(payload)
    return bytes([REPLY_START]) + body + struct.pack("<H", crc16(body))


def pack_lanes(values, width):
    """Lanes (lane 0 lowest) of `width`-bit two's complement into one integer."""
    word = 0
    for lane, value in enumerate(values):
        word |= (int(value) & ((1 << width) - 1)) << (lane * width)
    return word


def unpack_lanes(word, lanes, width):
    """Inverse of pack_lanes: signed lane values."""
    out = []
    for lane in range(lanes):
        value = (word >> (lane * width)) & ((1 << width) - 1)
        out.append(value - (1 << width) if value >> (width - 1) else value)
    return out


class Buffer:
    """`depth` words of `width` bits; word i at bytes i*word_stride .. +word_bytes-1."""

    def __init__(self, name, width, depth, writable):
        self.name, self.width, self.depth, self.writable = name, width, depth, writable
        self.word_bytes = (width + 7) // 8
        self.word_stride = 1 << (self.word_bytes - 1).bit_length()
        self.words = [0] * depth

    @property
    def size(self):
        return self.depth * self.word_stride

    def describe(self):
        return {"name": self.name, "word_bytes": self.word_bytes,
                "word_stride": self.word_stride, "depth": self.depth,
                "writable": self.writable}

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


class ShellModel:
    """The device: UART framing, command decoder, buffers act/weight/result, registers."""

    engine = "mac"
    register_ids = REGISTERS

    def __init__(self, params, *, act_depth=256, weight_depth=256, result_depth=256,
                 max_payload=256, clock_hz=48_000_000, baud=115_200, timeout_bits=64,
                 run_bit_times=0):
        for name, value in [("act_depth", act_depth), ("weight_depth", weight_depth),
                            ("result_depth", result_depth), ("max_payload", max_payload),
                            ("timeout_bits", timeout_bits)]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.params = params
        self.max_payload = max_payload
        self.clock_hz, self.baud, self.timeout_bits = clock_hz, baud, timeout_bits
        self.run_bit_times = run_bit_times
        self.buffers = [
            Buffer("act", params.act_lanes * params.operand_width, act_depth, True),
            Buffer("weight", params.weight_lanes * params.operand_width, weight_depth, True),
            Buffer("result", params.weight_lanes * params.result_width, result_depth, False),
        ]
        self.array = MacArrayModel(params)
        self.registers = {"depth": 0, "tiles": 0, "precision": max(params.precisions),
                          "rps_enable": 0, "requant": 0}
        self.engine_errors = 0
        self.cycles = self.result_words = 0
        self._pending_run = None     # (bit times left, completion function)
        self._frame = None           # bytes of the frame after its start byte, or None
        self._gap = 0                # idle bit times since the last byte of a frame

    # -- description -------------------------------------------------------------------

    def info(self):
        return {"engine": self.engine, "params": self.params.to_dict(),
                "buffers": [buffer.describe() for buffer in self.buffers],
                "registers": dict(self.register_ids), "clock_hz": self.clock_hz, "baud": self.baud,
                "max_payload": self.max_payload}

    def info_bytes(self):
        return json.dumps(self.info(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def busy(self):
        return self._pending_run is not None

    def buffer(self, name):
        return next(buffer for buffer in self.buffers if buffer.name == name)

    # -- the receiver ------------------------------------------------------------------

    def feed(self, data):
        """Bytes from the host (back to back); returns the reply bytes they caused."""
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
                out += reply_frame(BAD_LENGTH, seq)
                self._frame = None      # the rest is garbage until a start byte
            elif len(self._frame) == 4 + length + 2:
                frame, self._frame = bytes(self._frame), None
                out += self._execute(frame)
        return bytes(out)

    def idle(self, bit_times):
        """The line stays idle for `bit_times`: a frame in progress may time out, and a
        run in progress advances. Returns the reply bytes this caused."""
        out = b""
        if self._frame is not None:
            self._gap += bit_times
            if self._gap > self.timeout_bits:
                seq = self._frame[1] if len(self._frame) >= 2 else 0
                self._frame = None
                out = reply_frame(TIMEOUT, seq)
        if self._pending_run is not None:
            left, complete = self._pending_run
            if left <= bit_times:
                self._pending_run = None
                complete()
            else:
                self._pending_run = (left - bit_times, complete)
        return out

    # -- commands ----------------------------------------------------------------------

    def _execute(self, frame):
        command, seq, length = struct.unpack_from("<BBH", frame)
        payload = frame[4:4 + length]
        (crc,) = struct.unpack_from("<H", frame, 4 + length)
        if crc16(frame[:4 + length]) != crc:
            return reply_frame(BAD_CRC, seq)
        handler = {WRITE: self._write, READ: self._read, CONFIGURE: self._configure,
                   RUN: self._run, STATUS: self._status, INFO: self._info}.get(command)
        if handler is None:
            return reply_frame(UNKNOWN_COMMAND, seq)
        status, reply = handler(payload)
        return reply_frame(status, seq, reply)

    def _address(self, payload, size):
        """(status, buffer) of a WRITE/READ address: BAD_ADDRESS or OK."""
        index, offset = struct.unpack_from("<BI", payload)
        if index >= len(self.buffers) or offset + size > self.buffers[index].size:
            return BAD_ADDRESS, None
        return OK, self.buffers[index]

    def _write(self, payload):
        if len(payload) < 6:
            return BAD_LENGTH, b""
        data = payload[5:]
        status, buffer = self._address(payload, len(data))
        if status != OK or not buffer.writable:
            return BAD_ADDRESS, b""
        if self.busy:
            return BUSY, b""
        buffer.write(struct.unpack_from("<I", payload, 1)[0], data)
        return OK, b""

    def _read(self, payload):
        if len(payload) != 7:
            return BAD_LENGTH, b""
        _, offset, count = struct.unpack("<BIH", payload)
        if not 1 <= count <= self.max_payload:
            return BAD_LENGTH, b""
        status, buffer = self._address(payload, count)
        if status != OK:
            return status, b""
        if self.busy:
            return BUSY, b""
        return OK, buffer.read(offset, count)

    def _configure(self, payload):
        if len(payload) != 5:
            return BAD_LENGTH, b""
        register, value = struct.unpack("<BI", payload)
        names = {index: name for name, index in self.register_ids.items()}
        if register not in names:
            return BAD_REGISTER, b""
        if self.busy:
            return BUSY, b""
        self.registers[names[register]] = value
        return OK, b""

    def _status(self, payload):
        if payload:
            return BAD_LENGTH, b""
        return OK, struct.pack("<BBIH", int(self.busy), self.engine_errors,
                               self.cycles & 0xFFFFFFFF, self.result_words & 0xFFFF)

    def _info(self, payload):
        if payload:
            return BAD_LENGTH, b""
        return OK, self.info_bytes()

    def _run(self, payload):
        if payload:
            return BAD_LENGTH, b""
        if self.busy:
            return BUSY, b""
        complete = self._compute()
        if self.run_bit_times > 0:
            self._pending_run = (self.run_bit_times, complete)
        else:
            complete()
        return OK, b""

    def _compute(self):
        """Run the tiles now; return the function that publishes the results."""
        p, regs = self.params, self.registers
        act, weight, result = self.buffers
        depth, tiles = regs["depth"] & 0xFFFF, regs["tiles"] & 0xFFFF   # 16-bit fields
        rps = bool(regs["rps_enable"] & 1)
        requant = Requant(enable=bool(regs["requant"] & 1),
                          multiplier=(regs["requant"] >> 1) & 0xFFFF,
                          shift=(regs["requant"] >> 17) & 0x3F)
        rows_out, cycles, errors = [], 0, 0
        for tile in range(tiles if depth else 0):
            if rps:
                precision = self.array.tile_precision(rps=True)
            elif regs["precision"] in p.precisions:
                precision = regs["precision"]
            else:
                errors |= ENGINE_ERROR_PRECISION
                precision = max(p.precisions)
            beats = [(tile * depth + k) for k in range(depth)]
            act_lanes = [unpack_lanes(act.words[i % act.depth], p.act_lanes, p.operand_width)
                         for i in beats]
            weight_lanes = [unpack_lanes(weight.words[i % weight.depth], p.weight_lanes,
                                         p.operand_width) for i in beats]
            out = self.array.tile(torch.tensor(act_lanes), torch.tensor(weight_lanes),
                                  precision, requant)
            rows_out += [pack_lanes(row.tolist(), p.result_width) for row in out]
            cycles += depth * p.passes(precision)
        if len(rows_out) > result.depth:
            errors |= ENGINE_ERROR_OVERFLOW
            rows_out = rows_out[:result.depth]
        self.engine_errors = 0

        def complete():
            result.words[:len(rows_out)] = rows_out
            self.cycles, self.result_words = cycles, len(rows_out)
            self.engine_errors = errors
        return complete


class TaylorShellModel(ShellModel):
    """The shell with the Taylor-attention engine: buffers q, k, v, out of one 8-lane beat
    a word (head h, token i, beat x at word (h * max_tokens + i) * row_beats + x), the
    registers of TAYLOR_REGISTERS, and a RUN that computes every kept head with
    golden.taylor. `params` is an rtl.taylor TaylorParams (read by attribute). ``cycles``
    is the ideal 2·N·d²/M per head; the RTL counts real cycles."""

    engine = "taylor"
    register_ids = TAYLOR_REGISTERS

    def __init__(self, params, *, max_payload=256, clock_hz=48_000_000, baud=115_200,
                 timeout_bits=64, run_bit_times=0):
        self.params = params
        self.max_payload = max_payload
        self.clock_hz, self.baud, self.timeout_bits = clock_hz, baud, timeout_bits
        self.run_bit_times = run_bit_times
        depth = params.heads * params.max_tokens * params.row_beats
        width = 8 * params.operand_width
        self.buffers = [Buffer(name, width, depth, name != "out")
                        for name in ("q", "k", "v", "out")]
        self.registers = {name: 0 for name in TAYLOR_REGISTERS}
        self.registers.update(out_mult=params.out_mult, out_shift=params.out_shift)
        self.engine_errors = self.cycles = self.result_words = 0
        self._pending_run, self._frame, self._gap = None, None, 0

    def _compute(self):
        p, regs = self.params, self.registers
        tokens, beats = regs["tokens"], p.row_beats
        q, k, v, out = self.buffers
        written, errors = {}, 0
        if 1 <= tokens <= p.max_tokens:
            scale = TaylorRegisters(ctx_shift=regs["ctx_shift"] & 63,
                                    v_mult=regs["v_mult"] & 0xFFFF, v_shift=regs["v_shift"] & 63,
                                    out_mult=regs["out_mult"] & 0xFFFF,
                                    out_shift=regs["out_shift"] & 63)
            for h in range(p.heads):
                if regs["head_mask"] >> h & 1:
                    continue
                base = h * p.max_tokens * beats

                def rows(buffer):
                    return torch.tensor([sum((unpack_lanes(buffer.words[base + i * beats + x],
                                                           8, p.operand_width)
                                              for x in range(beats)), [])
                                         for i in range(tokens)])
                result = taylor_head_int(rows(q), rows(k), rows(v), scale,
                                         width=p.operand_width, max_tokens=p.max_tokens).out
                for i in range(tokens):
                    for x in range(beats):
                        written[base + i * beats + x] = pack_lanes(
                            result[i, 8 * x:8 * x + 8].tolist(), p.operand_width)
        else:
            errors = TAYLOR_ERROR_TOKENS
        self.engine_errors = 0

        def complete():
            for index, word in written.items():
                out.words[index] = word
            self.cycles, self.result_words = 2 * len(written) * p.blocks, len(written)
            self.engine_errors = errors
        return complete
