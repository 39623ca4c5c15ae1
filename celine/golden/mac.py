"""Bit-exact model of the precision-scalable MAC array (rtl/mac), and its tiling of a matmul.

Everything is int64 torch tensors. A tile at precision p consumes K beats of activation
lanes and weight lanes and yields tile_rows(p) output rows of weight_lanes lanes:
    out[m][n] = sum_k op_p(act[k][m]) * op_p(weight[k][n])   for n < tile_cols(p), else 0
with op_p the operand reduction of golden/quant.py (p <= 8) or the 16-bit lane (p = 16),
each sum wrapped to the width of the accumulator slot that holds it, then optionally
requantized to int8.
"""

from dataclasses import dataclass

import torch

from ..engines.mac.spec import (DEFAULT_OPERAND_DEPTH, DEFAULT_RESULT_DEPTH, LFSR_WIDTH, Errors,
                                buffers, registers)
from .lfsr import LFSR
from .quant import reduce_precision, requantize, wrap
from ..spec.lanes import pack_lanes, unpack_lanes
from .shell import EngineModel, RunResult


@dataclass(frozen=True)
class Requant:
    """Runtime output setting: int8 = clamp((x * multiplier + 2^(shift-1)) >> shift)."""
    enable: bool = False
    multiplier: int = 1
    shift: int = 0


def operands(lanes, precision):
    """The p-bit operands that lane values supply (see rtl/mac/operand.py)."""
    lanes = torch.as_tensor(lanes, dtype=torch.int64)
    if precision == 16:
        return wrap(lanes, 16)
    return reduce_precision(lanes, precision)


class MacArrayModel:
    """Replays a MacArray tile by tile, including its Random Precision Switch LFSR."""

    def __init__(self, params):
        self.params = params
        self.lfsr = LFSR(width=LFSR_WIDTH, seed=params.lfsr_seed)

    def tile_precision(self, precision=None, *, rps=False):
        """The precision the next tile runs at; with rps, draw it (advancing the LFSR)."""
        if rps:
            candidates = self.params.rps_candidates
            return candidates[self.lfsr.draw(len(candidates))]
        if precision not in self.params.precisions:
            raise ValueError(f"precision must be one of {self.params.precisions}, not {precision!r}")
        return precision

    def tile(self, act, weight, precision, requant=Requant()):
        """Output rows of one tile. act: (K, act_lanes), weight: (K, weight_lanes)."""
        p = self.params
        act = torch.as_tensor(act, dtype=torch.int64)
        weight = torch.as_tensor(weight, dtype=torch.int64)
        if act.ndim != 2 or act.shape[1] != p.act_lanes or act.shape[0] < 1:
            raise ValueError(f"act must be K x {p.act_lanes} with K >= 1, not {tuple(act.shape)}")
        if weight.shape != (act.shape[0], p.weight_lanes):
            raise ValueError(f"weight must be {act.shape[0]} x {p.weight_lanes}, "
                             f"not {tuple(weight.shape)}")
        rows, cols = p.tile_rows(precision), p.tile_cols(precision)
        sums = operands(act[:, :rows], precision).T @ operands(weight[:, :cols], precision)
        widths = torch.tensor([[p.slot_width(m // p.rows, n // p.cols) for n in range(cols)]
                               for m in range(rows)], dtype=torch.int64)
        out = torch.zeros(rows, p.weight_lanes, dtype=torch.int64)
        out[:, :cols] = wrap(sums, widths)
        if requant.enable:
            out[:, :cols] = requantize(out[:, :cols], requant.multiplier, requant.shift)
        return out


def reference_matmul(a, w, precision):
    """A (M x K) @ W (K x N) at precision p from stored 8-bit (or 16-bit) values."""
    return operands(a, precision) @ operands(w, precision)


def tile_matmul(a, w, precision, params):
    """Cut A (M x K) @ W (K x N) into array tiles.

    Yields (m0, n0, act_beats, weight_beats): beat k of a tile carries A[m0:m0+R, k] on
    the activation lanes and W[k, n0:n0+C] on the weight lanes (zero padded), R x C being
    the tile shape at `precision`. Results of the tile are rows m0.. and columns n0.. of
    the product (see `assemble`).
    """
    a = torch.as_tensor(a, dtype=torch.int64)
    w = torch.as_tensor(w, dtype=torch.int64)
    rows, cols = params.tile_rows(precision), params.tile_cols(precision)
    size_m, size_k = a.shape
    size_n = w.shape[1]
    for m0 in range(0, size_m, rows):
        for n0 in range(0, size_n, cols):
            act = torch.zeros(size_k, params.act_lanes, dtype=torch.int64)
            weight = torch.zeros(size_k, params.weight_lanes, dtype=torch.int64)
            block_a = a[m0:m0 + rows, :].T
            block_w = w[:, n0:n0 + cols]
            act[:, :block_a.shape[1]] = block_a
            weight[:, :block_w.shape[1]] = block_w
            yield m0, n0, act, weight


def assemble(size_m, size_n, tiles, precision, params):
    """Place tile outputs [(m0, n0, rows_out)] into an M x N result."""
    out = torch.zeros(size_m, size_n, dtype=torch.int64)
    cols = params.tile_cols(precision)
    for m0, n0, rows_out in tiles:
        block = torch.as_tensor(rows_out, dtype=torch.int64)
        height = min(block.shape[0], size_m - m0)
        width = min(cols, size_n - n0)
        out[m0:m0 + height, n0:n0 + width] = block[:height, :width]
    return out


# -- the MAC array in the shell ----------------------------------------------------------

class MacEngineModel(EngineModel):
    """The MAC array engine in the shell (docs/protocol.md, "The MAC array engine"): a RUN
    computes `tiles` tiles of `depth` beats from act/weight and writes the output rows to
    `result`. ``cycles`` is an estimate (K beats per tile, times the passes at its
    precision); the RTL counts real cycles. With `grid_cols` C >= 1, tile t pairs act
    block t // C with weight block t % C from `weight_base` on. Not defined by the
    protocol, so not to be relied on: an address beyond a buffer wraps modulo its depth. A tile
    with an unsupported ``precision`` register runs at the largest precision (as the array
    does) and flags Errors.PRECISION; result rows past the buffer are dropped
    (Errors.OVERFLOW)."""

    name = "mac"

    def __init__(self, params, *, operand_depth=DEFAULT_OPERAND_DEPTH,
                 result_depth=DEFAULT_RESULT_DEPTH):
        self.params = params
        self.buffer_specs = buffers(params, operand_depth=operand_depth,
                                    result_depth=result_depth)
        self.register_map = registers(params)
        self.array = MacArrayModel(params)

    def run(self, registers, buffers):
        p = self.params
        fields = {name: self.register_map[name].unpack(value)
                  for name, value in registers.items()}
        depth, tiles = fields["depth"]["depth"], fields["tiles"]["tiles"]
        grid_cols = fields["grid_cols"]["grid_cols"]
        weight_base = fields["weight_base"]["weight_base"]
        rps = bool(fields["rps_enable"]["rps_enable"])
        word = fields["requant"]
        requant = Requant(enable=bool(word["enable"]), multiplier=word["multiplier"],
                          shift=word["shift"])
        act, weight, result = buffers["act"], buffers["weight"], buffers["result"]
        rows_out, cycles, errors = [], 0, Errors(0)
        for tile in range(tiles if depth else 0):
            if rps:
                precision = self.array.tile_precision(rps=True)
            elif registers["precision"] in p.precisions:
                precision = registers["precision"]
            else:
                errors |= Errors.PRECISION
                precision = max(p.precisions)
            act_block, weight_start = tile, tile * depth
            if grid_cols:                               # the grid (docs/protocol.md)
                act_block, weight_start = tile // grid_cols, \
                    weight_base + (tile % grid_cols) * depth
            act_lanes = [unpack_lanes(act.words[(act_block * depth + k) % act.depth],
                                      p.act_lanes, p.operand_width) for k in range(depth)]
            weight_lanes = [unpack_lanes(weight.words[(weight_start + k) % (1 << 16)
                                                      % weight.depth],
                                         p.weight_lanes, p.operand_width) for k in range(depth)]
            out = self.array.tile(torch.tensor(act_lanes), torch.tensor(weight_lanes),
                                  precision, requant)
            rows_out += [pack_lanes(row, p.result_width) for row in out.tolist()]
            cycles += depth * p.passes(precision)
        if len(rows_out) > result.depth:
            errors |= Errors.OVERFLOW
            rows_out = rows_out[:result.depth]
        return RunResult(writes={"result": dict(enumerate(rows_out))}, cycles=cycles,
                         result_words=len(rows_out), errors=int(errors))
