"""The SmartDeal engine in the golden shell (docs/smartdeal.md, "The engine in the shell"):
what a RUN computes from the `weights`, `act` and `result` buffers, bit for bit."""

import math

import torch

from ...engines.smartdeal.spec import ACT_BITS, Errors, SmartDealParams, buffers, registers
from ...spec.lanes import pack_lanes, unpack_lanes
from ..quant import requantize
from ..shell import EngineModel, RunResult
from .format import HEADER_WORDS, FormatError, unpack

__all__ = ["SmartDealEngineModel", "check_layer", "layer_words"]

LENGTH_WORD = 4             # the header word that holds the layer's length in words


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
    check_layer's), take M = `tokens` activation rows from `act` (token tile t, step k at
    word t·max_reduction + k, lane i = token t·array_rows + i), compute
    y = x · W^T over the layer's L inputs with W the int8 weights the decoder rebuilds
    (impl "rebuild": integer.weights_int8) or the exact rebuilt weights (impl "bitop":
    integer.rebuild_int, which the bit-op datapath computes with), requantize y to int8
    when the `requant` register's enable bit is set, and write it to `result`: output tile
    u, token tile t, row r at word (u·T + t)·array_rows + r with T = ceil(M/array_rows),
    lane j = output u·array_cols + j. Tokens past M and outputs past N read 0. Any error:
    nothing is written. `cycles` is the ideal count (one beat a tile step)."""

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
        array = p.array()
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
        rows, cols, length = array.rows, array.cols, header.length
        token_tiles = math.ceil(tokens / rows)
        act = buffers["act"]
        x = torch.zeros(token_tiles * rows, length, dtype=torch.int64)
        for t in range(token_tiles):
            for k in range(length):
                lanes = unpack_lanes(act.words[t * p.max_reduction + k], array.act_lanes,
                                     ACT_BITS)
                x[t * rows:(t + 1) * rows, k] = torch.tensor(lanes[:rows])
        x[tokens:] = 0
        y = x @ weights.T
        word = fields["requant"]
        if word["enable"]:
            y = requantize(y, word["multiplier"], word["shift"], 8)
        output_tiles = math.ceil(header.outputs / cols)
        y = torch.nn.functional.pad(y, (0, output_tiles * cols - header.outputs))
        writes = {}
        for u in range(output_tiles):
            for t in range(token_tiles):
                for r in range(rows):
                    lanes = y[t * rows + r, u * cols:(u + 1) * cols].tolist()
                    lanes += [0] * (array.weight_lanes - cols)
                    writes[(u * token_tiles + t) * rows + r] = pack_lanes(lanes,
                                                                          array.result_width)
        cycles = output_tiles * token_tiles * length
        return RunResult(writes={"result": writes}, cycles=cycles, result_words=len(writes))
