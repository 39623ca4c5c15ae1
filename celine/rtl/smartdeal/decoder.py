"""The SD decoder: packed words of a layer -> int8 weight beats (SdParser, then SdRebuild)."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...golden.smartdeal import format as sd_format
from .layouts import errors_layout, header_layout, weight_beat_layout
from .parser import SdParser, check_decoder_params
from .rebuild import SdRebuild

__all__ = ["SdDecoder"]


class SdDecoder(wiring.Component):
    """Words in (`i`, 32 bits), rebuilt int8 weights out (`o`, layouts.weight_beat_layout:
    3R weights of up to R rows a beat, row-valid bits, the beat flags), the unit the SD
    linear layer uses. docs/smartdeal.md, "The SD decoder".

    Parameters, control (`start`, `words`, `check_only`, `busy`, `done`), `errors`,
    `header` and `header_valid`: as SdParser's (`busy` also covers the rebuild pipeline).
    Bit-exact with celine.golden.smartdeal.integer.weights_int8: output o's weights are the
    rows of its blocks in order, 3 m0 blocks_per_output of them, the first `length` its
    int8 weights and the rest the padding's (what the golden model drops; a consumer pairs
    them with zero activations or skips them).
    """

    def __init__(self, *, exponent_bits=2, rows_per_cycle=1, max_outputs=1024,
                 max_length=1024, max_block_rows=192, max_words=65536):
        try:
            check_decoder_params(exponent_bits, rows_per_cycle, max_outputs, max_length,
                                 max_block_rows, max_words)
        except Exception:
            self._MustUse__silence = True       # no "created but never used" warning
            raise
        self.parser = SdParser(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle,
                               max_outputs=max_outputs, max_length=max_length,
                               max_block_rows=max_block_rows, max_words=max_words)
        self.rebuild = SdRebuild(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle)
        self.exponent_bits, self.rows_per_cycle = exponent_bits, rows_per_cycle
        self.max_outputs, self.max_length = max_outputs, max_length
        self.max_block_rows, self.max_words = max_block_rows, max_words
        super().__init__({
            "i": In(stream.Signature(sd_format.WORD_BITS)),
            "o": Out(stream.Signature(weight_beat_layout(rows_per_cycle))),
            "start": In(1),
            "words": In(range(max_words + 1)),
            "check_only": In(1),
            "busy": Out(1),
            "done": Out(1),
            "errors": Out(errors_layout()),
            "header": Out(header_layout()),
            "header_valid": Out(1),
        })

    @property
    def weights_per_cycle(self):
        return sd_format.BASIS * self.rows_per_cycle

    def elaborate(self, platform):
        m = Module()
        m.submodules.parser = parser = self.parser
        m.submodules.rebuild = rebuild = self.rebuild
        wiring.connect(m, wiring.flipped(self.i), parser.i)
        wiring.connect(m, parser.o, rebuild.i)
        wiring.connect(m, rebuild.o, wiring.flipped(self.o))
        m.d.comb += [
            parser.start.eq(self.start),
            parser.words.eq(self.words),
            parser.check_only.eq(self.check_only),
            rebuild.weight_shift.eq(parser.header.weight_shift),
            self.busy.eq(parser.busy | rebuild.busy),
            self.done.eq(parser.done & ~rebuild.busy),
            self.errors.eq(parser.errors),
            self.header.eq(parser.header),
            self.header_valid.eq(parser.header_valid),
        ]
        return m
