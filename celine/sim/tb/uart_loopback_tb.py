"""cocotb testbench: firmware.transport.SimTransport on UART pins, from a bridged thread.

The design is tests/uart_loopback.v. Case data: ``cycles_per_bit``. The blocking host
code runs in a thread through ``cocotb.task.bridge`` and reaches the simulator through
SimTransport (``cocotb.task.resume``), as the runtime does against the real shell.
"""

import cocotb
import torch
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import bridge
from cocotb.triggers import ClockCycles

from celine.firmware.device import Device
from celine.firmware.protocol import ReplyDecoder, Status, encode_reply
from celine.firmware.transport import SimTransport
from celine.golden.mac import reference_matmul
from celine.golden.shell import shell_model
from celine.engines.mac.spec import MacArrayParams
from celine.sim.case import load_case

PERIOD_NS = 10


async def start(dut, loop):
    case = load_case()
    Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False)
    dut.loop.value = int(loop)
    dut.dev_tx.value = 1
    host = SimTransport(dut.clk, dut.rx, dut.tx, cycles_per_bit=case.data["cycles_per_bit"])
    await ClockCycles(dut.clk, 3)
    return case, host


@cocotb.test()
async def bytes_come_back_through_the_loop(dut):
    case, host = await start(dut, loop=True)
    cpb = case.data["cycles_per_bit"]
    frame = encode_reply(Status.OK, 42, bytes(range(256)) + b"\x00\xff\x5a\xa5")

    def host_thread():
        host.write(b"\xff\x00garbage" + frame)
        sent = host.now()
        replies = ReplyDecoder().feed(host.read(9 + len(frame), timeout=1e-3))
        # A read that cannot be satisfied returns short after its timeout (simulated).
        short = host.read(5, timeout=2e-6)
        return replies, short, host.now() - sent

    replies, short, elapsed = await bridge(host_thread)()
    assert [(r.status, r.seq, r.payload, r.crc_ok) for r in replies] == \
        [(Status.OK, 42, frame[5:-2], True)]
    assert short == b"" and host.framing_errors == 0
    bit_ns = cpb * PERIOD_NS
    assert 2e-6 <= elapsed <= 2e-6 + 20 * bit_ns * 1e-9, elapsed


async def serve(line, model):
    """The device side: bytes from the host line into the model, its replies back."""
    while True:
        await line.wait_for(1, 1.0)
        reply = model.feed(line.take(1 << 16))
        if reply:
            await line.send(reply)


@cocotb.test()
async def device_runtime_over_the_pins(dut):
    case, host = await start(dut, loop=False)
    cpb = case.data["cycles_per_bit"]
    clock_hz = 10 ** 9 // PERIOD_NS
    # The device's line: it decodes what the host drives on rx and drives dev_tx.
    device_line = SimTransport(dut.clk, dut.dev_tx, dut.rx, cycles_per_bit=cpb)
    params = MacArrayParams(rows=1, cols=2, precisions=(4, 8))
    model = shell_model("mac", params, operand_depth=8, result_depth=8, max_payload=32,
                       clock_hz=clock_hz, baud=clock_hz // cpb)
    cocotb.start_soon(serve(device_line, model))
    a = torch.tensor(case.data["a"])
    w = torch.tensor(case.data["w"])

    def host_thread():
        dev = Device.open("sim", transport=host, timeout=1e-3)
        return dev.info, dev.matmul(a, w, precision=8), dev.status()

    start_ns = get_sim_time("ns")
    info, product, report = await bridge(host_thread)()
    assert info == model.info()
    assert torch.equal(product, reference_matmul(a, w, 8)), (product, reference_matmul(a, w, 8))
    assert not report.busy and report.result_words == len(a) // params.tile_rows(8)
    dut._log.info("open + matmul took %.1f us of simulated time",
                  (get_sim_time("ns") - start_ns) / 1000)
