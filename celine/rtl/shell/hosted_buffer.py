"""One buffer of the shell: a block RAM shared by the host link and the engine."""

from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Mux, Signal

from ..common.fanout import register_copies
from .block_ram import BlockRAM
from .link_streams import BYTES_A_GROUP

__all__ = ["HostedBuffer"]


# BlockRAM leaves a read of the word written in the same cycle undefined (its
# `no_rw_check`), and nothing here reads one: the engine's reads matter only while it owns
# the buffer, when the host does not write, and the link writes a buffer before it replies
# and reads one only to send a reply (link.py), never both in one cycle.


class HostedBuffer(Elaboratable):
    """Buffer `spec` (a BufferSpec, id `index`): its block RAM (block_ram.BlockRAM, in
    slices with no multiplexer after the blocks), the engine's port `port`
    (the adapter's `mem.<name>`) and the link's port `link` (its `mem`, shared by every
    buffer and routed by `link.select`, its writes by `link.write_to`).

    The engine owns the buffer while it runs, the link otherwise. Ownership is a register
    of this buffer's own, loaded from `owned_next` (the engine's `busy` or the link's
    `start`: the engine is busy from the cycle after a start until its last buffer
    access), so that no single net steers the address and enable multiplexers of every
    buffer in one cycle. It is a RegisterCopy (common/fanout.py): the buffers' registers
    all load the same `owned_next`, and yosys would merge them into one once the design
    is flattened (it did: three buffers' ownership registers were one).

    The link's address, byte enables and data are registered here first
    (link_streams.HOST_ADDRESS_STAGES): the link's address drives every buffer, and a
    register beside each (a RegisterCopy, for the same reason as `owned`) keeps that
    spread out of a block RAM's address setup. A host
    access therefore reaches the block RAM a cycle after the link makes it, when the
    ownership register already says whether the engine was busy in the link's cycle.
    `byte` is the byte the link reads (see `_host_byte`).
    """

    def __init__(self, spec, index, port, link):
        self.spec = spec
        self.index = index
        self.port = port
        self.link = link
        self.owned_next = Signal()
        self.byte = Signal(8)

    def elaborate(self, platform):
        m = Module()
        spec, port, link = self.spec, self.port, self.link
        # The block RAM's output register is on wherever the engine reads at latency 2,
        # and in a buffer the engine writes, whose reads only the link's byte path sees.
        # At read latency 3 the block RAM registers the read address itself, a copy beside
        # every few blocks; the link's address goes in unregistered, so those registers
        # are its address stage (link_streams.HOST_ADDRESS_STAGES) for reads. With two
        # read ports the block RAM registers port A's write as well (its address is the
        # write's): the link's data and enables then go in unregistered too.
        m.submodules.memory = memory = BlockRAM(
            8 * spec.word_bytes, spec.depth, read_ports=spec.read_ports,
            output_register=spec.read_latency >= 2 or not spec.writable,
            address_register=spec.read_latency == 3)

        owned, = register_copies(m, "owned", self.owned_next, 1)

        # The link's address and data registered here are the same in every buffer:
        # RegisterCopies, or yosys merges them into one register that drives every
        # buffer's blocks (it did: one address net of 13.3 ns across one design's buffers).
        host_addr, = register_copies(m, "host_addr", link.addr[:len(memory.waddr)], 1)
        if spec.writable:
            host_data, = register_copies(m, "host_data", link.wdata[:len(memory.wdata)], 1)
            # The host's byte enables, registered: the block RAMs' write enables come
            # straight from a register. Decoded from `owned` and a registered mask, the
            # LUT's net across a deep buffer's blocks was an engine build's worst path
            # (9.1 ns, one 6.8 ns net). The link writes only while the engine is idle
            # (a WRITE needs it idle, the executor's BUSY check, and nothing starts it
            # during one); `owned` guards the enables all the same, a cycle late, from
            # this buffer's own register: the engine's `busy` itself, through
            # `owned_next` into these registers' resets, was another build's worst path
            # (9.75 ns, four nets of 1.1 to 2.4 ns).
            host_en_next = Mux(owned | ~link.write | ~link.write_to[self.index],
                               0, link.mask[:len(memory.wen)])
            host_en = Signal(len(memory.wen))
            m.d.sync += host_en.eq(host_en_next)
            read_addr = Mux(owned, port.addr, host_addr)
            two = spec.read_ports == 2
            if memory.address_register:
                # `owned` and the link's address of the same cycle (the link reads a
                # buffer only while the engine does not own it).
                read_addr = Mux(owned, port.addr, link.addr[:len(memory.raddr)])
                if two:
                    # The block RAM registers the write with its address: the link's
                    # data and enables of the same cycle (the enables' register is the
                    # block RAM's, beside each block). `host_en` still tells the engine.
                    host_data = link.wdata[:len(memory.wdata)]
                    host_en_write = host_en_next
            if not (memory.address_register and two):
                host_en_write = host_en
            # With a second read port, port A of the true-dual-port block RAM (DP16KD)
            # writes and reads, port B reads: yosys merges a write
            # and a read port into one RAM port only when their addresses are the same
            # signal. The write is disabled while the engine owns the buffer, so its
            # address may be the engine's then. An engine that writes the buffer
            # (BufferSpec.engine_writes) does so on the same port, at the same address,
            # while it owns it: still one RAM port.
            if spec.watched:
                m.d.comb += port.host_wrote.eq(host_en.any())
            if spec.engine_writes:
                engine_en = Mux(owned, port.write.replicate(len(memory.wen)), 0)
                m.d.comb += [memory.wdata.eq(Mux(owned, port.wdata, host_data)),
                             memory.wen.eq(engine_en | host_en_write)]
            else:
                m.d.comb += [memory.wdata.eq(host_data), memory.wen.eq(host_en_write)]
            m.d.comb += [
                memory.waddr.eq(read_addr if two else host_addr),
                memory.raddr.eq(read_addr),
                port.data.eq(memory.data),
            ]
            if two:
                m.d.comb += [memory.b_addr.eq(port.b.addr), port.b.data.eq(memory.b_data)]
        else:
            # The engine's writes registered first: the engine's result logic (a lookup
            # table's block RAM, an output lane) then does not run into the block's data
            # pins in the same cycle (one build's worst path: 9.9 ns, a table's
            # clock-to-out and 2.3 ns of routing). A write lands a cycle later, still
            # while the buffer is the engine's: `owned` follows `busy` by a cycle too.
            write_addr = Signal.like(port.addr, name="engine_addr", reset_less=True)
            write_data = Signal.like(port.data, name="engine_data", reset_less=True)
            write = Signal(name="engine_write")
            m.d.sync += [write_addr.eq(port.addr), write_data.eq(port.data),
                         write.eq(port.write)]
            m.d.comb += [
                memory.waddr.eq(Mux(owned, write_addr, host_addr)),
                memory.wdata.eq(write_data),
                memory.wen.eq(Mux(owned, write.replicate(len(memory.wen)), 0)),
                memory.raddr.eq(host_addr),
            ]
        m.d.comb += self.byte.eq(self._host_byte(m, memory))
        return m

    def _host_byte(self, m, memory):
        """The byte the link reads: byte `link.lane` of the block RAM's output word,
        through HOST_READ_STAGES register stages (link_streams.READ_LATENCY): the word as
        the block RAM gives it (a block RAM's output has a long clock-to-out and no logic
        may follow it in the same cycle; with its output register on, that register is
        this stage), the word again, then BYTES_A_GROUP : 1 multiplexers, then one
        multiplexer over the groups. The link holds `lane` (and the buffer select)
        steady while it waits, so every stage reads it undelayed. No reset: the link
        only looks at the result READ_LATENCY cycles after an address."""
        spec = self.spec
        lane = self.link.lane[:max(1, (spec.word_stride - 1).bit_length())]
        if memory.output_register:
            word = memory.data
        else:
            word = Signal.like(memory.data, name="host_word", reset_less=True)
            m.d.sync += word.eq(memory.data)
        # The word again: a deep buffer's blocks lie across the die, and from each to the
        # byte multiplexers was one net (one build's worst path: a deep buffer's block
        # into the multiplexer's register, 9.0 ns, 7.3 of it routing). A register between
        # lets place and route put each bit on the way.
        held = Signal.like(memory.data, name="host_word_again", reset_less=True)
        m.d.sync += held.eq(word)
        group_bits = (BYTES_A_GROUP - 1).bit_length()
        groups = [held[8 * k:8 * (k + BYTES_A_GROUP)]
                  for k in range(0, spec.word_bytes, BYTES_A_GROUP)]
        picked = []
        for k, group in enumerate(groups):
            reg = Signal(8, name=f"host_group_{k}", reset_less=True)
            # A short last group reads 0 past its end (a padding lane: the link ignores it).
            wide = Cat(group, Const(0, 8 * BYTES_A_GROUP - len(group)))
            m.d.sync += reg.eq(wide.word_select(lane[:group_bits], 8))
            picked.append(reg)
        byte = Signal(8, name="host_byte", reset_less=True)
        if len(picked) == 1:
            m.d.sync += byte.eq(picked[0])
        else:
            m.d.sync += byte.eq(Array(picked)[lane[group_bits:]])
        return byte
