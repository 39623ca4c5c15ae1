"""The Taylor-attention pipeline in the shell: heads from the q/k/v buffers into `out`."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring

from ...engines.taylor.spec import Errors, TaylorParams, buffers, registers
from ..common.buffer_reader import BufferReader
from ..common.buffer_writer import BufferWriter
from ..shell.contract import engine_signature
from .pipeline import TaylorPipeline
from .row_loader import beat_layout


class TaylorShellAdapter(wiring.Component):
    """Runs the Taylor-attention pipeline over the shell's buffers (docs/protocol.md,
    "The Taylor-attention engine").

    Buffers `q`, `k`, `v` (written by the host) and `out` (read-only to the host) hold one
    8-lane beat per word, `heads * max_tokens * row_beats` words: beat x of token i of
    head h at word (h * max_tokens + i) * row_beats + x.

    On `start`: for each kept head (bit h of `head_mask` clear), in head order, streams N
    tokens of (K row, V row) and then N Q rows into the pipeline, `last` on the final beat
    of each block, and writes the pipeline's output beats to `out` at the same words of
    that head. Skipped heads' words of `out` are left as they were. The three operand
    buffers share one read address (their layouts are the same); reads go through a
    prefetch queue (rtl/common's BufferReader, its words registered beside the reader as
    well as in the blocks: the blocks' output nets into the queue's buffer multiplexer
    were a build's worst path, 5.8 ns of 8.7), so block-RAM latency never starves the
    pipeline (one beat per cycle at most). The output is never stalled (a BufferWriter):
    a beat is written the cycle it appears.

    `busy` holds from `start` until the last output beat is written (and the pipeline is
    idle). A `tokens` register outside 1..max_tokens sets `errors` bit 1 and runs nothing;
    bit 0 is the pipeline's framing error. `cycles` counts the cycles of the last run,
    `result_words` the output beats it wrote (saturating at 65535).
    """

    def __init__(self, params: TaylorParams):
        if not isinstance(params, TaylorParams):
            raise TypeError(f"params must be a TaylorParams, not {params!r}")
        self.params = params
        self.buffers = buffers(params)
        self.register_map = registers(params)
        self.depth = self.buffers[0].depth
        super().__init__(engine_signature(self.buffers, self.register_map))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        beats, heads = p.row_beats, p.heads
        head_words = p.max_tokens * beats
        m.submodules.pipeline = pipeline = TaylorPipeline(p)

        regs = {name: self.registers[self.register_map.index(name)]
                for name in self.register_map.names}
        for name in pipeline.settings:          # every register but tokens (spec.registers)
            port = getattr(pipeline, name)
            m.d.comb += port.eq(regs[name][:len(port)])
        # A count beyond the port's width must not wrap into range: give the pipeline 0,
        # which it rejects (errors.tokens).
        tokens_reg = regs["tokens"]
        m.d.comb += pipeline.tokens.eq(Mux(tokens_reg > p.max_tokens, 0,
                                           tokens_reg[:len(pipeline.tokens)]))
        running = Signal()
        launch = self.start & ~self.busy
        m.d.comb += [
            pipeline.start.eq(launch),
            self.busy.eq(running | pipeline.busy),
            self.errors.eq(Mux(pipeline.errors.framing, Errors.FRAMING, 0)
                           | Mux(pipeline.errors.tokens, Errors.TOKENS, 0)),
        ]
        tokens = Signal(p.token_width)
        with m.If(launch):
            m.d.sync += [self.cycles.eq(0), self.result_words.eq(0),
                         tokens.eq(tokens_reg[:p.token_width])]
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        def lowest(mask, name):
            """The lowest set bit's index of `mask` (0 when none)."""
            index = Signal(range(heads), name=name)
            for h in reversed(range(heads)):
                with m.If(mask[h]):
                    m.d.comb += index.eq(h)
            return index

        def head_base(head, name):
            """Word of beat 0 of token 0 of `head` (a table: no multiplier)."""
            base = Signal(range(self.depth), name=name)
            with m.Switch(head):
                for h in range(heads):
                    with m.Case(h):
                        m.d.comb += base.eq(h * head_words)
            return base

        # The heads a run covers (none for a bad count) and where the first one starts, as
        # registers decoded from the registers every cycle: they are steady a cycle before
        # `start` (docs/engines.md, the contract). Decoded at `start`, the count's compare
        # into `to_write` was a Taylor build's worst path (8.6 ns).
        bad_tokens = (tokens_reg == 0) | (tokens_reg > p.max_tokens)
        kept_mask = ~regs["head_mask"][:heads]
        run_heads = Signal(heads)
        first_base = Signal(range(self.depth))
        one_token = Signal()
        m.d.sync += [run_heads.eq(Mux(bad_tokens, 0, kept_mask)),
                     first_base.eq(head_base(lowest(kept_mask, "first_head"), "first_base_next")),
                     one_token.eq(tokens_reg[:p.token_width] == 1)]

        # -- reads: kept heads in order; per head N x (K row, V row), then N Q rows ------
        to_read = Signal(heads)            # kept heads whose beats are not all read yet
        read_head = lowest(to_read, "read_head")
        query = Signal()                   # reading the Q block (else K/V)
        value = Signal()                   # in the K/V block: reading the V row
        token = Signal(p.token_width)
        beat = Signal(range(beats))
        # The read address, a register of its own that steps with the reads (as the sum
        # head base + token * row_beats + beat, computed on the request's path, it was a
        # Taylor build's worst path: 8.6 ns into the q, k and v blocks' address copies).
        address = Signal(range(self.depth))
        next_head = lowest(to_read & (to_read - 1), "next_read_head")   # lowest bit clear
        last_beat = beat == beats - 1
        # Whether `token` is N - 1: a register that moves with `token` (compared on the
        # way, N - 1 through the adder and compare into the address's choice was a Taylor
        # build's worst path: 9.5 ns, 8 levels). N - 2 is registered from `tokens` (set at
        # launch; first compared at a token's last read, two cycles later at the earliest).
        last_token = Signal()
        tokens_less2 = Signal.like(tokens)
        m.d.sync += tokens_less2.eq(tokens - 2)

        operands = ("q", "k", "v")
        m.submodules.prefetch = reader = BufferReader(
            beat_layout(p.operand_width), buffer_depth=self.depth, buffers=operands,
            queue_depth=8, read_latency=self.buffers[0].read_latency, word_register=True)
        wiring.connect(m, reader.o, pipeline.i)
        mem = self.mem
        for name in operands:
            m.d.comb += [getattr(mem, name).addr.eq(getattr(reader.mem, name).addr),
                         getattr(reader.mem, name).data.eq(getattr(mem, name).data)]
        request = reader.req
        read = request.valid & request.ready
        m.d.comb += [
            request.valid.eq(to_read != 0),
            request.payload.addr.eq(address),
            request.payload.buffer.eq(Mux(query, operands.index("q"),
                                          Mux(value, operands.index("v"),
                                              operands.index("k")))),
            request.payload.last.eq(last_beat & last_token & (query | value)),
        ]

        with m.If(read):
            m.d.sync += [beat.eq(beat + 1), address.eq(address + 1)]
            with m.If(last_beat):
                m.d.sync += beat.eq(0)
                with m.If(~query & ~value):
                    # The same token's V row next, at the K row's words.
                    m.d.sync += [value.eq(1), address.eq(address - (beats - 1))]
                with m.Else():
                    m.d.sync += [value.eq(0), token.eq(token + 1),
                                 last_token.eq(token == tokens_less2)]
                    with m.If(last_token):
                        m.d.sync += [token.eq(0), last_token.eq(tokens == 1),
                                     query.eq(~query)]
                        with m.If(query):
                            m.d.sync += [to_read.bit_select(read_head, 1).eq(0),
                                         address.eq(head_base(next_head, "next_base"))]
                        with m.Else():
                            m.d.sync += address.eq(head_base(read_head, "read_base"))
        with m.If(launch):
            m.d.sync += [query.eq(0), value.eq(0), token.eq(0), beat.eq(0),
                         last_token.eq(one_token), to_read.eq(run_heads),
                         address.eq(first_base)]

        # -- writes: output beats of kept heads, in order, at their head's words ----------
        to_write = Signal(heads)           # kept heads whose output is not all written yet
        write_head = lowest(to_write, "write_head")
        written = Signal(range(head_words + 1))
        m.submodules.writer = writer = BufferWriter(pipeline.o.payload.data.shape(),
                                                    depth=self.depth)
        m.d.comb += [
            writer.i.valid.eq(pipeline.o.valid),
            writer.i.payload.addr.eq(head_base(write_head, "write_base") + written),
            writer.i.payload.data.eq(pipeline.o.payload.data),
            pipeline.o.ready.eq(writer.i.ready),
            mem.out.addr.eq(writer.mem.addr),
            mem.out.data.eq(writer.mem.data),
            mem.out.write.eq(writer.mem.write),
        ]
        with m.If(pipeline.o.valid):
            m.d.sync += written.eq(written + 1)
            with m.If(self.result_words != 0xFFFF):
                m.d.sync += self.result_words.eq(self.result_words + 1)
            with m.If(pipeline.o.payload.last):
                m.d.sync += [written.eq(0), to_write.bit_select(write_head, 1).eq(0)]

        with m.If(launch):
            m.d.sync += [written.eq(0), to_write.eq(run_heads),
                         running.eq(1)]
        with m.Elif(running & (to_write == 0)):
            m.d.sync += running.eq(0)
        return m
