"""A buffer's block RAM, cut into bit slices so that no read passes a multiplexer."""

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int

__all__ = ["BlockRAM", "slice_width"]


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


class BlockRAM(wiring.Component):
    """A `width` x `depth` memory with byte write enables, as slices of `slice_width`
    bits (one block RAM each, see above), every slice on the same addresses.

    - ``waddr``, ``wdata``, ``wen`` (one bit a byte): the write;
    - ``raddr``, ``data``: a read, its word a cycle later (not transparent);
    - with ``read_ports`` 2, ``b_addr`` and ``b_data``: a second read.

    A write and a read driven by the same address make one RAM port in yosys, so with a
    second read the caller drives ``waddr`` and ``raddr`` alike: that is one port of the
    true-dual-port DP16KD and ``b_addr`` the other. A read of the word being written in
    the same cycle is undefined in the hardware (see `_ATTRS`; simulation gives the old
    word).
    """

    def __init__(self, width, depth, *, read_ports=1):
        check_int("width", width, minimum=8)
        check_int("depth", depth, minimum=1)
        if width % 8:
            raise ValueError(f"width must be a whole number of bytes, not {width} bits")
        if read_ports not in (1, 2):
            raise ValueError(f"read_ports must be 1 or 2, not {read_ports!r}")
        self.width = width
        self.depth = depth
        self.read_ports = read_ports
        members = {"waddr": In(range(depth)), "wdata": In(width), "wen": In(width // 8),
                   "raddr": In(range(depth)), "data": Out(width)}
        if read_ports == 2:
            members.update(b_addr=In(range(depth)), b_data=Out(width))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        step = slice_width(self.width, self.depth)
        reads, reads_b = [], []
        for k, low in enumerate(range(0, self.width, step)):
            bits = min(step, self.width - low)
            memory = Memory(shape=bits, depth=self.depth, init=[], attrs=_ATTRS)
            m.submodules[f"memory_{k}"] = memory
            # A slice of whole bytes writes with their enables; a narrower one (4, 2 or 1
            # bits, the width being whole bytes) lies inside one byte and takes its enable.
            whole = bits % 8 == 0
            write = memory.write_port(granularity=8 if whole and bits > 8 else None)
            enables = self.wen[low // 8:(low + bits) // 8] if whole else self.wen[low // 8]
            read = memory.read_port(transparent_for=())
            m.d.comb += [
                write.addr.eq(self.waddr), write.data.eq(self.wdata[low:low + bits]),
                write.en.eq(enables), read.addr.eq(self.raddr),
            ]
            reads.append(read.data)
            if self.read_ports == 2:
                read_b = memory.read_port(transparent_for=())
                m.d.comb += read_b.addr.eq(self.b_addr)
                reads_b.append(read_b.data)
        m.d.comb += self.data.eq(Cat(*reads))
        if self.read_ports == 2:
            m.d.comb += self.b_data.eq(Cat(*reads_b))
        return m
