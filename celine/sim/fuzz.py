"""A seeded fuzzer of the shell's link (docs/protocol.md): faulty traffic interleaved with
valid frames, for any engine's shell, as steps a testbench sends to the RTL while the
golden shell model (golden/shell.py) takes the same steps and says what must come back.

`LinkFuzzer(info, seed, max_payload=..., timeout_bits=...)` makes steps from the device's
INFO description (its buffers and registers) and a random.Random(seed): the same seed
gives the same steps. A step is a list of segments, each bytes to send back to back or an
int, a quiet gap on the line in bit times, and a `kind` naming what it does:

- faulty frames (`FAULTY_KINDS`): random bytes, a valid frame with 1 to 3 bits flipped, a
  frame cut off, a length above max_payload, a length below what the command needs, a
  frame with a valid CRC whose content is wrong (an unknown command, buffer, register, a
  READ count of 0 or above max_payload, an offset past the end or one that wraps 2**32), a
  byte dropped, duplicated or inserted, garbage before a valid frame, a quiet gap inside a
  frame just under the timeout (the frame completes) or just over it (the frame times
  out and the rest is garbage), and valid requests back to back while long replies go out;
- valid frames (`valid`): a WRITE of random bytes, a READ, a CONFIGURE, STATUS or INFO.

Every frame the fuzzer sends either fails a check of the shell or is a WRITE, READ,
CONFIGURE, STATUS or INFO: never a RUN that runs (a run's cycle count is the RTL's, not the
model's). Up to 3 flipped bits that leave the length alone cannot make another valid
frame: CRC-16/CCITT has a Hamming distance of 4 at every frame length the shell takes. A
flipped length, a dropped, duplicated or inserted byte can, by chance (one in 65,536); the golden model then executes it as the RTL does, and
`ran` tells a testbench that the model ran the engine, which the testbench resolves.

Gaps stay clear of the timeout's one-bit uncertainty (the RTL decides between
timeout_bits and timeout_bits + 1 quiet bit times): under is timeout_bits - 2, over is
timeout_bits + 3. A step that ends inside a frame is followed, in `expected`, by the quiet
time the frame needs to time out (settle_bits), so each step's replies are complete when
it ends.

`expected(model, step)` feeds a step to a golden ShellModel and returns the reply bytes;
`round_trip(model)` is the check after a burst: a WRITE of random bytes into each writable
buffer and a READ of every buffer in full.
"""

import random
import struct

from ..spec.protocol import (ADDRESS_BYTES, REQUEST_START, Command, configure_payload,
                             encode_request, read_payload, write_payload)

__all__ = ["LinkFuzzer", "Step", "FAULTY_KINDS", "expected", "settle_bits"]

# What the faulty steps do; each is drawn with the same probability.
FAULTY_KINDS = ("random_bytes", "bit_flips", "truncated", "oversized_length",
                "undersized_length", "bad_command", "bad_buffer", "bad_register",
                "bad_read_count", "offset_past_end", "offset_wraps", "dropped_byte",
                "duplicated_byte", "inserted_byte", "garbage_then_frame", "gap_under_timeout",
                "gap_over_timeout", "back_to_back")

# The most bytes a random WRITE carries or a random READ asks for (the round trip after a
# burst reads whole buffers in max_payload frames): replies of up to 128 bytes keep the
# line busy for 1,280 bit times while the requests behind them arrive, and a burst stays
# short in a simulation that sends every bit.
LONGEST = 128

# Frames of these commands change the device's state or make long replies.
_VALID_COMMANDS = (Command.WRITE, Command.READ, Command.CONFIGURE, Command.STATUS,
                   Command.INFO)


class Step:
    """One piece of traffic: `segments` (bytes sent back to back, or an int: that many
    quiet bit times), `kind` (what it is), `valid` (True for a step of valid frames only)."""

    __slots__ = ("segments", "kind", "valid")

    def __init__(self, segments, kind, valid=False):
        self.segments, self.kind, self.valid = list(segments), kind, valid

    @property
    def sent(self):
        """Every byte the step sends."""
        return b"".join(s for s in self.segments if isinstance(s, bytes))

    def __repr__(self):
        parts = [s.hex() if isinstance(s, bytes) else f"<{s} bits>" for s in self.segments]
        return f"Step({self.kind}: {' '.join(parts)})"


def settle_bits(timeout_bits):
    """Quiet bit times after which any frame in progress has timed out in the RTL and in
    the model (timeout_bits + 1 at most in the RTL, docs/protocol.md)."""
    return timeout_bits + 3


def expected(model, step):
    """Feed `step` to the golden ShellModel `model`, then the quiet time that ends a frame
    left open (settle_bits): (the reply bytes, whether the model ran the engine)."""
    ran = model.runs
    out = bytearray()
    for segment in step.segments:
        out += model.idle(segment) if isinstance(segment, int) else model.feed(segment)
    out += model.idle(settle_bits(model.timeout_bits))
    return bytes(out), model.runs != ran


class LinkFuzzer:
    """Steps for a device described by `info` (Device.info / ShellModel.info: its
    "buffers" and "registers"), from random.Random(seed)."""

    def __init__(self, info, seed, *, max_payload, timeout_bits):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, not {seed!r}")
        for name, value in [("max_payload", max_payload), ("timeout_bits", timeout_bits)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 8:
                raise ValueError(f"{name} must be an integer of at least 8, not {value!r}")
        self.rng = random.Random(seed)
        self.seed = seed
        self.max_payload, self.timeout_bits = max_payload, timeout_bits
        # (id, size in bytes, writable) of each buffer
        self.buffers = [(index, b["depth"] * b["word_stride"], b["writable"])
                        for index, b in enumerate(info["buffers"])]
        self.registers = sorted(info["registers"].values())
        if not any(writable for _, _, writable in self.buffers):
            raise ValueError("the device has no writable buffer to fuzz with")
        self._seq = 0

    # -- frames ----------------------------------------------------------------------------

    def _next_seq(self):
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _request(self, command, payload=b""):
        return encode_request(command, self._next_seq(), payload)

    def _span(self, size, limit):
        """(offset, count) of 1..min(limit, LONGEST) bytes inside a buffer of `size` bytes."""
        count = self.rng.randint(1, min(limit, size, LONGEST))
        return self.rng.randint(0, size - count), count

    def valid_frame(self, command=None):
        """One valid request (a random command of _VALID_COMMANDS unless given)."""
        rng = self.rng
        command = rng.choice(_VALID_COMMANDS) if command is None else command
        if command == Command.WRITE:
            index, size, _ = rng.choice([b for b in self.buffers if b[2]])
            offset, count = self._span(size, self.max_payload - ADDRESS_BYTES)
            return self._request(command, write_payload(index, offset, rng.randbytes(count)))
        if command == Command.READ:
            index, size, _ = rng.choice(self.buffers)
            offset, count = self._span(size, self.max_payload)
            return self._request(command, read_payload(index, offset, count))
        if command == Command.CONFIGURE:
            if not self.registers:
                return self._request(Command.STATUS)
            return self._request(command, configure_payload(rng.choice(self.registers),
                                                            rng.getrandbits(32)))
        return self._request(command)

    def valid(self):
        """A step of 1 to 3 valid frames, sent back to back."""
        return Step([b"".join(self.valid_frame() for _ in range(self.rng.randint(1, 3)))],
                    "valid", valid=True)

    # -- faults ----------------------------------------------------------------------------

    def faulty(self, kind=None):
        """One faulty step (`kind` one of FAULTY_KINDS, random unless given)."""
        kind = self.rng.choice(FAULTY_KINDS) if kind is None else kind
        if kind not in FAULTY_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULTY_KINDS)}, not {kind!r}")
        return Step(getattr(self, f"_{kind}")(), kind)

    def _random_bytes(self):
        return [self.rng.randbytes(self.rng.randint(1, 40))]

    def _bit_flips(self):
        frame = bytearray(self.valid_frame())
        # not the start byte: a frame that never starts is random_bytes' case
        for bit in self.rng.sample(range(8, 8 * len(frame)), self.rng.randint(1, 3)):
            frame[bit // 8] ^= 1 << (bit % 8)
        return [bytes(frame)]

    def _truncated(self):
        frame = self.valid_frame()
        return [frame[:self.rng.randint(1, len(frame) - 1)]]

    def _oversized_length(self):
        length = self.rng.randint(self.max_payload + 1, 0xFFFF)
        head = struct.pack("<BBBH", REQUEST_START, self.rng.choice(list(Command)),
                           self._next_seq(), length)
        # what follows the header is garbage to the shell, as long as it has no start byte
        return [head + bytes(b for b in self.rng.randbytes(self.rng.randint(0, 12))
                             if b != REQUEST_START)]

    def _undersized_length(self):
        needs = {Command.WRITE: ADDRESS_BYTES + 1, Command.READ: 7, Command.CONFIGURE: 5}
        command = self.rng.choice(list(needs))
        return [self._request(command, self.rng.randbytes(self.rng.randrange(needs[command])))]

    def _bad_command(self):
        known = {int(c) for c in Command}
        code = self.rng.choice([c for c in range(256) if c not in known])
        return [self._request(code, self.rng.randbytes(self.rng.randint(0, 8)))]

    def _bad_buffer(self):
        index = self.rng.randint(len(self.buffers), 255)
        if self.rng.random() < 0.5:
            return [self._request(Command.WRITE, write_payload(index, 0, b"\x00"))]
        return [self._request(Command.READ, read_payload(index, 0, 1))]

    def _bad_register(self):
        used = set(self.registers)
        register = self.rng.choice([r for r in range(256) if r not in used])
        return [self._request(Command.CONFIGURE, configure_payload(register, 0))]

    def _bad_read_count(self):
        index, _, _ = self.rng.choice(self.buffers)
        count = self.rng.choice([0, self.rng.randint(self.max_payload + 1, 0xFFFF)])
        return [self._request(Command.READ, read_payload(index, 0, count))]

    def _offset_past_end(self):
        index, size, writable = self.rng.choice(self.buffers)
        count = self.rng.randint(1, 16)
        offset = self.rng.randint(max(size - count + 1, 0), size + 64)
        if writable and self.rng.random() < 0.5:
            return [self._request(Command.WRITE,
                                  write_payload(index, offset, self.rng.randbytes(count)))]
        return [self._request(Command.READ, read_payload(index, offset, count))]

    def _offset_wraps(self):
        """offset + count wraps 2**32 and lands inside the buffer."""
        index, _, writable = self.rng.choice(self.buffers)
        count = self.rng.randint(2, 16)
        offset = (1 << 32) - self.rng.randint(1, count - 1)
        if writable and self.rng.random() < 0.5:
            return [self._request(Command.WRITE,
                                  write_payload(index, offset, self.rng.randbytes(count)))]
        return [self._request(Command.READ, read_payload(index, offset, count))]

    def _dropped_byte(self):
        frame = bytearray(self.valid_frame())
        del frame[self.rng.randrange(1, len(frame))]
        return [bytes(frame)]

    def _duplicated_byte(self):
        frame = bytearray(self.valid_frame())
        at = self.rng.randrange(1, len(frame))
        frame.insert(at, frame[at])
        return [bytes(frame)]

    def _inserted_byte(self):
        frame = bytearray(self.valid_frame())
        frame.insert(self.rng.randrange(1, len(frame) + 1), self.rng.getrandbits(8))
        return [bytes(frame)]

    def _garbage_then_frame(self):
        garbage = bytes(b for b in self.rng.randbytes(self.rng.randint(1, 24))
                        if b != REQUEST_START)
        return [garbage + self.valid_frame()]

    def _split(self, gap):
        frame = self.valid_frame()
        at = self.rng.randrange(1, len(frame))
        return [frame[:at], gap, frame[at:]]

    def _gap_under_timeout(self):
        return self._split(self.timeout_bits - 2)

    def _gap_over_timeout(self):
        return self._split(self.timeout_bits + 3)

    def _back_to_back(self):
        """READs of up to max_payload bytes, sent before the first reply ends."""
        frames = []
        for _ in range(self.rng.randint(2, 4)):
            index, size, _ = self.rng.choice(self.buffers)
            offset, count = self._span(size, self.max_payload)
            frames.append(self._request(Command.READ, read_payload(index, offset, count)))
        return [b"".join(frames)]

    # -- after a burst ---------------------------------------------------------------------

    def round_trip(self):
        """The check after a burst: a WRITE of random bytes into each writable buffer, then
        a READ of every buffer in full (max_payload bytes a frame), one frame a step."""
        steps = []
        for index, size, writable in self.buffers:
            if writable:
                offset, count = self._span(size, self.max_payload - ADDRESS_BYTES)
                steps.append(Step([self._request(Command.WRITE, write_payload(
                    index, offset, self.rng.randbytes(count)))], "round_trip", valid=True))
        for index, size, _ in self.buffers:
            for offset in range(0, size, self.max_payload):
                count = min(self.max_payload, size - offset)
                steps.append(Step([self._request(Command.READ, read_payload(index, offset,
                                                                             count))],
                                  "read_back", valid=True))
        return steps

    def burst(self, faulty, *, valid_share=0.3):
        """`faulty` faulty steps with valid steps between them (each step valid with
        probability `valid_share`), then round_trip()."""
        steps = []
        while faulty:
            if self.rng.random() < valid_share:
                steps.append(self.valid())
            else:
                steps.append(self.faulty())
                faulty -= 1
        return steps + self.round_trip()
