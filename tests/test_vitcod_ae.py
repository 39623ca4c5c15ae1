"""The auto-encoder's engines (AeDecoder, AeEncoder: one HeadMixer) in the Amaranth
simulator, with a real MacBank per engine and one row-per-word memory (synchronous read,
the engines' writes land in it): every row written == decode_int / encode_int of
celine/golden/vitcod/autoencoder.py, nothing else written; the round trip encoder ->
decoder == decode_int(encode_int(x)); the cycle count of a run == mixer_cycles."""

import random

import pytest
import torch
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from celine.engines.vitcod.spec import QK_READ_LATENCY, VitcodParams
from celine.golden.quant import MULT_MAX, SHIFT_MAX
from celine.golden.vitcod import autoencoder
from celine.golden.vitcod.autoencoder import (INT8_HI, INT8_LO, INT32_HI, INT32_LO,
                                              QuantizedAutoEncoder, code_heads, decode_int,
                                              encode_int)
from celine.rtl.vitcod import ae_codec
from celine.rtl.vitcod.ae_codec import (MIXER_LATENCY, HeadMixer, RowRequantizer,
                                        mixer_acc_width, mixer_cycles)
from celine.rtl.vitcod.ae_decoder import AeDecoder, decoder_settings
from celine.rtl.vitcod.ae_encoder import AeEncoder, encoder_settings
from celine.rtl.common.delay import delayed
from celine.rtl.vitcod.mac_bank import MacBank
from celine.sim.amaranth_sim import run_sim
from celine.spec.lanes import pack_lanes, unpack_lanes
from celine.spec.numerics import REQUANT_LATENCY


def make_params(head_dim, macs, *, heads, out_lanes, max_tokens=9):
    """A VitcodParams with `macs` MAC units in all (the split does not matter here)."""
    dense = 8 if macs > 8 else 0
    return VitcodParams(head_dim=head_dim, max_tokens=max_tokens, heads=heads,
                        max_global=max_tokens if dense else 0, sparse_capacity=16,
                        dense_macs=dense, sparse_macs=macs - dense, out_lanes=out_lanes)


class Bench(Elaboratable):
    """Engines, each with its own MacBank, on one memory of `depth` rows: a read port and a
    write port per engine."""

    def __init__(self, params, engines, depth, words):
        self.params, self.engines, self.depth, self.words = params, engines, depth, words

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.mem = mem = Memory(shape=p.head_dim * 8, depth=self.depth, init=self.words)
        for n, engine in enumerate(self.engines):
            m.submodules[f"engine_{n}"] = engine
            m.submodules[f"bank_{n}"] = bank = MacBank(p.mac_units)
            wiring.connect(m, engine.mul, bank.bus)
            read, write = mem.read_port(), mem.write_port()
            word = delayed(m, read.data, QK_READ_LATENCY - 1, f"word_{n}")  # output registers
            m.d.comb += [read.addr.eq(engine.src.addr), engine.src.data.eq(word),
                         write.addr.eq(engine.dst.addr), write.data.eq(engine.dst.data),
                         write.en.eq(engine.dst.write)]
        return m


def simulate(params, engines, depth, rows, jobs):
    """`rows` (depth lists of d int8) in the memory; jobs [(engine index, tokens, in_base,
    out_base, settings)] one after another, the inputs changed after each start pulse.
    Returns per job ({addr: written row}, cycles
    from the start pulse until busy fell) and the memory's rows at the end."""
    words = [pack_lanes(row, 8) for row in rows]
    bench = Bench(params, engines, depth, words)
    results = []
    final = [list(row) for row in rows]

    async def control(ctx):
        for index, tokens, in_base, out_base, settings in jobs:
            dut = engines[index]
            others = [e for e in engines if e is not dut]
            ctx.set(dut.tokens, tokens)
            ctx.set(dut.in_base, in_base)
            ctx.set(dut.out_base, out_base)
            for name, value in settings.items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            # `start` sampled them: other values from now on change nothing.
            ctx.set(dut.tokens, 1)
            ctx.set(dut.in_base, 1)
            ctx.set(dut.out_base, 0)
            ctx.set(dut.mult, 0)
            ctx.set(dut.shift, 1)
            ctx.set(dut.weights, [[1] * dut.in_rows] * dut.out_rows)
            ctx.set(dut.biases, [3] * dut.out_rows)
            writes, cycle = {}, 0
            while True:
                cycle += 1
                _, _, busy, write, addr, data, *idle = await ctx.tick().sample(
                    dut.busy, dut.dst.write, dut.dst.addr, dut.dst.data,
                    *(e.dst.write for e in others))
                assert not any(idle), "an idle engine wrote"
                if write:
                    assert busy, "a write after busy fell"
                    assert addr not in writes, f"row word {addr} written twice"
                    writes[addr] = unpack_lanes(data, params.head_dim, 8)
                    final[addr] = writes[addr]
                if not busy:
                    break
                assert cycle < 100_000
            results.append((writes, cycle))

    run_sim(bench, control)
    return results, final


# -- golden ---------------------------------------------------------------------------------


def gather(rows, base, count, tokens, max_tokens):
    """(1, count, N, d) int64: row r of token i at rows[base + r * max_tokens + i]."""
    return torch.tensor([[rows[base + r * max_tokens + i] for i in range(tokens)]
                         for r in range(count)], dtype=torch.int64)[None]


def scatter(values, base, max_tokens):
    """{word: row} of (1, count, N, d) values at base + r * max_tokens + i."""
    return {base + r * max_tokens + i: values[0, r, i].tolist()
            for r in range(values.shape[1]) for i in range(values.shape[2])}


def expected(kind, qae, rows, tokens, in_base, out_base, max_tokens):
    if kind == "dec":
        z = gather(rows, in_base, qae.code_heads, tokens, max_tokens)
        return scatter(decode_int(qae, z), out_base, max_tokens)
    x = gather(rows, in_base, qae.heads, tokens, max_tokens)
    return scatter(encode_int(qae, x), out_base, max_tokens)


SETTINGS = {"dec": decoder_settings, "enc": encoder_settings}
ENGINES = {"dec": AeDecoder, "enc": AeEncoder}


def check(params, kind, runs, *, depth=None, rows=None, seed=0):
    """Runs [(qae, tokens, in_base, out_base)] of one engine; every run's writes ==
    golden, each against the memory as the earlier runs left it. Returns the cycles."""
    engine = ENGINES[kind](params, depth=depth)
    depth = engine.depth
    rows = random_rows(random.Random(seed), depth, params.head_dim) if rows is None else rows
    jobs = [(0, tokens, in_base, out_base, SETTINGS[kind](qae))
            for qae, tokens, in_base, out_base in runs]
    results, _ = simulate(params, [engine], depth, rows, jobs)
    memory = [list(row) for row in rows]
    for (qae, tokens, in_base, out_base), (writes, _) in zip(runs, results):
        want = expected(kind, qae, memory, tokens, in_base, out_base, params.max_tokens)
        assert writes == want, (kind, tokens, in_base, out_base)
        for addr, row in want.items():
            memory[addr] = row
    return [cycles for _, cycles in results]


# -- cases ----------------------------------------------------------------------------------


def random_rows(rng, depth, head_dim):
    """Rows of int8 with plenty of -128 and 127."""
    return [[rng.choice([INT8_LO, INT8_HI, rng.randint(INT8_LO, INT8_HI),
                         rng.randint(INT8_LO, INT8_HI), rng.randint(-8, 8)])
             for _ in range(head_dim)] for _ in range(depth)]


def random_qae(rng, heads):
    """A QuantizedAutoEncoder of random fields: int8 weights (the ends often), biases of
    either sign, scales that leave most outputs inside int8 (some saturate)."""
    code = code_heads(heads)

    def weights(rows, cols):
        return [[rng.choice([INT8_LO, INT8_HI, rng.randint(INT8_LO, INT8_HI),
                             rng.randint(INT8_LO, INT8_HI)]) for _ in range(cols)]
                for _ in range(rows)]

    def biases(count):
        return [rng.choice([0, rng.randint(-(1 << 16), 1 << 16)]) for _ in range(count)]

    def scale(rows):
        # |acc| ~ rows * 2^13 -> |y| ~ 2^6.
        return rng.randint(1 << 15, MULT_MAX), 15 + 7 + rows.bit_length() + rng.randint(-1, 1)

    enc_mult, enc_shift = scale(heads)
    dec_mult, dec_shift = scale(code)
    return QuantizedAutoEncoder(
        w_enc=weights(code, heads), b_enc=biases(code), enc_mult=enc_mult, enc_shift=enc_shift,
        w_dec=weights(heads, code), b_dec=biases(heads), dec_mult=dec_mult, dec_shift=dec_shift,
        in_scale=1.0, code_scale=1.0, out_scale=1.0)


def constant_qae(heads, *, weight, bias, mult, shift):
    """Every weight `weight`, every bias `bias`, one scale for both layers."""
    code = code_heads(heads)
    return QuantizedAutoEncoder(
        w_enc=[[weight] * heads] * code, b_enc=[bias] * code, enc_mult=mult, enc_shift=shift,
        w_dec=[[weight] * code] * heads, b_dec=[bias] * heads, dec_mult=mult, dec_shift=shift,
        in_scale=1.0, code_scale=1.0, out_scale=1.0)


def bases(kind, heads, max_tokens):
    """(in_base, out_base) pairs: inputs in slots 0.. and outputs after them, and the
    reverse (the memory has 2H slots)."""
    n_in = code_heads(heads) if kind == "dec" else heads
    return [(0, n_in * max_tokens), (heads * max_tokens, 0)]


# -- bit-exact ---------------------------------------------------------------------------------

POINTS = [
    # heads, d, M, out_lanes
    (3, 16, 16, 16),     # C = 2, S = 1: bank-bound (2 and 3 cycles a row, d/lanes = 1)
    (3, 16, 16, 4),      # d/lanes = 4 cycles a row: requantizer-bound, the issue waits
    pytest.param(6, 64, 32, 16, marks=pytest.mark.sweep),   # C = 3, S = 2 at d = 64 (make
    #                                                        test: S = 2 at (1, 16, 8, 8))
    pytest.param(6, 64, 64, 16, marks=pytest.mark.sweep),   # S = 1 at d = 64 (the decoder
    #                                                        waits: 3 < 4)
    (1, 16, 8, 8),       # H = C = 1, S = 2
]


@pytest.mark.parametrize("kind", ["dec", "enc"])
@pytest.mark.parametrize("heads, head_dim, macs, out_lanes", POINTS)
def test_engine_matches_golden(kind, heads, head_dim, macs, out_lanes):
    p = make_params(head_dim, macs, heads=heads, out_lanes=out_lanes)
    rng = random.Random(f"{kind} {heads} {head_dim} {macs} {out_lanes}")
    depth = 2 * heads * p.max_tokens
    (in0, out0), (in1, out1) = bases(kind, heads, p.max_tokens)
    runs = [(random_qae(rng, heads), p.max_tokens, in0, out0),      # N = max_tokens, odd
            (random_qae(rng, heads), 1, in1, out1),                 # N = 1
            (random_qae(rng, heads), 4, in0, out0)]
    cycles = check(p, kind, runs, depth=depth, seed=rng.randrange(1 << 20))
    # Nothing stalls: every run takes exactly mixer_cycles.
    engine = ENGINES[kind](p)
    assert cycles == [engine.cycles(tokens) for _, tokens, _, _ in runs]


@pytest.mark.parametrize("kind", ["dec", "enc"])
@pytest.mark.parametrize("macs", [16, 8])
def test_extremes(kind, macs):
    """x = -128 everywhere: weights -128 with the largest bias (the accumulator's top,
    2^31 - 1 + rows * 2^14) saturate at 127 at gain 65535, weights 127 with the smallest
    bias at -128; the largest shift rounds everything to 0; shift 47 rounds values near
    +-1; gain 1 with no bias; multiplier 0. Then random and saturating settings on rows
    that earlier runs wrote, N = 2."""
    p = make_params(16, macs, heads=3, out_lanes=8, max_tokens=5)
    depth = 2 * p.heads * p.max_tokens
    rows = [[INT8_LO] * p.head_dim for _ in range(depth)]
    (in0, out0), (in1, out1) = bases(kind, p.heads, p.max_tokens)
    qaes = [constant_qae(3, weight=INT8_LO, bias=INT32_HI, mult=MULT_MAX, shift=0),
            constant_qae(3, weight=INT8_HI, bias=INT32_LO, mult=MULT_MAX, shift=0),
            constant_qae(3, weight=INT8_LO, bias=INT32_HI, mult=MULT_MAX, shift=SHIFT_MAX),
            constant_qae(3, weight=INT8_LO, bias=INT32_HI, mult=MULT_MAX, shift=31 + 16),
            constant_qae(3, weight=INT8_HI, bias=INT32_LO, mult=MULT_MAX, shift=31 + 16),
            constant_qae(3, weight=INT8_LO, bias=0, mult=1, shift=0),
            constant_qae(3, weight=INT8_LO, bias=INT32_HI, mult=0, shift=5)]
    runs = [(qae, p.max_tokens, in0, out0) for qae in qaes]
    runs.append((random_qae(random.Random(macs), 3), p.max_tokens, in1, out1))
    runs.append((constant_qae(3, weight=INT8_HI, bias=0, mult=MULT_MAX, shift=0), 2, in1, out1))
    check(p, kind, runs, depth=depth, rows=rows)
    # The cases reach both ends of int8 and 0.
    ends = [set(v for row in expected(kind, qae, rows, p.max_tokens, in0, out0,
                                      p.max_tokens).values() for v in row)
            for qae in qaes[:3]]
    assert ends == [{INT8_HI}, {INT8_LO}, {0}]


def test_accumulator_width_covers_the_extremes():
    """mixer_acc_width(rows) is the worst case of any QuantizedAutoEncoder of that size,
    and the formats are the golden model's."""
    assert (ae_codec.WEIGHT_BITS, ae_codec.BIAS_BITS, ae_codec.VALUE_BITS) == (8, 32, 8)
    assert (INT8_LO, INT32_LO) == (-(1 << 7), -(1 << 31))
    for heads in range(1, 17):
        assert ae_codec.code_rows(heads) == code_heads(heads)
        worst = max(constant_qae(heads, weight=w, bias=b, mult=1, shift=0).enc_acc_bits
                    for w in (INT8_LO, INT8_HI) for b in (INT32_LO, INT32_HI))
        assert mixer_acc_width(heads) == worst == 33


# -- the round trip, with auto-encoders fitted to data ------------------------------------------


def round_trip(params, qae, x):
    """x (1, H, N, d) int8 in slots 0 .. H-1 of a memory of 2H + C slots; the encoder writes
    the codes to slots H .. H+C-1, the decoder reads them there and writes slots H+C ..
    2H+C-1. Checks codes == encode_int and rebuilt rows == decode_int(encode_int(x))."""
    heads, code, max_tokens = qae.heads, qae.code_heads, params.max_tokens
    tokens = x.shape[2]
    depth = (2 * heads + code) * max_tokens
    rng = random.Random(1)
    rows = random_rows(rng, depth, params.head_dim)
    for addr, row in scatter(x, 0, max_tokens).items():
        rows[addr] = row
    engines = [AeEncoder(params, depth=depth), AeDecoder(params, depth=depth)]
    code_base, out_base = heads * max_tokens, (heads + code) * max_tokens
    jobs = [(0, tokens, 0, code_base, encoder_settings(qae)),
            (1, tokens, code_base, out_base, decoder_settings(qae))]
    (codes, enc_cycles), (rebuilt, dec_cycles) = simulate(params, engines, depth, rows, jobs)[0]
    z = encode_int(qae, x)
    assert codes == scatter(z, code_base, max_tokens)
    assert rebuilt == scatter(decode_int(qae, z), out_base, max_tokens)
    assert (enc_cycles, dec_cycles) == (engines[0].cycles(tokens), engines[1].cycles(tokens))


def test_round_trip_fitted_autoencoder():
    """A float AE fitted (briefly) to synthetic Q-like data whose 3 heads mix 2 sources,
    quantized by quantize_autoencoder: the hardware round trip on one image of 17 tokens
    (odd) at d = 16, M = 8."""
    torch.manual_seed(0)
    sources = torch.randn(16, 2, 17, 16)
    x = torch.einsum("hc,bcnd->bhnd", torch.randn(3, 2), sources)
    x = x + 0.1 * torch.randn_like(x)
    qae = autoencoder.quantize_autoencoder(autoencoder.train_autoencoder(x, epochs=2), x)
    p = make_params(16, 8, heads=3, out_lanes=8, max_tokens=17)
    round_trip(p, qae, autoencoder.quantize(x[:1], qae.in_scale))


@pytest.mark.sweep          # trains the default model (about a minute) unless cached
def test_round_trip_digits_vit():
    """The default fine-tuned digits ViT's integer AEs (quantize_autoencoders on the train
    split, as the report does) of layer 0's Q and layer 3's K (trained and cached by
    python -m celine.golden.vitcod.autoencoder): one test image's Q or K through the
    hardware."""
    from celine.golden.digits_vit import DigitsViTConfig, capture_qkv, digits_dataset
    vit_config, config = DigitsViTConfig(), autoencoder.FinetuneConfig()
    model, aes, _ = autoencoder.finetuned_vit_autoencoders(vit_config, config)
    data = digits_dataset()
    quantized = autoencoder.quantize_autoencoders(model, aes, data.train_images)
    test = capture_qkv(model, data.test_images[:1])
    p = make_params(vit_config.head_dim, 16, heads=vit_config.heads, out_lanes=4,
                    max_tokens=vit_config.tokens)
    for layer, which in ((0, 0), (vit_config.depth - 1, 1)):
        qae = quantized[layer][which]
        round_trip(p, qae, autoencoder.quantize(test[layer][which], qae.in_scale))


# -- cycles and parameters ------------------------------------------------------------------------


def test_cycle_formula():
    """Bank-bound: N * out_rows * in_rows * d/M + d/lanes + L; requantizer-bound: rows
    d/lanes apart. L: the input row's read, the bank's stages, the requantizer's, and
    busy falling."""
    assert MIXER_LATENCY == QK_READ_LATENCY + 1 + MacBank.latency + REQUANT_LATENCY
    L = MIXER_LATENCY
    p = make_params(64, 16, heads=3, out_lanes=16, max_tokens=197)       # S = 4, K = 4
    assert AeDecoder(p).cycles(197) == 197 * 3 * 2 * 4 + 4 + L
    assert AeEncoder(p).cycles(197) == 197 * 2 * 3 * 4 + 4 + L
    p = make_params(64, 64, heads=3, out_lanes=16, max_tokens=197)       # S = 1, K = 4
    assert AeDecoder(p).cycles(197) == (197 * 3 - 1) * 4 + 2 + 4 + L     # 2 < 4: waits
    assert mixer_cycles(p, 3, 2, 197) == (197 * 2 - 1) * 4 + 3 + 4 + L
    assert mixer_cycles(p, 3, 2, 197, lanes=32) == 197 * 2 * 3 + 2 + L


def test_rejects_bad_params():
    p = make_params(16, 16, heads=3, out_lanes=8)
    cases = [
        (lambda: HeadMixer(3, 1, 1), TypeError, "params must be a VitcodParams, not 3"),
        (lambda: AeDecoder(None), TypeError, "params must be a VitcodParams, not None"),
        (lambda: AeEncoder(VitcodParams(head_dim=16, max_tokens=9, max_global=4,
                                        sparse_capacity=8, dense_macs=8, sparse_macs=8,
                                        operand_width=6, out_lanes=8)),
         ValueError, "operand_width must be 8 for the auto-encoder (int8 values), not 6"),
        (lambda: HeadMixer(p, 0, 1), ValueError, "in_rows must be between 1 and 3, not 0"),
        (lambda: HeadMixer(p, 1, 4), ValueError, "out_rows must be between 1 and 3, not 4"),
        (lambda: HeadMixer(p, 1, True), TypeError, "out_rows must be an integer, not True"),
        (lambda: AeDecoder(p, lanes=3), ValueError, "lanes must divide head_dim (16), not 3"),
        (lambda: AeEncoder(p, lanes=32), ValueError, "lanes must be between 1 and 16, not 32"),
        (lambda: AeDecoder(p, depth=26), ValueError, "depth must be at least 27, not 26"),
        (lambda: ae_codec.code_rows(0), ValueError, "heads must be at least 1, not 0"),
        (lambda: RowRequantizer(head_dim=16, acc_width=33, lanes=5, out_width=8, depth=4),
         ValueError, "lanes must divide head_dim (16), not 5"),
        (lambda: RowRequantizer(head_dim=16, acc_width=33, lanes=4, out_width=40, depth=4),
         ValueError, "out_width must be between 2 and 33, not 40"),
        (lambda: RowRequantizer(head_dim=16, acc_width=33, lanes=4, out_width=8, depth=4,
                                beats=8), ValueError, "beats must be between 1 and 4, not 8"),
        (lambda: RowRequantizer(head_dim=48, acc_width=33, lanes=4, out_width=8, depth=4,
                                beats=3), ValueError,
         "beats must be a power of two dividing head_dim / lanes (12), not 3"),
    ]
    for make, error, message in cases:
        with pytest.raises(error) as info:
            make()
        assert str(info.value) == message
    assert AeDecoder(p, depth=27).depth == 27 and AeDecoder(p).depth == 27


def test_bank_latency():
    """MAC_BANK_LATENCY (engines/vitcod/spec.py, which the cycle model reads) is the bank's
    latency as simulated: operands held for one cycle come back as their products exactly
    that many cycles later, the most negative operands included."""
    from celine.engines.vitcod.spec import MAC_BANK_LATENCY
    assert MacBank.latency == MAC_BANK_LATENCY
    bank = MacBank(3)
    low = -(1 << (len(bank.bus.a[0]) - 1))
    operands = [(low, low), (low, -low - 1), (-5, 7)]
    seen = []

    async def testbench(ctx):
        for k, (a, b) in enumerate(operands):
            ctx.set(bank.bus.a[k], a)
            ctx.set(bank.bus.b[k], b)
        await ctx.tick()
        for k in range(3):
            ctx.set(bank.bus.a[k], 0)
            ctx.set(bank.bus.b[k], 0)
        for _ in range(MAC_BANK_LATENCY + 1):
            seen.append([ctx.get(bank.bus.p[k]) for k in range(3)])
            await ctx.tick()

    run_sim(bank, testbench)
    products = [a * b for a, b in operands]
    assert [n for n, values in enumerate(seen, 1) if values == products] == [MAC_BANK_LATENCY]
