"""The run of a SmartDeal engine core, common to both implementations (SdLinear, "rebuild";
SdBitop, "bitop"): the phases, the check-once logic and the packed words streamed from the
`weights` buffer to the decoder (docs/smartdeal.md, "The hardware")."""

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...engines.smartdeal.spec import Errors, SmartDealParams, buffers
from ...golden.smartdeal.format import ERRORS as FORMAT_ERRORS, LENGTH_WORD, WORD_BITS
from ..common.buffer_reader import BufferReader
from ..shell.contract import CYCLE_BITS, ERROR_BITS, buffer_port_signature
from .layouts import errors_layout

__all__ = ["SdRun"]


class SdRun(wiring.Component):
    """The sequencing of a run (`start`; `tokens` stable until `busy` falls):

    1. M = `tokens` outside 1 .. max_tokens: Errors.TOKENS, nothing runs.
    2. Check, unless the weights were checked since the host last wrote them (`checked`,
       cleared by `weights.host_wrote`): the decoder parses the whole stream with
       `check_only` (no beat out). A format error sets its flag (Errors.of_format), a
       layer beyond the parameters Errors.SHAPE, and the run ends; so a run never
       computes with a bad stream, and a checked layer costs nothing more on later runs.
    3. Compute (`computing`) until the core raises `compute_done`; the decoder streams the
       layer once, and once more after each `rewind` pulse of the core (the pass begins
       the next cycle).

    Every pass of the decoder (the check, the compute phase's first and each rewind)
    begins with `restart`, a one-cycle pulse from a register: the caller resets the
    decoder with it (ResetInserter; the words it prefetched for the previous pass are
    flushed with it, as the word reader here is), and `decoder_start` follows a cycle
    later (the decoder's
    `words` input at 0: the count is the header's). The words 0, 1, ... of `weights` go
    to the decoder on `words`; a header whose length in words is beyond the buffer is
    Errors.WRONG_LENGTH (the decoder would wait for words that are not there; the golden
    model's `layer_words` gives unpack the whole buffer then, which says wrong_length).

    `cycles`: the cycles `busy` was high; `run_tokens`: M of the run.
    """

    def __init__(self, params):
        if not isinstance(params, SmartDealParams):
            raise TypeError(f"params must be a SmartDealParams, not {params!r}")
        self.params = params
        self.weights_spec = next(b for b in buffers(params) if b.name == "weights")
        super().__init__({
            "start": In(1),
            "tokens": In(16),
            "busy": Out(1),
            "checked": Out(1),
            "errors": Out(ERROR_BITS),
            "cycles": Out(CYCLE_BITS),
            "run_tokens": Out(range(params.max_tokens + 1)),
            "restart": Out(1),
            "computing": Out(1),
            "rewind": In(1),
            "compute_done": In(1),
            "words": Out(stream.Signature(WORD_BITS)),
            "decoder_start": Out(1),
            "check_only": Out(1),
            "decoder_errors": In(errors_layout()),
            "decoder_done": In(1),
            "weights": Out(buffer_port_signature(self.weights_spec)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        depth = self.weights_spec.depth
        restart = self.restart
        m.d.sync += self.decoder_start.eq(restart)
        reader = BufferReader(data.StructLayout({"data": WORD_BITS}), buffer_depth=depth,
                              buffers=("weights",), queue_depth=6,
                              read_latency=self.weights_spec.read_latency)
        m.submodules.reader = ResetInserter(restart)(reader)

        checking = Signal()                   # the decoder's output is dropped
        computing = self.computing
        with m.If(self.weights.host_wrote):
            m.d.sync += self.checked.eq(0)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        too_long = Signal()
        stream_error = Signal()
        errors = self.decoder_errors
        m.d.comb += stream_error.eq((errors.as_value() != 0) | too_long)

        # `restart` is a register, set as a pass's start state is entered (or a rewind
        # asked for): it resets most of the design.
        m.d.sync += restart.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.cycles.eq(0), self.errors.eq(0),
                                 self.run_tokens.eq(self.tokens)]
                    with m.If((self.tokens == 0) | (self.tokens > p.max_tokens)):
                        m.d.sync += self.errors.eq(Errors.TOKENS)
                        m.next = "DONE"
                    with m.Elif(~self.checked):
                        m.d.sync += restart.eq(1)
                        m.next = "CHECK_START"
                    with m.Else():
                        m.d.sync += restart.eq(1)
                        m.next = "COMPUTE_START"
            with m.State("CHECK_START"):
                m.d.sync += checking.eq(1)
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(stream_error):
                    flags = 0
                    for kind in FORMAT_ERRORS:
                        flags = flags | Mux(getattr(errors, kind), Errors.of_format(kind), 0)
                    flags = flags | Mux(errors.too_large, Errors.SHAPE, 0) \
                        | Mux(too_long, Errors.WRONG_LENGTH, 0)
                    m.d.sync += [self.errors.eq(flags), checking.eq(0)]
                    m.next = "DONE"
                with m.Elif(self.decoder_done):
                    m.d.sync += [checking.eq(0), self.checked.eq(1), restart.eq(1)]
                    m.next = "COMPUTE_START"
            with m.State("COMPUTE_START"):
                m.d.sync += computing.eq(1)
                m.next = "COMPUTE"
            with m.State("COMPUTE"):
                m.d.sync += restart.eq(self.rewind)
                with m.If(self.compute_done):
                    m.d.sync += computing.eq(0)
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"

        # -- weights buffer -> decoder: words 0, 1, ... while a pass runs -------------------
        next_word = Signal(range(depth + 1))
        with m.If(restart):
            m.d.sync += next_word.eq(0)
        m.d.comb += [
            reader.req.valid.eq((checking | computing) & (next_word < depth) & ~restart),
            reader.req.payload.addr.eq(next_word),
            self.weights.addr.eq(reader.mem.weights.addr),
            reader.mem.weights.data.eq(self.weights.data),
            self.words.valid.eq(reader.o.valid),
            self.words.payload.eq(reader.o.payload.data),
            reader.o.ready.eq(self.words.ready),
            self.check_only.eq(~computing),           # sampled with decoder_start
        ]
        with m.If(reader.req.valid & reader.req.ready):
            m.d.sync += next_word.eq(next_word + 1)
        # The header's length word (word LENGTH_WORD) as it goes in.
        taken = Signal(range(depth + 1))
        with m.If(restart):
            m.d.sync += [taken.eq(0), too_long.eq(0)]
        with m.Elif(self.words.valid & self.words.ready):
            m.d.sync += taken.eq(taken + 1)
            with m.If((taken == LENGTH_WORD) & (self.words.payload > depth)):
                m.d.sync += too_long.eq(1)
        return m
