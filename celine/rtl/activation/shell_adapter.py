"""The activation engine in the shell: the table from `table`, then `words` words of `x`
through the lookup into `y`."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring

from ...engines.activation.spec import (TABLE_SIZE, ActivationParams, Errors, buffers,
                                        registers)
from ..common.buffer_reader import BufferReader
from ..common.buffer_writer import BufferWriter
from ..common.delay import delayed
from ..shell.contract import engine_signature
from .lookup import TableLookup, beat_layout

# Beats of x the reader prefetches: the least that keeps one word a cycle flowing
# (rtl/common/buffer_reader.py).
READ_QUEUE_DEPTH = 6


class ActivationShellAdapter(wiring.Component):
    """Runs the table lookup over the shell's buffers (docs/activation.md, "In the shell").

    On `start`, with `words` (the register) in 1 .. max_words:
    1. if `load_table` bit 0 is set, copies the 256 entries of the `table` buffer into
       the lookup's tables, one a cycle (256 cycles);
    2. streams words 0 .. words - 1 of `x` through the lookup (`last` on the final word)
       and writes its output beats to the same words of `y`.
    `busy` holds from the cycle after `start` until the last word of `y` is written.
    `words` out of range sets `errors` Errors.WORDS and runs nothing (no load either).
    `cycles` counts the cycles of the last run (`busy` high), `result_words` the words it
    wrote.

    Reads of `x` need no FIFO: the buffer's read port shows the word of the address of
    the cycle before, so a word the lookup does not take is read again (the address held)
    until it is taken; one word a cycle while the lookup takes them. The lookup's output
    is never stalled: a beat is written to `y` the cycle it appears.
    """

    def __init__(self, params: ActivationParams):
        if not isinstance(params, ActivationParams):
            raise TypeError(f"params must be an ActivationParams, not {params!r}")
        self.params = params
        self.buffers = buffers(params)
        self.register_map = registers(params)
        super().__init__(engine_signature(self.buffers, self.register_map))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.lookup = lookup = TableLookup(p)
        mem = self.mem

        ids = self.register_map.index
        words_reg = self.registers[ids("words")]
        load_reg = self.registers[ids("load_table")][0]
        bad_words = (words_reg == 0) | (words_reg > p.max_words)

        running = Signal()
        loading = Signal()               # reading the table buffer
        streaming = Signal()             # reading x
        count = Signal(range(p.max_words + 1))
        errors = Signal(len(self.errors))
        launch = self.start & ~running
        m.d.comb += [self.busy.eq(running), self.errors.eq(errors)]

        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # -- 1. the table: entry k read at k, written into every lane's copy when it comes,
        # the buffer's read latency later (the last lands before x's first word reaches
        # the lookup: the reader's latency is longer) -------------------------------------
        load_addr = Signal(range(TABLE_SIZE))
        latency = next(b.read_latency for b in self.buffers if b.name == "table")
        m.d.comb += [
            mem.table.addr.eq(load_addr),
            lookup.table.en.eq(delayed(m, loading, latency, "table_en")),
            lookup.table.addr.eq(delayed(m, load_addr, latency, "table_addr")),
            lookup.table.data.eq(mem.table.data),
        ]
        with m.If(loading):
            m.d.sync += load_addr.eq(load_addr + 1)
            with m.If(load_addr == TABLE_SIZE - 1):
                m.d.sync += [loading.eq(0), streaming.eq(1)]

        # -- 2. x -> lookup -> y -----------------------------------------------------------
        m.submodules.reader = reader = BufferReader(
            beat_layout(p.lanes), buffer_depth=p.max_words, buffers=("x",),
            queue_depth=READ_QUEUE_DEPTH,
            read_latency=next(b.read_latency for b in self.buffers if b.name == "x"))
        m.submodules.writer = writer = BufferWriter(
            lookup.o.payload.data.shape(), depth=p.max_words, sequential=True)
        next_word = Signal(range(p.max_words + 1))
        request = reader.req
        m.d.comb += [
            request.valid.eq(streaming & (next_word < count)),
            request.payload.addr.eq(next_word),
            request.payload.last.eq(next_word == count - 1),
            mem.x.addr.eq(reader.mem.x.addr),
            reader.mem.x.data.eq(mem.x.data),
        ]
        with m.If(request.valid & request.ready):
            m.d.sync += next_word.eq(next_word + 1)
        wiring.connect(m, reader.o, lookup.i)
        m.d.comb += [
            writer.restart.eq(launch),
            writer.i.valid.eq(lookup.o.valid),
            writer.i.payload.data.eq(lookup.o.payload.data),
            lookup.o.ready.eq(writer.i.ready),
            mem.y.addr.eq(writer.mem.addr),
            mem.y.data.eq(writer.mem.data),
            mem.y.write.eq(writer.mem.write),
            self.result_words.eq(writer.count),
        ]
        with m.If(lookup.o.valid & lookup.o.payload.last):
            m.d.sync += [running.eq(0), streaming.eq(0)]

        with m.If(launch):
            m.d.sync += [self.cycles.eq(0), errors.eq(Mux(bad_words, Errors.WORDS, 0)),
                         load_addr.eq(0), next_word.eq(0), count.eq(words_reg[:len(count)])]
            with m.If(~bad_words):
                m.d.sync += [running.eq(1), loading.eq(load_reg), streaming.eq(~load_reg)]
        return m
