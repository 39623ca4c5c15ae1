"""The ViTCoD SpMM and its output stage in the Amaranth simulator, with a real MacBank, a v
memory of v's read latency (V_READ_LATENCY, as the shell builds it) and the writes to
`out` collected: every row written == requantize(p @ v, out_mult, out_shift) of
celine/golden/quant.py, under random idle cycles on the entry stream; and every run's
cycle count == the Spmm's schedule (its docstring) from the cycles the entries were
offered in."""

import random

import pytest
import torch
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from celine.engines.vitcod.spec import V_READ_LATENCY, VitcodParams, row_of_words, row_words
from celine.golden.quant import requantize
from celine.rtl.common.delay import delayed
from celine.rtl.vitcod.mac_bank import MacBank
from celine.rtl.vitcod.output_stage import OutputStage
from celine.rtl.vitcod.spmm import OFFER_TO_BANK, START_TO_OFFER, Spmm, spmm_latency
from celine.sim.amaranth_sim import run_sim, shared, stream_put_all
from celine.spec.numerics import REQUANT_LATENCY


def make_params(head_dim, macs, *, out_lanes, max_tokens=13, heads=2, prob_bits=12):
    """A VitcodParams whose MAC bank has `macs` units (the split does not matter here)."""
    dense = min(8, macs) if macs > 8 else 0
    return VitcodParams(head_dim=head_dim, max_tokens=max_tokens, heads=heads,
                        max_global=max_tokens if dense else 0, sparse_capacity=16,
                        dense_macs=dense, sparse_macs=macs - dense, prob_bits=prob_bits,
                        out_lanes=out_lanes)


class Bench(Elaboratable):
    """The Spmm with a MacBank and the v buffer (a Memory, synchronous read, then
    registers up to V_READ_LATENCY; the test writes its words) attached."""

    def __init__(self, params):
        self.params = params
        self.spmm = Spmm(params)
        self.v = Memory(shape=params.row_word_bits,
                        depth=params.heads * params.max_tokens * params.beats, init=[])

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.spmm = spmm = self.spmm
        m.submodules.bank = bank = MacBank(p.mac_units)
        wiring.connect(m, spmm.mul, bank.bus)
        m.submodules.v = v = self.v
        read = v.read_port()
        word = delayed(m, read.data, V_READ_LATENCY - 1, "v_word")  # the output register
        m.d.comb += [read.addr.eq(spmm.v.addr), spmm.v.data.eq(word)]
        return m


# -- cases -------------------------------------------------------------------------------


def budget(params):
    """The largest sum of one row's p that the accumulators are sized for (2^F + N/2)."""
    return (1 << params.prob_bits) + (params.max_tokens + 1) // 2


def random_probs(rng, count, params):
    """`count` probabilities in 0 .. 2^F (the ends often) whose sum stays within budget."""
    top = 1 << params.prob_bits
    probs = [rng.choice([0, top, rng.randint(0, top), rng.randint(0, 8)]) for _ in range(count)]
    room = budget(params)
    for j, value in enumerate(probs):
        probs[j] = min(value, room)
        room -= probs[j]
    rng.shuffle(probs)
    return probs


def random_rows(rng, tokens, params, *, lengths=None):
    """Rows 0 .. N-1 of (column, p) entries, distinct columns in random order."""
    rows = []
    for i in range(tokens):
        n = lengths(i) if lengths else rng.choice([1, 1, 2, 3, rng.randint(1, tokens)])
        cols = rng.sample(range(tokens), min(n, tokens))
        rows.append(list(zip(cols, random_probs(rng, len(cols), params))))
    return rows


def beats(rows):
    return [{"row": i, "col": j, "p": prob, "last": int(k == len(row) - 1)}
            for i, row in enumerate(rows) for k, (j, prob) in enumerate(row)]


def expected(rows, v, head_base, out_mult, out_shift, params):
    """The golden rows: requantize(P @ V) of the head's v rows."""
    tokens = len(rows)
    probs = torch.zeros(tokens, tokens, dtype=torch.int64)
    for i, row in enumerate(rows):
        for j, prob in row:
            probs[i, j] = prob
    o = probs @ v[head_base:head_base + tokens]
    return requantize(o, out_mult, out_shift, params.operand_width).tolist()


def random_v(rng, params, *, fill=None):
    lo, hi = params.operand_range
    shape = (params.heads * params.max_tokens, params.head_dim)
    if fill is not None:
        return torch.full(shape, fill, dtype=torch.int64)
    gen = torch.Generator().manual_seed(rng.randrange(1 << 30))
    v = torch.randint(lo, hi + 1, shape, generator=gen)
    v[torch.rand(shape, generator=gen) < 0.15] = lo          # plenty of -128
    return v


def schedule(params, rows, offers):
    """The cycle (the start pulse in cycle 0) from which `busy` is low, by the Spmm's
    schedule: entry k's first slice on the bank in b_k = max(o_k + OFFER_TO_BANK,
    b_(k-1) + S, b_l + K if it ends a row, l the previous row's last entry), o_k >= 1
    (`entries.ready` rises in cycle 1); busy low from b_last + S + K + MacBank.latency
    + REQUANT_LATENCY."""
    slices = params.head_dim // params.mac_units
    chunks = params.head_dim // params.out_lanes
    ends = [len(row) - 1 == k for row in rows for k in range(len(row))]
    bank, previous_end = None, None
    for offer, end in zip(offers, ends):
        bank = max([max(offer, 1) + OFFER_TO_BANK]
                   + ([bank + slices] if bank is not None else [])
                   + ([previous_end + chunks] if end and previous_end is not None else []))
        if end:
            previous_end = bank
    return bank + slices + chunks + MacBank.latency + REQUANT_LATENCY


def always_valid(params, lengths):
    """The same with `entries` always valid, as a sum over rows of e entries: e_0·S +
    sum over later rows of max(e·S, K) + spmm_latency."""
    slices = params.head_dim // params.mac_units
    chunks = params.head_dim // params.out_lanes
    return (lengths[0] * slices + sum(max(e * slices, chunks) for e in lengths[1:])
            + spmm_latency(params))


def simulate(params, v, runs, *, idle_prob, seed=0):
    """Runs [(rows, head_base, out_mult, out_shift)] one after another; returns per run the
    writes {addr: row values}, the cycles from the start pulse until busy fell and the
    cycle (the same count) each entry was first offered in."""
    words = [word for row in v.tolist() for word in row_words(params, row)]
    bench = shared(Bench, params)          # its simulator reused (amaranth_sim.run_sim)
    dut = bench.spmm
    stream = [b for rows, *_ in runs for b in beats(rows)]
    results = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.entries, stream, rng=random.Random(seed),
                             idle_prob=idle_prob)

    async def control(ctx):
        for address, word in enumerate(words):
            ctx.set(bench.v.data[address], word)
        for rows, head_base, out_mult, out_shift in runs:
            ctx.set(dut.tokens, len(rows))
            ctx.set(dut.head_base, head_base)
            ctx.set(dut.out_mult, out_mult)
            ctx.set(dut.out_shift, out_shift)
            ctx.set(dut.start, 1)
            # An entry still offered from before the start counts from cycle 0.
            *_, valid, ready = await ctx.tick().sample(dut.entries.valid, dut.entries.ready)
            assert not ready, "entries taken during the start pulse"
            ctx.set(dut.start, 0)
            writes, offers, cycle = {}, [], 0
            offered = 0 if valid else None
            while True:
                cycle += 1
                *_, busy, write, addr, data, valid, ready = await ctx.tick().sample(
                    dut.busy, dut.out.write, dut.out.addr, dut.out.data,
                    dut.entries.valid, dut.entries.ready)
                if write:
                    assert busy, "a write after busy fell"
                    assert addr not in writes, f"out word {addr} written twice"
                    writes[addr] = data
                if valid and offered is None:
                    offered = cycle
                if valid and ready:
                    offers.append(offered)
                    offered = None
                if not busy:
                    break
            # rows from their params.beats words each (every word written once)
            b = params.beats
            rows_written = {addr // b: row_of_words(params, [writes[a] for a in
                                                             range(addr // b * b, addr // b * b + b)])
                            for addr in writes if addr % b == 0}
            assert len(writes) == b * len(rows_written)
            results.append((rows_written, cycle, offers))

    run_sim(bench, producer, control, deadline=1.0, reuse=True)
    return results


def check(params, v, runs, *, idle_prob, seed=0):
    """Bit-exact rows, each written once, and the run's cycles == schedule(...)."""
    results = simulate(params, v, runs, idle_prob=idle_prob, seed=seed)
    for (rows, head_base, out_mult, out_shift), (writes, cycles, offers) in zip(runs, results):
        want = expected(rows, v, head_base, out_mult, out_shift, params)
        assert sorted(writes) == list(range(head_base, head_base + len(rows)))
        for i, row in enumerate(want):
            assert writes[head_base + i] == row, (i, out_mult, out_shift)
        assert len(offers) == sum(len(row) for row in rows)
        assert cycles == schedule(params, rows, offers)
    return results


# out_mult / out_shift pairs: zero, saturation both ways, the largest shift, typical scales.
EDGE_SCALES = [(0, 0), (65535, 0), (1, 0), (65535, 63), (1, 63), (65535, 20)]


def typical_scale(rng, params):
    """A random multiplier with a shift that leaves most outputs inside int8."""
    return rng.randint(1, 65535), params.prob_bits + rng.randint(13, 18)


# -- bit-exact -------------------------------------------------------------------------------


@pytest.mark.parametrize("head_dim, macs, out_lanes, prob_bits", [
    (16, 16, 16, 12),      # one entry a cycle, the whole row requantized at once
    (16, 8, 4, 15),        # two cycles an entry, out_lanes = d/4, p up to 2^15
    pytest.param(64, 32, 16, 12, marks=pytest.mark.sweep),   # two cycles an entry at d = 64
    #                                   (make test: d = 64 in the one-entry-rows case)
])
def test_spmm_matches_golden(head_dim, macs, out_lanes, prob_bits):
    p = make_params(head_dim, macs, out_lanes=out_lanes, prob_bits=prob_bits)
    rng = random.Random(head_dim * 100 + macs)
    v = random_v(rng, p)
    base = p.max_tokens
    runs = [
        (random_rows(rng, p.max_tokens, p), base, *typical_scale(rng, p)),    # N = max, odd
        (random_rows(rng, 1, p), 0, *typical_scale(rng, p)),                  # N = 1
        (random_rows(rng, 6, p), base, *typical_scale(rng, p)),
    ]
    runs += [(random_rows(rng, 3, p), rng.choice([0, base]), mult, shift)
             for mult, shift in EDGE_SCALES[:4 if head_dim == 64 else None]]
    check(p, v, runs, idle_prob=0.3, seed=head_dim + macs)


def test_spmm_d64_one_entry_rows_and_extremes():
    """d = M = 64: rows of one entry (output-bound at out_lanes = d/4) and long rows, with
    and without idle cycles; v = -128 and p = 2^F."""
    p = make_params(64, 64, out_lanes=16, max_tokens=9)
    rng = random.Random(64)
    v = random_v(rng, p)
    one = random_rows(rng, 9, p, lengths=lambda i: 1)
    long = random_rows(rng, 7, p, lengths=lambda i: rng.randint(4, 9))
    runs = [(one, 0, *typical_scale(rng, p)), (long, 9, *typical_scale(rng, p)),
            (one, 9, 65535, 63)]
    check(p, v, runs, idle_prob=0.0)
    check(p, v, runs[:2], idle_prob=0.4, seed=5)


def test_spmm_extreme_sums():
    """The accumulators' bounds: rows whose p sum to 2^F + N/2 (the most a softmax row can
    round to) against v all -128 or all 127, and single entries of 2^F; one scale that
    brings every sum into the int8 range and one (shift 0) that saturates them."""
    p = make_params(16, 16, out_lanes=16, max_tokens=9, heads=1)
    top = 1 << p.prob_bits
    extra = budget(p) - top
    rows = [[(0, top), (1, extra)], [(2, top)], [(3, top - 1), (4, extra + 1)], [(4, 0)],
            [(1, top), (0, extra), (2, 0)]]
    shift = p.prob_bits + 2           # |o| <= 128 * (2^F + 5) -> |y| <= 32.2
    for fill in (-128, 127):
        v = random_v(random.Random(0), p, fill=fill)
        check(p, v, [(rows, 0, 1, shift), (rows, 0, 1, 0)], idle_prob=0.2)


def test_spmm_out_lanes_d_with_s2():
    """M = d/2 with out_lanes = d: the output keeps up with single-entry rows."""
    p = make_params(16, 8, out_lanes=16)
    rng = random.Random(7)
    v = random_v(rng, p)
    runs = [(random_rows(rng, 13, p), 13, *EDGE_SCALES[2]),
            (random_rows(rng, 5, p, lengths=lambda i: 1), 0, *typical_scale(rng, p))]
    check(p, v, runs, idle_prob=0.25, seed=3)


# -- cycles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("head_dim, macs, out_lanes", [
    (16, 8, 4), (16, 16, 16), pytest.param(64, 64, 16, marks=pytest.mark.sweep)])
def test_spmm_cycles(head_dim, macs, out_lanes):
    """`entries` always valid: busy falls E·d/M + latency cycles after start, latency =
    d/out_lanes + START_TO_OFFER + OFFER_TO_BANK + MacBank.latency + REQUANT_LATENCY,
    with long rows; rows shorter than K = d/out_lanes cycles take K; and
    rows of mixed short lengths take max(e·S, K) each (S = d/M cycles an entry)."""
    p = make_params(head_dim, macs, out_lanes=out_lanes)
    slices, chunks = head_dim // macs, head_dim // out_lanes
    shortest = -(-chunks // slices)                    # entries of a row that never waits
    rng = random.Random(11)
    v = random_v(rng, p)
    runs = [(random_rows(rng, 13, p, lengths=lambda i: rng.randint(shortest, 13)), 13,
             *typical_scale(rng, p)),
            (random_rows(rng, 11, p, lengths=lambda i: shortest), 0, *typical_scale(rng, p)),
            (random_rows(rng, 12, p, lengths=lambda i: 1), 13, *typical_scale(rng, p)),
            (random_rows(rng, 13, p, lengths=lambda i: rng.choice([1, 2, 3])), 0,
             *typical_scale(rng, p))]
    latency = spmm_latency(p)
    tail = START_TO_OFFER + OFFER_TO_BANK + MacBank.latency + REQUANT_LATENCY
    assert latency == chunks + tail
    results = check(p, v, runs, idle_prob=0.0)
    cycles = [c for _, c, _ in results]
    lengths = [[len(r) for r in rows] for rows, *_ in runs]
    assert cycles == [always_valid(p, e) for e in lengths]
    assert cycles[0] == sum(lengths[0]) * slices + latency
    assert cycles[1] == 11 * shortest * slices + latency
    assert cycles[2] == slices + 11 * max(slices, chunks) + latency


# Both in make sim only: make test's d = M = 64 bank is test_spmm_cycles[64-64-16]'s (the
# floor of K = 4 cycles a row) and test_spmm_d64_one_entry_rows_and_extremes's.
@pytest.mark.sweep
@pytest.mark.parametrize("out_lanes", [64, 32])
def test_spmm_one_entry_rows_at_the_floor(out_lanes):
    """d = M = 64 (one cycle an entry): a run of 1-entry rows takes max(1, d/out_lanes)
    cycles a row, 1 at out_lanes = d and 2 at out_lanes = d/2; then a DeiT-like head (many
    rows of 2 entries and one long row) at max(2, K) a row; also under idle cycles."""
    p = make_params(64, 64, out_lanes=out_lanes, max_tokens=25, heads=1)
    chunks = 64 // out_lanes
    rng = random.Random(out_lanes)
    v = random_v(rng, p)
    ones = random_rows(rng, 25, p, lengths=lambda i: 1)
    deit = random_rows(rng, 25, p, lengths=lambda i: 25 if i == 12 else 2)
    runs = [(ones, 0, *typical_scale(rng, p)), (deit, 0, *typical_scale(rng, p))]
    cycles = [c for _, c, _ in check(p, v, runs, idle_prob=0.0)]
    tail = START_TO_OFFER + OFFER_TO_BANK + MacBank.latency + REQUANT_LATENCY
    assert cycles[0] == 1 + 24 * chunks + chunks + tail
    assert cycles[1] == 2 + 11 * 2 + 25 + 12 * 2 + chunks + tail
    check(p, v, runs, idle_prob=0.3, seed=out_lanes)


# -- parameters -----------------------------------------------------------------------------------


def test_spmm_rejects_bad_params():
    # M | d, which the SpMM's slices rely on, is VitcodParams' own check
    # (tests/test_vitcod_golden.py).
    with pytest.raises(TypeError, match=r"^params must be a VitcodParams, not 3$"):
        Spmm(3)
    with pytest.raises(TypeError, match=r"^params must be a VitcodParams, not None$"):
        OutputStage(None)
