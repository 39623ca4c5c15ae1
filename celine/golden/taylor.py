"""ViTALiTy Taylor attention: the float algorithm and the bit-exact integer model of rtl/taylor.

The float functions follow the paper (docs/taylor.md, "The algorithm"); `taylor_head_int`
computes, bit for bit, what the hardware computes (docs/taylor.md, "The integer
arithmetic"), `taylor_int` runs several heads (each with its own output scale), and
`calibrate` is the host's choice of the runtime registers (by default from the data:
docs/taylor.md, "Choosing the registers").

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

from ..engines.taylor.spec import LANES, Errors, buffers, head_register, registers
from ..spec.numerics import MULT_BITS, SHIFT_BITS
from .quant import mult_shift, quantize, requantize, round_shift, saturate, signed_range
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


def _per_head(name, value, maximum):
    """An int, or a non-empty list/tuple of ints (one per head) as a tuple, each checked."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} must be an integer or one integer per head, not {value!r}")
        return tuple(_check_int(f"{name}[{h}]", x, 0, maximum) for h, x in enumerate(value))
    return _check_int(name, value, 0, maximum)


@dataclass(frozen=True)
class TaylorRegisters:
    """The scale registers of one run (docs/taylor.md).

    ctx_shift, v_mult and v_shift serve every head. out_mult and out_shift are each an
    int (every head alike) or a tuple with one value per head of the call (head h of
    q, k, v uses out_mult[h] and out_shift[h]; a list is taken as a tuple); when both are
    tuples they have the same length. `head(h)` gives head h's registers as ints.
    """
    ctx_shift: int
    v_mult: int
    v_shift: int
    out_mult: int | tuple
    out_shift: int | tuple

    def __post_init__(self):
        _check_int("ctx_shift", self.ctx_shift, 0, SHIFT_MAX)
        _check_int("v_mult", self.v_mult, 0, MULT_MAX)
        _check_int("v_shift", self.v_shift, 0, SHIFT_MAX)
        object.__setattr__(self, "out_mult", _per_head("out_mult", self.out_mult, MULT_MAX))
        object.__setattr__(self, "out_shift", _per_head("out_shift", self.out_shift, SHIFT_MAX))
        if isinstance(self.out_mult, tuple) and isinstance(self.out_shift, tuple) and \
                len(self.out_mult) != len(self.out_shift):
            raise ValueError(f"out_shift must have one value per head as out_mult "
                             f"({len(self.out_mult)}), not {len(self.out_shift)}")

    @property
    def heads(self):
        """The number of heads the per-head values cover, None if every head is alike."""
        for value in (self.out_mult, self.out_shift):
            if isinstance(value, tuple):
                return len(value)
        return None

    def head(self, h):
        """Head h's registers, with out_mult and out_shift as ints."""
        heads = self.heads
        if heads is not None:
            _check_int("head", h, 0, heads - 1)

        def pick(value):
            return value[h] if isinstance(value, tuple) else value
        return TaylorRegisters(ctx_shift=self.ctx_shift, v_mult=self.v_mult,
                               v_shift=self.v_shift, out_mult=pick(self.out_mult),
                               out_shift=pick(self.out_shift))

    def values(self, heads):
        """{register name: value} for the engine's registers (spec.registers) of heads
        0 .. heads - 1 (the per-head values must cover exactly that many)."""
        if self.heads not in (None, heads):
            raise ValueError(f"registers must hold out_mult and out_shift for {heads} "
                             f"heads, not {self.heads}")
        values = {"ctx_shift": self.ctx_shift, "v_mult": self.v_mult, "v_shift": self.v_shift}
        for h in range(heads):
            one = self.head(h)
            values[head_register("out_mult", h)] = one.out_mult
            values[head_register("out_shift", h)] = one.out_shift
        return values

    @classmethod
    def from_values(cls, values, heads):
        """The registers from {register name: value} (the inverse of `values`); the
        per-head values as tuples."""
        return cls(ctx_shift=values["ctx_shift"], v_mult=values["v_mult"],
                   v_shift=values["v_shift"],
                   out_mult=tuple(values[head_register("out_mult", h)] for h in range(heads)),
                   out_shift=tuple(values[head_register("out_shift", h)] for h in range(heads)))


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
    regs: one head's registers (out_mult and out_shift ints; `TaylorRegisters.head(h)`).
    """
    _check_int("max_tokens", max_tokens, 1, MAX_TOKENS)
    if not isinstance(regs, TaylorRegisters):
        raise TypeError(f"regs must be a TaylorRegisters, not {regs!r}")
    if regs.heads is not None:
        raise ValueError(f"regs must hold one head's out_mult and out_shift (integers), "
                         f"not {regs.out_mult!r} and {regs.out_shift!r}")
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

    Bit h of head_mask set = head h skipped (it neither takes nor gives data). Head h
    runs with regs.head(h): per-head out_mult/out_shift must cover all H heads.
    """
    q, k, v = _operands(q, k, v, width, 3)
    heads = q.shape[0]
    _check_int("head_mask", head_mask, 0, (1 << heads) - 1)
    if not isinstance(regs, TaylorRegisters):
        raise TypeError(f"regs must be a TaylorRegisters, not {regs!r}")
    if regs.heads not in (None, heads):
        raise ValueError(f"regs must hold out_mult and out_shift for the {heads} heads of q, "
                         f"not {regs.heads}")
    return [taylor_head_int(q[h], k[h], v[h], regs.head(h), width=width,
                            max_tokens=max_tokens).out
            for h in range(heads) if not head_mask >> h & 1]


# -- calibration ---------------------------------------------------------------------------


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return float(value)


def _multiplier(ratio_name, register, ratio):
    """quant.mult_shift(ratio), its errors named after the register pair it sets."""
    try:
        return mult_shift(ratio)
    except ValueError:
        pass
    if not ratio < 1:                              # too large for mult at shift 0, or inf/nan
        raise ValueError(f"{ratio_name} must be at most {MULT_MAX} ({register}_mult at "
                         f"{register}_shift 0), not {ratio:.6g}")
    raise ValueError(f"{ratio_name} must be at least 2^-64 ({register}_mult at "
                     f"{register}_shift {SHIFT_MAX}), not {ratio:.6g}")


def _nearest_multiplier(ratio):
    """(mult, shift) as `_multiplier`, or the nearest representable gain when there is
    none: 65535 at shift 0 above it, 1 at shift 63 below it."""
    try:
        return mult_shift(ratio)
    except ValueError:
        return (MULT_MAX, 0) if not ratio < 1 else (1, SHIFT_MAX)


def _unit(scales, ctx_shift, tokens, head_dim):
    """u = s_q·s_k·s_v·2^ctx_shift / (N·√d): the real value of one unit of A and of quot."""
    s_q, s_k, s_v = scales
    return s_q * s_k * s_v * 2.0 ** ctx_shift / (tokens * math.sqrt(head_dim))


def _scales(scales):
    if scales is None:
        return 1.0, 1.0, 1.0
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__len__") or len(scales) != 3:
        raise TypeError(f"scales must be a tuple (s_q, s_k, s_v), not {scales!r}")
    return tuple(_positive(name, s) for name, s in zip(("s_q", "s_k", "s_v"), scales))


def calibrate(q, k, v, *, scales=None, out_scale=None, width=8, head_mask=0):
    """The registers for integer q, k, v (N×d, or H×N×d for H heads).

    scales (s_q, s_k, s_v): the real values the integers stand for (real = scale ×
    integer). None (the default) means 1.0 each: the integers are the values. Taylor
    attention is not scale-invariant in q and k (the weight of token j is
    1 + s_q·s_k·q_i·K̂_j/√d), so integers quantized from real data need their scales.

    out_scale: the real value of one output step. A number: every head alike (out_mult and
    out_shift come back as ints). A sequence of H numbers (H×N×d only): one per head.
    None (the default): calibrated from the data, per head: s_out[h] = max|Z_h| /
    (2^(w−1) − 1), where Z_h = taylor_attention(s_q·q[h], s_k·k[h], s_v·v[h]) is the
    float Taylor output of head h's integers at `scales`, so that the head's largest output
    reaches ±(2^(w−1) − 1), each head uses the whole output range and nothing saturates
    beyond rounding (s_out[h] = s_v if Z_h is all zero). out_mult and out_shift then hold
    one value per head (a tuple for H×N×d, ints for N×d); where u/s_out[h] (below) has no
    16-bit multiplier the nearest one is taken (65535 at shift 0, or 1 at shift 63).
    `output_scales` gives the real value of one output step that the registers implement.

    head_mask: bit h set = head h will be skipped: it does not count for ctx_shift (it
    still gets output registers).

    ctx_shift: the smallest shift keeping every round_shift(G_N, shift) of every kept head
    in 2·width bits without saturation, raised further only if s_v/u (below) would exceed
    65535 at v_shift 0 (very few tokens). One unit of A is then worth
    u = s_q·s_k·s_v·2^ctx_shift / (N·√d), so v_mult/2^v_shift ≈ s_v/u and
    out_mult/2^out_shift ≈ u/s_out, each with the largest shift whose multiplier fits
    16 bits. Raises ValueError when s_v/u, or u/out_scale for a given out_scale, has no
    such multiplier (above 65535 at shift 0, or rounding to 0 at shift 63).
    """
    _check_int("width", width, 2, MAX_WIDTH)
    q = torch.as_tensor(q)
    if q.ndim not in (2, 3):
        raise ValueError(f"q must be a tokens x head_dim or heads x tokens x head_dim tensor, "
                         f"not shape {tuple(q.shape)}")
    single = q.ndim == 2
    q, k, v = _operands(q, k, v, width, q.ndim)
    s_q, s_k, s_v = _scales(scales)
    if single:
        q, k, v = q[None], k[None], v[None]
    heads, tokens, head_dim = k.shape
    _check_int("head_mask", head_mask, 0, 0 if single else (1 << heads) - 1)
    if out_scale is None or isinstance(out_scale, numbers.Real):
        s_out = None if out_scale is None else _positive("out_scale", out_scale)
    elif single or isinstance(out_scale, (str, bytes)) or not hasattr(out_scale, "__len__") \
            or len(out_scale) != heads:
        what = "a positive number" if single else f"a positive number or {heads} of them"
        raise TypeError(f"out_scale must be {what}, not {out_scale!r}")
    else:
        s_out = tuple(_positive(f"out_scale[{h}]", x) for h, x in enumerate(out_scale))
    if tokens < 1:
        raise ValueError(f"tokens must be at least 1, not {tokens!r}")

    lo, hi = signed_range(2 * width)
    kept = [h for h in range(heads) if not head_mask >> h & 1]
    centered = [_centered_context(k[h], v[h])[3] for h in kept]
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
    unit = _unit((s_q, s_k, s_v), ctx_shift, tokens, head_dim)
    if not (0 < unit < math.inf):
        raise ValueError(f"u = s_q*s_k*s_v*2^ctx_shift/(N*sqrt(d)) must be a positive finite "
                         f"number, not {unit!r}")
    v_mult, v_shift = _multiplier("s_v / u", "v", s_v / unit)
    if isinstance(s_out, float):
        out_mult, out_shift = _multiplier("u / out_scale", "out", unit / s_out)
        return TaylorRegisters(ctx_shift=ctx_shift, v_mult=v_mult, v_shift=v_shift,
                               out_mult=out_mult, out_shift=out_shift)
    if s_out is None:
        peak = signed_range(width)[1]
        reference = taylor_attention(q.double() * s_q, k.double() * s_k, v.double() * s_v)
        pairs = []
        for h in range(heads):
            largest = float(reference[h].abs().max())
            pairs.append(_nearest_multiplier(unit * peak / largest) if largest > 0
                         else _nearest_multiplier(unit / s_v))
    else:
        pairs = [_multiplier(f"u / out_scale[{h}]", "out", unit / x) for h, x in enumerate(s_out)]
    out_mult, out_shift = (tuple(x) for x in zip(*pairs))
    if single:
        out_mult, out_shift = out_mult[0], out_shift[0]
    return TaylorRegisters(ctx_shift=ctx_shift, v_mult=v_mult, v_shift=v_shift,
                           out_mult=out_mult, out_shift=out_shift)


def output_scales(regs, *, scales=None, tokens, head_dim):
    """The real value of one output step that `regs` implement, u·2^out_shift/out_mult
    (u as in `calibrate`; inf where out_mult is 0): a float, or a tuple with one per head
    when regs hold per-head output registers. scales as in `calibrate` (None: 1.0 each)."""
    if not isinstance(regs, TaylorRegisters):
        raise TypeError(f"regs must be a TaylorRegisters, not {regs!r}")
    _check_int("tokens", tokens, 1, MAX_TOKENS)
    _check_int("head_dim", head_dim, 1, 1 << 16)
    unit = _unit(_scales(scales), regs.ctx_shift, tokens, head_dim)

    def one(r):
        return math.ldexp(unit, r.out_shift) / r.out_mult if r.out_mult else math.inf
    if regs.heads is None:
        return one(regs)
    return tuple(one(regs.head(h)) for h in range(regs.heads))


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


def mixed_heads_inputs(n, d, *, seed=0):
    """Float64 q, k, v (2×n×d): two heads of very different output ranges, as a trained
    layer's heads can be. Head 0 has large scores (q ~ 2.5·√d·N(0, 1)) and V correlated
    with K (v = k·W/√d + 0.3·N(0, 1)), so its Taylor weights go below 0 and above 1 and its
    output exceeds V's range; head 1 is standard normal, its output a small part of V's."""
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)
    k0 = normal(n, d)
    v0 = k0 @ normal(d, d) / math.sqrt(d) + 0.3 * normal(n, d)
    q0 = 2.5 * math.sqrt(d) * normal(n, d)
    return tuple(torch.stack(pair) for pair in zip((q0, k0, v0),
                                                   (normal(n, d) for _ in range(3))))


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
        scale = TaylorRegisters.from_values(fields, p.heads)
        for h in range(p.heads):
            if registers["head_mask"] >> h & 1:
                continue
            base = h * p.max_tokens * beats

            def rows(buffer):
                return torch.tensor([sum((unpack_lanes(buffer.words[base + i * beats + x],
                                                       LANES, p.operand_width)
                                          for x in range(beats)), [])
                                     for i in range(tokens)])
            result = taylor_head_int(rows(q), rows(k), rows(v), scale.head(h),
                                     width=p.operand_width, max_tokens=p.max_tokens).out
            for i in range(tokens):
                for x in range(beats):
                    written[base + i * beats + x] = pack_lanes(
                        result[i, LANES * x:LANES * x + LANES].tolist(), p.operand_width)
        return RunResult(writes={"out": written}, cycles=2 * len(written) * p.blocks,
                         result_words=len(written))
