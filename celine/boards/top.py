"""The board top: PLL clock, reset until lock, and the UART pins around one design."""

from amaranth import (ClockDomain, ClockSignal, DomainRenamer, Elaboratable, Instance, Module,
                      ResetSignal, Signal)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import AsyncFFSynchronizer, FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..rtl.shell.line_break import LineBreak
from .baud import check_baud, default_baud
from .pll import EcpPll, pll_config
from .platforms import get_board

__all__ = ["BoardTop", "DEFAULT_CLOCK_HZ", "DESIGN_SIGNATURE"]

DEFAULT_CLOCK_HZ = 45_000_000   # the default design placed at 49.6 MHz (seed 1); 3 Mbaud exactly

# What a design must offer to sit in a BoardTop (extra ports are not allowed: the top
# would have nothing to connect them to).
DESIGN_SIGNATURE = wiring.Signature({"rx": In(1), "tx": Out(1), "busy": Out(1)})


def _fits(signature):
    """Whether `signature` has exactly DESIGN_SIGNATURE's ports (initial values may differ)."""
    members = signature.members
    if set(members) != set(DESIGN_SIGNATURE.members):
        return False
    return all(members[name].is_port and members[name].flow == member.flow
               and members[name].shape == member.shape
               for name, member in DESIGN_SIGNATURE.members.items())


class BoardTop(Elaboratable):
    """The whole FPGA: `design_factory(clock_hz, baud)` on `board` with a PLL clock.

    - `sync` runs from an EHXPLLL at the frequency nearest `clock_hz` (within 1 %;
      `clock_hz` then holds the achieved value, to the nearest Hz). Its reset is held while the PLL is not
      locked (or the board's reset button, if any, is pressed) and released synchronously.
      The synchronized reset reaches the design's flip-flops through a DCCA, on one of the
      device's global networks: routed through the fabric it was the worst path of
      several builds (9.4 ns of routing into a register's LSR across the die).
    - A break on the UART's rx line (held low BREAK_BITS bit times: Device.reset) resets
      the design like the reset button, buffers' contents kept (rtl/shell/line_break.py).
    - The UART's rx pin reaches the design through a 2-flip-flop synchronizer (idle high);
      tx goes straight to the pin. `busy` drives an LED where the board has one.
    - `baud` defaults to the highest standard rate the board's USB-serial chip and the
      clock allow (see `boards.baud`).
    """

    def __init__(self, board, design_factory, *, clock_hz=DEFAULT_CLOCK_HZ, baud=None):
        self.board = get_board(board)
        self.pll = pll_config(self.board.clock_hz, clock_hz)
        output_hz = self.pll.output_hz
        # The nearest whole Hz: the UART divisor and INFO take an integer, and the PLL's
        # output is a fraction of a Hz off at most (the bit time error stays far below 2 %).
        self.clock_hz = round(output_hz)
        if baud is None:
            baud = default_baud(self.clock_hz, self.board.max_baud)
        self.baud = check_baud(self.clock_hz, baud, self.board.max_baud)
        self.design = design_factory(self.clock_hz, self.baud)
        if not isinstance(self.design, wiring.Component):
            raise TypeError(f"design must be a wiring.Component, not {self.design!r}")
        if not _fits(self.design.signature):
            raise TypeError(f"design must have exactly the ports rx: In(1), tx: Out(1), "
                            f"busy: Out(1), not {self.design.signature!r}")

    def elaborate(self, platform):
        m = Module()
        board = self.board

        m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request(board.clock, 0, dir="-"))
        m.submodules.pll = pll = EcpPll(self.pll)
        m.d.comb += pll.clk_in.eq(clk_buf.i)

        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(pll.clk_out)
        reset = Signal()
        m.d.comb += reset.eq(~pll.locked)
        if platform.default_rst is not None:
            m.submodules.rst_buf = rst_buf = io.Buffer(
                "i", platform.request(platform.default_rst, 0, dir="-"))
            m.d.comb += reset.eq(~pll.locked | rst_buf.i)
        # The reset is synchronized in a reset-less domain on the same clock (asserted at
        # once, released on an edge), then buffered onto a global network.
        m.domains.reset_sync = ClockDomain("reset_sync", reset_less=True)
        m.d.comb += ClockSignal("reset_sync").eq(pll.clk_out)
        # A break on the UART line (rx held low for BREAK_BITS bit times) resets the design
        # too (rtl/shell/line_break.py), from a detector that no reset clears.
        m.submodules.line_break = line_break = DomainRenamer("reset_sync")(
            LineBreak(divisor=round(self.clock_hz / self.baud)))
        synced = Signal(init=1)
        m.submodules.reset_sync = AsyncFFSynchronizer(reset | line_break.detected, synced,
                                                      o_domain="reset_sync")
        m.submodules.reset_global = Instance("DCCA", i_CLKI=synced, i_CE=1,
                                             o_CLKO=ResetSignal("sync"))

        m.submodules.design = design = self.design
        uart = platform.request(board.uart, 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.submodules.rx_sync = FFSynchronizer(rx_buf.i, design.rx, init=1)
        m.d.comb += line_break.rx.eq(design.rx)
        m.d.comb += tx_buf.o.eq(design.tx)

        if board.led is not None:
            name, number, subsignal = board.led
            led = platform.request(name, number, dir="-")
            if subsignal is not None:
                led = getattr(led, subsignal)
            m.submodules.led_buf = led_buf = io.Buffer("o", led)
            m.d.comb += led_buf.o.eq(design.busy)
        return m
