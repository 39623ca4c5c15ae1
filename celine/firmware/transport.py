"""Byte links to a device: a serial port, an in-process model, a cocotb simulation, or a
TCP socket (a simulation in a subprocess, celine.firmware.simulate).

A Transport moves bytes only; framing, retries and timeouts of whole replies live in
firmware.device. Every transport also keeps a clock (``now``, ``pause``) in its own time
base: wall time for a serial port and a socket, model time for the loopback, simulated
time for the in-simulation transport, so that poll loops and deadlines mean the same
thing on all of them. No call waits without a deadline: reads take a timeout, writes
have one (``write_timeout``), and failures of the link raise LinkError.
"""

import socket
import time
from abc import ABC, abstractmethod
from collections import deque

from .errors import CelineError, LinkError, LinkTimeout
from .protocol import REQUEST_START, Command

__all__ = ["Transport", "SerialTransport", "LoopbackTransport", "SimTransport",
           "SocketTransport"]


class Transport(ABC):
    """The interface: ``write(data)``, ``read(n, timeout)`` (at most n bytes, fewer if the
    timeout in seconds passes first), ``reset_input()`` (drop received bytes).

    ``latency``: seconds bytes may take beyond their time on the line (a USB-serial chip's
    latency timer, OS buffers, a simulator), so that "the line has been quiet" waits for it.
    """

    latency = 0.0

    @abstractmethod
    def write(self, data):
        """Send `data`."""

    @abstractmethod
    def read(self, n, timeout):
        """At most `n` received bytes; fewer if `timeout` seconds pass first."""

    @abstractmethod
    def reset_input(self):
        """Drop the bytes received so far."""

    def send_break(self, seconds):
        """Hold the line low (a break) for `seconds`: the device resets (docs/protocol.md,
        "Break"). CelineError where the transport cannot."""
        raise CelineError(f"a {type(self).__name__} cannot send a break")

    def now(self):
        """Seconds on this transport's clock."""
        return time.monotonic()

    def pause(self, seconds):
        """Let `seconds` pass on this transport's clock."""
        time.sleep(seconds)

    def close(self):
        pass


class SerialTransport(Transport):
    """A UART through pyserial (8N1). `port` is a device ("/dev/ttyUSB0", "COM3") or a
    pyserial URL ("loop://", "socket://host:port", "rfc2217://..."). `baud` can be
    changed while open (Device.open probes rates that way). Writes give up after
    `write_timeout` seconds (LinkTimeout); port errors are LinkErrors, and any use after
    close() a CelineError."""

    latency = 0.02            # FTDI chips hold a partial USB packet for up to 16 ms

    def __init__(self, port, baud=115_200, timeout=1.0, *, write_timeout=5.0):
        try:
            import serial
        except ImportError:
            raise CelineError("a serial port needs the Python package 'pyserial' "
                              "(pip install pyserial)") from None
        self._serial = serial
        self.name = port
        self.write_timeout = write_timeout
        try:
            self.port = serial.serial_for_url(port, baudrate=baud, bytesize=8, parity="N",
                                              stopbits=1, timeout=timeout,
                                              write_timeout=write_timeout)
        except (serial.SerialException, OSError, ValueError) as error:
            raise CelineError(f"cannot open serial port {port!r}: {error}") from None

    def _call(self, action):
        if not self.port.is_open:
            raise CelineError(f"serial port {self.name!r} is closed")
        try:
            return action()
        except self._serial.SerialTimeoutException:
            raise LinkTimeout(f"serial port {self.name!r}: write not done within "
                              f"{self.write_timeout} s") from None
        except (self._serial.SerialException, OSError) as error:
            raise LinkError(f"serial port {self.name!r}: {error}") from None

    @property
    def baud(self):
        return self.port.baudrate

    @baud.setter
    def baud(self, baud):
        def change():
            self.port.baudrate = baud
        self._call(change)

    def write(self, data):
        def write():
            self.port.write(bytes(data))
            self.port.flush()
        self._call(write)

    def read(self, n, timeout):
        def read():
            self.port.timeout = timeout
            return bytes(self.port.read(n))
        return self._call(read)

    def reset_input(self):
        self._call(self.port.reset_input_buffer)

    def send_break(self, seconds):
        self._call(lambda: self.port.send_break(duration=seconds))

    def close(self):
        self.port.close()


class LoopbackTransport(Transport):
    """Talks to an in-process device model (golden.shell.ShellModel) byte for byte.

    Time is virtual: it advances only when a read waits for bytes that are not there (by
    its whole timeout) or on ``pause``, and the model sees that time as idle line
    (``model.idle(bit_times)``), which times out partial frames and completes runs.
    ``commands`` records the command of every request written (for tests of what was sent;
    the raw byte where it is no Command);
    ``bytes_written`` and ``bytes_read`` count the bytes the host sent and the bytes it
    read back (not those ``reset_input`` dropped unread), for measuring a call's link
    traffic: set them to 0 to start a count.
    """

    def __init__(self, device_model, *, baud=None):
        self.model = device_model
        self.baud = baud or device_model.baud
        self.commands = []
        self.bytes_written = 0
        self.bytes_read = 0
        self.closed = False
        self._received = bytearray()
        self._time = 0.0

    def _check_open(self):
        if self.closed:
            raise CelineError("the loopback transport is closed")

    def close(self):
        self.closed = True

    def write(self, data):
        self._check_open()
        data = bytes(data)
        if len(data) > 1 and data[0] == REQUEST_START:
            code = data[1]          # a damaged frame's may be no command
            self.commands.append(Command(code) if code in Command._value2member_map_
                                 else code)
        self.bytes_written += len(data)
        self._received += self.model.feed(data)

    def read(self, n, timeout):
        self._check_open()
        if len(self._received) < n:
            self.pause(timeout)
        out = bytes(self._received[:n])
        del self._received[:n]
        self.bytes_read += len(out)
        return out

    def reset_input(self):
        self._received.clear()

    def send_break(self, seconds):
        self._check_open()
        self._time += seconds
        self.model.line_break()

    def now(self):
        return self._time

    def pause(self, seconds):
        self._time += seconds
        self._received += self.model.idle(max(1, round(seconds * self.baud)))


class SimTransport(Transport):
    """The UART pins of a design in a cocotb simulation, used from a bridged thread.

    The runtime API is blocking, so the host code runs in a thread started with
    ``cocotb.task.bridge`` (cocotb 1.x: ``cocotb.external``); each transport call runs a
    coroutine in the simulator through ``cocotb.task.resume`` (1.x: ``cocotb.function``)
    and blocks the thread until it returns. Create the transport in a coroutine (it
    starts a receiver task on ``tx``), before bridging.

    ``rx`` is the design's receive input (driven here), ``tx`` its transmit output
    (decoded here); both 8N1, idle high, LSB first, `cycles_per_bit` cycles of `clk` per
    bit. The receiver samples each bit in its middle. Timeouts are in simulated seconds.
    """

    def __init__(self, clk, rx, tx, *, cycles_per_bit):
        import cocotb
        from cocotb.task import resume
        from cocotb.triggers import Event

        if not isinstance(cycles_per_bit, int) or cycles_per_bit < 2:
            raise ValueError(f"cycles_per_bit must be an integer of at least 2, "
                             f"not {cycles_per_bit!r}")
        self.clk, self.rx, self.tx = clk, rx, tx
        self.cycles_per_bit = cycles_per_bit
        self.rx.value = 1
        self._received = deque()
        self.framing_errors = 0
        self._arrived = Event()
        self._receiver = cocotb.start_soon(self._receive())
        self._send = resume(self.send)
        self._wait = resume(self.wait_for)
        self._sleep = resume(self._sleep_for)
        self._time = resume(self._sim_time)

    async def send(self, data):
        """Coroutine: drive `data` onto ``rx`` (for testbench coroutines; threads use write)."""
        from cocotb.triggers import ClockCycles, RisingEdge
        await RisingEdge(self.clk)
        for byte in data:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.rx.value = bit
                await ClockCycles(self.clk, self.cycles_per_bit)

    async def _receive(self):
        from cocotb.triggers import ClockCycles, FallingEdge
        half = self.cycles_per_bit // 2
        while True:
            await FallingEdge(self.tx)
            await ClockCycles(self.clk, half)
            if int(self.tx.value) != 0:
                continue                      # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await ClockCycles(self.clk, self.cycles_per_bit)
                byte |= int(self.tx.value) << i
            await ClockCycles(self.clk, self.cycles_per_bit)
            if int(self.tx.value) != 1:
                self.framing_errors += 1      # no stop bit: drop the byte
                continue
            self._received.append(byte)
            self._arrived.set()

    async def wait_for(self, n, timeout):
        """Coroutine: wait until `n` bytes are buffered or `timeout` seconds passed."""
        from cocotb.simtime import get_sim_time
        from cocotb.triggers import First, Timer
        deadline = get_sim_time("sec") + timeout
        while len(self._received) < n:
            left = deadline - get_sim_time("sec")
            if left <= 0:
                break
            self._arrived.clear()
            await First(self._arrived.wait(), Timer(left, unit="sec", round_mode="ceil"))

    async def _sleep_for(self, seconds):
        from cocotb.triggers import Timer
        await Timer(seconds, unit="sec", round_mode="ceil")

    async def _sim_time(self):
        from cocotb.simtime import get_sim_time
        return get_sim_time("sec")

    def write(self, data):
        self._send(bytes(data))

    def take(self, n):
        """Up to `n` of the received bytes, at once."""
        return bytes(self._received.popleft() for _ in range(min(n, len(self._received))))

    def read(self, n, timeout):
        if len(self._received) < n:
            self._wait(n, timeout)
        return self.take(n)

    def reset_input(self):
        self._received.clear()

    def now(self):
        return self._time()

    def pause(self, seconds):
        if seconds > 0:
            self._sleep(seconds)


class SocketTransport(Transport):
    """Bytes over a connected stream socket: a simulated device's UART relayed by
    celine.sim.tb.serve_tb (celine.firmware.simulate), or any TCP-to-serial bridge.

    Time is wall time. `process` (a subprocess.Popen, optional) is the simulation behind
    the socket: close() closes the socket, which ends the simulation, and waits up to
    `close_timeout` seconds for the process to exit (then terminates its process group).
    """

    def __init__(self, sock, *, process=None, latency=0.0, write_timeout=30.0,
                 close_timeout=60.0, log=None):
        self.sock = sock
        self.process = process
        self.latency = latency
        self.write_timeout = write_timeout
        self.close_timeout = close_timeout
        self.log = log
        self.closed = False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @classmethod
    def connect(cls, host, port, *, timeout=10.0, **options):
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as error:
            raise LinkError(f"cannot connect to {host}:{port}: {error}") from None
        return cls(sock, **options)

    def _check_open(self):
        if self.closed:
            raise CelineError("the socket transport is closed")

    def write(self, data):
        self._check_open()
        self.sock.settimeout(self.write_timeout)
        try:
            self.sock.sendall(bytes(data))
        except socket.timeout:
            raise LinkTimeout(f"write not done within {self.write_timeout} s") from None
        except OSError as error:
            raise LinkError(f"the connection failed: {error}") from None

    def read(self, n, timeout):
        self._check_open()
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(out))
            except socket.timeout:
                break
            except OSError as error:
                raise LinkError(f"the connection failed: {error}") from None
            if not chunk:
                raise LinkError("the connection was closed by the other end "
                                "(the simulation ended?)")
            out += chunk
        return bytes(out)

    def reset_input(self):
        self._check_open()
        self.sock.setblocking(False)
        try:
            while self.sock.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as error:
            raise LinkError(f"the connection failed: {error}") from None
        finally:
            self.sock.setblocking(True)

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.process is not None:
            from .simulate import stop
            stop(self.process, self.close_timeout)
