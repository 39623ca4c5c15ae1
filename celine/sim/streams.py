"""cocotb drivers and monitors for Amaranth streams in generated Verilog.

Amaranth flattens a component's stream port ``i`` into ``i__payload``, ``i__valid`` and
``i__ready``; its ``sync`` domain gives ``clk`` and ``rst`` (active high).

Timing rule (same on Verilator and Icarus): everything the testbench drives is driven just
after a rising edge, and handshakes are sampled at the falling edge before the rising edge
at which the design registers them. Nothing changes between those two instants, so a beat
counts as transferred exactly when the design sees ``valid & ready`` at its clock edge,
without depending on when a simulator runs ``RisingEdge`` callbacks relative to the
design's flip-flops. Like AXI-Stream, a source never drops ``valid`` (or changes the
payload) before its beat is accepted; idle cycles are inserted only between beats.
"""

import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from .payload import pack, unpack

__all__ = ["start_clock_and_reset", "StreamSource", "StreamSink", "StreamTimeout"]


class StreamTimeout(AssertionError):
    """A stream did not transfer the expected beats within the allowed cycles."""


async def start_clock_and_reset(dut, *, period_ns=10, reset_cycles=2, clk="clk", rst="rst"):
    """Start a clock on ``dut.clk`` and hold ``dut.rst`` high for *reset_cycles* edges.

    Returns just after the first rising edge with reset low. Create stream sources and
    sinks before calling this, so that the design's inputs are driven during reset.
    """
    clock = getattr(dut, clk)
    Clock(clock, period_ns, unit="ns").start(start_high=False)
    reset = getattr(dut, rst, None)
    if reset is not None:
        reset.value = 1
        await ClockCycles(clock, reset_cycles, rising=True)
        reset.value = 0
    await RisingEdge(clock)


class _Endpoint:
    def __init__(self, dut, prefix, layout, clk, seed):
        self.name = prefix
        self.layout = layout
        self.clk = clk
        self.payload = getattr(dut, f"{prefix}__payload")
        self.valid = getattr(dut, f"{prefix}__valid", None)
        self.ready = getattr(dut, f"{prefix}__ready", None)
        self.rng = random.Random(seed)
        self.cycle = 0

    async def _wait(self, done, what, timeout_cycles):
        """Wait until ``done()``; *what()* describes the wait for the timeout message."""
        start = self.cycle
        while not done():
            if timeout_cycles is not None and self.cycle - start >= timeout_cycles:
                raise StreamTimeout(f"{self.name}: {what()} not done after {timeout_cycles} cycles")
            await RisingEdge(self.clk)


class StreamSource(_Endpoint):
    """Drives ``<prefix>__payload``/``__valid`` of *dut*, honouring ``<prefix>__ready``.

    Beats are Python values as in :mod:`sim.payload` (dicts, lists, ints) of *layout*.
    Before each beat, a seeded random number of idle cycles (each with probability
    *idle_prob*) holds ``valid`` low. Create it before reset (it drives ``valid`` low and
    the payload to zero at once, so no input floats) and queue beats after reset: a beat
    accepted while the design is in reset would be lost.
    """

    def __init__(self, dut, prefix, layout, clk, *, idle_prob=0.0, seed=0):
        super().__init__(dut, prefix, layout, clk, seed)
        self.idle_prob = idle_prob
        self.queue = deque()
        self.sent = 0
        self._offered = None
        self.valid.value = 0
        self.payload.value = 0
        self._task = cocotb.start_soon(self._run())

    def send_nowait(self, beats):
        """Queue *beats* for sending."""
        self.queue.extend(pack(self.layout, beat) for beat in beats)

    async def send(self, beats, *, timeout_cycles=None):
        """Queue *beats* and wait until all queued beats have been accepted."""
        self.send_nowait(beats)
        await self.wait_idle(timeout_cycles=timeout_cycles)

    def idle(self):
        return not self.queue and self._offered is None

    async def wait_idle(self, *, timeout_cycles=None):
        await self._wait(self.idle, lambda: f"sending {len(self.queue) + (self._offered is not None)} "
                         f"more beats ({self.sent} sent)", timeout_cycles)

    async def _run(self):
        while True:
            await FallingEdge(self.clk)
            accepted = self._offered is not None and (self.ready is None or int(self.ready.value))
            await RisingEdge(self.clk)
            self.cycle += 1
            if accepted:
                self._offered = None
                self.sent += 1
            if self._offered is None:
                if self.queue and self.rng.random() >= self.idle_prob:
                    self._offered = self.queue.popleft()
                    self.payload.value = self._offered
                    self.valid.value = 1
                else:
                    self.valid.value = 0

    def stop(self):
        self._task.cancel()


class StreamSink(_Endpoint):
    """Drives ``<prefix>__ready`` with seeded random backpressure and collects beats.

    Each cycle ``ready`` is low with probability *backpressure_prob*. Received beats are
    unpacked with *layout* and appended to :attr:`beats`. Create it before reset.
    """

    def __init__(self, dut, prefix, layout, clk, *, backpressure_prob=0.0, seed=0):
        super().__init__(dut, prefix, layout, clk, seed)
        self.backpressure_prob = backpressure_prob
        self.beats = []
        if self.ready is not None:
            self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def receive(self, count, *, timeout_cycles=10_000):
        """Wait until *count* beats in total have arrived; return the first *count*."""
        await self._wait(lambda: len(self.beats) >= count,
                         lambda: f"receiving {count} beats (got {len(self.beats)})", timeout_cycles)
        return self.beats[:count]

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            ready = self.rng.random() >= self.backpressure_prob
            if self.ready is not None:
                self.ready.value = int(ready)
            await FallingEdge(self.clk)
            if ready and (self.valid is None or int(self.valid.value)):
                self.beats.append(unpack(self.layout, int(self.payload.value)))

    def stop(self):
        self._task.cancel()
