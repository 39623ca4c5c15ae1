"""The SmartDeal engine in the golden shell (docs/smartdeal.md, "The engine in the shell"):
what a RUN computes from the `weights`, `act` and `result` buffers, bit for bit."""

import math

import torch

from ...engines.smartdeal.spec import (ACT_BITS, Errors, SmartDealParams, act_place, buffers,
                                       registers, result_place)
from ...spec.lanes import pack_lanes, unpack_lanes
from ..quant import requantize
from ..shell import EngineModel, RunResult
from .format import HEADER_WORDS, LENGTH_WORD, FormatError, unpack

__all__ = ["SmartDealEngineModel", "check_layer", "layer_words"]



def layer_words(words):
    """The packed layer at the start of the `weights` buffer's words: as many as its header's
    length word says (all of them when it says more, so that unpack reports the case)."""
    if len(words) <= LENGTH_WORD:
        return list(words)
    length = words[LENGTH_WORD]
    return list(words[:length]) if HEADER_WORDS <= length <= len(words) else list(words)


def check_layer(params, header):
    """The Errors flag of a well-formed layer this engine cannot run (0 if it can): a
    different exponent width or a weight multiplier other than 1 (BAD_HEADER: the decoder
    takes hardware-form layers only), a layer beyond max_inputs, max_outputs or
    max_block_rows (SHAPE)."""
    p = params
    if header.exponent_bits != p.exponent_bits or header.weight_mult != 1:
        return Errors.BAD_HEADER
    if header.length > p.max_inputs or header.outputs > p.max_outputs or \
            header.block_rows > p.max_block_rows:
        return Errors.SHAPE
    return Errors(0)


class SmartDealEngineModel(EngineModel):
    """A RUN: check the packed layer in `weights` (Errors of its format.FormatError kind, or
    check_layer's), take M = `tokens` activation rows from `act`, compute y = x · W^T over
    the layer's L inputs with W the int8 weights the decoder rebuilds (impl "rebuild":
    integer.weights_int8) or the exact rebuilt weights (impl "bitop": integer.rebuild_int;
    the bit-op datapath's sums x·Ce·B are the same integers, integer.linear_bitop_int),
    requantize y to int8 when the `requant` register's enable bit is set, and write it to
    `result`. The words and lanes of both buffers are those of the impl (spec.buffers:
    act_place, result_place); the run writes the result_count words from word 0, tokens
    past M (in the last token tile) and lanes past N as 0. Any error: nothing is written.
    `cycles` is the ideal count: a beat a tile step (rebuild: output tiles x token tiles x
    L), a beat of R Ce rows a cycle (bitop: token tiles x N x blocks x ceil(m0/R))."""

    name = "smartdeal"

    def __init__(self, params):
        if not isinstance(params, SmartDealParams):
            raise TypeError(f"params must be a SmartDealParams, not {params!r}")
        self.params = params
        self.buffer_specs = buffers(params)
        self.register_map = registers(params)

    def run(self, registers, buffers):
        from .hardware import SmartDealWeights
        from .integer import rebuild_int, weights_int8
        p = self.params
        fields = {name: self.register_map[name].unpack(value)
                  for name, value in registers.items()}
        tokens = fields["tokens"]["tokens"]
        if not 1 <= tokens <= p.max_tokens:
            return RunResult(errors=int(Errors.TOKENS))
        try:
            header, basis, ce = unpack(layer_words(buffers["weights"].words))
        except FormatError as error:
            return RunResult(errors=int(Errors.of_format(error.kind)))
        problem = check_layer(p, header)
        if problem:
            return RunResult(errors=int(problem))
        sd = SmartDealWeights(header, (header.outputs, header.length),
                              torch.tensor(basis, dtype=torch.int64),
                              torch.tensor(ce, dtype=torch.int64))
        weights = weights_int8(sd) if p.impl == "rebuild" else rebuild_int(sd)
        weights = weights.reshape(header.outputs, header.length)
        rows, outputs, length = p.array_rows, header.outputs, header.length
        token_tiles = math.ceil(tokens / rows)
        act = buffers["act"]
        lanes = {}
        x = torch.zeros(token_tiles * rows, length, dtype=torch.int64)
        for m in range(tokens):
            for k in range(length):
                word, lane = act_place(p, m, k)
                if word not in lanes:
                    lanes[word] = unpack_lanes(act.words[word], p.act_lanes, ACT_BITS)
                x[m, k] = lanes[word][lane]
        y = x @ weights.T
        word = fields["requant"]
        if word["enable"]:
            y = requantize(y, word["multiplier"], word["shift"], 8)
        words = {}
        for m in range(token_tiles * rows):
            for n in range(outputs):
                address, lane = result_place(p, m, n, tokens, outputs)
                words.setdefault(address, [0] * p.result_lanes)[lane] = int(y[m, n])
        writes = {address: pack_lanes(values, p.result_width)
                  for address, values in sorted(words.items())}
        if p.impl == "rebuild":
            cycles = math.ceil(outputs / p.array_cols) * token_tiles * length
        else:
            cycles = token_tiles * outputs * header.blocks_per_output \
                * math.ceil(header.block_rows / p.rows_per_cycle)
        return RunResult(writes={"result": writes}, cycles=cycles, result_words=len(writes))
