"""golden/taylor.py: the float Taylor attention, and the integer model of docs/taylor.md."""

import math
import re

import pytest
import torch

from celine.golden.quant import quantize
from celine.golden.taylor import (TaylorRegisters, attention_errors, calibrate, dominant_keys_inputs,
                           error_report, mixed_heads_inputs, output_scales, random_inputs,
                           reciprocal, recip_shift, softmax_attention, taylor_attention,
                           taylor_head_int, taylor_int)

REGS = TaylorRegisters(ctx_shift=4, v_mult=300, v_shift=2, out_mult=40000, out_shift=20)


def randint(shape, width=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-(1 << (width - 1)), 1 << (width - 1), shape, generator=gen)


def reference_head(q, k, v, regs, width, max_tokens):
    """docs/taylor.md in plain Python integers (lists), written independently of the model."""
    q, k, v = q.tolist(), k.tolist(), v.tolist()
    n, d = len(k), len(k[0])

    def rshift(x, s):                       # floor((x + 2^(s-1)) / 2^s), half = 0 at s = 0
        return (x + (2 ** (s - 1) if s else 0)) // 2 ** s

    def clamp(x, bits):
        return max(-(2 ** (bits - 1)), min(2 ** (bits - 1) - 1, x))

    sk = [sum(row[a] for row in k) for a in range(d)]
    sv = [sum(row[b] for row in v) for b in range(d)]
    p = [[sum(k[i][a] * v[i][b] for i in range(n)) for b in range(d)] for a in range(d)]
    gn = [[n * p[a][b] - sk[a] * sv[b] for b in range(d)] for a in range(d)]
    gq = [[clamp(rshift(x, regs.ctx_shift), 2 * width) for x in row] for row in gn]
    scores = [[sum(q[i][a] * gq[a][b] for a in range(d)) for b in range(d)] for i in range(n)]
    vterm = [rshift(sv[b] * regs.v_mult, regs.v_shift) for b in range(d)]
    num = [[scores[i][b] + vterm[b] for b in range(d)] for i in range(n)]
    r = 16 + math.ceil(math.log2(max_tokens))
    recip = (2 ** r + n // 2) // n
    quot = [[rshift(x * recip, r) for x in row] for row in num]
    out = [[clamp(rshift(x * regs.out_mult, regs.out_shift), width) for x in row] for row in quot]
    return {"centered": gn, "context": gq, "scores": scores, "numerator": num, "recip": recip,
            "quotient": quot, "out": out}


def assert_matches_reference(trace, ref):
    for name in ("centered", "context", "scores", "numerator", "quotient", "out"):
        assert getattr(trace, name).tolist() == ref[name], name
    assert trace.recip == ref["recip"]


# -- float models -------------------------------------------------------------------------


def test_taylor_attention_matches_the_per_row_formula():
    q, k, v = random_inputs(9, 5, seed=1)
    n, d = k.shape
    k_mean = [sum(k[j, a].item() for j in range(n)) / n for a in range(d)]
    for i in range(n):
        weights = [1 + sum(q[i, a].item() * (k[j, a].item() - k_mean[a]) for a in range(d))
                   / math.sqrt(d) for j in range(n)]
        row = [sum(w * v[j, b].item() for j, w in enumerate(weights)) / sum(weights)
               for b in range(d)]
        assert taylor_attention(q, k, v)[i].tolist() == pytest.approx(row, rel=1e-12, abs=1e-12)


def test_taylor_attention_batches_over_heads():
    q, k, v = (x.reshape(3, 6, 4) for x in random_inputs(18, 4, seed=2))
    batched = taylor_attention(q, k, v)
    for h in range(3):
        assert torch.allclose(batched[h], taylor_attention(q[h], k[h], v[h]), rtol=0, atol=1e-14)


def test_taylor_approximates_softmax_for_small_scores():
    # Scores q·k/√d of about ±0.04: exp(x) ≈ 1 + x to O(x²). Measured ~1e-4 over 5 seeds.
    for seed in range(5):
        q, k, v = random_inputs(50, 16, seed=seed)
        errors = attention_errors(softmax_attention(0.1 * q, 0.1 * k, v),
                                  taylor_attention(0.1 * q, 0.1 * k, v))
        assert errors["rel_frobenius"] < 1e-3


def test_attention_errors():
    ref = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    errors = attention_errors(ref, ref + torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    assert errors == {"max_abs": 1.0, "mean_abs": 0.25, "rel_frobenius": 0.2}
    assert all(type(value) is float for value in errors.values())


# -- registers and reciprocal --------------------------------------------------------------


def test_recip_shift_and_reciprocal_rounding():
    assert [recip_shift(n) for n in (1, 2, 3, 4, 197, 256, 257, 4096)] == \
        [16, 17, 18, 18, 24, 24, 25, 28]
    assert reciprocal(3, 4) == 87381 and reciprocal(1, 1) == 65536
    for max_tokens in (1, 2, 3, 197, 256, 4096):
        shift = recip_shift(max_tokens)
        for n in range(1, max_tokens + 1):
            assert abs(reciprocal(n, max_tokens) * n - (1 << shift)) <= n // 2


# -- the integer model ---------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [1, 2, 7, 13])
def test_integer_model_matches_the_python_reference(tokens):
    for seed in range(4):
        gen = torch.Generator().manual_seed(100 * tokens + seed)
        width = (4, 8)[seed % 2]
        d = 1 + seed
        q, k, v = (randint((tokens, d), width, seed=7 * seed + i) for i in range(3))
        regs = TaylorRegisters(ctx_shift=int(torch.randint(0, 13, (), generator=gen)),
                               v_mult=int(torch.randint(0, 65536, (), generator=gen)),
                               v_shift=int(torch.randint(0, 21, (), generator=gen)),
                               out_mult=int(torch.randint(0, 65536, (), generator=gen)),
                               out_shift=int(torch.randint(10, 31, (), generator=gen)))
        trace = taylor_head_int(q, k, v, regs, width=width, max_tokens=16)
        assert_matches_reference(trace, reference_head(q, k, v, regs, width, 16))


def test_centered_key_sum_is_exactly_zero_and_denominator_is_n():
    q, k, v = (randint((13, 8), seed=i) for i in range(3))
    trace = taylor_head_int(q, k, v, REGS, max_tokens=16)
    assert trace.centered_key_sum.tolist() == [0] * 8
    assert trace.denominator == 13 and trace.recip == reciprocal(13, 16)
    assert torch.equal(trace.token_sums_k, k.sum(0)) and torch.equal(trace.token_sums_v, v.sum(0))
    assert torch.equal(trace.kv, k.T @ v)


def test_centered_context_is_n_times_the_float_context():
    q, k, v = (randint((197, 64), seed=i) for i in range(3))
    centered = taylor_head_int(q, k, v, REGS, max_tokens=256).centered
    kf, vf = k.double(), v.double()
    # N·K_i − ΣK is an integer, and every partial sum stays below 2^53: exact in float64.
    assert torch.equal(centered.double(), (197 * kf - kf.sum(0)).T @ vf)
    assert torch.allclose(centered.double(), 197 * (kf - kf.mean(0)).T @ vf, rtol=1e-12, atol=1e-3)


def test_most_negative_operands_at_max_tokens():
    full = TaylorRegisters(ctx_shift=0, v_mult=65535, v_shift=0, out_mult=65535, out_shift=0)
    low = torch.full((4096, 8), -128)
    trace = taylor_head_int(low, low, low, full, max_tokens=4096)
    assert_matches_reference(trace, reference_head(low, low, low, full, 8, 4096))
    assert trace.numerator.unique().tolist() == [4096 * -128 * 65535]


@pytest.mark.parametrize("width, out_shift", [(8, 40), (16, 63)])
def test_saturated_context_with_largest_registers(width, out_shift):
    # N = 2, G_N = (k1 − k2)(v1 − v2) = −(2^w − 1)^2 saturates G_q; Q = −2^(w−1) then gives
    # the largest A. At 16 bits num·recip and quot·out_mult exceed int64 (exact fallback).
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    k = torch.tensor([[lo] * 64, [hi] * 64])
    v = torch.tensor([[hi] * 64, [lo] * 64])
    q = torch.tensor([[lo] * 64, [hi] * 64])
    for regs in (TaylorRegisters(ctx_shift=0, v_mult=65535, v_shift=0, out_mult=65535, out_shift=0),
                 TaylorRegisters(ctx_shift=0, v_mult=65535, v_shift=0, out_mult=65535,
                                 out_shift=out_shift)):
        trace = taylor_head_int(q, k, v, regs, width=width, max_tokens=4096)
        assert_matches_reference(trace, reference_head(q, k, v, regs, width, 4096))
        assert trace.context.unique().tolist() == [-(1 << (2 * width - 1))]


def test_single_token_returns_v():
    # N = 1: G_N = 0 and Z = v. With out_scale = s_v the two multipliers cancel.
    v = torch.tensor([[-128, -1, 0, 1, 77, 127]])
    q, k = randint((1, 6), seed=1), randint((1, 6), seed=2)
    regs = calibrate(q, k, v, scales=(0.05, 0.05, 0.01), out_scale=0.01)
    trace = taylor_head_int(q, k, v, regs, max_tokens=1)
    assert trace.centered.abs().max() == 0 and regs.ctx_shift == 0
    assert torch.equal(trace.out, v)
    qf, kf, vf = q.double() * 0.05, k.double() * 0.05, v.double() * 0.01
    assert torch.allclose(taylor_attention(qf, kf, vf), vf, rtol=0, atol=1e-15)


def test_head_mask_skips_heads():
    q, k, v = (randint((3, 5, 8), seed=i) for i in range(3))
    heads = [taylor_head_int(q[h], k[h], v[h], REGS, max_tokens=8).out for h in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(taylor_int(q, k, v, REGS, max_tokens=8), heads))
    kept = taylor_int(q, k, v, REGS, head_mask=0b101, max_tokens=8)
    assert len(kept) == 1 and torch.equal(kept[0], heads[1])
    kept = taylor_int(q, k, v, REGS, head_mask=0b010, max_tokens=8)
    assert len(kept) == 2 and torch.equal(kept[0], heads[0]) and torch.equal(kept[1], heads[2])
    assert taylor_int(q, k, v, REGS, head_mask=0b111, max_tokens=8) == []


def test_each_head_runs_with_its_own_output_registers():
    q, k, v = (randint((3, 5, 8), seed=i) for i in range(3))
    regs = TaylorRegisters(ctx_shift=4, v_mult=300, v_shift=2, out_mult=(40000, 9000, 65535),
                           out_shift=(20, 18, 25))
    outs = taylor_int(q, k, v, regs, max_tokens=8)
    for h in range(3):
        one = TaylorRegisters(ctx_shift=4, v_mult=300, v_shift=2, out_mult=regs.out_mult[h],
                              out_shift=regs.out_shift[h])
        assert regs.head(h) == one
        assert torch.equal(outs[h], taylor_head_int(q[h], k[h], v[h], one, max_tokens=8).out)
    kept = taylor_int(q, k, v, regs, head_mask=0b101, max_tokens=8)
    assert len(kept) == 1 and torch.equal(kept[0], outs[1])
    # An int is every head's value; lists are taken as tuples.
    mixed = TaylorRegisters(ctx_shift=4, v_mult=300, v_shift=2, out_mult=[40000, 9000, 65535],
                            out_shift=20)
    assert mixed.out_mult == (40000, 9000, 65535) and mixed.heads == 3
    assert mixed.head(2).out_shift == 20 and REGS.heads is None and REGS.head(5) == REGS


def test_register_values_name_every_heads_registers():
    regs = TaylorRegisters(ctx_shift=4, v_mult=300, v_shift=2, out_mult=(7, 8), out_shift=(1, 2))
    values = regs.values(2)
    assert values == {"ctx_shift": 4, "v_mult": 300, "v_shift": 2, "out_mult_0": 7,
                      "out_shift_0": 1, "out_mult_1": 8, "out_shift_1": 2}
    assert TaylorRegisters.from_values(values, 2) == regs
    assert REGS.values(2)["out_mult_1"] == REGS.out_mult
    with pytest.raises(ValueError, match=r"^registers must hold out_mult and out_shift for 3 "
                                         r"heads, not 2$"):
        regs.values(3)


# -- calibration and errors ----------------------------------------------------------------


def quantized_heads(tokens=64, head_dim=16, seed=0):
    """golden.taylor.mixed_heads_inputs (head 0's output beyond V's range, head 1's a
    small part of it) quantized per tensor at their own scales, as a real layer's are:
    ((q, k, v) float H x N x d, (q, k, v) int8, (s_q, s_k, s_v))."""
    q, k, v = mixed_heads_inputs(tokens, head_dim, seed=seed)
    scales = tuple(float(x.abs().max()) / 127 for x in (q, k, v))
    return (q, k, v), tuple(quantize(x, s, 8) for x, s in zip((q, k, v), scales)), scales


def test_default_output_scale_is_calibrated_per_head_from_the_data():
    # Each head's largest float Taylor output (of its integers at their scales) maps to 127.
    # Measured: rel_frobenius 0.0087 and 0.0087 against that float output, no output beyond
    # the peak. With the old default (out_scale = s_v for every head): 20.7% of head 0
    # saturated (error 0.34), head 1 used 27 of 127 levels (error 0.041).
    floats, (q, k, v), scales = quantized_heads()
    regs = calibrate(q, k, v, scales=scales)
    assert regs.heads == 2
    steps = output_scales(regs, scales=scales, tokens=64, head_dim=16)
    reference = taylor_attention(*(x.double() * s for x, s in zip((q, k, v), scales)))
    for h, out in enumerate(taylor_int(q, k, v, regs, max_tokens=64)):
        peak = float(reference[h].abs().max())
        assert steps[h] == pytest.approx(peak / 127, rel=1e-4)
        assert int(out.abs().max()) == 127
        assert attention_errors(reference[h], out * steps[h])["rel_frobenius"] < 0.015
        assert float((out.abs() >= 127).double().mean()) <= 0.01
    # Without scales the integers are the values (scale 1).
    regs = calibrate(q, k, v)
    assert regs == calibrate(q, k, v, scales=(1, 1, 1))
    steps = output_scales(regs, tokens=64, head_dim=16)
    reference = taylor_attention(q, k, v)
    for h, out in enumerate(taylor_int(q, k, v, regs, max_tokens=64)):
        assert attention_errors(reference[h], out * steps[h])["rel_frobenius"] < 0.015
    # One head (N x d): ints, as with one out_scale.
    one = calibrate(q[1], k[1], v[1], scales=scales)
    assert one.heads is None and isinstance(one.out_mult, int)
    step = output_scales(one, scales=scales, tokens=64, head_dim=16)
    peak = float(taylor_attention(*(x[1].double() * s for x, s in zip((q, k, v), scales)))
                 .abs().max())
    assert step == pytest.approx(peak / 127, rel=1e-4)


def test_output_scale_per_head_and_head_mask():
    floats, (q, k, v), scales = quantized_heads()
    regs = calibrate(q, k, v, scales=scales, out_scale=(0.5, 0.01))
    assert regs == TaylorRegisters(
        ctx_shift=regs.ctx_shift, v_mult=regs.v_mult, v_shift=regs.v_shift,
        out_mult=(calibrate(q, k, v, scales=scales, out_scale=0.5).out_mult,
                  calibrate(q, k, v, scales=scales, out_scale=0.01).out_mult),
        out_shift=(calibrate(q, k, v, scales=scales, out_scale=0.5).out_shift,
                   calibrate(q, k, v, scales=scales, out_scale=0.01).out_shift))
    assert output_scales(regs, scales=scales, tokens=64, head_dim=16) == pytest.approx(
        (0.5, 0.01), rel=1e-4)
    # A skipped head does not count for ctx_shift (here the widest context is head 1's).
    shifts = [calibrate(q[h], k[h], v[h], scales=scales).ctx_shift for h in range(2)]
    assert calibrate(q, k, v, scales=scales, head_mask=0b10).ctx_shift == shifts[0]
    assert calibrate(q, k, v, scales=scales).ctx_shift == max(shifts)


def test_default_output_scale_of_silent_and_tiny_heads():
    # Head 0: Z = 0 (v = 0), the output step is s_v. Head 1: q = 0, so Z = mean(V) = s_v/6,
    # far below one unit u of the quotient (u/s_out = s_q*s_k*127*6/(6*sqrt(8)) > 65535):
    # the largest gain, 65535 at shift 0, instead of an error.
    k = randint((2, 6, 8), seed=1)
    q, v = torch.zeros_like(k), torch.zeros_like(k)
    v[1, 0, 0] = 1
    scales = (100.0, 100.0, 0.5)
    regs = calibrate(q, k, v, scales=scales)
    steps = output_scales(regs, scales=scales, tokens=6, head_dim=8)
    assert steps[0] == pytest.approx(0.5, rel=1e-4)
    assert (regs.out_mult[1], regs.out_shift[1]) == (65535, 0)




def test_ctx_shift_is_the_smallest_fitting_shift_with_rounding():
    # width 4, context 8 bits: G_N = 255; 255 >> 1 rounds to 128 (too wide), >> 2 to 64.
    k = torch.tensor([[-8], [-8], [7]])
    v = torch.tensor([[-8], [-7], [1]])
    q = torch.zeros(3, 1, dtype=torch.int64)
    regs = calibrate(q, k, v, scales=(1.0, 1.0, 1.0), out_scale=1.0, width=4)
    assert taylor_head_int(q, k, v, regs, width=4, max_tokens=3).centered.item() == 255
    assert regs.ctx_shift == 2
    # Over heads, the widest context decides.
    q, k, v = (randint((3, 197, 64), seed=i) for i in range(3))
    shifts = [calibrate(q[h], k[h], v[h], scales=(1.0, 1.0, 1.0), out_scale=1.0).ctx_shift
              for h in range(3)]
    assert calibrate(q, k, v, scales=(1.0, 1.0, 1.0), out_scale=1.0).ctx_shift == max(shifts)


def test_calibrated_registers_follow_the_derivation():
    q, k, v = (randint((197, 64), seed=i) for i in range(3))
    s_q, s_k, s_v, s_out = 0.02, 0.03, 0.05, 0.004
    regs = calibrate(q, k, v, scales=(s_q, s_k, s_v), out_scale=s_out)
    unit = s_q * s_k * s_v * 2 ** regs.ctx_shift / (197 * 8)
    for mult, shift, ratio in ((regs.v_mult, regs.v_shift, s_v / unit),
                               (regs.out_mult, regs.out_shift, unit / s_out)):
        assert mult == math.floor(ratio * 2 ** shift + 0.5) <= 65535
        assert math.floor(ratio * 2 ** (shift + 1) + 0.5) > 65535
    # Before the output requantization, quot·u is the float Taylor output to ~1e-4.
    trace = taylor_head_int(q, k, v, regs, max_tokens=256)
    reference = taylor_attention(q.double() * s_q, k.double() * s_k, v.double() * s_v)
    assert attention_errors(reference, trace.quotient * unit)["rel_frobenius"] < 1e-3


def test_integer_model_tracks_float_taylor_on_random_int8():
    # Measured over 10 seeds: rel_frobenius 0.82%..1.06%, max_abs <= 0.5 output LSB + 2e-4 LSB
    # (the output's own 8-bit rounding dominates).
    for seed in range(3):
        q, k, v = (randint((197, 64), seed=10 * seed + i) for i in range(3))
        scales = (0.02, 0.03, 0.05)
        reference = taylor_attention(*(x.double() * s for x, s in zip((q, k, v), scales)))
        s_out = float(reference.abs().max()) / 127
        regs = calibrate(q, k, v, scales=scales, out_scale=s_out)
        out = taylor_int(q[None], k[None], v[None], regs, max_tokens=256)[0]
        errors = attention_errors(reference, out * s_out)
        assert errors["rel_frobenius"] < 0.02
        assert errors["max_abs"] < 0.505 * s_out


def test_error_report_on_random_and_dominant_inputs():
    # Measured at N=197, d=64, seeds 0..2: Taylor vs softmax rel_frobenius 0.49..0.51 (random),
    # 0.96 (dominant keys); integer vs Taylor 1.4%..1.7% (input and output 8-bit rounding).
    random = error_report(*random_inputs(197, 64, seed=0))
    dominant = error_report(*dominant_keys_inputs(197, 64, seed=0))
    for report in (random, dominant):
        assert set(report) == {"taylor_vs_softmax", "int_vs_taylor"}
        assert report["int_vs_taylor"]["rel_frobenius"] < 0.03
    assert 0.3 < random["taylor_vs_softmax"]["rel_frobenius"] < 0.7
    assert dominant["taylor_vs_softmax"]["rel_frobenius"] > 0.8
    q, k, v = dominant_keys_inputs(197, 64, keys=3, seed=0)
    assert softmax_attention(q, k, q).shape == (197, 64)
    peak = torch.softmax(q @ k.T / 8, dim=-1).max(dim=-1).values
    assert peak.min() > 0.5                       # every query is dominated by one key
    # A larger max_tokens only refines the reciprocal (R = 28 instead of 24).
    wide = error_report(*random_inputs(197, 64, seed=0), max_tokens=4096)
    assert wide["int_vs_taylor"]["rel_frobenius"] == pytest.approx(
        random["int_vs_taylor"]["rel_frobenius"], rel=1e-2)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, value, error, message", [
    ("ctx_shift", 64, ValueError, "ctx_shift must be between 0 and 63, not 64"),
    ("v_shift", -1, ValueError, "v_shift must be between 0 and 63, not -1"),
    ("out_shift", 64, ValueError, "out_shift must be between 0 and 63, not 64"),
    ("v_mult", 65536, ValueError, "v_mult must be between 0 and 65535, not 65536"),
    ("out_mult", -1, ValueError, "out_mult must be between 0 and 65535, not -1"),
    ("ctx_shift", True, TypeError, "ctx_shift must be an integer, not True"),
    ("out_mult", 1.0, TypeError, "out_mult must be an integer, not 1.0"),
])
def test_register_validation(name, value, error, message):
    if name.startswith("out_"):          # one value per head alike
        values = {**dict(ctx_shift=0, v_mult=1, v_shift=0, out_mult=(1, 1), out_shift=(0, 0)),
                  name: (0, value)}
        with pytest.raises(error, match=f"^{message.replace(name, re.escape(name + '[1]'))}$"):
            TaylorRegisters(**values)
    values = {**dict(ctx_shift=0, v_mult=1, v_shift=0, out_mult=1, out_shift=0), name: value}
    with pytest.raises(error, match=f"^{message}$"):
        TaylorRegisters(**values)


def test_per_head_register_validation():
    base = dict(ctx_shift=0, v_mult=1, v_shift=0)
    with pytest.raises(ValueError, match=r"^out_mult must be an integer or one integer per "
                                         r"head, not \(\)$"):
        TaylorRegisters(**base, out_mult=(), out_shift=0)
    with pytest.raises(ValueError, match=r"^out_shift must have one value per head as out_mult "
                                         r"\(2\), not 3$"):
        TaylorRegisters(**base, out_mult=(1, 2), out_shift=(0, 0, 0))
    with pytest.raises(TypeError, match=r"^out_mult\[0\] must be an integer, not 1\.5$"):
        TaylorRegisters(**base, out_mult=[1.5], out_shift=0)
    regs = TaylorRegisters(**base, out_mult=(1, 2), out_shift=0)
    with pytest.raises(ValueError, match=r"^head must be between 0 and 1, not 2$"):
        regs.head(2)
    ok = torch.zeros(3, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"^regs must hold one head's out_mult and out_shift "
                                         r"\(integers\), not \(1, 2\) and 0$"):
        taylor_head_int(ok, ok, ok, regs, max_tokens=4)
    with pytest.raises(ValueError, match=r"^regs must hold out_mult and out_shift for the 3 "
                                         r"heads of q, not 2$"):
        taylor_int(ok[None].repeat(3, 1, 1), ok[None].repeat(3, 1, 1), ok[None].repeat(3, 1, 1),
                   regs, max_tokens=4)
    with pytest.raises(TypeError, match=r"^regs must be a TaylorRegisters, not 1$"):
        output_scales(1, tokens=3, head_dim=4)


def test_reciprocal_validation():
    with pytest.raises(ValueError, match=r"^max_tokens must be between 1 and 4096, not 0$"):
        recip_shift(0)
    with pytest.raises(ValueError, match=r"^max_tokens must be between 1 and 4096, not 4097$"):
        reciprocal(1, 4097)
    with pytest.raises(TypeError, match=r"^max_tokens must be an integer, not 8\.0$"):
        recip_shift(8.0)
    with pytest.raises(ValueError, match=r"^tokens must be between 1 and 8, not 0$"):
        reciprocal(0, 8)
    with pytest.raises(ValueError, match=r"^tokens must be between 1 and 8, not 9$"):
        reciprocal(9, 8)


def test_integer_model_validation():
    ok = torch.zeros(3, 4, dtype=torch.int64)
    bad = ok.clone()
    bad[1, 2] = 128
    cases = [
        (dict(q=bad), ValueError, r"q must hold signed 8-bit integers, not 128"),
        (dict(k=-bad - 1), ValueError, r"k must hold signed 8-bit integers, not -129"),
        (dict(v=bad // 16, width=4), ValueError, r"v must hold signed 4-bit integers, not 8"),
        (dict(q=ok.double()), TypeError, r"q must be an integer tensor, not torch\.float64"),
        (dict(k=ok.bool()), TypeError, r"k must be an integer tensor, not torch\.bool"),
        (dict(q=ok[None]), ValueError,
         r"q must be a tokens x head_dim tensor, not shape \(1, 3, 4\)"),
        (dict(k=ok[:, :3]), ValueError, r"k must have the shape of q \(3, 4\), not \(3, 3\)"),
        (dict(v=ok[:2]), ValueError, r"v must have the shape of q \(3, 4\), not \(2, 4\)"),
        (dict(q=ok[:, :0], k=ok[:, :0], v=ok[:, :0]), ValueError,
         r"head_dim must be at least 1, not 0"),
        (dict(max_tokens=2), ValueError, r"tokens must be between 1 and 2, not 3"),
        (dict(q=ok[:0], k=ok[:0], v=ok[:0]), ValueError, r"tokens must be between 1 and 4, not 0"),
        (dict(max_tokens=0), ValueError, r"max_tokens must be between 1 and 4096, not 0"),
        (dict(max_tokens=None), TypeError, r"max_tokens must be an integer, not None"),
        (dict(width=1), ValueError, r"width must be between 2 and 16, not 1"),
        (dict(width=17), ValueError, r"width must be between 2 and 16, not 17"),
        (dict(regs=(4, 300, 2, 40000, 20)), TypeError,
         r"regs must be a TaylorRegisters, not \(4, 300, 2, 40000, 20\)"),
    ]
    for change, error, message in cases:
        args = {**dict(q=ok, k=ok, v=ok, regs=REGS, width=8, max_tokens=4), **change}
        with pytest.raises(error, match=f"^{message}$"):
            taylor_head_int(args.pop("q"), args.pop("k"), args.pop("v"), args.pop("regs"), **args)


def test_multi_head_validation():
    ok = torch.zeros(3, 5, 8, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"^q must be a heads x tokens x head_dim tensor, "
                                         r"not shape \(5, 8\)$"):
        taylor_int(ok[0], ok[0], ok[0], REGS, max_tokens=8)
    with pytest.raises(ValueError, match=r"^head_mask must be between 0 and 7, not 8$"):
        taylor_int(ok, ok, ok, REGS, head_mask=8, max_tokens=8)
    with pytest.raises(TypeError, match=r"^head_mask must be an integer, not None$"):
        taylor_int(ok, ok, ok, REGS, head_mask=None, max_tokens=8)


def test_calibration_raises_ctx_shift_for_few_tokens():
    # One token: G_N = 0 fits at shift 0, but s_v/u = N*sqrt(d)/(s_q*s_k) = 8*128*128 = 2^17
    # is over 65535, so the context shift goes up (to 2) until v_mult fits.
    q, k, v = (randint((1, 64), seed=i) for i in range(3))
    regs = calibrate(q, k, v, scales=(1 / 128, 1 / 128, 1 / 128), out_scale=0.01)
    assert regs.ctx_shift == 2 and regs.v_shift == 0 and regs.v_mult == 32768


def test_calibration_validation():
    q, k, v = (randint((5, 4), seed=i) for i in range(3))
    good = dict(scales=(0.05, 0.05, 0.05), out_scale=0.01)
    cases = [
        (dict(scales=(1.0, 2.0)), TypeError, r"scales must be a tuple \(s_q, s_k, s_v\), not \(1\.0, 2\.0\)"),
        (dict(out_scale=(0.1, 0.2)), TypeError,
         r"out_scale must be a positive number, not \(0\.1, 0\.2\)"),
        (dict(out_scale="0.1"), TypeError, r"out_scale must be a positive number, not '0\.1'"),
        (dict(head_mask=1), ValueError, r"head_mask must be between 0 and 0, not 1"),
        (dict(scales=(1.0, 0.0, 1.0)), ValueError, r"s_k must be a positive number, not 0\.0"),
        (dict(scales=("1", 1.0, 1.0)), TypeError, r"s_q must be a positive number, not '1'"),
        (dict(scales=(1.0, 1.0, math.inf)), ValueError, r"s_v must be a positive number, not inf"),
        (dict(out_scale=-1.0), ValueError, r"out_scale must be a positive number, not -1\.0"),
        (dict(scales=(1e-15, 1e-15, 1.0)), ValueError,
         r"s_v / u must be at most 65535 \(v_mult at v_shift 0\), not [0-9.]+e\+[0-9]+"),
        (dict(scales=(1e100, 1e100, 1.0)), ValueError,
         r"s_v / u must be at least 2\^-64 \(v_mult at v_shift 63\), not [0-9.e+-]+"),
        (dict(out_scale=1e-300), ValueError,
         r"u / out_scale must be at most 65535 \(out_mult at out_shift 0\), not [0-9.e+-]+"),
        (dict(out_scale=1e300), ValueError,
         r"u / out_scale must be at least 2\^-64 \(out_mult at out_shift 63\), not [0-9.e+-]+"),
        (dict(scales=(1e-200, 1e-200, 1e-200)), ValueError,
         r"u = s_q\*s_k\*s_v\*2\^ctx_shift/\(N\*sqrt\(d\)\) must be a positive finite number, "
         r"not 0\.0"),
        (dict(width=4), ValueError, r"q must hold signed 4-bit integers, not -?[0-9]+"),
    ]
    for change, error, message in cases:
        with pytest.raises(error, match=f"^{message}$"):
            calibrate(q, k, v, **{**good, **change})
    with pytest.raises(ValueError, match=r"^q must be a tokens x head_dim or heads x tokens x "
                                         r"head_dim tensor, not shape \(4,\)$"):
        calibrate(q[0], k[0], v[0], **good)
    heads = dict(q=q[None].repeat(2, 1, 1), k=k[None].repeat(2, 1, 1), v=v[None].repeat(2, 1, 1))
    for change, error, message in [
            (dict(out_scale=(0.1,)), TypeError,
             r"out_scale must be a positive number or 2 of them, not \(0\.1,\)"),
            (dict(out_scale=(0.1, 0)), ValueError, r"out_scale\[1\] must be a positive number, "
                                                    r"not 0"),
            (dict(out_scale=(0.1, 1e-300)), ValueError,
             r"u / out_scale\[1\] must be at most 65535 \(out_mult at out_shift 0\), "
             r"not [0-9.e+-]+"),
            (dict(head_mask=4), ValueError, r"head_mask must be between 0 and 3, not 4")]:
        with pytest.raises(error, match=f"^{message}$"):
            calibrate(**heads, **{**good, **change})
    with pytest.raises(ValueError, match=r"^approx must have the shape of reference \(2, 3\), "
                                         r"not \(3, 2\)$"):
        attention_errors(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"^keys must be between 1 and 5, not 0$"):
        dominant_keys_inputs(5, 4, keys=0)
