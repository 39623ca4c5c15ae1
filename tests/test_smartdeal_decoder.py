"""The SD decoder (celine/rtl/smartdeal) in the Amaranth simulator, under random idle cycles
on its word input and random backpressure on its output: the parser's rows == the Ce codes
format.unpack reads and its B == the block's basis; the decoder's weights ==
celine.golden.smartdeal.integer.weights_int8 (and the padding's rebuilt weights); real
decompositions of a trained digits ViT, random codes, all-zero blocks, Ce at the clip,
lengths that are not a multiple of 3, the smallest and a large layer; corrupt streams set
the flag of the FormatError kind format.unpack raises for them, emit no beat flagged last,
and the decoder runs the next layer correctly. The decoder's generated Verilog runs the
same layers under cocotb (the generic stream testbench celine/sim/tb/stream_tb.py), its
output payloads == the same expectations packed as the Verilog lays them out."""

import dataclasses
import random
import re

import pytest
import torch
from amaranth.back import rtlil
from amaranth.sim import Simulator

from celine.golden.quant import requantize
from celine.golden.smartdeal import format as fmt
from celine.golden.smartdeal.finetune import smartdeal_vit
from celine.golden.smartdeal.format import FormatError, LayerHeader, unpack
from celine.golden.smartdeal.hardware import (SmartDealWeights, quantize_decomposition,
                                              weight_shift)
from celine.golden.smartdeal.integer import rebuild_blocks_int, rebuilt_width, weights_int8
from celine.rtl.smartdeal import SdDecoder, SdParser, SdRebuild
from celine.rtl.smartdeal.layouts import (ERROR_FLAGS, TOO_LARGE, errors_layout,
                                          header_layout, weight_beat_layout)
from celine.sim.payload import unpack as unpack_payload
from celine.sim.runner import run_cocotb
from celine.sim.smartdeal_cases import SMALL_FINETUNE, SMALL_VIT as SMALL
from celine.sim.smartdeal_cases import random_layer as random_sd_layer

POINTS = [(2, 1), (2, 2), (2, 4), (3, 1), (3, 2), (3, 4)]
MAX_CYCLES = 50_000         # a layer's run longer than this is a hang


# -- the simulation ---------------------------------------------------------------------------

@dataclasses.dataclass
class Run:
    """What one layer's run gave: the beats (dicts), the error flags, the header, and the
    cycles from the start pulse until `done`."""
    beats: list
    errors: dict
    header: dict
    header_valid: int
    cycles: int


def _value(value):
    return unpack_payload(value.shape(), value.as_value().value)


def simulate(dut, layers, *, seed=0, idle=0.3, backpressure=0.3, send=None, waits=None):
    """Run `layers` [(words, count, check_only)] one after another on `dut` (SdParser or
    SdDecoder): `count` is the `words` input (None: len(words)). The words of every layer
    are offered in order with random idle cycles (probability `idle`), the output taken
    with random backpressure. `send`: the words offered (default: every layer's).
    `waits`: {index in `send`: idle cycles before that word is offered}."""
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    beats, runs = [], []
    send = [w for words, _, _ in layers for w in words] if send is None else send

    async def control(ctx):
        for words, count, check_only in layers:
            ctx.set(dut.words, len(words) if count is None else count)
            ctx.set(dut.check_only, check_only)
            ctx.set(dut.start, 1)
            first = len(beats)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
                assert cycles < MAX_CYCLES, "the decoder hangs"
            await ctx.tick()        # the consumer has recorded the last beat
            runs.append(Run(beats[first:], _value(ctx.get(dut.errors)),
                            _value(ctx.get(dut.header)), ctx.get(dut.header_valid), cycles))

    async def producer(ctx):
        for index, word in enumerate(send):
            for _ in range((waits or {}).get(index, 0)):
                await ctx.tick()
            while rng_in.random() < idle:
                await ctx.tick()
            ctx.set(dut.i.payload, word)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while True:
            ready = rng_out.random() >= backpressure
            ctx.set(dut.o.ready, ready)
            _, _, payload, valid = await ctx.tick().sample(dut.o.payload, dut.o.valid)
            if valid and ready:
                beats.append(_value(payload))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(control)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer, background=True)
    sim.run()
    return runs


# -- layers -------------------------------------------------------------------------------------

def make_weights(exponent_bits, basis, ce, *, outputs, length, block_rows, shift=None,
                 kind="linear"):
    """SmartDealWeights of explicit codes (M_w = 1; S_w the hardware form's unless given)."""
    blocks_per_output = -(-length // (3 * block_rows))
    basis = torch.as_tensor(basis, dtype=torch.int64).reshape(-1, 3, 3)
    ce = torch.as_tensor(ce, dtype=torch.int64).reshape(-1, block_rows, 3)
    header = LayerHeader(kind=kind, outputs=outputs, length=length, block_rows=block_rows,
                         blocks_per_output=blocks_per_output, exponent_bits=exponent_bits,
                         weight_mult=1, weight_shift=0)
    sd = SmartDealWeights(header, (outputs, length), basis, ce)
    if shift is None:
        shift = weight_shift(int(rebuild_blocks_int(sd).abs().max()))
    return dataclasses.replace(sd, header=dataclasses.replace(header, weight_shift=shift))


def random_layer(rng, exponent_bits, *, outputs, length, block_rows, density=0.5,
                 zero_blocks=0.0, shift=None):
    """Random codes and bases; a fraction `zero_blocks` of the blocks all zero (Ce and B)."""
    blocks = outputs * -(-length // (3 * block_rows))
    top = 1 << exponent_bits
    ce, basis = [], []
    for _ in range(blocks):
        zero = rng.random() < zero_blocks
        ce.append([[0 if zero or rng.random() >= density
                    else rng.choice((-1, 1)) << rng.randrange(top) for _ in range(3)]
                   for _ in range(block_rows)])
        basis.append([0 if zero else rng.choice((-128, 127, rng.randint(-128, 127)))
                      for _ in range(9)])
    return make_weights(exponent_bits, basis, ce, outputs=outputs, length=length,
                        block_rows=block_rows, shift=shift)


def clip_layer(exponent_bits, *, outputs=2, length=7, block_rows=2):
    """Every coefficient at the clip, -2^(2^E - 1), and B all -128: the largest rebuilt
    magnitude, 3 * 128 * 2^(2^E - 1) (rebuilt_width's bound)."""
    top = (1 << exponent_bits) - 1
    blocks = outputs * -(-length // (3 * block_rows))
    return make_weights(exponent_bits, [[-128] * 9] * blocks,
                        [[[-(1 << top)] * 3] * block_rows] * blocks, outputs=outputs,
                        length=length, block_rows=block_rows)


@pytest.fixture(scope="module")
def real_layers():
    """{name: Decomposition} of the small digits ViT fine-tuned in hardware form."""
    return smartdeal_vit(SMALL, SMALL_FINETUNE).decompositions


# -- expectations ---------------------------------------------------------------------------------

def expected_rows(sd, rows_per_cycle):
    """The parser's beats for `sd`, from format.unpack of its packed words."""
    header, basis, ce = unpack(sd.pack())
    m0, bpo = header.block_rows, header.blocks_per_output
    beats = []
    for block in range(header.blocks):
        for first in range(0, m0, rows_per_cycle):
            rows = list(ce[block][first:first + rows_per_cycle])
            end_block = first + rows_per_cycle >= m0
            end_output = end_block and block % bpo == bpo - 1
            beats.append({"rows": rows + [(0, 0, 0)] * (rows_per_cycle - len(rows)),
                          "valid": (1 << len(rows)) - 1,
                          "basis": [v for row in basis[block] for v in row],
                          "first": int(first == 0), "end_block": int(end_block),
                          "end_output": int(end_output),
                          "last": int(end_output and block == header.blocks - 1)})
    return beats


def rows_of(beat):
    """A parser beat with its rows as integer Ce values (0 or +-2^f)."""
    rows = [tuple(0 if not c["nonzero"] else (-1 if c["sign"] else 1) << c["f"] for c in row)
            for row in beat["rows"]]
    return {**beat, "rows": rows}


def expected_weights(sd, rows_per_cycle):
    """The decoder's beats: the rows' requantize(w_int, 1, S_w), 0 in rows past a block."""
    h = sd.header
    lanes = requantize(rebuild_blocks_int(sd), 1, h.weight_shift, 8)     # (blocks, m0, 3)
    full = lanes.reshape(h.outputs, h.padded)
    assert torch.equal(full[:, :h.length], weights_int8(sd))
    out, block, first = [], 0, 0
    for row_beat in expected_rows(sd, rows_per_cycle):
        count = bin(row_beat["valid"]).count("1")
        weights = lanes[block, first:first + count].flatten().tolist()
        out.append({"weights": weights + [0] * (3 * (rows_per_cycle - count)),
                    "valid": row_beat["valid"],
                    **{name: row_beat[name] for name in ("first", "end_block", "end_output",
                                                          "last")}})
        first += count
        if row_beat["end_block"]:
            block, first = block + 1, 0
    return out


def header_of(sd):
    h = sd.header
    return {"kind": fmt.KINDS.index(h.kind), "outputs": h.outputs, "length": h.length,
            "block_rows": h.block_rows, "blocks_per_output": h.blocks_per_output,
            "weight_shift": h.weight_shift}


NO_ERRORS = {name: 0 for name in ERROR_FLAGS}


def check_good(run, sd, want_beats):
    assert run.errors == NO_ERRORS
    assert run.header_valid == 1 and run.header == header_of(sd)
    assert len(run.beats) == len(want_beats)
    for n, (got, want) in enumerate(zip(run.beats, want_beats)):
        assert got == want, n


# -- parameters ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [SdParser, SdDecoder])
@pytest.mark.parametrize("kwargs, error, message", [
    ({"exponent_bits": 5}, ValueError, "exponent_bits must be 2 or 3 or 4, not 5"),
    ({"exponent_bits": 2.0}, TypeError, "exponent_bits must be an integer, not 2.0"),
    ({"rows_per_cycle": 3}, ValueError, "rows_per_cycle must be 1 or 2 or 4, not 3"),
    ({"rows_per_cycle": True}, TypeError, "rows_per_cycle must be an integer, not True"),
    ({"max_outputs": 0}, ValueError, "max_outputs must be between 1 and 65535, not 0"),
    ({"max_length": 65536}, ValueError, "max_length must be between 1 and 65535, not 65536"),
    ({"max_block_rows": 0}, ValueError, "max_block_rows must be between 1 and 65535, not 0"),
    ({"max_words": 5}, ValueError, "max_words must be between 6 and 4294967295, not 5"),
])
def test_parameter_checks(cls, kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        cls(**kwargs)


def test_rebuilt_width_is_the_golden_one():
    assert [SdRebuild(exponent_bits=e).width for e in (2, 3, 4)] == \
        [rebuilt_width(e) for e in (2, 3, 4)]


def test_rebuild_parameter_checks():
    with pytest.raises(ValueError, match="^rows_per_cycle must be 1 or 2 or 4, not 8$"):
        SdRebuild(rows_per_cycle=8)
    with pytest.raises(ValueError, match="^exponent_bits must be 2 or 3 or 4, not 1$"):
        SdRebuild(exponent_bits=1)


@pytest.mark.parametrize("exponent_bits, rows_per_cycle", [(2, 1), (4, 4)])
def test_no_multiplier(exponent_bits, rows_per_cycle):
    """Shifts and adds only: the decoder's netlist has no multiplication cell."""
    text = rtlil.convert(SdDecoder(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle))
    assert "cell $add" in text and "$mul" not in text


# -- good layers ----------------------------------------------------------------------------------

HAND_WORDS = (0x215D, 0x50001, 0x10002, 0x10001, 8, 0x4030201, 0x201C1814, 0x3943F70)


def test_hand_worked_example():
    """docs/smartdeal.md's example: w_int = (-7, -8, -9), (56, 64, -72); S_w = 1."""
    runs = simulate(SdDecoder(), [(HAND_WORDS, None, 0)])
    assert runs[0].errors == NO_ERRORS
    assert [b["weights"] for b in runs[0].beats] == [[-3, -4, -4], [28, 32, -36]]
    assert [(b["first"], b["end_block"], b["end_output"], b["last"])
            for b in runs[0].beats] == [(1, 0, 0, 0), (0, 1, 1, 1)]


def edge_layers(exponent_bits, rng):
    """The cases every parameter point runs: the smallest layer, a length not a multiple
    of 3, blocks all zero, Ce at the clip, random codes (S_w 0 and beyond the width)."""
    e = exponent_bits
    return [
        random_layer(rng, e, outputs=1, length=1, block_rows=1, density=1.0),   # smallest
        random_layer(rng, e, outputs=3, length=10, block_rows=2, density=0.6),  # 10 = 3k+1
        random_layer(rng, e, outputs=2, length=14, block_rows=5, density=0.3,
                     zero_blocks=0.5),
        random_layer(rng, e, outputs=2, length=9, block_rows=3, density=0.0),  # all zero
        clip_layer(e),
        random_layer(rng, e, outputs=2, length=12, block_rows=4, density=0.9, shift=0),
        random_layer(rng, e, outputs=1, length=15, block_rows=5, density=0.7,
                     shift=rebuilt_width(e) + 3),
        random_layer(rng, e, outputs=3, length=20, block_rows=7, density=0.4),
    ]


@pytest.mark.parametrize("exponent_bits, rows_per_cycle", POINTS)
def test_parser_rows(exponent_bits, rows_per_cycle):
    """Rows == format.unpack's Ce, B == the block's basis, flags and valid bits; several
    layers back to back (the parser restarts), one of them in check_only mode."""
    rng = random.Random(100 * exponent_bits + rows_per_cycle)
    layers = edge_layers(exponent_bits, rng)
    dut = SdParser(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle)
    runs = simulate(dut, [(sd.pack(), None, 0) for sd in layers]
                    + [(layers[-1].pack(), None, 1)], seed=rows_per_cycle)
    for sd, run in zip(layers, runs):
        assert run.errors == NO_ERRORS and run.header == header_of(sd)
        assert [rows_of(b) for b in run.beats] == expected_rows(sd, rows_per_cycle)
    assert runs[-1].beats == [] and runs[-1].errors == NO_ERRORS


@pytest.mark.parametrize("exponent_bits, rows_per_cycle", POINTS)
def test_decoder_weights(exponent_bits, rows_per_cycle):
    """Weights == weights_int8 (and the padding's), bit-exact, on the edge layers."""
    rng = random.Random(200 * exponent_bits + rows_per_cycle)
    layers = edge_layers(exponent_bits, rng)
    dut = SdDecoder(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle)
    runs = simulate(dut, [(sd.pack(), None, 0) for sd in layers], seed=7 + rows_per_cycle)
    for sd, run in zip(layers, runs):
        check_good(run, sd, expected_weights(sd, rows_per_cycle))


@pytest.mark.parametrize("exponent_bits, rows_per_cycle, name", [
    (2, 1, "blocks.0.attn.proj"), (2, 4, "blocks.0.mlp.2"), (3, 2, "head")])
def test_real_layer(real_layers, exponent_bits, rows_per_cycle, name):
    """A layer of the fine-tuned digits ViT in hardware form (E = 3 re-windows it)."""
    sd = quantize_decomposition(real_layers[name], exponent_bits=exponent_bits)
    assert sd.header.weight_mult == 1 and 0 < sd.ce_sparsity < 1
    dut = SdDecoder(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle)
    runs = simulate(dut, [(sd.pack(), None, 0)], idle=0.2, backpressure=0.2)
    check_good(runs[0], sd, expected_weights(sd, rows_per_cycle))


def test_large_layer_and_limits():
    """A layer at the generator's limits (max_outputs, max_length, max_block_rows) decodes;
    one output, length or block height more is too_large (and unpack accepts it)."""
    rng = random.Random(3)
    dut = SdDecoder(exponent_bits=2, rows_per_cycle=4, max_outputs=3, max_length=200,
                    max_block_rows=67)
    at_limit = random_layer(rng, 2, outputs=3, length=200, block_rows=67, density=0.3)
    beyond = [random_layer(rng, 2, outputs=4, length=6, block_rows=2),
              random_layer(rng, 2, outputs=1, length=201, block_rows=67),
              random_layer(rng, 2, outputs=1, length=204, block_rows=68)]
    runs = simulate(dut, [(sd.pack(), None, 0) for sd in [at_limit, *beyond, at_limit]],
                    idle=0.1, backpressure=0.1)
    check_good(runs[0], at_limit, expected_weights(at_limit, 4))
    for sd, run in zip(beyond, runs[1:4]):
        unpack(sd.pack())
        assert run.errors == {**NO_ERRORS, TOO_LARGE: 1} and run.beats == []
    check_good(runs[4], at_limit, expected_weights(at_limit, 4))


def test_count_from_the_header():
    """words = 0: the count is the header's length field (the same weights)."""
    rng = random.Random(4)
    sd = random_layer(rng, 2, outputs=3, length=11, block_rows=2)
    runs = simulate(SdDecoder(rows_per_cycle=2), [(sd.pack(), 0, 0), (sd.pack(), 0, 0)])
    for run in runs:
        check_good(run, sd, expected_weights(sd, 2))


def test_throughput():
    """No idle and no backpressure: R rows a cycle within a block and a cycle per chunk of B
    (a word's worth of symbols) while the words come fast enough; a word a cycle at most.
    Measured on 8 blocks of 16 rows, half the codes nonzero, 58 words: 182, 107 and 77
    cycles at R = 1, 2, 4 (bounds 152, 88 and 58; plus the header, whose size check takes
    two cycles, and the pipeline)."""
    rng = random.Random(5)
    sd = random_layer(rng, 2, outputs=8, length=48, block_rows=16, density=0.5)
    words = sd.pack()
    blocks, m0 = sd.header.blocks, sd.header.block_rows
    for rows_per_cycle, measured in ((1, 182), (2, 107), (4, 77)):
        dut = SdDecoder(rows_per_cycle=rows_per_cycle)
        runs = simulate(dut, [(words, None, 0)], idle=0, backpressure=0)
        bound = max(blocks * (-(-m0 // rows_per_cycle) + len(dut.parser.basis_chunks)),
                    len(words))
        assert runs[0].cycles == measured and measured <= bound + 32, rows_per_cycle


# -- corrupt streams -------------------------------------------------------------------------------

def corrupt(words, index, value):
    words = list(words)
    words[index] = value
    return words


def zero_rows_layer(exponent_bits):
    """One block of 24 all-zero rows (a symbol each) and B all 1."""
    return make_weights(exponent_bits, [[1] * 9], [[[0] * 3] * 24], outputs=1, length=72,
                        block_rows=24)


def corrupt_cases(exponent_bits):
    """The good layer the cases corrupt, and the cases: (name, words, count, the flag:
    unpack's kind, or the decoder's own check's for "weight mult" and "other E")."""
    P, W = fmt.symbols_per_word(exponent_bits), fmt.symbol_bits(exponent_bits)
    rng = random.Random(exponent_bits)
    while True:             # a layer whose last word has padding symbols
        sd = random_layer(rng, exponent_bits, outputs=3, length=10, block_rows=2,
                          density=0.6)
        symbols = sd.header.blocks * (fmt.basis_symbols(exponent_bits) + 2) + sd.nonzeros
        if symbols % P:
            break
    words = list(sd.pack())
    w0, n = words[0], len(words)
    zero_rows = zero_rows_layer(exponent_bits).pack()
    cases = [
        ("magic", corrupt(words, 0, w0 ^ 0x1), None, fmt.BAD_HEADER),
        ("version", corrupt(words, 0, w0 ^ 0x300), None, fmt.BAD_HEADER),
        ("exponent bits", corrupt(words, 0, (w0 & ~0xF000) | 5 << 12), None, fmt.BAD_HEADER),
        ("kind", corrupt(words, 0, w0 | 2 << 16), None, fmt.BAD_HEADER),
        ("reserved 0", corrupt(words, 0, w0 | 1 << 25), None, fmt.BAD_HEADER),
        ("outputs 0", corrupt(words, 1, words[1] & ~0xFFFF), None, fmt.BAD_HEADER),
        ("length 0", corrupt(words, 1, words[1] & 0xFFFF), None, fmt.BAD_HEADER),
        ("block rows 0", corrupt(words, 2, words[2] & ~0xFFFF), None, fmt.BAD_HEADER),
        ("padding block", corrupt(words, 2, words[2] + (1 << 16)), None, fmt.BAD_HEADER),
        ("too few blocks", corrupt(words, 1, words[1] + (3 << 16)), None, fmt.BAD_HEADER),
        ("reserved 3", corrupt(words, 3, words[3] | 1 << 30), None, fmt.BAD_HEADER),
        ("short", words[:4], None, fmt.WRONG_LENGTH),
        ("header length", corrupt(words, 4, n + 1), None, fmt.WRONG_LENGTH),
        ("extra word", corrupt(words, 4, n + 1) + [0], None, fmt.WRONG_LENGTH),
        ("truncated rows", corrupt(zero_rows[:-1], 4, len(zero_rows) - 1), None,
         fmt.TRUNCATED_BLOCK),
        ("truncated basis", corrupt(words[:6], 4, 6), None, fmt.TRUNCATED_BLOCK),
        ("padding", corrupt(words, n - 1, words[n - 1] | 1 << (W * P - 1)), None,
         fmt.BAD_CODE),
    ]
    if W * P < 32:
        cases.append(("spare bits", corrupt(words, 6, words[6] | 1 << 31), None, fmt.BAD_CODE))
        # In the last word of a truncated basis: unpack checks every word's spare bits
        # first, so bad_code alone (the decoder's truncation check is masked the cycle
        # after the word).
        cases.append(("spare bits, truncated", corrupt(corrupt(words[:6], 4, 6), 5,
                                                       words[5] | 1 << 31),
                      None, fmt.BAD_CODE))
    if exponent_bits >= 3:
        # The first row's mask: symbol basis_symbols of the stream.
        first_row = fmt.basis_symbols(exponent_bits)
        index = fmt.HEADER_WORDS + first_row // P
        bit = W * (first_row % P) + 3
        cases.append(("mask", corrupt(words, index, words[index] | 1 << bit), None,
                      fmt.BAD_CODE))
    # The decoder's own: M_w != 1, another E.
    other = make_weights(3 if exponent_bits == 2 else 2, [[1] * 9] * 6, [[[1, 0, -1]] * 2] * 6,
                         outputs=3, length=10, block_rows=2)
    cases += [("weight mult", corrupt(words, 3, words[3] + 1), None, fmt.BAD_HEADER),
              ("other E", list(other.pack()), None, fmt.BAD_HEADER)]
    return sd, cases


def corrupt_beats(name, sd, exponent_bits, rows_per_cycle):
    """The beats the decoder emits for corrupt case `name` of corrupt_cases (sd: its good
    layer) before the error stops it: where the fault is at the end of the stream (a word
    too many, nonzero padding) every beat but the one flagged `last` (held back until the
    end is checked); a truncated block's rows, the groups of R whose symbols all arrived
    (zero_rows_layer cut by a word: a symbol a row); none for the rest (the error is in
    the header or in a block's B, before the first row)."""
    if name in ("extra word", "padding"):
        return expected_weights(sd, rows_per_cycle)[:-1]
    if name == "truncated rows":
        zero = zero_rows_layer(exponent_bits)
        given = (zero.packed_words - 1 - fmt.HEADER_WORDS) * fmt.symbols_per_word(exponent_bits)
        rows = given - fmt.basis_symbols(exponent_bits)
        assert 0 < rows < zero.header.block_rows
        return expected_weights(zero, rows_per_cycle)[:rows // rows_per_cycle]
    return []


@pytest.mark.parametrize("exponent_bits, rows_per_cycle", [(2, 1), (3, 4)])
def test_corrupt_streams(exponent_bits, rows_per_cycle):
    """Each corrupt stream: the flag of unpack's kind (exactly one flag), exactly the beats
    corrupt_beats says (none flagged last); then a good layer decodes (the words left were
    taken and dropped)."""
    sd, cases = corrupt_cases(exponent_bits)
    dut = SdDecoder(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle)
    layers = []
    for _, words, count, _ in cases:
        layers += [(words, count, 0), (sd.pack(), None, 0)]
    runs = simulate(dut, layers, seed=exponent_bits)
    want = expected_weights(sd, rows_per_cycle)
    for n, (name, words, _, kind) in enumerate(cases):
        bad, good = runs[2 * n], runs[2 * n + 1]
        if name not in ("weight mult", "other E"):
            with pytest.raises(FormatError) as info:
                unpack(words)
            assert info.value.kind == kind, name
        else:
            unpack(words)
        assert bad.errors == {**NO_ERRORS, kind: 1}, name
        assert not any(beat["last"] for beat in bad.beats), name
        assert bad.beats == corrupt_beats(name, sd, exponent_bits, rows_per_cycle), name
        check_good(good, sd, want)


def test_extra_word_late():
    """A word too many offered after a pause of 0 to 40 cycles. A zero word: wrong_length
    alone, whenever it comes. A word with its spare bits set (a second fault): bad_code
    alone while it comes before the end check, both when it is taken in the cycle the end
    check finds the words left, and wrong_length alone after that, when it is taken and
    dropped in DRAIN: at most one pause gives both (a body word taken after the check
    would give both at a second one). No beat flagged `last`."""
    sd, _ = corrupt_cases(2)
    words = corrupt(sd.pack(), fmt.HEADER_WORDS - 1, sd.packed_words + 1)
    outcomes = {}
    for extra in (0, 1 << 31):              # E = 2: 30 bits of symbols, 2 spare
        outcomes[extra] = []
        for pause in range(41):
            run, = simulate(SdParser(), [(words + [extra], None, 0)], idle=0,
                            backpressure=0, waits={len(words): pause})
            assert not any(beat["last"] for beat in run.beats), (extra, pause)
            outcomes[extra].append(frozenset(name for name, value in run.errors.items()
                                             if value))
    code, length = frozenset({fmt.BAD_CODE}), frozenset({fmt.WRONG_LENGTH})
    assert set(outcomes[0]) == {length}
    letter = {code: "c", code | length: "x", length: "w"}
    spare = "".join(letter.get(flags, "?") for flags in outcomes[1 << 31])
    assert re.fullmatch("c+x?w+", spare), (spare, outcomes[1 << 31])


def test_corrupt_check_only():
    """check_only: the same flags, no beat at all; a good stream passes."""
    sd, cases = corrupt_cases(2)
    picked = [case for case in cases if case[0] in ("padding", "truncated rows", "extra word")]
    dut = SdDecoder()
    runs = simulate(dut, [(words, count, 1) for _, words, count, _ in picked]
                    + [(sd.pack(), None, 1)])
    for (name, _, _, kind), run in zip(picked, runs):
        assert run.errors == {**NO_ERRORS, kind: 1} and run.beats == [], name
    assert runs[-1].errors == NO_ERRORS and runs[-1].beats == []


# -- a wider sweep -----------------------------------------------------------------------------

@pytest.mark.sweep
@pytest.mark.parametrize("exponent_bits", [2, 3, 4])
@pytest.mark.parametrize("rows_per_cycle", [1, 2, 4])
def test_sweep(exponent_bits, rows_per_cycle):
    """Many random layers at every point, E = 4 included; corrupt streams at every point."""
    rng = random.Random(1000 + 10 * exponent_bits + rows_per_cycle)
    layers = edge_layers(exponent_bits, rng)
    for _ in range(12):
        m0 = rng.randint(1, 20)
        layers.append(random_layer(rng, exponent_bits, outputs=rng.randint(1, 4),
                                   length=rng.randint(1, 80), block_rows=m0,
                                   density=rng.random(), zero_blocks=0.2))
    dut = SdDecoder(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle)
    runs = simulate(dut, [(sd.pack(), None, 0) for sd in layers], seed=rows_per_cycle,
                    idle=rng.choice((0.0, 0.5)), backpressure=rng.choice((0.0, 0.5)))
    for sd, run in zip(layers, runs):
        check_good(run, sd, expected_weights(sd, rows_per_cycle))
    sd, cases = corrupt_cases(exponent_bits)
    runs = simulate(dut, [(words, count, 0) for _, words, count, _ in cases])
    for (name, _, _, kind), run in zip(cases, runs):
        assert run.errors == {**NO_ERRORS, kind: 1}, name


# -- cocotb: the decoder's Verilog (celine/sim/tb/stream_tb.py) ------------------------------

def decoder_run(sd, rows_per_cycle, *, count=True, **stalls):
    """A run of the generic stream testbench: sd's packed words in (a start pulse with the
    word count, or 0: the header's), the beats expected_weights gives out, packed as the
    Verilog payload by Amaranth's own layout.const; at the end no error flag, done, not
    busy and the header's fields."""
    words = list(sd.pack())
    layout = weight_beat_layout(rows_per_cycle)
    expected = [layout.const(beat).as_value().value
                for beat in expected_weights(sd, rows_per_cycle)]
    header = header_layout().const(header_of(sd)).as_value().value
    return {"beats": words, "expected": expected,
            "pulse": {"start": 1, "words": len(words) if count else 0},
            "final": {"errors": 0, "done": 1, "busy": 0, "header_valid": 1,
                      "header": header}, **stalls}


def cocotb_layers(exponent_bits, rng, real):
    """The layers of a cocotb case: `real` (a trained layer's decomposition, re-windowed to
    E), random codes, a decomposed random weight, blocks all zero (some, then all), Ce at
    the clip, lengths not a multiple of 3 (10, 20, 50), the smallest layer."""
    e = exponent_bits
    return [
        quantize_decomposition(real, exponent_bits=e),
        random_layer(rng, e, outputs=3, length=20, block_rows=7, density=0.6),
        random_sd_layer(5, 50, seed=e, exponent_bits=e),
        random_layer(rng, e, outputs=2, length=14, block_rows=5, density=0.3,
                     zero_blocks=0.5),
        random_layer(rng, e, outputs=2, length=9, block_rows=3, density=0.0),
        clip_layer(e),
        random_layer(rng, e, outputs=3, length=10, block_rows=2, density=0.6),
        random_layer(rng, e, outputs=1, length=1, block_rows=1, density=1.0),
    ]


def corrupt_runs(exponent_bits, rows_per_cycle):
    """Runs of the stream testbench for corrupt streams, one of each kind and place (the
    header, the decoder's own M_w check, B, the rows, the end of the stream), each followed
    by the good layer they corrupt: a corrupt run's output is exactly corrupt_beats (never
    the beat flagged last) and it ends done, not busy, with exactly its flag set in
    `errors`; the good run after it decodes (the words left were taken and dropped)."""
    sd, cases = corrupt_cases(exponent_bits)
    picked = {"magic", "weight mult", "header length", "truncated basis", "truncated rows",
              "extra word", "padding", "spare bits", "spare bits, truncated", "mask"}
    layout = weight_beat_layout(rows_per_cycle)
    runs = []
    for name, words, count, kind in cases:
        if name not in picked:
            continue
        beats = corrupt_beats(name, sd, exponent_bits, rows_per_cycle)
        assert not any(beat["last"] for beat in beats)
        errors = errors_layout().const({**NO_ERRORS, kind: 1}).as_value().value
        runs.append({"beats": list(words),
                     "expected": [layout.const(beat).as_value().value for beat in beats],
                     "pulse": {"start": 1, "words": len(words) if count is None else count},
                     "final": {"errors": errors, "done": 1, "busy": 0}})
        runs.append(decoder_run(sd, rows_per_cycle))
    return runs


def run_decoder_cocotb(request, exponent_bits, rows_per_cycle, layers, *, seed,
                       idle_prob=0.3, backpressure_prob=0.3, corrupt=False, **kwargs):
    """Every layer through the decoder's Verilog under idle_prob/backpressure_prob; the
    first again with no stalls and again with the header's count (words = 0); with
    `corrupt`, then corrupt_runs."""
    runs = [decoder_run(sd, rows_per_cycle) for sd in layers]
    runs += [decoder_run(layers[0], rows_per_cycle, idle_prob=0.0, backpressure_prob=0.0),
             decoder_run(layers[0], rows_per_cycle, count=False)]
    if corrupt:
        runs += corrupt_runs(exponent_bits, rows_per_cycle)
    dut = SdDecoder(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle, **kwargs)
    name = f"sd_decoder_e{exponent_bits}_r{rows_per_cycle}" + "".join(
        f"_{key[4]}{value}" for key, value in sorted(kwargs.items()))
    run_cocotb(dut, toplevel=name, test_module="celine.sim.tb.stream_tb",
               case_id=request.node.nodeid, seed=seed,
               params={"exponent_bits": exponent_bits, "rows_per_cycle": rows_per_cycle,
                       **kwargs},
               data={"runs": runs, "idle_prob": idle_prob,
                     "backpressure_prob": backpressure_prob,
                     "inputs": {"start": 0, "words": 0, "check_only": 0}})
    return runs


@pytest.mark.cocotb
@pytest.mark.parametrize("exponent_bits, rows_per_cycle, name", [
    (2, 1, "blocks.0.attn.proj"),
    pytest.param(3, 4, "blocks.0.mlp.2", marks=pytest.mark.sweep)])
def test_decoder_cocotb(request, real_layers, exponent_bits, rows_per_cycle, name):
    """The Verilog, bit-exact with weights_int8 (and the padding's weights) under idle and
    backpressure 0.3 (one run at 0/0): a real trained layer, random codes, a decomposed
    random weight, zero blocks, the clip, lengths not a multiple of 3, the smallest layer;
    then corrupt streams (a bad header, M_w != 1, a wrong length, truncated in B and in
    the rows, a word too many, bad codes), each setting exactly its error flag (`final`),
    each followed by a good layer."""
    rng = random.Random(300 * exponent_bits + rows_per_cycle)
    layers = cocotb_layers(exponent_bits, rng, real_layers[name])
    assert 0 < layers[0].ce_sparsity < 1 and layers[0].header.weight_mult == 1
    assert all(sd.header.length % 3 for sd in layers[1:3])
    assert not any(rebuild_blocks_int(layers[4]).flatten().tolist())       # all zero
    runs = run_decoder_cocotb(request, exponent_bits, rows_per_cycle, layers, seed=11,
                              corrupt=True)
    assert sum(len(run["expected"]) for run in runs) > 300
    flagged = [run["final"]["errors"] for run in runs if run["final"].get("errors")]
    corrupt_count = len(corrupt_runs(exponent_bits, rows_per_cycle)) // 2   # each + a good one
    assert corrupt_count >= 8
    assert len(flagged) == corrupt_count and {bin(f).count("1") for f in flagged} == {1}
    assert len({flags for flags in flagged}) == 4          # every format error kind


@pytest.mark.cocotb
@pytest.mark.sweep
@pytest.mark.parametrize("exponent_bits, rows_per_cycle, name", [
    (2, 2, "blocks.0.attn.qkv"), (2, 4, "head"), (3, 1, "blocks.0.mlp.0"),
    (3, 2, "blocks.0.attn.proj"), (4, 1, "blocks.0.mlp.2"), (4, 4, "blocks.0.attn.qkv")])
@pytest.mark.parametrize("idle_prob, backpressure_prob", [(0.3, 0.3), (0.6, 0.1), (0.1, 0.7)])
def test_decoder_cocotb_sweep(request, real_layers, exponent_bits, rows_per_cycle, name,
                              idle_prob, backpressure_prob):
    """More points (E = 4 included) and stalls, and more random layers."""
    rng = random.Random(400 * exponent_bits + rows_per_cycle)
    layers = cocotb_layers(exponent_bits, rng, real_layers[name])
    for _ in range(8):
        layers.append(random_layer(rng, exponent_bits, outputs=rng.randint(1, 4),
                                   length=rng.randint(1, 80), block_rows=rng.randint(1, 20),
                                   density=rng.random(), zero_blocks=0.2))
    run_decoder_cocotb(request, exponent_bits, rows_per_cycle, layers, seed=12,
                       idle_prob=idle_prob, backpressure_prob=backpressure_prob,
                       corrupt=True)


@pytest.mark.cocotb
@pytest.mark.sweep
def test_decoder_cocotb_at_the_limits(request):
    """The largest layer a small generator allows (max_outputs, max_length, max_block_rows)
    and the smallest, in its Verilog."""
    rng = random.Random(6)
    layers = [random_layer(rng, 2, outputs=3, length=200, block_rows=67, density=0.3),
              random_layer(rng, 2, outputs=1, length=1, block_rows=1, density=1.0)]
    run_decoder_cocotb(request, 2, 4, layers, seed=13, max_outputs=3, max_length=200,
                       max_block_rows=67)
