"""ViTALiTy Taylor attention: the float algorithm and the bit-exact integer model of rtl/taylor.

The float functions follow the paper (docs/taylor.md, "The algorithm"); `taylor_head_int`
computes, bit for bit, what the hardware computes (docs/taylor.md, "The integer
arithmetic"), and `calibrate` is the host's choice of the runtime registers.

Exactness: every intermediate is an exact integer. For operand widths up to 8 bits
(max_tokens <= 4096, head_dim <= 256) all of them fit int64 with room to spare: the
largest product, num * recip, stays below 2^59. For wider operands (up to 16 bits) the two
multiplications by a runtime constant (num * recip and quot * out_mult) can exceed int64;
they check the actual values and then fall back to Python integers, so the model stays
exact.
"""

import math
import numbers
from dataclasses import dataclass

import torch

from ..engines.taylor.spec import LANES, Errors, buffers, registers
from ..spec.numerics import MULT_BITS, SHIFT_BITS
from .quant import quantize, requantize, round_shift, saturate, signed_range
from ..spec.lanes import pack_lanes, unpack_lanes
from .shell import EngineModel, RunResult

MAX_TOKENS = 4096          # as TaylorParams.max_tokens
MAX_WIDTH = 16             # as TaylorParams.operand_width
SHIFT_MAX = (1 << SHIFT_BITS) - 1     # ctx_shift, v_shift, out_shift
MULT_MAX = (1 << MULT_BITS) - 1       # v_mult, out_mult
_INT64_LIMIT = 1 << 63


def _check_int(name, value, minimum, maximum):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, not {value!r}")
    return value


# -- float models ------------------------------------------------------------------------


def softmax_attention(q, k, v):
    """softmax(q kᵀ / √d) v in float64; q, k, v are (..., N, d)."""
    q, k, v = (torch.as_tensor(x, dtype=torch.float64) for x in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def taylor_attention(q, k, v):
    """The paper's first-order Taylor attention in float64; q, k, v are (..., N, d).

    k̄ = mean_i K_i, K̂ = K − k̄, G = K̂ᵀV, Z_i = (Σ V + q_i·G/√d) ⊘ (N + q_i·Σ K̂ᵀ/√d).
    """
    q, k, v = (torch.as_tensor(x, dtype=torch.float64) for x in (q, k, v))
    tokens, root_d = k.shape[-2], math.sqrt(q.shape[-1])
    k_hat = k - k.mean(dim=-2, keepdim=True)
    context = k_hat.transpose(-2, -1) @ v                     # G, d x d
    v_sum = v.sum(dim=-2, keepdim=True)                       # 1 x d
    k_hat_sum = k_hat.sum(dim=-2, keepdim=True)               # 1 x d (0 up to rounding)
    numerator = v_sum + q @ context / root_d
    denominator = tokens + q @ k_hat_sum.transpose(-2, -1) / root_d     # N x 1
    return numerator / denominator


# -- runtime registers and the reciprocal -------------------------------------------------


@dataclass(frozen=True)
class TaylorRegisters:
    """The scale registers of one run (docs/taylor.md); one set serves every head."""
    ctx_shift: int
    v_mult: int
    v_shift: int
    out_mult: int
    out_shift: int

    def __post_init__(self):
        _check_int("ctx_shift", self.ctx_shift, 0, SHIFT_MAX)
        _check_int("v_mult", self.v_mult, 0, MULT_MAX)
        _check_int("v_shift", self.v_shift, 0, SHIFT_MAX)
        _check_int("out_mult", self.out_mult, 0, MULT_MAX)
        _check_int("out_shift", self.out_shift, 0, SHIFT_MAX)


def recip_shift(max_tokens):
    """R = 16 + ceil(log2(max_tokens)): the reciprocal keeps >= 16 significant bits."""
    _check_int("max_tokens", max_tokens, 1, MAX_TOKENS)
    return 16 + (max_tokens - 1).bit_length()


def reciprocal(n, max_tokens):
    """recip = (2^R + n//2) // n, the rounded reciprocal of the token count."""
    shift = recip_shift(max_tokens)
    _check_int("tokens", n, 1, max_tokens)
    return ((1 << shift) + n // 2) // n


# -- the integer model --------------------------------------------------------------------


@dataclass(frozen=True)
class TaylorTrace:
    """Every intermediate of one head of `taylor_head_int` (int64 tensors unless noted).

    token_sums_k S_K (d), token_sums_v S_V (d), kv P = KᵀV (d×d),
    centered_key_sum Σ_i (N·K_i − S_K) (d, always 0), centered G_N = N·P − S_Kᵀ S_V (d×d),
    context G_q (d×d), scores A = Q·G_q (N×d), value_term round_shift(S_V·v_mult, v_shift)
    (d), numerator num (N×d), denominator N (int), recip (int), quotient quot (N×d),
    out (N×d).
    """
    token_sums_k: torch.Tensor
    token_sums_v: torch.Tensor
    kv: torch.Tensor
    centered_key_sum: torch.Tensor
    centered: torch.Tensor
    context: torch.Tensor
    scores: torch.Tensor
    value_term: torch.Tensor
    numerator: torch.Tensor
    denominator: int
    recip: int
    quotient: torch.Tensor
    out: torch.Tensor


def _max_abs(x):
    return int(x.abs().max()) if x.numel() else 0


def _scale(x, multiplier, shift, bits=None):
    """round_shift(x * multiplier, shift), saturated to `bits` if given, exactly.

    In int64 (the quant.py helpers) when the product and rounding term fit, else in
    Python integers.
    """
    if _max_abs(x) * multiplier + ((1 << shift) >> 1) < _INT64_LIMIT:
        if bits is None:
            return round_shift(x * multiplier, shift)
        return requantize(x, multiplier, shift, bits)
    half = (1 << shift) >> 1
    values = [(value * multiplier + half) >> shift for value in x.flatten().tolist()]
    if bits is not None:
        lo, hi = signed_range(bits)
        values = [min(max(value, lo), hi) for value in values]
    return torch.tensor(values, dtype=torch.int64).reshape(x.shape)


def _operand(name, x, width):
    x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, not {x.dtype}")
    x = x.to(torch.int64)
    lo, hi = signed_range(width)
    if x.numel():
        low, high = int(x.min()), int(x.max())
        if low < lo or high > hi:
            raise ValueError(f"{name} must hold signed {width}-bit integers, "
                             f"not {low if low < lo else high}")
    return x


def _operands(q, k, v, width, ndim):
    _check_int("width", width, 2, MAX_WIDTH)
    q = _operand("q", q, width)
    if q.ndim != ndim:
        what = "tokens x head_dim" if ndim == 2 else "heads x tokens x head_dim"
        raise ValueError(f"q must be a {what} tensor, not shape {tuple(q.shape)}")
    k = _operand("k", k, width)
    v = _operand("v", v, width)
    for name, x in (("k", k), ("v", v)):
        if x.shape != q.shape:
            raise ValueError(f"{name} must have the shape of q {tuple(q.shape)}, "
                             f"not {tuple(x.shape)}")
    if q.shape[-1] < 1:
        raise ValueError(f"head_dim must be at least 1, not {q.shape[-1]!r}")
    return q, k, v


def _centered_context(k, v):
    """S_K, S_V, P and G_N = N·P − S_Kᵀ S_V of one head (k, v int64 N×d)."""
    tokens = k.shape[0]
    sums_k, sums_v = k.sum(dim=0), v.sum(dim=0)
    kv = k.T @ v
    centered = tokens * kv - torch.outer(sums_k, sums_v)
    return sums_k, sums_v, kv, centered


def taylor_head_int(q, k, v, regs, *, width=8, max_tokens):
    """One head of the integer pipeline, exactly as docs/taylor.md; returns a TaylorTrace.

    q, k, v: integer tensors N×d holding signed `width`-bit values, 1 <= N <= max_tokens.
    """
    _check_int("max_tokens", max_tokens, 1, MAX_TOKENS)
    if not isinstance(regs, TaylorRegisters):
        raise TypeError(f"regs must be a TaylorRegisters, not {regs!r}")
    q, k, v = _operands(q, k, v, width, 2)
    tokens = q.shape[0]
    _check_int("tokens", tokens, 1, max_tokens)

    sums_k, sums_v, kv, centered = _centered_context(k, v)
    centered_key_sum = (tokens * k - sums_k).sum(dim=0)
    if torch.any(centered_key_sum != 0):                     # an identity; never fires
        raise AssertionError("the centered key sum must be exactly 0")
    context = saturate(round_shift(centered, regs.ctx_shift), 2 * width)
    scores = q @ context
    value_term = round_shift(sums_v * regs.v_mult, regs.v_shift)
    numerator = scores + value_term
    denominator = tokens                                     # N + Q·(N·k̂_sum) = N + 0
    recip = reciprocal(denominator, max_tokens)
    quotient = _scale(numerator, recip, recip_shift(max_tokens))
    out = _scale(quotient, regs.out_mult, regs.out_shift, width)
    return TaylorTrace(token_sums_k=sums_k, token_sums_v=sums_v, kv=kv,
                       centered_key_sum=centered_key_sum, centered=centered, context=context,
                       scores=scores, value_term=value_term, numerator=numerator,
                       denominator=denominator, recip=recip, quotient=quotient, out=out)


def taylor_int(q, k, v, regs, *, head_mask=0, width=8, max_tokens):
    """H heads in sequence (q, k, v: H×N×d); the kept heads' outputs, in head order.

    Bit h of head_mask set = head h skipped (it neither takes nor gives data).
    """
    q, k, v = _operands(q, k, v, width, 3)
    heads = q.shape[0]
    _check_int("head_mask", head_mask, 0, (1 << heads) - 1)
    return [taylor_head_int(q[h], k[h], v[h], regs, width=width, max_tokens=max_tokens).out
            for h in range(heads) if not head_mask >> h & 1]


# -- calibration ---------------------------------------------------------------------------


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return float(value)


def _multiplier(ratio_name, register, ratio):
    """(mult, shift): the largest shift in 0..63 with round(ratio·2^shift) <= 65535."""
    if not ratio < MULT_MAX + 0.5:                 # round(ratio) > 65535, or inf
        raise ValueError(f"{ratio_name} must be at most {MULT_MAX} ({register}_mult at "
                         f"{register}_shift 0), not {ratio:.6g}")
    shift = next(shift for shift in range(SHIFT_MAX, -1, -1)
                 if math.floor(math.ldexp(ratio, shift) + 0.5) <= MULT_MAX)
    mult = math.floor(math.ldexp(ratio, shift) + 0.5)
    if mult == 0:
        raise ValueError(f"{ratio_name} must be at least 2^-64 ({register}_mult at "
                         f"{register}_shift {SHIFT_MAX}), not {ratio:.6g}")
    return mult, shift


def calibrate(q, k, v, *, scales, out_scale, width=8):
    """The registers for integer q, k, v (N×d or H×N×d) with real scales (s_q, s_k, s_v).

    ctx_shift: the smallest shift keeping every round_shift(G_N, shift) of every head in
    2·width bits without saturation, raised further only if s_v/u (below) would exceed
    65535 at v_shift 0 (very few tokens). One unit of A is then worth
    u = s_q·s_k·s_v·2^ctx_shift / (N·√d), so v_mult/2^v_shift ≈ s_v/u and
    out_mult/2^out_shift ≈ u/s_out, each with the largest shift whose multiplier fits
    16 bits. Raises ValueError when a ratio has no such multiplier (above 65535 at
    shift 0, or rounding to 0 at shift 63).
    """
    _check_int("width", width, 2, MAX_WIDTH)
    q = torch.as_tensor(q)
    if q.ndim not in (2, 3):
        raise ValueError(f"q must be a tokens x head_dim or heads x tokens x head_dim tensor, "
                         f"not shape {tuple(q.shape)}")
    q, k, v = _operands(q, k, v, width, q.ndim)
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__len__") or len(scales) != 3:
        raise TypeError(f"scales must be a tuple (s_q, s_k, s_v), not {scales!r}")
    s_q, s_k, s_v = (_positive(name, s) for name, s in zip(("s_q", "s_k", "s_v"), scales))
    s_out = _positive("out_scale", out_scale)
    if q.ndim == 2:
        k, v = k[None], v[None]
    tokens, head_dim = k.shape[-2], k.shape[-1]
    if tokens < 1:
        raise ValueError(f"tokens must be at least 1, not {tokens!r}")

    lo, hi = signed_range(2 * width)
    centered = [_centered_context(k[h], v[h])[3] for h in range(k.shape[0])]
    for ctx_shift in range(SHIFT_MAX + 1):
        rounded = [round_shift(g, ctx_shift) for g in centered]
        if all(int(r.min()) >= lo and int(r.max()) <= hi for r in rounded):
            break
    # A larger ctx_shift makes one unit of A worth more; raise it (coarser context) only
    # when s_v/u would not fit v_mult even at v_shift 0 (tiny N, where G_N is small).
    product = s_q * s_k                              # s_v/u = N·√d / (product·2^ctx_shift)
    while (product > 0 and ctx_shift < SHIFT_MAX
           and not tokens * math.sqrt(head_dim) / product / 2.0 ** ctx_shift < MULT_MAX + 0.5):
        ctx_shift += 1
    unit = s_q * s_k * s_v * 2.0 ** ctx_shift / (tokens * math.sqrt(head_dim))
    if not (0 < unit < math.inf):
        raise ValueError(f"u = s_q*s_k*s_v*2^ctx_shift/(N*sqrt(d)) must be a positive finite "
                         f"number, not {unit!r}")
    v_mult, v_shift = _multiplier("s_v / u", "v", s_v / unit)
    out_mult, out_shift = _multiplier("u / out_scale", "out", unit / s_out)
    return TaylorRegisters(ctx_shift=ctx_shift, v_mult=v_mult, v_shift=v_shift,
                           out_mult=out_mult, out_shift=out_shift)


# -- error measurement ---------------------------------------------------------------------


def attention_errors(reference, approx):
    """max_abs, mean_abs and rel_frobenius (‖approx − ref‖_F / ‖ref‖_F) as floats."""
    reference = torch.as_tensor(reference, dtype=torch.float64)
    approx = torch.as_tensor(approx, dtype=torch.float64)
    if approx.shape != reference.shape:
        raise ValueError(f"approx must have the shape of reference {tuple(reference.shape)}, "
                         f"not {tuple(approx.shape)}")
    diff = (approx - reference).abs()
    return {"max_abs": float(diff.max()),
            "mean_abs": float(diff.mean()),
            "rel_frobenius": float(torch.linalg.norm(diff) / torch.linalg.norm(reference))}


def _tensor_scale(x, width):
    peak = float(torch.as_tensor(x, dtype=torch.float64).abs().max())
    return (peak if peak > 0 else 1.0) / signed_range(width)[1]


def error_report(q, k, v, *, width=8, max_tokens=None):
    """Errors of Taylor attention against softmax, and of the integer model against Taylor.

    q, k, v: float N×d. Each is quantized per tensor (scale = max|x| / (2^(w−1) − 1)); the
    output scale comes from the float Taylor output's max alike; the registers from
    `calibrate`; max_tokens defaults to N.
    """
    q, k, v = (torch.as_tensor(x, dtype=torch.float64) for x in (q, k, v))
    if max_tokens is None:
        max_tokens = q.shape[0]
    scales = tuple(_tensor_scale(x, width) for x in (q, k, v))
    q_int, k_int, v_int = (quantize(x, s, width) for x, s in zip((q, k, v), scales))
    softmax = softmax_attention(q, k, v)
    taylor = taylor_attention(q, k, v)
    s_out = _tensor_scale(taylor, width)
    regs = calibrate(q_int, k_int, v_int, scales=scales, out_scale=s_out, width=width)
    out = taylor_head_int(q_int, k_int, v_int, regs, width=width, max_tokens=max_tokens).out
    return {"taylor_vs_softmax": attention_errors(softmax, taylor),
            "int_vs_taylor": attention_errors(taylor, out.to(torch.float64) * s_out)}


def random_inputs(n, d, *, seed=0):
    """Float64 q, k, v (n×d each), standard normal."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, generator=gen, dtype=torch.float64) for _ in range(3))


def dominant_keys_inputs(n, d, *, keys=3, seed=0, strength=8.0):
    """Float64 q, k, v (n×d) where a few keys dominate: softmax rows are peaky.

    `keys` token positions hold keys along random unit directions; every query points
    along one of them (round robin), so its score with that key is about `strength`
    (after the 1/√d), against about N(0, 1) for the other keys. v is standard normal.
    """
    _check_int("keys", keys, 1, n)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=gen, dtype=torch.float64)
    k = torch.randn(n, d, generator=gen, dtype=torch.float64)
    v = torch.randn(n, d, generator=gen, dtype=torch.float64)
    directions = torch.randn(keys, d, generator=gen, dtype=torch.float64)
    directions /= torch.linalg.norm(directions, dim=1, keepdim=True)
    positions = torch.randperm(n, generator=gen)[:keys]
    # |q_i| ≈ √d along the direction, |k_j| = strength: q_i·k_j / √d ≈ strength.
    k[positions] = strength * directions
    q = 0.5 * q + math.sqrt(d) * directions[torch.arange(n) % keys]
    return q, k, v


# -- the Taylor-attention engine in the shell --------------------------------------------

class TaylorEngineModel(EngineModel):
    """The Taylor-attention engine in the shell (docs/protocol.md, "The Taylor-attention
    engine"): a RUN computes every kept head with taylor_head_int into the same words of
    `out` (skipped heads and tokens N .. max_tokens - 1 keep what they held). ``cycles``
    is the ideal 2·N·d²/M per head; the RTL counts real cycles."""

    name = "taylor"

    def __init__(self, params):
        self.params = params
        self.buffer_specs = buffers(params)
        self.register_map = registers(params)

    def run(self, registers, buffers):
        p = self.params
        tokens, beats = registers["tokens"], p.row_beats
        q, k, v = buffers["q"], buffers["k"], buffers["v"]
        written = {}
        if not 1 <= tokens <= p.max_tokens:
            return RunResult(errors=int(Errors.TOKENS))
        fields = {name: self.register_map[name].field(name).extract(value)
                  for name, value in registers.items()}
        scale = TaylorRegisters(ctx_shift=fields["ctx_shift"], v_mult=fields["v_mult"],
                                v_shift=fields["v_shift"], out_mult=fields["out_mult"],
                                out_shift=fields["out_shift"])
        for h in range(p.heads):
            if registers["head_mask"] >> h & 1:
                continue
            base = h * p.max_tokens * beats

            def rows(buffer):
                return torch.tensor([sum((unpack_lanes(buffer.words[base + i * beats + x],
                                                       LANES, p.operand_width)
                                          for x in range(beats)), [])
                                     for i in range(tokens)])
            result = taylor_head_int(rows(q), rows(k), rows(v), scale,
                                     width=p.operand_width, max_tokens=p.max_tokens).out
            for i in range(tokens):
                for x in range(beats):
                    written[base + i * beats + x] = pack_lanes(
                        result[i, LANES * x:LANES * x + LANES].tolist(), p.operand_width)
        return RunResult(writes={"out": written}, cycles=2 * len(written) * p.blocks,
                         result_words=len(written))
