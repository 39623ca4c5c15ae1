"""The Taylor-attention engine's random call (celine.engines.Accelerator.random_call): one
`attention` of one head (N x d) or of 1 .. `heads` heads (H x N x d), N from 1 to
max_tokens, operands of the device's width drawn with their extremes, some heads
skipped by a random head_mask, and the scale registers calibrated from the data (by
default, or from random `scales` and `out_scale`) or given (calibrated ones nudged, or
drawn anywhere in the registers' ranges)."""


import torch

from ...golden.taylor import MULT_MAX, SHIFT_MAX, TaylorRegisters, calibrate, taylor_int
from ...sim.calls import draw_operands, draw_size


def _scales(rng):
    return tuple(2.0 ** rng.uniform(-9, 0) for _ in range(3))


def _given_registers(rng, regs, heads):
    """Registers for the call: `regs` (calibrated) nudged, or drawn anywhere."""
    def per_head(draw):
        if rng.random() < 0.5:
            return draw()
        return tuple(draw() for _ in range(heads))

    def pick(value, h):
        return value[h] if isinstance(value, tuple) else value

    if rng.random() < 0.3:
        def anywhere(top):
            return lambda: rng.choice((0, top, rng.randint(0, top)))
        return TaylorRegisters(ctx_shift=anywhere(SHIFT_MAX)(), v_mult=anywhere(MULT_MAX)(),
                               v_shift=anywhere(SHIFT_MAX)(),
                               out_mult=per_head(anywhere(MULT_MAX)),
                               out_shift=per_head(anywhere(SHIFT_MAX)))
    h = rng.randrange(heads)

    def nudge(value, top, step):
        return min(top, max(0, value + rng.randint(-step, step)))
    return TaylorRegisters(
        ctx_shift=nudge(regs.ctx_shift, SHIFT_MAX, 2), v_mult=nudge(regs.v_mult, MULT_MAX, 5000),
        v_shift=nudge(regs.v_shift, SHIFT_MAX, 1),
        out_mult=per_head(lambda: nudge(pick(regs.out_mult, h), MULT_MAX, 5000)),
        out_shift=per_head(lambda: nudge(pick(regs.out_shift, h), SHIFT_MAX, 2)))


def random_call(params, options, rng):
    """`dev.taylor.attention(q, k, v, ...)`: one head (2-D operands, a third of the calls)
    or H = 1 .. heads heads (3-D); N = 1 .. max_tokens (skewed small, max_tokens now and
    then); operands in the operand width's range, int64 tensors, int32 ones or nested
    lists; head_mask random on half of the 3-D calls (all heads skipped included); the
    registers calibrated (half the calls), calibrated from random scales and an
    out_scale (one, one per head, or none), or given."""
    p = params
    lo, hi = p.operand_range
    gen = torch.Generator().manual_seed(rng.getrandbits(63))
    tokens = draw_size(rng, p.max_tokens)
    single = rng.random() < 0.33
    heads = 1 if single else rng.randint(1, p.heads)
    shape = (heads, tokens, p.head_dim)
    q, k, v = (draw_operands(rng, gen, shape, lo, hi) for _ in range(3))
    head_mask = 0 if single or rng.random() < 0.5 else rng.randrange(1 << heads)
    if head_mask == (1 << heads) - 1 and rng.random() < 0.8:
        head_mask = 0              # every head skipped (nothing sent) now and then only

    kwargs = {}
    mode = rng.random()
    if mode < 0.5:
        regs = calibrate(q, k, v, width=p.operand_width, head_mask=head_mask)
    elif mode < 0.75:
        scales = _scales(rng)
        kwargs["scales"] = scales
        regs = calibrate(q, k, v, scales=scales, width=p.operand_width, head_mask=head_mask)
        out_scale = None
        if rng.random() < 0.3:
            out_scale = 2.0 ** rng.uniform(-12, 2)
        elif not single and rng.random() < 0.3:
            out_scale = [2.0 ** rng.uniform(-12, 2) for _ in range(heads)]
        if out_scale is not None:
            try:      # an out_scale the registers cannot reach is rejected: leave it out
                regs = calibrate(q, k, v, scales=scales, out_scale=out_scale,
                                 width=p.operand_width, head_mask=head_mask)
                kwargs["out_scale"] = out_scale
            except ValueError:
                pass
    else:
        regs = _given_registers(rng, calibrate(q, k, v, width=p.operand_width,
                                               head_mask=head_mask), heads)
        kwargs["registers"] = regs
    if head_mask:
        kwargs["head_mask"] = head_mask

    kept = [h for h in range(heads) if not head_mask >> h & 1]
    want = taylor_int(q, k, v, regs, head_mask=head_mask, width=p.operand_width,
                      max_tokens=p.max_tokens) if kept else []
    if single:
        q, k, v, want = q[0], k[0], v[0], want[0]
    form = rng.random()
    if form < 0.1 and tokens * heads <= 16:
        q, k, v = q.tolist(), k.tolist(), v.tolist()
        form = "lists"
    elif form < 0.2:
        q, k, v = q.to(torch.int32), k.to(torch.int32), v.to(torch.int32)
        form = "int32"
    else:
        form = "int64"

    def run(device):
        return device.taylor.attention(q, k, v, **kwargs)

    what = "one head (2-D)" if single else f"{heads} head{'s' * (heads > 1)} (3-D)"
    options_text = ", ".join(f"{name}={value!r}" for name, value in kwargs.items()
                             if name != "registers")
    if "registers" in kwargs:
        options_text = ", ".join(filter(None, (options_text, f"registers={regs}")))
    return (f"attention of {what}, N={tokens}, d={p.head_dim}, {form} operands"
            + (f", {options_text}" if options_text else ""), run, want)
