"""Cycle model of the SD linear layer (rtl/smartdeal/linear.py), from the parameters, the
layer's shape and where its Ce nonzeros are (the decoder's symbols), and M.

A run: `start`, then (unless the layer was checked since the host wrote it) the check
phase, the decoder parsing the whole stream; then the compute phase: the decoder fills the
tile buffer one output tile (array_cols rows) a bank while the MAC array takes, for each
output tile, T = ceil(M / array_rows) token tiles of L beats, a beat a cycle; a token
tile starts no sooner than array_rows + pe_latency + TILE_TURN cycles after the one
before (the array copies a tile's sums pe_latency cycles after its last beat and drains
its array_rows result rows, one a cycle, before it takes the next tile's sums), so a
layer shorter than that is drain-bound. The decoder takes a block's B in a cycle and
then up to R rows a cycle, and at most a word (P symbols) a cycle from the
buffer; it waits while both banks are full. The constants are the RTL's latencies;
tests/test_smartdeal_engine.py holds the model against RTL simulation.
"""

import math
from dataclasses import dataclass

from .. import CycleEstimate
from ...spec.fields import READER_LATENCY
from ...spec.numerics import REQUANT_LATENCY
from ...golden.smartdeal.format import BASIS
from .spec import SmartDealParams

ROW_SYMBOLS_MAX = 4    # a Ce row's mask and at most 3 codes (the parser waits for 4k)
# Fitted to the RTL (names say what they stand for).
RUN_TURN = 2           # IDLE -> phase start, and DONE
PHASE_START = 1        # the phase's start state (the decoder's reset)
FIRST_WORD = READER_LATENCY + 1   # the decoder's start -> its first word (reader, skid)
HEADER = 5             # header words, one a cycle, then its size product ...
HEADER_CHECK = 3       # ... and the checks before the first block (two stages of the
                       # product's bound check: rtl/smartdeal/parser.py)
CHECK_TAIL = 2         # the last row -> `done` (the end-of-stream checks)
WRITE_TO_READ = 3      # a tile's last beat written -> its first read issued (full flag)
DRAIN = 9              # the last beat issued -> the first row of the last tile written
                       # (readers, array, drain), beyond the array's result latency
                       # (drain_latency); its array_rows rows then one a cycle
TILE_TURN = 1          # a token tile's start -> the next's, beyond its array_rows rows
                       # and the array's PE latency (its sums reach the shadow registers)
BANK_SLACK = 2         # cycles of a bank wait the decoder's output skid buffer absorbs
BITOP_PASS = 4         # bit-op: a token tile's pass beyond the parser's
BITOP_DRAIN = 5        # bit-op: the last pass -> the last result written, beyond the stages
                       # that depend on the parameters and the requantizer (bitop_drain)


@dataclass(frozen=True)
class Layer:
    """What the model needs of a packed layer: its header's sizes and the symbols of each
    Ce row (its mask and codes: 1 + its nonzeros), in stream order."""
    outputs: int
    length: int
    block_rows: int
    blocks_per_output: int
    exponent_bits: int
    row_symbols: tuple

    @classmethod
    def of(cls, sd):
        """The Layer of SmartDealWeights."""
        h = sd.header
        sizes = 1 + (sd.ce != 0).sum(dim=-1).reshape(-1)
        return cls(h.outputs, h.length, h.block_rows, h.blocks_per_output, h.exponent_bits,
                   tuple(int(n) for n in sizes))


def decode_times(params, layer, block_gap=0):
    """The cycle (from the decoder's start) at which the parser emits each output row's
    last beat when its output never stalls: a cycle-by-cycle account of its symbol queue
    (rtl/smartdeal/parser.py, docs/smartdeal.md "Timing, cycle by cycle"): a word (P
    symbols) taken a cycle while the queue has room for it, a block's B a word's worth of
    symbols a cycle, a group of k = min(R, rows left in the block) rows when 4k symbols are
    queued (or, at the stream's end, when they fit). `block_gap`: the fewest cycles between
    the beats that end two blocks (the bit-op's ·B takes 9/P cycles a block)."""
    from ...golden.smartdeal.format import basis_symbols, symbols_per_word
    R, P = params.rows_per_cycle, symbols_per_word(layer.exponent_bits)
    NB = basis_symbols(layer.exponent_bits)
    depth = max(P, ROW_SYMBOLS_MAX * R) + P + (P - 1 if R > 1 else 0)
    chunks = [P] * (NB // P) + ([NB % P] if NB % P else [])     # B goes a word's worth a cycle
    blocks = layer.outputs * layer.blocks_per_output
    words = math.ceil((blocks * NB + sum(layer.row_symbols)) / P)
    state = {"t": FIRST_WORD + HEADER + HEADER_CHECK + layer.blocks_per_output.bit_length(),
             "count": 0, "taken": 0}

    def until(ready, size, earliest=0):
        """Cycles until `ready(count, input done)` (and the cycle is `earliest` or later);
        then `size` symbols leave."""
        while True:
            take = state["taken"] < words and state["count"] <= depth - P
            go = ready(state["count"], state["taken"] == words) and state["t"] >= earliest
            state["count"] += P * take - (size if go else 0)
            state["taken"] += take
            state["t"] += 1
            if go:
                return

    sizes, position, out = layer.row_symbols, 0, []
    block_end = -block_gap
    for _output in range(layer.outputs):
        for _block in range(layer.blocks_per_output):
            for chunk in chunks:
                until(lambda count, done, chunk=chunk: count >= chunk, chunk)
            left = layer.block_rows
            while left:
                k = min(R, left)
                group = sum(sizes[position:position + k])
                until(lambda count, done, k=k, group=group:
                      count >= ROW_SYMBOLS_MAX * k or (done and count >= group), group,
                      block_end + block_gap if left == k else 0)
                position += k
                left -= k
            block_end = state["t"] - 1
        out.append(state["t"])
    return out


def check_phase(params, layer):
    return PHASE_START + decode_times(params, layer)[-1] + CHECK_TAIL


def compute_phase(params, layer, tokens):
    """Cycles of the compute phase for M = `tokens`: the decoder's tiles against the array's
    beats, with two banks; each token tile L beats, array_rows + pe_latency + TILE_TURN
    cycles at least."""
    p = params
    cols, rows = p.array_cols, p.array_rows
    pe_latency = p.array().pe_latency
    token_tiles = math.ceil(tokens / rows)
    rows_done = decode_times(p, layer)
    tiles = math.ceil(layer.outputs / cols)
    issue_end = []                       # the cycle each output tile's last beat is issued
    shift = 0                            # how late the decoder runs (bank full)
    start = end = None                   # the last token tile's first beat, its end
    for u in range(tiles):
        last_row = min(layer.outputs, (u + 1) * cols) - 1
        if u >= 2:
            # its bank frees when tile u-2 has been issued: the decoder waits for that (the
            # beats it holds meanwhile absorb BANK_SLACK cycles of the wait)
            ready_at = rows_done[u * cols - 1] + shift
            shift += max(0, issue_end[u - 2] - ready_at - BANK_SLACK)
        written = rows_done[last_row] + shift
        for t in range(token_tiles):
            earliest = written + WRITE_TO_READ if t == 0 else 0
            if start is not None:
                earliest = max(earliest, end, start + rows + pe_latency + TILE_TURN)
            start, end = earliest, earliest + layer.length
        issue_end.append(end)
    return PHASE_START + issue_end[-1] + drain_latency(params) + rows - 1


def drain_latency(params):
    """The last beat issued -> the first row of the last tile written (rebuild): DRAIN and
    the MAC array's result latency (its PEs, drain and requantizers)."""
    return DRAIN + params.array().result_latency


def bitop_drain(params):
    """Cycles from the last pass to the last result written (bit-op): BITOP_DRAIN and the
    requantizer's REQUANT_LATENCY, one more
    for R > 1 (ShiftAddLanes' sum over the beat's rows), the last block's 9/P groups of
    products and the adder levels that sum a group's P products (0, 1, 2 for P = 1, 3, 9:
    rtl/smartdeal/bitop_lanes.py)."""
    P = params.bitop_multipliers
    groups = math.ceil(BASIS * BASIS / P)
    levels = {1: 0, 3: 1, 9: 2}[P]
    return BITOP_DRAIN + REQUANT_LATENCY + (params.rows_per_cycle > 1) + groups + levels


def bitop_phase(params, layer, tokens):
    """Cycles of the bit-op computation (rtl/smartdeal/bitop.py) for M = `tokens`: a pass of
    the parser over the stream per token tile (array_rows tokens in lanes), the shifts and
    adds keeping up with it, then the last output's ·B and requantizer."""
    token_tiles = math.ceil(tokens / params.array_rows)
    gap = math.ceil(BASIS * BASIS / params.bitop_multipliers)
    return PHASE_START + token_tiles * (decode_times(params, layer, gap)[-1] + BITOP_PASS) \
        + bitop_drain(params)


def cycles(params: SmartDealParams, layer, tokens, *, checked=False):
    """Cycles of one run of `layer` (a Layer) over `tokens` rows; `checked`: the layer was
    checked by an earlier run and not written since (no check phase)."""
    if not 1 <= tokens <= params.max_tokens:
        raise ValueError(f"tokens must be between 1 and {params.max_tokens}, not {tokens!r}")
    compute = compute_phase if params.impl == "rebuild" else bitop_phase
    total = RUN_TURN + compute(params, layer, tokens)
    if not checked:
        total += check_phase(params, layer)
    return total


def estimate(params: SmartDealParams, outputs: int = 96, inputs: int = 48, tokens: int = 17,
             seed: int = 0, checked: bool = True) -> CycleEstimate:
    """The estimate for a random layer (outputs x inputs, celine.sim.smartdeal_cases.
    random_layer) over `tokens` rows, a run after the layer was checked (`checked`)."""
    from ...sim.smartdeal_cases import random_layer
    sd = random_layer(outputs, inputs, seed=seed, exponent_bits=params.exponent_bits)
    layer = Layer.of(sd)
    total = cycles(params, layer, tokens, checked=checked)
    array = params.array()
    useful = tokens * outputs * inputs
    return CycleEstimate(total, useful, array.rows * array.cols,
                         {"check_cycles": check_phase(params, layer),
                          "ideal_cycles": math.ceil(tokens / array.rows)
                          * math.ceil(outputs / array.cols) * inputs})
