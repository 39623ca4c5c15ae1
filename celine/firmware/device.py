"""The host runtime: a Celine device over a transport (docs/protocol.md).

    dev = Device.open("/dev/ttyUSB0")              # a board; its UART rate is probed
    dev = Device.open("/dev/ttyUSB0", baud=3_000_000)   # ... or given
    dev = Device.open("model", accel=name)         # the golden model, in process (fast)
    dev = Device.open("sim", accel=name, params=params, **options)
                                                   # the RTL under Verilator (slow)
    dev = Device.open("sim", transport=t)          # any Transport (e.g. in a cocotb test)
    dev.<engine>.<call>(...)                       # the engine's host API (docs/engines.md)
    dev.<call>(...)                                # the same, through the device
    dev.reset()                                    # a break: back to a known state
    dev.close()                                    # or: with Device.open(...) as dev: ...

Targets of Device.open:
- a serial port (a device name or a pyserial URL): with baud=None (the default) the port
  is opened and the standard rates are probed (celine.spec.uart.PROBE_BAUDS, 3 Mbaud
  first, the default design's rate) with an INFO request each and a short timeout; the
  first rate whose INFO reply says that very "baud" is kept. An explicit baud is used as
  given. Needs pyserial.
- "model": the golden model of the whole device (celine.golden.shell.shell_model) over a
  LoopbackTransport, in process, in virtual time: bit-exact with the RTL, and fast. Needs
  torch.
- "sim": the RTL of the shell (celine.rtl.shell.shell.build_shell) under cocotb and
  Verilator ($CELINE_SIM picks another simulator) in a subprocess, its UART pins relayed
  to a local TCP socket (celine.firmware.simulate, celine.sim.tb.serve_tb; a
  SocketTransport here). Needs Amaranth, cocotb and the simulator; the first open of a
  design builds it (tens of seconds), later ones reuse the build. The simulation is slow,
  so the timeouts are generous by default (60 s a reply, 600 s a run); close() ends it.
For "model" and "sim", `accel` names the engine (default: the registry's first), `params`
its generator parameters (a params object, a dict of its fields, or None for the
defaults), and the other keywords are the shell's and the engine's options (max_payload,
baud, clock_hz, buffer depths such as operand_depth, ...).

The engine comes from INFO ("engine"): its record in celine.registry names its host API,
which is imported (with whatever it needs, torch for tensors) on first use; opening a
device and the buffer, register and run calls need neither Amaranth nor torch.

Every request gets one reply; the sequence number ties them (stale replies of earlier,
timed-out requests are skipped). Retries (`retries` extra attempts) never do harm:
- a reply that never came or failed its CRC (LinkTimeout, ReplyCRCError): the request
  may or may not have run. WRITE, READ, CONFIGURE, STATUS and INFO do the same when
  repeated, and are repeated with a new sequence number; a RUN is repeated with its own,
  which the device answers OK without starting a second run if the first one started
  (docs/protocol.md, "Repeated RUN");
- the device's BAD_CRC, TIMEOUT or BAD_LENGTH status: the frame was damaged on the way
  (the host only sends lengths that fit the command and max_payload, so a BAD_LENGTH
  means a damaged length) and never executed (the protocol guarantees a bad frame changes
  nothing), so it is repeated;
- BUSY to anything but STATUS and INFO: a run is still going (one that an earlier call
  started and then failed to see through); the host polls STATUS until it ends, at most
  `run_timeout`, and repeats the request (Busy if the run does not end).
After a missing or damaged reply the input is drained (until the line has been quiet for
a while) before the next attempt. Every wait has a deadline: a reply `timeout`, the drain
`timeout` (a line that never goes quiet is a LinkError), a run `run_timeout`
(RunTimeout). Settings are checked before anything is sent (SettingError), and a closed
device raises CelineError.
"""

import math
import numbers
from dataclasses import dataclass

from .. import registry
from ..spec.protocol import BREAK_BITS, DEFAULT_TIMEOUT_BITS
from ..spec.uart import PROBE_BAUDS, STANDARD_BAUDS
from .errors import (BadCRC, BadLength, Busy, CelineError, DeviceError, FrameTimeout,
                     LinkError, LinkTimeout, ProtocolError, ReplyCRCError, RunTimeout,
                     SettingError, device_error)
from .protocol import (ADDRESS_BYTES, Command, ReplyDecoder, Status, configure_payload,
                       encode_request, parse_info, parse_status, read_payload, write_payload)
from .transport import LoopbackTransport, SerialTransport, Transport

__all__ = ["Device", "BufferInfo"]

IDEMPOTENT = {Command.WRITE, Command.READ, Command.CONFIGURE, Command.STATUS, Command.INFO}

DEFAULTS = {"timeout": 1.0, "retries": 3, "poll_bits": 64, "run_timeout": 10.0}
SIM_DEFAULTS = {"timeout": 60.0, "run_timeout": 600.0}

# Probing a serial port: the longest INFO reply waited for at each rate, and the quiet time
# before each request that lets the device drop a frame that garbage at the previous rate
# began (its inter-byte timeout, at the slowest standard rate, several times over).
PROBE_INFO_BYTES = 4096
PROBE_SETTLE = 4 * DEFAULT_TIMEOUT_BITS / min(STANDARD_BAUDS)


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


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_seconds(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not 0 < value < math.inf:
        raise SettingError(f"{name} must be a positive number of seconds, not {value!r}")
    return value


def _check_settings(timeout, retries, poll_bits, run_timeout):
    _check_seconds("timeout", timeout)
    if not _is_int(retries) or retries < 0:
        raise SettingError(f"retries must be a non-negative integer, not {retries!r}")
    if isinstance(poll_bits, bool) or not isinstance(poll_bits, numbers.Real) or \
            not 0 < poll_bits < math.inf:
        raise SettingError(f"poll_bits must be a positive number, not {poll_bits!r}")
    _check_seconds("run_timeout", run_timeout)


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _as_bytes(data):
    """`data` (bytes, bytearray, or integers 0..255: a list, a numpy array, a memoryview)
    as bytes; SettingError otherwise."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    items = None
    if isinstance(data, memoryview) or (hasattr(data, "tolist") and not isinstance(data, str)):
        items = data.tolist()
    elif not isinstance(data, str) and hasattr(data, "__iter__"):
        items = list(data)
    if not isinstance(items, list) or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v <= 255
            for v in items):
        raise SettingError(f"data must be bytes or integers between 0 and 255, "
                           f"not {_short(data)}")
    return bytes(int(v) for v in items)


def _record(accel):
    try:
        return registry.get(registry.DEFAULT if accel is None else accel)
    except ValueError:
        raise SettingError(f"accel must be one of {', '.join(registry.BY_NAME)}, "
                           f"not {accel!r}") from None


def _params(record, params):
    if params is None:
        return record.params()
    if isinstance(params, record.params):
        return params
    if isinstance(params, dict):
        try:
            return record.params.from_dict(params)
        except (TypeError, ValueError) as error:
            raise SettingError(str(error)) from None
    raise SettingError(f"params must be a {record.params.__name__}, a dict of its fields "
                       f"or None, not {params!r}")


class Device:
    """A device behind `transport`. Opening sends INFO and keeps the description.

    timeout: seconds to wait for one reply (and at most for the line to go quiet after a
    lost one); retries: extra attempts where safe (see the module docstring); poll_bits:
    bit times between STATUS polls of a run; run_timeout: seconds a run may take (the
    default of run()). Seconds are the transport's (wall time, or model time for the
    loopback). `stats` counts the requests made (INFO of opening included), the attempts
    repeated (retries) and the RUNs made, a repeated RUN counted once; the bytes sent and
    received (every attempt's, framing included) and the engine cycles of the runs that
    run() saw finish (each StatusReport's `cycles`).
    """

    def __init__(self, transport, *, timeout=DEFAULTS["timeout"], retries=DEFAULTS["retries"],
                 poll_bits=DEFAULTS["poll_bits"], run_timeout=DEFAULTS["run_timeout"]):
        if not isinstance(transport, Transport):
            raise SettingError(f"transport must be a celine.firmware.transport.Transport, "
                               f"not {transport!r}")
        _check_settings(timeout, retries, poll_bits, run_timeout)
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.run_timeout = run_timeout
        self._closed = False
        self._seq = 0
        # requests made, attempts repeated (retries), RUNs made (each counted once), bytes
        # on the line each way, engine cycles of the runs run() saw finish
        self.stats = {"requests": 0, "retries": 0, "runs": 0, "bytes_sent": 0,
                      "bytes_received": 0, "cycles": 0}
        self._decoder = ReplyDecoder()
        payload = self._request(Command.INFO)
        try:
            info = parse_info(payload)
            buffers = {b["name"]: BufferInfo(index, **b)
                       for index, b in enumerate(info["buffers"])}
            registers = dict(sorted(info["registers"].items(), key=lambda kv: kv[1]))
            max_payload, baud, engine = info["max_payload"], info["baud"], info["engine"]
            if not (_is_int(max_payload) and max_payload > ADDRESS_BYTES and _is_int(baud)
                    and baud > 0):
                raise ValueError("max_payload or baud out of range")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ProtocolError(f"the INFO reply is not a device description ({error}): "
                                f"{_short(bytes(payload))}") from None
        self.info = info
        self.buffers = buffers
        self.registers = registers
        self.max_payload = max_payload
        self.poll_interval = poll_bits / baud
        try:
            self.accelerator = registry.get(engine)
        except ValueError:
            raise ProtocolError(f"engine must be one of {', '.join(registry.BY_NAME)}, "
                                f"not {engine!r} (INFO of an unknown design)") from None
        self._engine = None

    @property
    def engine(self):
        """The engine's host API (its record's `host`), made on first use."""
        if self._engine is None:
            self._engine = self.accelerator.host.load()(self)
        return self._engine

    def __getattr__(self, name):
        # dev.<engine name> is the engine's host API; other unknown names are its calls
        # (dev.<call> is dev.<engine>.<call>).
        if name.startswith("_") or "accelerator" not in self.__dict__:
            raise AttributeError(name)
        if name == self.accelerator.name:
            return self.engine
        try:
            return getattr(self.engine, name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__!r} with engine "
                                 f"{self.accelerator.name!r} has no attribute {name!r}") from None

    # -- opening and closing -----------------------------------------------------------

    @classmethod
    def open(cls, target, *, transport=None, baud=None, accel=None, params=None,
             timeout=None, retries=DEFAULTS["retries"], poll_bits=DEFAULTS["poll_bits"],
             run_timeout=None, **options):
        """Device.open("/dev/ttyUSB0"[, baud=...]), Device.open("model", accel=..., params=...,
        **options), Device.open("sim", accel=..., params=..., **options) or
        Device.open(anything, transport=...): see the module docstring."""
        defaults = SIM_DEFAULTS if target == "sim" and transport is None else DEFAULTS
        settings = {"timeout": defaults["timeout"] if timeout is None else timeout,
                    "retries": retries, "poll_bits": poll_bits,
                    "run_timeout": defaults["run_timeout"] if run_timeout is None
                    else run_timeout}
        _check_settings(**settings)
        engine_settings = {"accel": accel, "params": params, **options}
        given = [name for name, value in engine_settings.items() if value is not None]
        if transport is not None:
            if not isinstance(transport, Transport):
                raise SettingError(f"transport must be a celine.firmware.transport.Transport, "
                                   f"not {transport!r}")
            if given or baud is not None:
                raise SettingError(f"transport must be None when "
                                   f"{', '.join(given or ['baud'])} is given, "
                                   f"not {_short(transport)}")
            return cls(transport, **settings)
        if target in ("model", "sim"):
            record = _record(accel)
            params = _params(record, params)
            if baud is not None:
                options["baud"] = baud
            if target == "model":
                transport = _model_transport(record, params, options)
            else:
                from .simulate import start_simulation
                transport = start_simulation(record, params, **options)
            try:
                return cls(transport, **settings)
            except BaseException:
                transport.close()
                raise
        if not isinstance(target, str) or not target:
            raise SettingError(f"target must be 'model', 'sim' or a serial port "
                               f"(e.g. '/dev/ttyUSB0'), not {target!r}")
        if given:
            raise SettingError(f"target must be 'model' or 'sim' for accel, params and shell "
                               f"options, not {target!r}")
        if baud is not None and (not _is_int(baud) or baud <= 0):
            raise SettingError(f"baud must be a positive integer or None (probe the standard "
                               f"rates), not {baud!r}")
        port = SerialTransport(target, baud or PROBE_BAUDS[0], settings["timeout"])
        try:
            if baud is not None:
                return cls(port, **settings)
            return cls._probe(port, target, settings)
        except BaseException:
            port.close()
            raise

    @classmethod
    def _probe(cls, port, target, settings):
        """The device on serial `port` at the first of PROBE_BAUDS it answers INFO at."""
        for baud in PROBE_BAUDS:
            port.baud = baud
            port.pause(PROBE_SETTLE + port.latency)
            timeout = 0.05 + port.latency + PROBE_INFO_BYTES * 10 / baud
            try:
                dev = cls(port, **{**settings, "timeout": timeout, "retries": 1})
            except (LinkError, DeviceError):
                continue            # silence or garbage: not this rate (a ProtocolError,
                #                     a CRC-valid INFO that makes no sense, is raised)
            if dev.info["baud"] != baud:
                continue
            dev.timeout, dev.retries = settings["timeout"], settings["retries"]
            return dev
        raise LinkError(f"no Celine device answered INFO on {target!r} at any standard rate "
                        f"({', '.join(map(str, PROBE_BAUDS))} baud); give baud= if the "
                        f"design runs at another rate")

    def check_open(self):
        """CelineError if the device was closed (engine host calls check this first)."""
        if self._closed:
            raise CelineError("the device is closed")

    def close(self):
        """Close the transport (ending a simulation); later calls raise CelineError."""
        if not self._closed:
            self._closed = True
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
            chunk = self.transport.read(self._decoder.needed, left) if left > 0 else b""
            self.stats["bytes_received"] += len(chunk)
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
        line has been quiet for twice the device's inter-byte timeout and more (plus the
        transport's latency); LinkError if it is not quiet within `timeout` seconds."""
        self._decoder.reset()
        self.transport.reset_input()
        baud = self.info["baud"] if hasattr(self, "info") else getattr(self.transport, "baud",
                                                                       None)
        quiet = (256 / baud if baud else 0.01) + self.transport.latency
        deadline = self.transport.now() + self.timeout + quiet
        while True:
            wait = min(quiet, deadline - self.transport.now())
            if wait > 0 and not self.transport.read(4096, wait):
                if wait >= quiet:
                    break                       # quiet for a whole `quiet`
            if wait < quiet:
                raise LinkError(f"the line did not go quiet within {self.timeout} s (a wrong "
                                f"bitstream or baud rate, or noise?)")
        self._decoder.reset()

    def _request(self, command, payload=b""):
        """Send one request (repeating it where safe); the OK reply's payload."""
        self.check_open()
        error = None
        seq = None
        self.stats["requests"] += 1
        self.stats["runs"] += command == Command.RUN
        for attempt in range(1 + self.retries):
            self.stats["retries"] += attempt > 0
            if seq is None or command in IDEMPOTENT:
                seq = self._next_seq()      # a RUN keeps its own: a replay never runs
            frame = encode_request(command, seq, payload)
            self.stats["bytes_sent"] += len(frame)
            self.transport.write(frame)
            try:
                reply = self._receive(seq)
            except (LinkTimeout, ReplyCRCError) as caught:
                error = caught
                self._drain()
                continue
            if reply.status == Status.OK:
                return reply.payload
            error = device_error(reply.status, seq, command)
            if isinstance(error, Busy) and command not in (Command.STATUS, Command.INFO):
                self._wait_idle(error)      # a run an earlier, failed call left going
            elif not isinstance(error, (BadCRC, FrameTimeout, BadLength)):
                raise error
        raise error

    def _wait_idle(self, busy):
        """Poll STATUS until the engine is idle; `busy` (the Busy error) if it is still
        busy after run_timeout."""
        deadline = self.transport.now() + self.run_timeout
        while self.status().busy:
            if self.transport.now() >= deadline:
                raise busy
            self.transport.pause(self.poll_interval)

    # -- commands ----------------------------------------------------------------------

    def status(self):
        """StatusReport(busy, engine_errors, cycles, result_words)."""
        return parse_status(self._request(Command.STATUS))

    def reset(self):
        """Bring the device back to a known state without reprogramming it: a break on the
        line (docs/protocol.md, "Break") resets everything but the buffers' contents (a
        run in progress is abandoned, registers take their reset values); then the line
        is drained and INFO read again. CelineError on a transport that cannot send a
        break (a simulation over a socket)."""
        self.check_open()
        baud = self.info["baud"]
        # 4 x BREAK_BITS bit times, and the USB-serial chip's latency on top
        self.transport.send_break(4 * BREAK_BITS / baud + self.transport.latency)
        self._drain()
        self._request(Command.INFO)

    def _buffer(self, name, *, write):
        names = [n for n, b in self.buffers.items() if b.writable or not write]
        if name not in names:
            raise SettingError(f"buffer must be one of {', '.join(map(repr, names))}, "
                               f"not {name!r}")
        return self.buffers[name]

    @staticmethod
    def _check_range(buffer, offset, size):
        if not _is_int(offset) or offset < 0:
            raise SettingError(f"offset must be a non-negative integer, not {offset!r}")
        if offset + size > buffer.size:
            raise SettingError(f"offset + size must be at most {buffer.size} "
                               f"(buffer {buffer.name!r}), not {offset + size}")

    def write_buffer(self, name, offset, data):
        """Write `data` (bytes, or integers 0..255) at byte `offset` of buffer `name`, in
        frames of at most max_payload."""
        self.check_open()
        buffer = self._buffer(name, write=True)
        data = _as_bytes(data)
        self._check_range(buffer, offset, len(data))
        step = self.max_payload - ADDRESS_BYTES
        for start in range(0, len(data), step):
            self._request(Command.WRITE, write_payload(buffer.index, offset + start,
                                                       data[start:start + step]))

    def read_buffer(self, name, offset, count):
        """`count` bytes from byte `offset` of buffer `name`."""
        self.check_open()
        buffer = self._buffer(name, write=False)
        if not _is_int(count) or count < 0:
            raise SettingError(f"count must be a non-negative integer, not {count!r}")
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
        self.check_open()
        for name, value in registers.items():
            if name not in self.registers:
                raise SettingError(f"register must be one of "
                                   f"{', '.join(map(repr, self.registers))}, not {name!r}")
            if not _is_int(value) or not 0 <= value < 1 << 32:
                raise SettingError(f"{name} must be an integer between 0 and {(1 << 32) - 1}, "
                                   f"not {value!r}")
        for name, value in registers.items():
            self._request(Command.CONFIGURE, configure_payload(self.registers[name], value))

    def run(self, timeout=None):
        """Start a run and poll STATUS until it is no longer busy; its StatusReport.
        RunTimeout if still busy after `timeout` seconds (default: run_timeout)."""
        self.check_open()
        timeout = _check_seconds("timeout", self.run_timeout if timeout is None else timeout)
        self._request(Command.RUN)
        deadline = self.transport.now() + timeout
        while True:
            report = self.status()
            if not report.busy:
                self.stats["cycles"] += report.cycles
                return report
            if self.transport.now() >= deadline:
                raise RunTimeout(f"run still busy after {timeout} s")
            self.transport.pause(self.poll_interval)


def _model_transport(record, params, options):
    """A LoopbackTransport over the golden model of the shell around `record`'s engine."""
    from ..golden.shell import shell_model
    try:
        model = shell_model(record.name, params, **options)
    except (TypeError, ValueError) as error:
        raise SettingError(str(error)) from None
    return LoopbackTransport(model)
