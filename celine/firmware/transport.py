"""Byte links to a device: a serial port, an in-process model, or a cocotb simulation.

A Transport moves bytes only; framing, retries and timeouts of whole replies live in
firmware.device. Every transport also keeps a clock (``now``, ``pause``) in its own time
base: wall time for a serial port, model time for the loopback, simulated time for the
simulation, so that poll loops and deadlines mean the same thing on all three.
"""

import time
from abc import ABC, abstractmethod
from collections import deque

from .errors import CelineError
from .protocol import REQUEST_START, Command

__all__ = ["Transport", "SerialTransport", "LoopbackTransport", "SimTransport"]


class Transport(ABC):
    """The interface: ``write(data)``, ``read(n, timeout)`` (at most n bytes, fewer if the
    timeout in seconds passes first), ``reset_input()`` (drop received bytes)."""

    @abstractmethod
    def write(self, data):
        """Send `data`."""

    @abstractmethod
    def read(self, n, timeout):
        """At most `n` received bytes; fewer if `timeout` seconds pass first."""

    @abstractmethod
    def reset_input(self):
        """Drop the bytes received so far."""

    def now(self):
        """Seconds on this transport's clock."""
        return time.monotonic()

    def pause(self, seconds):
        """Let `seconds` pass on this transport's clock."""
        time.sleep(seconds)

    def close(self):
        pass


class SerialTransport(Transport):
    """A UART through pyserial (8N1)."""

    def __init__(self, port, baud=115_200, timeout=1.0):
        try:
            import serial
        except ImportError:
            raise CelineError("a serial port needs the Python package 'pyserial' "
                              "(pip install pyserial)") from None
        try:
            self.port = serial.Serial(port, baudrate=baud, bytesize=8, parity="N",
                                      stopbits=1, timeout=timeout)
        except serial.SerialException as error:
            raise CelineError(f"cannot open serial port {port!r}: {error}") from None

    def write(self, data):
        self.port.write(bytes(data))
        self.port.flush()

    def read(self, n, timeout):
        self.port.timeout = timeout
        return bytes(self.port.read(n))

    def reset_input(self):
        self.port.reset_input_buffer()

    def close(self):
        self.port.close()


class LoopbackTransport(Transport):
    """Talks to an in-process device model (golden.shell.ShellModel) byte for byte.

    Time is virtual: it advances only when a read waits for bytes that are not there (by
    its whole timeout) or on ``pause``, and the model sees that time as idle line
    (``model.idle(bit_times)``), which times out partial frames and completes runs.
    ``commands`` records the command of every request written (for tests of what was sent).
    """

    def __init__(self, device_model, *, baud=None):
        self.model = device_model
        self.baud = baud or device_model.baud
        self.commands = []
        self._received = bytearray()
        self._time = 0.0

    def write(self, data):
        if len(data) > 1 and data[0] == REQUEST_START:
            self.commands.append(Command(data[1]))
        self._received += self.model.feed(bytes(data))

    def read(self, n, timeout):
        if len(self._received) < n:
            self.pause(timeout)
        out = bytes(self._received[:n])
        del self._received[:n]
        return out

    def reset_input(self):
        self._received.clear()

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
