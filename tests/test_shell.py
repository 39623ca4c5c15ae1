"""The shell's Verilog (UART -> protocol -> buffers -> MAC array) against golden/shell.py."""

import pytest
import torch

from celine.firmware.protocol import Command, encode_request
from celine.golden.mac import reference_matmul
from celine.golden.shell import shell_model
from celine.engines.mac.spec import MacArrayParams
from celine.rtl.shell.shell import build_shell
from celine.sim.runner import run_cocotb


CLOCK_HZ = 100_000_000          # the testbench clock (10 ns)
POINTS = {
    # The design tests/test_firmware_sim.py serves through Device.open("sim"), under the same
    # top name (TOPS): make test builds it in Verilator once for both.
    "small": dict(mac=dict(rows=2, cols=2, precisions=(4, 8)),
                  shell=dict(clock_hz=CLOCK_HZ, baud=CLOCK_HZ // 4, operand_depth=16,
                             result_depth=16, max_payload=48, timeout_bits=64)),
    "all_precisions": dict(mac=dict(rows=2, cols=2, precisions=(2, 4, 8, 16)),
                           shell=dict(clock_hz=CLOCK_HZ, baud=CLOCK_HZ // 4, operand_depth=32,
                                      result_depth=32, max_payload=64, timeout_bits=64)),
    "dsp": dict(mac=dict(rows=2, cols=3, impl="dsp", precisions=(4, 8)),
                shell=dict(clock_hz=CLOCK_HZ, baud=CLOCK_HZ // 5, operand_depth=16,
                           result_depth=16, max_payload=48, timeout_bits=40)),
}
TOPS = {"small": "serve_mac"}   # celine.firmware.simulate names its top serve_<accel>


def design(point):
    p = POINTS[point]
    return build_shell(accel_params=MacArrayParams(**p["mac"]), **p["shell"])


def model(point):
    p = POINTS[point]
    shell = dict(p["shell"])
    return shell_model("mac", MacArrayParams(**p["mac"]), **shell)


def fault_script(point):
    """Each fault followed by good commands, buffers read back; replies from the golden model."""
    m = model(point)
    word = m.buffers[0].word_stride
    data = bytes((7 * k + 3) & 0xFF for k in range(2 * word))
    steps = []

    def step(what, send, idle_bits=0):
        expect = m.feed(send)
        if idle_bits:
            expect += m.idle(idle_bits)
        steps.append({"what": what, "send": send.hex(), "expect": expect.hex()})

    def write(seq, buffer, offset, payload):
        return encode_request(Command.WRITE, seq, bytes([buffer]) + offset.to_bytes(4, "little")
                              + payload)

    def read(seq, buffer, offset, count):
        return encode_request(Command.READ, seq, bytes([buffer]) + offset.to_bytes(4, "little")
                              + count.to_bytes(2, "little"))

    step("write", write(1, 0, 0, data))
    step("read back", read(2, 0, 0, len(data)))
    bad = bytearray(write(3, 0, 0, bytes(len(data))))
    bad[-1] ^= 0x40
    step("corrupted CRC", bytes(bad))
    step("intact after bad CRC", read(4, 0, 0, len(data)))
    step("truncated frame", write(5, 0, 0, bytes(8))[:9], idle_bits=m.timeout_bits + 10)
    step("intact after timeout", read(6, 0, 0, len(data)))
    oversized = encode_request(Command.WRITE, 7, bytes(m.max_payload + 1))
    step("oversized length", oversized[:5])
    step("garbage between frames", b"\x00\xff\x13\x37" + encode_request(Command.STATUS, 8))
    step("unknown command", encode_request(0x42, 9))
    step("read beyond buffer", read(10, 1, m.buffers[1].size - 2, 4))
    step("write to result", write(11, 2, 0, b"\x01"))
    step("bad register", encode_request(Command.CONFIGURE, 12, bytes([9, 0, 0, 0, 0])))
    step("bad length", encode_request(Command.RUN, 13, b"\x00"))
    step("read count 0", read(14, 0, 0, 0))
    step("padding bytes", write(15, 0, m.buffers[0].word_bytes, b"\xAA") if
         m.buffers[0].word_bytes < word else write(15, 0, 0, data[:1]))
    step("intact at the end", read(16, 0, 0, len(data)))
    step("info", encode_request(Command.INFO, 17))
    # Repeated RUN (docs/protocol.md): registers at reset, so the run is empty.
    run = encode_request(Command.RUN, 18)
    step("run", run)
    step("replayed run", run)
    step("replay with a bad CRC", run[:-1] + bytes([run[-1] ^ 0x01]))
    step("replay after a bad CRC", run)
    step("another frame", read(19, 0, 0, 1))
    step("the same RUN again runs", run)
    assert m.runs == 2
    return steps


def run_point(request, point, testcase, data, test_module="celine.sim.tb.shell_tb"):
    p = POINTS[point]
    run_cocotb(design(point), toplevel=TOPS.get(point, f"shell_{point}"),
               test_module=test_module, case_id=request.node.nodeid, testcase=testcase,
               params={"mac": MacArrayParams(**p["mac"]).to_dict(), "shell": p["shell"]},
               data=data, optimize=True)


@pytest.mark.cocotb
@pytest.mark.parametrize("point", ["small",
                                   pytest.param("all_precisions", marks=pytest.mark.sweep),
                                   pytest.param("dsp", marks=pytest.mark.sweep)])
def test_shell_faults_match_golden(request, point):
    run_point(request, point, "replies_match_golden", {"script": fault_script(point)})


@pytest.mark.cocotb
@pytest.mark.parametrize("point,precisions", [
    ("small", (4, 8)),
    pytest.param("all_precisions", (4, 8), marks=pytest.mark.sweep),
    pytest.param("all_precisions", (2, 16), marks=pytest.mark.sweep),
    pytest.param("dsp", (4, 8), marks=pytest.mark.sweep),
])
def test_shell_matmul_end_to_end(request, point, precisions):
    gen = torch.Generator().manual_seed(sum(precisions))
    jobs = []
    for p in precisions:
        bits = 16 if p == 16 else 8
        a = torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (5, 7), generator=gen)
        w = torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (7, 6), generator=gen)
        a[0, 0] = w[0, 0] = -(1 << (bits - 1))          # the most negative operand
        jobs.append({"a": a.tolist(), "w": w.tolist(), "precision": p,
                     "expected": reference_matmul(a, w, p).tolist()})
    run_point(request, point, "matmul_end_to_end", {"matmuls": jobs, "info": model(point).info()},
              test_module="celine.sim.tb.mac_shell_tb")


def test_rtl_and_golden_describe_the_same_device():
    for point in POINTS:
        assert design(point).info == model(point).info_bytes()
