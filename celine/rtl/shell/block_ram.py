"""A buffer's block RAM, cut into bit slices so that no read passes a multiplexer."""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ..common.fanout import register_copies
from ..common.multiplier import is_ecp5

__all__ = ["BlockRAM", "MIN_BLOCK_DEPTH", "slice_width"]


# The DP16KD's shapes (ECP5): words deep, bits wide. A memory deeper than a shape's depth
# is built by yosys as several blocks stacked in depth, with a multiplexer on the read
# data that the address picks. That multiplexer sits after the block's clock-to-out and
# gathers blocks placed far apart: three buffers of 6,144 x 64 bits read through one were
# the worst path of their build, 14.4 ns with 6.7 ns on one block's output net. A memory
# no wider than the shape that holds its whole depth is one block with no multiplexer,
# and a wider word is several such memories side by side.
_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


# A DP16KD read, on one port, of the word the other port writes in the same cycle is
# undefined, and yosys' ECP5 library says so (no cross-port transparency): to keep a
# memory's "a read returns the old word" promise across ports it doubles the blocks and
# adds compare-and-bypass logic. `no_rw_check` waives the promise; a BlockRAM's user never
# reads a word in the cycle it writes it.
_ATTRS = {"no_rw_check": 1}


def slice_width(width, depth):
    """Bits of each slice of a `width` x `depth` memory: `width` itself when the whole
    word fits beside its depth without stacking (depth up to 512: yosys puts wide words
    side by side), else the widest byte-aligned slice one DP16KD holds `depth` words of
    (16 bits down to 1). Power-of-two depths cost no extra block that way; others can
    (6,144 x 64 takes 32 blocks in 2-bit slices, against 24 stacked). Deeper than one
    block in any shape (over 16,384 words): `width`, stacked as yosys likes."""
    for shape_depth, shape_width in _SHAPES:
        if depth <= shape_depth:
            if shape_depth == _SHAPES[0][0]:
                return width
            return min(width, shape_width if shape_width < 8 else shape_width // 8 * 8)
    return width


# A DP16KD's data widths: bits of a slice or chunk -> the block's DATA_WIDTH (a byte is 9
# bits wide in the block: 8 data bits and a parity bit left unused), and how many of the
# block's 14 address pins below the word address are not address bits (byte enables at
# 18 and 36 bits wide, 0 otherwise; the yosys ECP5 library wires them the same way).
_MODES = {1: (1, 0), 2: (2, 1), 4: (4, 2), 8: (9, 3), 16: (18, 4), 24: (36, 5), 32: (36, 5)}
_ADDRESS_PINS = 14
_MAX_BLOCK_DEPTH = _SHAPES[-1][0]
# Below 64 words yosys may build a memory of LUT RAM rather than a block (it did at 48
# words and fewer, and at 63 x 8 bits); a memory that shallow keeps yosys's choice, its
# output register in the fabric.
MIN_BLOCK_DEPTH = 64
# Blocks a copy of the registered read address drives (`address_register`).
ADDRESS_GROUP = 4


def _block_chunks(bits, *, read_ports):
    """(offset, bits) of the blocks one slice of `bits` takes with its output register on:
    a slice wider than a block's widest port (depth up to 512, `width` bits) in 32-bit
    chunks (the block's 36-bit simple-dual-port mode) or, with two read ports, 16-bit ones
    (true dual port is at most 18 bits a port)."""
    widest = 32 if read_ports == 1 else 16
    return [(low, min(widest, bits - low)) for low in range(0, bits, widest)]


# A DP16KD's contents are 64 INITVAL parameters of 320 bits: 16 rows of 18 bits each in
# 20 (9-, 18- and 36-bit modes: a word of D bits at bit D·a of the rows, its bytes 9 bits
# apart), or 32 bytes of the 1-, 2- or 4-bit array in pairs 20 bits apart (a word of D
# bits at bit D·a of the bytes), as yosys's ECP5 library lays them out.
_INITVALS, _INITVAL_BITS = 64, 320


def _initvals(values, bits, data_width):
    """The INITVAL_00 .. _3F parameters of one block holding `values` (one a word, `bits`
    bits each) at `data_width`: Consts of 320 bits."""
    flat = 0
    if data_width >= 9:
        byte_bits = 9
        for address, value in enumerate(values):
            spread = sum(((value >> (8 * k)) & 0xFF) << (byte_bits * k)
                         for k in range(max(1, bits // 8)))
            flat |= spread << (data_width * address)
        unit, units, pitch = 18, 16, 20            # 18-bit rows, 16 a parameter
    else:
        for address, value in enumerate(values):
            flat |= value << (data_width * address)
        unit, units, pitch = 8, 32, None           # bytes, 32 a parameter
    parameters = {}
    for index in range(_INITVALS):
        value = 0
        for k in range(units):
            part = (flat >> (unit * (units * index + k))) & ((1 << unit) - 1)
            position = pitch * k if pitch else 20 * (k // 2) + 9 * (k % 2)
            value |= part << position
        parameters[f"INITVAL_{index:02X}"] = Const(value, _INITVAL_BITS)
    return parameters


class BlockRAM(wiring.Component):
    """A `width` x `depth` memory with byte write enables, as slices of `slice_width`
    bits (one block RAM each, see above), every slice on the same addresses.

    - ``waddr``, ``wdata``, ``wen`` (one bit a byte): the write;
    - ``raddr``, ``data``: a read, its word `read_latency` cycles later (not transparent);
    - with ``read_ports`` 2, ``b_addr`` and ``b_data``: a second read;
    - ``init``: the first words' contents at configuration (the rest 0), so that a ROM
      (``wen`` held 0) reads through the output register too.

    With ``output_register`` each read's word passes the block's own output register
    (REGMODE "OUTREG"), so it comes out a cycle later (`read_latency` 2, else 1) but
    leaves that register 0.96 ns after the clock instead of 5.83 ns after it from the
    block's array (nextpnr's figures for a DP16KD on this toolchain, speed grade 6). yosys
    never turns a register after a block on, so on ECP5 the blocks are instantiated here
    (`_ecp5_blocks`) with the pins wired as the yosys library wires them; elsewhere (the
    simulators) it is a register after the memory's read port.

    With ``read_enable`` (one read port, blocks of at most 18 bits: not a 36-bit-wide
    block, whose read takes both ports) a ``ren`` input gates the read: while it is low
    the read does not advance, its address is not taken and, with ``output_register``,
    the output register holds too (the block's CEB and OCEB pins), so that a stream stage
    can hold its word under backpressure.

    With ``address_register`` ``raddr`` is registered first, in a copy beside every
    ADDRESS_GROUP blocks (RegisterCopies, which yosys keeps apart): a deep, wide memory is
    dozens of blocks across the die, and one address net reaching them all was a build's
    worst path (13.1 ns, 8.6 of it two nets). `read_latency` is one more. With one read
    port the write is not delayed. With two, ``b_addr`` is registered the same way, and so
    is the write, since it shares its address with ``raddr`` (port A): ``waddr`` in the
    copies, each block's slice of ``wdata`` and ``wen`` in a register of its own, so a
    write lands a cycle after it is driven (reads of other words are unaffected; a read
    of a word in the cycle after its write is undefined, like one in the same cycle).

    A write and a read driven by the same address make one RAM port in yosys, so with a
    second read the caller drives ``waddr`` and ``raddr`` alike: that is one port of the
    true-dual-port DP16KD and ``b_addr`` the other. A read of the word being written in
    the same cycle is undefined in the hardware (see `_ATTRS`; simulation gives the old
    word).
    """

    def __init__(self, width, depth, *, read_ports=1, output_register=False,
                 address_register=False, read_enable=False, init=()):
        check_int("width", width, minimum=8)
        check_int("depth", depth, minimum=1)
        if width % 8:
            raise ValueError(f"width must be a whole number of bytes, not {width} bits")
        if read_ports not in (1, 2):
            raise ValueError(f"read_ports must be 1 or 2, not {read_ports!r}")
        if not isinstance(output_register, bool):
            raise TypeError(f"output_register must be True or False, not {output_register!r}")
        self.width = width
        self.depth = depth
        self.read_ports = read_ports
        if not isinstance(address_register, bool):
            raise TypeError(f"address_register must be True or False, not "
                            f"{address_register!r}")
        if not isinstance(read_enable, bool):
            raise TypeError(f"read_enable must be True or False, not {read_enable!r}")
        if read_enable and (read_ports != 1 or address_register):
            raise ValueError("read_enable needs one read port and no address_register")
        if read_enable and any(_MODES[bits][0] == 36 for _, bits in self._blocks()):
            raise ValueError(f"read_enable needs blocks of at most 18 bits, not a "
                             f"{width}-bit word {depth} deep (one 36-bit block)")
        init = list(init) if not isinstance(init, (str, bytes)) else None
        if init is None or len(init) > depth or any(
                not isinstance(w, int) or isinstance(w, bool) or not 0 <= w < 1 << width
                for w in init):
            raise ValueError(f"init must be at most {depth} words of {width} bits "
                             f"(non-negative integers)")
        self.init = init
        self.output_register = output_register
        self.address_register = address_register
        self.read_enable = read_enable
        self.read_latency = 1 + output_register + address_register
        members = {"waddr": In(range(depth)), "wdata": In(width), "wen": In(width // 8),
                   "raddr": In(range(depth)), "data": Out(width)}
        if read_ports == 2:
            members.update(b_addr=In(range(depth)), b_data=Out(width))
        if read_enable:
            members.update(ren=In(1, init=1))
        super().__init__(members)

    @classmethod
    def for_bits(cls, bits, depth, **kwargs):
        """A BlockRAM of `bits`-bit words, each stored in whole bytes (`width` rounded up
        to a multiple of 8; the bits above `bits` read as written, 0 with `write_word`)."""
        check_int("bits", bits, minimum=1)
        return cls(-(-bits // 8) * 8, depth, **kwargs)

    def write_word(self, m, addr, data, en):
        """Drive the write port from `m`: `data` (zero-extended) to `addr`, every byte at
        once when `en`."""
        m.d.comb += [self.waddr.eq(addr), self.wdata.eq(data),
                     self.wen.eq(en.replicate(len(self.wen)))]

    def _blocks(self):
        """(first bit, bits) of each DP16KD on ECP5 (with the output register on): every
        slice's blocks side by side (`_block_chunks`)."""
        step = slice_width(self.width, self.depth)
        return [(low + offset, bits) for low in range(0, self.width, step)
                for offset, bits in _block_chunks(min(step, self.width - low),
                                                  read_ports=self.read_ports)]

    def elaborate(self, platform):
        m = Module()
        step = slice_width(self.width, self.depth)
        if (self.output_register and is_ecp5(platform)
                and MIN_BLOCK_DEPTH <= self.depth <= _MAX_BLOCK_DEPTH):
            self._ecp5_blocks(m)
            return m
        raddr, waddr, wdata, wen = self.raddr, self.waddr, self.wdata, self.wen
        b_addr = self.b_addr if self.read_ports == 2 else None
        if self.address_register:
            raddr, = register_copies(m, "raddr", self.raddr, 1)
            if self.read_ports == 2:        # port A's write too (see the class)
                waddr, wdata, wen, b_addr = (
                    register_copies(m, name, signal, 1)[0] for name, signal in
                    (("waddr", self.waddr), ("wdata", self.wdata), ("wen", self.wen),
                     ("b_addr", self.b_addr)))
        reads, reads_b = [], []
        for k, low in enumerate(range(0, self.width, step)):
            bits = min(step, self.width - low)
            memory = Memory(shape=bits, depth=self.depth, attrs=_ATTRS,
                            init=[(word >> low) & ((1 << bits) - 1) for word in self.init])
            m.submodules[f"memory_{k}"] = memory
            # A slice of whole bytes writes with their enables; a narrower one (4, 2 or 1
            # bits, the width being whole bytes) lies inside one byte and takes its enable.
            whole = bits % 8 == 0
            write = memory.write_port(granularity=8 if whole and bits > 8 else None)
            enables = wen[low // 8:(low + bits) // 8] if whole else wen[low // 8]
            read = memory.read_port(transparent_for=())
            m.d.comb += [
                write.addr.eq(waddr), write.data.eq(wdata[low:low + bits]),
                write.en.eq(enables), read.addr.eq(raddr),
            ]
            if self.read_enable:
                m.d.comb += read.en.eq(self.ren)
            reads.append(read.data)
            if self.read_ports == 2:
                read_b = memory.read_port(transparent_for=())
                m.d.comb += read_b.addr.eq(b_addr)
                reads_b.append(read_b.data)
        outputs = [(self.data, Cat(*reads))]
        if self.read_ports == 2:
            outputs.append((self.b_data, Cat(*reads_b)))
        for out, word in outputs:
            if self.output_register:
                held = Signal.like(out, name=f"{out.name}_reg", reset_less=True)
                with m.If(self.ren if self.read_enable else 1):
                    m.d.sync += held.eq(word)
                word = held
            m.d.comb += out.eq(word)
        return m

    def _ecp5_blocks(self, m):
        """The slices as DP16KD instances with their output registers on. Port A writes
        (and, with two read ports, reads ``raddr``, the caller's write address), port B
        reads. Every slice has one block, but a slice wider than a block's port takes
        several side by side (`_block_chunks`)."""
        two = self.read_ports == 2
        blocks = self._blocks()
        groups = -(-len(blocks) // ADDRESS_GROUP)

        def per_block(name, signal):
            """`signal` for each block: itself, or with `address_register` the copy of its
            block's group."""
            if not self.address_register:
                return [signal] * len(blocks)
            copies = register_copies(m, name, signal, groups)
            return [copies[k // ADDRESS_GROUP] for k in range(len(blocks))]

        # Port A's address is the write's (and, with two read ports, the first read's);
        # port B's the read's (one read port) or the second read's.
        if two:
            a_addrs, b_addrs = per_block("waddr", self.waddr), per_block("b_addr", self.b_addr)
        else:
            a_addrs, b_addrs = [self.waddr] * len(blocks), per_block("raddr", self.raddr)
        reads, reads_b = [], []
        for index, (start, bits) in enumerate(blocks):
            nbytes = max(1, bits // 8)
            wdata = self.wdata[start:start + bits]
            wen = self.wen[start // 8:start // 8 + nbytes]
            if self.address_register and two:
                # The block's own slice of the write, registered beside it with its address.
                wdata, wen = (register_copies(m, f"block_{index}_{name}", signal, 1)[0]
                              for name, signal in (("wdata", wdata), ("wen", wen)))
            word_a, word_b = self._block(m, index, start, bits, two, a_addrs[index],
                                         b_addrs[index], wdata, wen)
            # Two read ports: `data` is port A's (the write's address), `b_data` port B's;
            # one: `data` is port B's.
            reads.append(word_a if two else word_b)
            reads_b.append(word_b)
        m.d.comb += self.data.eq(Cat(*reads))
        if two:
            m.d.comb += self.b_data.eq(Cat(*reads_b))

    def _block(self, m, index, start, bits, two, a_addr, b_addr, wdata, enables):
        """One DP16KD holding bits start .. start + bits - 1 of every word, port A on
        `a_addr` (writing `wdata` with byte enables `enables`, the block's slices) and port B
        on `b_addr`: its read data on port A (with two read ports, else None) and port B,
        `bits` wide each."""
        # At 36 bits (simple dual port) the word is written on both ports' data pins (A's
        # the low 18 bits) and read on both ports' output pins, the byte enables on port
        # A's low address pins. Both ports' output registers are on, whichever of them
        # the block's read uses.
        data_width, low_pins = _MODES[bits]
        clk = ClockSignal("sync")
        byte_bits = 9 if bits >= 8 else bits
        nbytes = max(1, bits // 8)
        pin_bits = 36 if data_width == 36 else 18

        def spread(signal):
            """`signal`'s bytes at their 9-bit positions in the block's data pins."""
            parts = []
            for k in range(nbytes):
                part = signal[8 * k:8 * k + min(8, bits)]
                parts += [part, Const(0, byte_bits - len(part))]
            return Cat(*parts, Const(0, pin_bits - nbytes * byte_bits))

        def gather(pins):
            """The data bits of the block's output `pins` (the inverse of `spread`)."""
            return Cat(*(pins[byte_bits * k:byte_bits * k + min(8, bits)] for k in range(nbytes)))

        write_data = spread(wdata)
        address = lambda addr: Cat(Const(0, low_pins), addr[:_ADDRESS_PINS - low_pins],
                                   Const(0, max(0, _ADDRESS_PINS - low_pins - len(addr))))
        port_a_address = address(a_addr)
        if data_width >= 18:
            # Byte enables on the low address pins; the write enable gates them (at 36
            # bits the yosys library holds it high and writes with the enables alone).
            port_a_address = Cat(enables, Const(0, low_pins - nbytes), port_a_address[low_pins:])
            write_enable = 1 if data_width == 36 else enables.any()
        else:
            write_enable = enables
        read_a = Signal(18, name=f"block_{index}_doa")
        read_b = Signal(18, name=f"block_{index}_dob")
        # With read_enable the read (port B: one read port) advances with `ren`: its
        # address and output registers' clock enables.
        ren = self.ren if self.read_enable else 1
        ports = {"i_CLKA": clk, "i_CLKB": clk, "i_CEA": 1, "i_CEB": ren, "i_OCEA": 1, "i_OCEB": ren,
                 "i_RSTA": 0, "i_RSTB": 0, "i_WEA": write_enable, "i_WEB": 0}
        for pin in range(3):
            ports[f"i_CSA{pin}"] = ports[f"i_CSB{pin}"] = 0
        b_address = address(b_addr)
        for pin in range(_ADDRESS_PINS):
            ports[f"i_ADA{pin}"] = port_a_address[pin]
            ports[f"i_ADB{pin}"] = b_address[pin]
        for pin in range(18):
            ports[f"i_DIA{pin}"] = write_data[pin]
            ports[f"i_DIB{pin}"] = write_data[18 + pin] if data_width == 36 else 0
            ports[f"o_DOA{pin}"] = read_a[pin]
            ports[f"o_DOB{pin}"] = read_b[pin]
        parameters = {
            "DATA_WIDTH_A": data_width, "DATA_WIDTH_B": data_width,
            "REGMODE_A": "OUTREG", "REGMODE_B": "OUTREG",
            "RESETMODE": "SYNC", "ASYNC_RESET_RELEASE": "SYNC",
            "CSDECODE_A": "0b000", "CSDECODE_B": "0b000",
            # Port A's read of the word it writes returns the old word, as the memory
            # in simulation does; the BlockRAM's users never rely on it.
            "WRITEMODE_A": "READBEFOREWRITE" if two else "NORMAL", "WRITEMODE_B": "NORMAL",
            "GSR": "AUTO",
        }
        if any(self.init):
            parameters.update(_initvals([(word >> start) & ((1 << bits) - 1)
                                         for word in self.init], bits, data_width))
        m.submodules[f"block_{index}"] = Instance(
            "DP16KD", **{f"p_{name}": value for name, value in parameters.items()}, **ports)
        if data_width == 36:
            return None, gather(Cat(read_a, read_b))
        return (gather(read_a) if two else None), gather(read_b)
