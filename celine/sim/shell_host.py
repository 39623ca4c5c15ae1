"""A cocotb testbench's host side of a shell design: the clock, the reset and the UART
pins as a firmware transport (SimTransport), for testbenches of the shell and of each
engine in the shell."""

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from ..firmware.transport import SimTransport
from .case import load_case

__all__ = ["PERIOD_NS", "start_shell"]

PERIOD_NS = 10


async def start_shell(dut):
    """Start the clock, reset the design; (case, host transport, seconds per bit).
    The case's params hold `shell` (at least clock_hz and baud)."""
    case = load_case()
    Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False)
    shell = case.params["shell"]
    cycles_per_bit = shell["clock_hz"] // shell["baud"]
    host = SimTransport(dut.clk, dut.rx, dut.tx, cycles_per_bit=cycles_per_bit)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 3)
    return case, host, cycles_per_bit * PERIOD_NS * 1e-9
