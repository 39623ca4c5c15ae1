"""The SmartDeal engine's declarations: generator parameters, registers, error flags and
shell buffers (docs/smartdeal.md). Dependency-free: the packed format's facts come from
celine.golden.smartdeal.format (plain Python, no torch)."""

import math
from dataclasses import dataclass
from enum import IntFlag

from ...golden.smartdeal import format as sd_format
from ...spec.checks import check_choice, check_int
from ...spec.fields import BufferSpec, Register, RegisterMap
from ...spec.params import Params
from ..mac.spec import IMPLS as ARRAY_IMPLS, REQUANT_REGISTER, MacArrayParams

__all__ = ["IMPLS", "SmartDealParams", "Errors", "registers", "buffers", "ACT_BITS"]

# How a layer computes: rebuild the int8 weights (shifts and adds) and multiply on the MAC
# array, or compute x·Ce with shifts and adds of the activations, then ·B ("bit-op").
IMPLS = ("rebuild", "bitop")
ACT_BITS = 8                 # activations are int8, like the MAC array's operands
PRECISION = 8                # the MAC array runs at 8 bits (int8 weights and activations)


@dataclass(frozen=True, kw_only=True)
class SmartDealParams(Params):
    """A SmartDeal linear layer (docs/smartdeal.md, "The hardware").

    impl: "rebuild" (the SD decoder rebuilds int8 weight rows that feed the MAC array) or
        "bitop" (x·Ce by shifting and adding activations at the nonzero coefficients, then
        ·B on the MAC array).
    exponent_bits E: the Ce code's exponent field (the packed format's E: 2, 3 or 4).
    rows_per_cycle R: Ce rows the decoder rebuilds a cycle (3R weights a cycle): 1, 2 or 4.
    array_rows, array_cols, array_impl: the MAC array (celine/engines/mac): rows x cols PEs
        at 8 bits, "dsp" (one MULT18X18D a PE) or "bricks"; a tile is array_rows tokens x
        array_cols outputs.
    max_inputs: the largest layer length L (inputs per output; a multiple of 3 after
        padding: the reshaped rows); max_outputs: the most outputs N; max_tokens: the most
        activation rows M a run takes.
    max_block_rows: the largest block height m0 the decoder takes (the reference's is 192).
    weight_words: the packed-weight buffer's depth in 32-bit words (one layer, header
        included).
    """

    impl: str = "rebuild"
    exponent_bits: int = 2
    rows_per_cycle: int = 1
    array_rows: int = 4
    array_cols: int = 4
    array_impl: str = "dsp"
    max_inputs: int = 192
    max_outputs: int = 192
    max_tokens: int = 64
    max_block_rows: int = 192
    weight_words: int = 4096

    def __post_init__(self):
        check_choice("impl", self.impl, IMPLS)
        check_int("exponent_bits", self.exponent_bits)
        check_choice("exponent_bits", self.exponent_bits, sd_format.EXPONENT_BITS)
        check_int("rows_per_cycle", self.rows_per_cycle)
        check_choice("rows_per_cycle", self.rows_per_cycle, (1, 2, 4))
        check_int("array_rows", self.array_rows, minimum=1, maximum=16)
        check_int("array_cols", self.array_cols, minimum=1, maximum=16)
        check_choice("array_impl", self.array_impl, ARRAY_IMPLS)
        limit = (1 << sd_format.LENGTH_BITS) - 1
        check_int("max_inputs", self.max_inputs, minimum=sd_format.BASIS, maximum=limit)
        check_int("max_outputs", self.max_outputs, minimum=1, maximum=limit)
        check_int("max_tokens", self.max_tokens, minimum=1, maximum=4096)
        check_int("max_block_rows", self.max_block_rows, minimum=1, maximum=limit)
        check_int("weight_words", self.weight_words, minimum=sd_format.HEADER_WORDS + 1,
                  maximum=1 << 16)

    # -- derived --------------------------------------------------------------------------

    def array(self):
        """The MAC array's parameters (8-bit only; sums of max_inputs products)."""
        return MacArrayParams(rows=self.array_rows, cols=self.array_cols,
                              impl=self.array_impl, precisions=(PRECISION,),
                              brick_width=2, max_reduction=self.max_reduction)

    @property
    def max_reduction(self):
        """Products a sum adds: the padded length (a multiple of 3)."""
        return sd_format.BASIS * math.ceil(self.max_inputs / sd_format.BASIS)

    @property
    def weights_per_cycle(self):
        return sd_format.BASIS * self.rows_per_cycle

    @property
    def token_tiles(self):
        """Activation tiles of a run of max_tokens rows."""
        return math.ceil(self.max_tokens / self.array_rows)

    @property
    def output_tiles(self):
        return math.ceil(self.max_outputs / self.array_cols)

    def derived(self):
        a = self.array()
        return {"weights_per_cycle": self.weights_per_cycle,
                "max_reduction": self.max_reduction, "result_width": a.result_width,
                "macs_per_cycle_ideal": a.macs_per_cycle_ideal(PRECISION),
                "token_tiles": self.token_tiles, "output_tiles": self.output_tiles}


# -- the engine in the shell ------------------------------------------------------------


def registers(params):
    """The registers, sampled by RUN. The layer's shape comes from the packed weights'
    header (the `weights` buffer)."""
    return RegisterMap([
        Register("tokens", "activation rows M of the run (1 .. max_tokens)", width=16,
                 reset=1),
        REQUANT_REGISTER,
    ])


class Errors(IntFlag):
    """STATUS engine error flags of a run: the packed stream's (one per
    celine.golden.smartdeal.format error kind, the same cases) and the run's. Nothing is
    written when any is set."""
    BAD_HEADER = 0x01
    BAD_CODE = 0x02
    TRUNCATED_BLOCK = 0x04
    WRONG_LENGTH = 0x08
    TOKENS = 0x10          # M outside 1 .. max_tokens
    SHAPE = 0x20           # the layer exceeds max_inputs, max_outputs or max_block_rows

    @classmethod
    def of_format(cls, kind):
        """The flag of a celine.golden.smartdeal.format error kind."""
        return cls[kind.upper()]


def buffers(params):
    """weights (the packed layer, 32-bit words; watched: the engine checks a layer once and
    keeps the verdict until the host writes the buffer again), act (one reduction step of a token tile a word: array_rows int8
    lanes; tile t's step k at t·max_reduction + k) and result (one token of a tile a
    word: array_cols lanes of result_width bits; output tile u, token tile t, row r at
    (u·token_tiles + t)·array_rows + r: the engine decodes an output tile's weights once
    and runs every token tile on them)."""
    p = params
    a = p.array()
    return [
        BufferSpec("weights", sd_format.WORD_BITS, p.weight_words, True, watched=True),
        BufferSpec("act", a.act_lanes * ACT_BITS, p.token_tiles * p.max_reduction, True),
        BufferSpec("result", a.weight_lanes * a.result_width,
                   p.token_tiles * p.array_rows * p.output_tiles, False),
    ]
