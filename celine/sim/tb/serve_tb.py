"""cocotb testbench: serve a shell's UART to a host over a local TCP socket
(Device.open("sim"), celine.firmware.simulate).

The toplevel is a celine.sim.line_bridge.LineBridge around the shell: the bridge's own
UART drives the shell's rx and decodes its tx (8N1 at the shell's divisor), and the bench
moves whole windows of bytes (`in_bytes`/`out_bytes`), so it wakes once per window rather
than once per bit. Case parameters: `shell` (clock_hz, baud), `window` (bytes a window
holds). Case data: `port`, the host's TCP port on 127.0.0.1. The bench drives clk (period
1/clock_hz) and rst, connects to the host, then relays until the host closes the
connection. The test passes when the host has closed the connection; a reply byte lost
because the bench fell behind (the bridge's out_overflow) fails it.
"""

import select
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, Timer

from celine.sim.case import load_case

POLL_BITS = 16             # bit times between looks at the socket while nothing moves
RECEIVE_BYTES = 16         # byte times between looks while a reply comes in
CONNECT_TIMEOUT = 60.0     # seconds
SEND_TIMEOUT = 60.0        # seconds for the host to take the bytes of a reply


def _receive(sock):
    """Bytes waiting on `sock` (b"" if none); None once the host closed the connection."""
    if not select.select([sock], [], [], 0)[0]:
        return b""
    try:
        return sock.recv(65536) or None
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError:
        return None


@cocotb.test()
async def serve(dut):
    """Relay bytes between the host's socket and the bridge's windows until the host is done."""
    case = load_case()
    shell, window = case.params["shell"], case.params["window"]
    period_ps = round(1e12 / shell["clock_hz"])
    # The C++ clock: a Python one would wake the bench twice a cycle.
    Clock(dut.clk, period_ps, unit="ps", impl="gpi").start(start_high=False)
    byte_cycles = 10 * round(shell["clock_hz"] / shell["baud"])
    dut.in_load.value = 0
    dut.out_take.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 3)

    sock = socket.create_connection(("127.0.0.1", case.data["port"]), timeout=CONNECT_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    pending = bytearray()
    try:
        while True:
            data = _receive(sock)
            if data is None:
                break                                   # the host closed: done
            pending += data
            await FallingEdge(dut.clk)                  # look and drive between edges
            load = bool(pending) and not int(dut.in_busy.value)
            if load:
                chunk = bytes(pending[:window])
                del pending[:window]
                dut.in_bytes.value = int.from_bytes(chunk, "little")
                dut.in_count.value = len(chunk)
                dut.in_load.value = 1
            count = int(dut.out_count.value)
            if count:
                out = int(dut.out_bytes.value).to_bytes(window, "little")[:count]
                dut.out_take.value = 1
            if load or count:
                await RisingEdge(dut.clk)
                dut.in_load.value = 0
                dut.out_take.value = 0
            if int(dut.out_overflow.value):
                raise AssertionError("the bridge's out window overflowed: reply bytes lost")
            if count:
                sock.settimeout(SEND_TIMEOUT)
                try:
                    sock.sendall(out)
                except OSError:
                    break                               # the host went away
                finally:
                    sock.setblocking(False)
            # Sleep in the simulator: while bytes go out, until they are out (the staging
            # window refilled and the out window looked at every half window at least);
            # while a reply comes in, a few bytes; while the line is quiet, a short poll.
            left = int(dut.in_left.value)
            if left:
                wait = min(window // 2, left)
            elif count:
                wait = min(window // 2, RECEIVE_BYTES)
            else:
                wait = POLL_BITS / 10
            await Timer(max(1, round(wait * byte_cycles)) * period_ps, unit="ps")
    finally:
        sock.close()
    dut._log.info("host closed the connection")
