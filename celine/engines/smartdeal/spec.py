"""The SmartDeal engine's declarations: generator parameters, registers, error flags and
shell buffers (docs/smartdeal.md). Dependency-free: the packed format's facts come from
celine.golden.smartdeal.format (plain Python, no torch)."""

import functools
import math
from dataclasses import dataclass
from enum import IntFlag

from ...golden.smartdeal import format as sd_format
from ...spec.checks import check_choice, check_int
from ...spec.fields import BufferSpec, Register, RegisterMap
from ...spec.lanes import pack_lanes, unpack_lanes
from ...spec.params import Params
from ...spec.widths import signed_width
from ..mac.spec import IMPLS as ARRAY_IMPLS, REQUANT_REGISTER, MacArrayParams

__all__ = ["IMPLS", "SmartDealParams", "Errors", "registers", "buffers", "ACT_BITS",
           "BITOP_MULTIPLIERS", "act_place", "act_span", "pack_act", "result_place",
           "result_count", "unpack_result"]

# How a layer computes: rebuild the int8 weights (shifts and adds) and multiply on the MAC
# array, or compute x·Ce with shifts and adds of the activations, then ·B ("bit-op").
IMPLS = ("rebuild", "bitop")
ACT_BITS = 8                 # activations are int8, like the MAC array's operands
PRECISION = 8                # the MAC array runs at 8 bits (int8 weights and activations)
# impl "bitop": multipliers per token lane for the ·B products (a block's 9 in 9/that cycles)
BITOP_MULTIPLIERS = (1, 3, 9)


@dataclass(frozen=True, kw_only=True)
class SmartDealParams(Params):
    """A SmartDeal linear layer (docs/smartdeal.md, "The hardware").

    impl: "rebuild" (the SD decoder rebuilds int8 weight rows that feed the MAC array) or
        "bitop" (x·Ce by shifting and adding activations at the nonzero coefficients of
        array_rows tokens at once, then ·B: exact sums x·w_int, no weight rebuilt; no MAC
        array).
    exponent_bits E: the Ce code's exponent field (the packed format's E: 2, 3 or 4).
    rows_per_cycle R: Ce rows the decoder rebuilds (rebuild) or the shift-and-add lanes
        take (bitop) a cycle (3R weights a cycle): 1, 2 or 4.
    array_rows, array_cols, array_impl: the MAC array (celine/engines/mac): rows x cols PEs
        at 8 bits, "dsp" (one MULT18X18D a PE) or "bricks"; a tile is array_rows tokens x
        array_cols outputs. impl "bitop" takes array_rows tokens at once (its token lanes)
        and has no use for array_cols and array_impl.
    bitop_multipliers: impl "bitop": multipliers per token lane for the ·B products (1, 3
        or 9): a block's 9 products take 9/that cycles (the lanes wait when a block is
        shorter).
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
    bitop_multipliers: int = 1

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
        check_int("bitop_multipliers", self.bitop_multipliers)
        check_choice("bitop_multipliers", self.bitop_multipliers, BITOP_MULTIPLIERS)

    # -- derived --------------------------------------------------------------------------

    def array(self):
        """The MAC array's parameters (8-bit only; sums of max_inputs products)."""
        return _array(self.array_rows, self.array_cols, self.array_impl, self.max_reduction)

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

    # -- the buffers' words (both layouts: `buffers`) ------------------------------------

    @property
    def act_steps(self):
        """Reduction steps k in an `act` word: 1 (rebuild), 3R (bitop: R Ce rows)."""
        return 1 if self.impl == "rebuild" else sd_format.BASIS * self.rows_per_cycle

    @property
    def act_lanes(self):
        """int8 lanes of an `act` word: array_rows tokens x act_steps."""
        return self.array().act_lanes * self.act_steps

    @property
    def act_tile_words(self):
        """`act` words of a token tile: its max_reduction steps, act_steps a word."""
        return math.ceil(self.max_reduction / self.act_steps)

    @property
    def result_lanes(self):
        """Lanes of a `result` word: array_cols outputs (rebuild), array_rows tokens
        (bitop)."""
        return self.array().weight_lanes if self.impl == "rebuild" else self.array_rows

    @property
    def result_width(self):
        """Bits of a `result` lane: the MAC array's (rebuild); for bitop, int32 or wider,
        as wide as the exact sum x·w_int can be: max_reduction products of an int8
        activation and a rebuilt weight (integer.rebuilt_width: |w_int| <= 3·128·2^(2^E-1))."""
        if self.impl == "rebuild":
            return self.array().result_width
        weight = sd_format.BASIS * (1 << sd_format.BASIS_BITS - 1) \
            * (1 << (1 << self.exponent_bits) - 1)
        largest = self.max_reduction * (1 << ACT_BITS - 1) * weight
        return max(32, signed_width(-largest, largest))

    def derived(self):
        a = self.array()
        return {"weights_per_cycle": self.weights_per_cycle,
                "max_reduction": self.max_reduction, "result_width": self.result_width,
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
    """The shell buffers. `weights`: the packed layer, 32-bit words; watched: the engine
    checks a layer once and keeps the verdict until the host writes the buffer again.

    `act`, the activations x (M x L int8) in token tiles of array_rows tokens (token m in
    tile t = m div array_rows, lane i = m mod array_rows), each tile act_tile_words words
    from t·act_tile_words (act_place):
    - rebuild: one reduction step a word: x[m][k] at word t·max_reduction + k, lane i
      (array_rows lanes), the beat the MAC array takes;
    - bitop: R Ce rows (3R steps) a word, what the shift-and-add lanes take a cycle:
      x[m][k] at word t·ceil(max_reduction/3R) + k div 3R, lane (k mod 3R)·array_rows + i.
    `result`, y (M x N), written from word 0 in the order the engine finishes it
    (result_place):
    - rebuild: one token of a token tile and an output tile a word (array_cols lanes of
      the MAC array's result_width): y[m][n] at word (u·T + t)·array_rows + i, lane
      n mod array_cols, u = n div array_cols, T = ceil(M/array_rows): the engine decodes an
      output tile's weights once and runs every token tile on them;
    - bitop: one output of a token tile a word (array_rows lanes of result_width bits, as
      wide as the exact sums): y[m][n] at word t·N + n, lane i: the engine streams the
      whole layer once per token tile, output after output.
    Tokens past M (in the last tile) read and write 0."""
    p = params
    return [
        # Both read through BufferReaders, registered in the block RAMs
        # (BufferSpec.read_latency).
        BufferSpec("weights", sd_format.WORD_BITS, p.weight_words, True, watched=True,
                   read_latency=2),
        BufferSpec("act", p.act_lanes * ACT_BITS, p.token_tiles * p.act_tile_words, True,
                   read_latency=2),
        BufferSpec("result", p.result_lanes * p.result_width,
                   p.token_tiles * (p.array_rows * p.output_tiles if p.impl == "rebuild"
                                    else p.max_outputs), False),
    ]


def act_place(params, token, step):
    """(word, lane) of x[token][step] in `act` (buffers)."""
    p = params
    tile, lane = divmod(token, p.array_rows)
    word, position = divmod(step, p.act_steps)
    return tile * p.act_tile_words + word, position * p.array_rows + lane


def act_span(params, length):
    """`act` words a token tile of a layer of `length` inputs uses (from its first)."""
    return math.ceil(length / params.act_steps)


def pack_act(params, x):
    """{word: value} of `act` for activations x (M rows of L int8, nested sequences):
    every word the run reads (act_span of each token tile), 0 in the lanes of tokens past
    M and of steps past L."""
    p = params
    tokens, length = len(x), len(x[0])
    lanes = {}
    for tile in range(math.ceil(tokens / p.array_rows)):
        base = tile * p.act_tile_words
        for word in range(base, base + act_span(p, length)):
            lanes[word] = [0] * p.act_lanes
    for m, row in enumerate(x):
        for k, value in enumerate(row):
            word, lane = act_place(p, m, k)
            lanes[word][lane] = int(value)
    return {word: pack_lanes(values, ACT_BITS) for word, values in lanes.items()}


def result_place(params, token, output, tokens, outputs):
    """(word, lane) of y[token][output] in `result` after a run of M = `tokens` over a
    layer of N = `outputs` (buffers)."""
    p = params
    tile, lane = divmod(token, p.array_rows)
    if p.impl == "rebuild":
        u, j = divmod(output, p.array_cols)
        return (u * math.ceil(tokens / p.array_rows) + tile) * p.array_rows + lane, j
    return tile * outputs + output, lane


def result_count(params, tokens, outputs):
    """`result` words a run of M = `tokens` over N = `outputs` writes (from word 0)."""
    p = params
    tiles = math.ceil(tokens / p.array_rows)
    if p.impl == "rebuild":
        return math.ceil(outputs / p.array_cols) * tiles * p.array_rows
    return tiles * outputs


def unpack_result(params, words, tokens, outputs):
    """y (M rows of N ints) from the `result` words (a sequence or {word: value}) of a
    run of M = `tokens` over N = `outputs`."""
    p = params
    cache = {}
    y = [[0] * outputs for _ in range(tokens)]
    for m in range(tokens):
        for n in range(outputs):
            word, lane = result_place(p, m, n, tokens, outputs)
            if word not in cache:
                cache[word] = unpack_lanes(words[word], p.result_lanes, p.result_width)
            y[m][n] = cache[word][lane]
    return y


@functools.lru_cache(maxsize=64)
def _array(rows, cols, impl, max_reduction):
    """SmartDealParams.array(), made and checked once: the golden model and the host ask
    for it per lane (MacArrayParams is frozen, so one instance serves every caller)."""
    return MacArrayParams(rows=rows, cols=cols, impl=impl, precisions=(PRECISION,),
                          brick_width=2, max_reduction=max_reduction)
