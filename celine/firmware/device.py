"""The host runtime: a Celine device over a transport (docs/protocol.md).

    dev = Device.open("/dev/ttyUSB0")          # or Device.open("sim", transport=t)
    dev.<engine>.<call>(...)                   # the engine's host API, e.g. dev.mac.matmul
    dev.<call>(...)                            # the same, through the device

The engine comes from INFO ("engine"): its record in celine.registry names its host API,
which is imported (with whatever it needs, torch for tensors) on first use; opening a
device and the buffer, register and run calls need neither Amaranth nor torch.

Every request gets one reply; the sequence number ties them (stale replies of earlier,
timed-out requests are skipped). Retries happen only where a repeat cannot do harm:
- a reply that never came or failed its CRC (LinkTimeout, ReplyCRCError): the request
  may or may not have run, so it is repeated only for idempotent commands (WRITE, READ,
  CONFIGURE, STATUS, INFO), never for RUN;
- the device's BAD_CRC or TIMEOUT status: the frame was damaged on the way and never
  executed (the protocol guarantees a bad frame changes nothing), so any command is
  repeated, RUN included.
After a missing or damaged reply the input is drained before the next attempt.
"""

from dataclasses import dataclass

from .. import registry
from .errors import (BadCRC, CelineError, FrameTimeout, LinkTimeout,
                     ProtocolError, ReplyCRCError, RunTimeout, SettingError, device_error)
from .protocol import (ADDRESS_BYTES, Command, ReplyDecoder, Status, configure_payload,
                       encode_request, parse_info, parse_status, read_payload, write_payload)
from .transport import SerialTransport

__all__ = ["Device", "BufferInfo"]

IDEMPOTENT = {Command.WRITE, Command.READ, Command.CONFIGURE, Command.STATUS, Command.INFO}


@dataclass(frozen=True)
class BufferInfo:
    index: int
    name: str
    word_bytes: int
    word_stride: int
    depth: int
    writable: bool

    @property
    def size(self):
        return self.depth * self.word_stride


class Device:
    """A device behind `transport`. Opening sends INFO and keeps the description.

    timeout: seconds to wait for one reply; retries: extra attempts where safe (see the
    module docstring); poll_bits: bit times between STATUS polls of a run.
    """

    def __init__(self, transport, *, timeout=1.0, retries=3, poll_bits=64):
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self._seq = 0
        self._decoder = ReplyDecoder()
        self.info = parse_info(self._request(Command.INFO))
        self.buffers = {b["name"]: BufferInfo(index, **b)
                        for index, b in enumerate(self.info["buffers"])}
        self.registers = dict(sorted(self.info["registers"].items(), key=lambda kv: kv[1]))
        self.max_payload = self.info["max_payload"]
        self.poll_interval = poll_bits / self.info["baud"]
        try:
            self.accelerator = registry.get(self.info["engine"])
        except ValueError:
            raise ProtocolError(f"engine must be one of {', '.join(registry.BY_NAME)}, "
                                f"not {self.info['engine']!r} (INFO of an unknown "
                                f"design)") from None
        self._engine = None

    @property
    def engine(self):
        """The engine's host API (its record's `host`), made on first use."""
        if self._engine is None:
            self._engine = self.accelerator.host.load()(self)
        return self._engine

    def __getattr__(self, name):
        # dev.<engine name> is the engine's host API; other unknown names are its calls
        # (dev.matmul is dev.mac.matmul on a MAC array device).
        if name.startswith("_") or "accelerator" not in self.__dict__:
            raise AttributeError(name)
        if name == self.accelerator.name:
            return self.engine
        try:
            return getattr(self.engine, name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__!r} with engine "
                                 f"{self.accelerator.name!r} has no attribute {name!r}") from None

    @classmethod
    def open(cls, target, *, transport=None, baud=115_200, **options):
        """Device.open("/dev/ttyUSB0", baud=...) or Device.open("sim", transport=...)."""
        if transport is None:
            if target == "sim":
                raise SettingError("transport must be given for target 'sim', not None")
            transport = SerialTransport(target, baud, options.get("timeout", 1.0))
        return cls(transport, **options)

    def close(self):
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one exchange ------------------------------------------------------------------

    def _next_seq(self):
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _receive(self, seq):
        """The reply with sequence number `seq`; LinkTimeout or ReplyCRCError otherwise."""
        deadline = self.transport.now() + self.timeout
        while True:
            left = deadline - self.transport.now()
            chunk = self.transport.read(self._decoder.needed, max(left, 0)) if left > 0 else b""
            if not chunk:
                partial = " (a partial reply)" if self._decoder.pending else ""
                raise LinkTimeout(f"no reply within {self.timeout} s{partial}")
            for reply in self._decoder.feed(chunk):
                if not reply.crc_ok:
                    raise ReplyCRCError(f"reply to seq {seq} failed its CRC")
                if reply.seq == seq:
                    return reply

    def _drain(self):
        """Resynchronise after a lost or damaged reply: drop whatever arrives until the
        line has been quiet for twice the device's inter-byte timeout and more."""
        self._decoder.reset()
        self.transport.reset_input()
        quiet = 256 / self.info["baud"] if hasattr(self, "info") else 0.01
        while self.transport.read(4096, quiet):
            pass
        self._decoder.reset()

    def _request(self, command, payload=b""):
        """Send one request (repeating it where safe); the OK reply's payload."""
        error = None
        for _ in range(1 + self.retries):
            seq = self._next_seq()
            self.transport.write(encode_request(command, seq, payload))
            try:
                reply = self._receive(seq)
            except (LinkTimeout, ReplyCRCError) as caught:
                error = caught
                self._drain()
                if command in IDEMPOTENT:
                    continue
                raise
            if reply.status == Status.OK:
                return reply.payload
            error = device_error(reply.status, seq, command)
            if not isinstance(error, (BadCRC, FrameTimeout)):
                raise error
        raise error

    # -- commands ----------------------------------------------------------------------

    def status(self):
        """StatusReport(busy, engine_errors, cycles, result_words)."""
        return parse_status(self._request(Command.STATUS))

    def _buffer(self, name, *, write):
        names = [n for n, b in self.buffers.items() if b.writable or not write]
        if name not in names:
            raise SettingError(f"buffer must be one of {', '.join(map(repr, names))}, "
                               f"not {name!r}")
        return self.buffers[name]

    @staticmethod
    def _check_range(buffer, offset, size):
        if not isinstance(offset, int) or offset < 0:
            raise SettingError(f"offset must be a non-negative integer, not {offset!r}")
        if offset + size > buffer.size:
            raise SettingError(f"offset + size must be at most {buffer.size} "
                               f"(buffer {buffer.name!r}), not {offset + size}")

    def write_buffer(self, name, offset, data):
        """Write bytes at byte `offset` of buffer `name`, in frames of at most max_payload."""
        buffer = self._buffer(name, write=True)
        data = bytes(data)
        self._check_range(buffer, offset, len(data))
        step = self.max_payload - ADDRESS_BYTES
        for start in range(0, len(data), step):
            self._request(Command.WRITE, write_payload(buffer.index, offset + start,
                                                       data[start:start + step]))

    def read_buffer(self, name, offset, count):
        """`count` bytes from byte `offset` of buffer `name`."""
        buffer = self._buffer(name, write=False)
        self._check_range(buffer, offset, count)
        out = bytearray()
        for start in range(0, count, self.max_payload):
            size = min(self.max_payload, count - start)
            reply = self._request(Command.READ, read_payload(buffer.index, offset + start, size))
            if len(reply) != size:
                raise ProtocolError(f"READ of {size} bytes returned {len(reply)}")
            out += reply
        return bytes(out)

    def configure(self, **registers):
        """Set registers by name, e.g. configure(depth=16, tiles=2)."""
        for name, value in registers.items():
            if name not in self.registers:
                raise SettingError(f"register must be one of "
                                   f"{', '.join(map(repr, self.registers))}, not {name!r}")
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 32:
                raise SettingError(f"{name} must be an integer between 0 and {(1 << 32) - 1}, "
                                   f"not {value!r}")
        for name, value in registers.items():
            self._request(Command.CONFIGURE, configure_payload(self.registers[name], value))

    def run(self, timeout=10.0):
        """Start a run and poll STATUS until it is no longer busy; its StatusReport."""
        self._request(Command.RUN)
        deadline = self.transport.now() + timeout
        while True:
            report = self.status()
            if not report.busy:
                return report
            if self.transport.now() >= deadline:
                raise RunTimeout(f"run still busy after {timeout} s")
            self.transport.pause(self.poll_interval)
