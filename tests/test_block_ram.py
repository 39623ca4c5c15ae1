"""The shell's sliced block RAM (rtl/shell/block_ram.py): a slice per block with no
read multiplexer, reads and byte-enabled writes like one memory, and yosys's mapping."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from celine.rtl.shell.block_ram import BlockRAM, slice_width


@pytest.mark.parametrize("width,depth,bits", [
    (64, 1, 64), (64, 512, 64), (24, 512, 24),          # one block deep: side by side
    (64, 513, 16), (64, 1024, 16), (8, 1024, 8),        # 1K x 18
    (64, 2048, 8), (64, 3000, 4), (64, 6144, 2),       # 2K x 9, 4K x 4, 8K x 2
    (64, 16384, 1), (64, 16385, 64),                    # 16K x 1; deeper: stacked
])
def test_slice_width(width, depth, bits):
    assert slice_width(width, depth) == bits


@pytest.mark.parametrize("make,error,message", [
    (lambda: BlockRAM(12, 64), ValueError, r"^width must be a whole number of bytes, not 12 bits$"),
    (lambda: BlockRAM(4, 64), ValueError, r"^width must be at least 8, not 4$"),
    (lambda: BlockRAM(8, 0), ValueError, r"^depth must be at least 1, not 0$"),
    (lambda: BlockRAM(8, 2.0), TypeError, r"^depth must be an integer, not 2.0$"),
    (lambda: BlockRAM(8, 16, read_ports=3), ValueError, r"^read_ports must be 1 or 2, not 3$"),
])
def test_bad_parameters(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("width,depth", [(32, 1030), (16, 3000), (24, 40)])
def test_reads_and_byte_writes_as_one_memory(width, depth):
    """Random byte-enabled writes and reads on both read ports against a Python list:
    every slice on the same address, each byte's enable on its own bits."""
    dut = BlockRAM(width, depth, read_ports=2)
    rng = random.Random(width * depth)
    model = [0] * depth
    nbytes = width // 8

    async def bench(ctx):
        for _ in range(300):
            waddr, raddr, baddr = (rng.randrange(depth) for _ in range(3))
            wdata, wen = rng.getrandbits(width), rng.getrandbits(nbytes)
            ctx.set(dut.waddr, waddr)
            ctx.set(dut.wdata, wdata)
            ctx.set(dut.wen, wen)
            ctx.set(dut.raddr, raddr)
            ctx.set(dut.b_addr, baddr)
            before = (model[raddr], model[baddr])      # reads are not transparent
            await ctx.tick()
            assert (ctx.get(dut.data), ctx.get(dut.b_data)) == before
            mask = sum(0xFF << 8 * k for k in range(nbytes) if wen >> k & 1)
            model[waddr] = model[waddr] & ~mask | wdata & mask

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


class _SharedAddress(wiring.Component):
    """A BlockRAM with a second read port, its write and first read on one address, as
    the shell's buffers with two read ports drive it (one RAM port, the other read the
    block's second port)."""

    def __init__(self, width, depth):
        self.ram = BlockRAM(width, depth, read_ports=2)
        super().__init__({"addr": In(range(depth)), "wdata": In(width), "wen": In(width // 8),
                          "data": Out(width), "b_addr": In(range(depth)), "b_data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = self.ram
        m.d.comb += [ram.waddr.eq(self.addr), ram.raddr.eq(self.addr),
                     ram.wdata.eq(self.wdata), ram.wen.eq(self.wen), self.data.eq(ram.data),
                     ram.b_addr.eq(self.b_addr), self.b_data.eq(ram.b_data)]
        return m


@pytest.mark.parametrize("make", [lambda: BlockRAM(16, 3000), lambda: _SharedAddress(16, 3000)],
                         ids=["write_and_read", "two_reads"])
def test_ecp5_mapping_has_no_read_multiplexer(monkeypatch, request, make):
    """3,000 x 16: one DP16KD (4K x 4) a 4-bit slice and no logic at all, so no LUT
    follows a block's output (stacked in depth, 512 x 36 blocks would need a 6 : 1
    multiplexer after them; the Taylor default's 6,144 x 64 buffers were 24 blocks and
    such a multiplexer, now 32 blocks in 2-bit slices). Two reads, one on the write's
    address, use the block's two ports: still 4."""
    from celine.gen.synth import synthesize
    from celine.sim.emit import build_root
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(root)            # the work directory must lie under the cwd
    name = request.node.callspec.id
    resources, _ = synthesize(make(), top="block_ram", workdir=f"synth_ooc/block_ram_{name}")
    assert (resources["dp16kd"], resources["lut4"], resources["ff"]) == (4, 0, 0)
