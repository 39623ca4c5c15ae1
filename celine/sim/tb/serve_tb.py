"""cocotb testbench: serve a shell's UART to a host over a local TCP socket
(Device.open("sim"), celine.firmware.simulate).

Case parameters: `shell` (clock_hz, baud). Case data: `port`, the host's TCP port on
127.0.0.1. The bench drives clk (period 1/clock_hz) and rst, connects to the host, then
relays until the host closes the connection: bytes from the socket go onto rx, bytes
decoded from tx go to the socket (8N1, round(clock_hz / baud) cycles a bit, like the
shell's UART). The test passes when the host has closed the connection.
"""

import select
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from celine.firmware.transport import SimTransport
from celine.sim.case import load_case

POLL_BITS = 8              # bit times between looks at the socket while nothing moves
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
    """Relay bytes between the host's socket and the UART pins until the host is done."""
    case = load_case()
    shell = case.params["shell"]
    Clock(dut.clk, round(1e12 / shell["clock_hz"]), unit="ps").start(start_high=False)
    cycles_per_bit = round(shell["clock_hz"] / shell["baud"])
    line = SimTransport(dut.clk, dut.rx, dut.tx, cycles_per_bit=cycles_per_bit)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 3)

    sock = socket.create_connection(("127.0.0.1", case.data["port"]), timeout=CONNECT_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    try:
        while True:
            data = _receive(sock)
            if data is None:
                break                                   # the host closed: done
            if data:
                await line.send(data)
            out = line.take(1 << 16)
            if out:
                sock.settimeout(SEND_TIMEOUT)
                try:
                    sock.sendall(out)
                except OSError:
                    break                               # the host went away
                finally:
                    sock.setblocking(False)
            if not data and not out:
                await ClockCycles(dut.clk, POLL_BITS * cycles_per_bit)
    finally:
        sock.close()
    dut._log.info("host closed the connection; %d framing errors on tx", line.framing_errors)
