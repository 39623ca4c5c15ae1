"""The ViTCoD engine's random call (celine.engines.Accelerator.random_call): one
`sparse_attention` of one head (N x d) or of 1 .. `heads` heads (H x N x d), N from 1 to
max_tokens, operands of the device's width drawn with their extremes, over no mask
(dense), one mask for every head or one per head (random masks of any sparsity, some with
whole global columns, each one the engine can take at the call's threshold), with a
random threshold, head_mask, balance, scales and out_scale. On a device with the Q/K
auto-encoder, some calls send Q and K as codes (`autoencoder`, with or without
`encode_on_chip`), and some are `encode` calls."""

import functools

import torch

from ...golden.vitcod.attention import attention_head_int
from ...golden.vitcod.autoencoder import (QuantizedAutoEncoder, code_heads, decode_int,
                                          encode_int)
from ...golden.vitcod.mask import GLOBAL_THRESHOLD, random_mask
from ...golden.vitcod.plan import calibrate_head, plan_head
from ...sim.calls import draw_operands, draw_size


def _mask(rng, tokens, params, attempt):
    """A kept mask (N x N bool; None: dense): random at a random sparsity (sparser on each
    later attempt), now and then with a few whole (global) columns; the CLS column only on
    the last attempts."""
    if attempt >= 3:
        mask = torch.zeros(tokens, tokens, dtype=torch.bool)
        mask[:, 0] = True
        return mask
    if attempt == 0 and rng.random() < 0.1:
        return None
    # The kept entries the engine can hold (its global columns and the sparse region),
    # over N^2: the sparsity to start from.
    room = params.sparse_capacity + params.max_global * tokens
    least = max(0.0, 1.0 - room / (tokens * tokens))
    sparsity = min(0.999, least + (1.0 - least) * rng.random() ** (1.0 / (attempt + 1)))
    mask = random_mask(tokens, sparsity, seed=rng.getrandbits(31))
    if rng.random() < 0.3:
        columns = rng.sample(range(tokens), rng.randint(1, min(tokens, params.max_global + 2)))
        mask[:, columns] = True
    return mask


def _plans(params, q, k, v, masks, kept, threshold, balance):
    """{head: HeadPlan} of the kept heads; ValueError if a mask does not fit."""
    return {h: plan_head(params, q[h], k[h], v[h], masks[h], threshold=threshold,
                         balance=balance) for h in kept}


@functools.lru_cache(maxsize=8)
def _autoencoders(heads, seed):
    """(Q's, K's) QuantizedAutoEncoder of random int8 weights, small biases and scales that
    keep most values inside int8."""
    gen = torch.Generator().manual_seed(seed)
    code = code_heads(heads)

    def ints(*shape, lo=-128, hi=127):
        return torch.randint(lo, hi + 1, shape, generator=gen).tolist()

    def one():
        return QuantizedAutoEncoder(
            w_enc=ints(code, heads), b_enc=ints(code, lo=-999, hi=999), enc_mult=40000,
            enc_shift=22, w_dec=ints(heads, code), b_dec=ints(heads, lo=-999, hi=999),
            dec_mult=40000, dec_shift=21, in_scale=1.0, code_scale=1.0, out_scale=1.0)
    return one(), one()


def _encode_call(params, rng, gen):
    """`dev.vitcod.encode(q, k, autoencoder=...)` of all the device's heads."""
    p = params
    lo, hi = p.operand_range
    tokens = draw_size(rng, p.max_tokens)
    q, k = (draw_operands(rng, gen, (p.heads, tokens, p.head_dim), lo, hi) for _ in range(2))
    qaes = _autoencoders(p.heads, rng.randrange(4))
    want = tuple(encode_int(qae, x[None])[0] for qae, x in zip(qaes, (q, k)))

    def run(device):
        return device.vitcod.encode(q, k, autoencoder=qaes)

    return f"encode of {p.heads} heads, N={tokens}, d={p.head_dim}", run, want


def random_call(params, options, rng):
    """`dev.vitcod.sparse_attention(q, k, v, mask, ...)`: one head (2-D operands, a third
    of the calls) or H = 1 .. heads heads (3-D; all of them with the auto-encoder); N =
    1 .. max_tokens (skewed small, max_tokens now and then); operands in the operand
    width's range; mask None (dense), N x N for every head or H x N x N, each kept head's
    fitting the engine at the call's threshold (the default 50 or 0 .. N + 1) and redrawn
    sparser until it does; head_mask random on half of the 3-D calls (all heads skipped
    included); balance True or False; scales random on a third of the calls and out_scale
    (one, or one per head) on a quarter, left out where the registers cannot reach it.
    The expected result: each kept head's plan_head, calibrate_head and
    attention_head_int (on the decoded Q and K with the auto-encoder), as the host plans
    it."""
    p = params
    lo, hi = p.operand_range
    gen = torch.Generator().manual_seed(rng.getrandbits(63))
    if p.autoencoder and rng.random() < 0.15:
        return _encode_call(p, rng, gen)
    tokens = draw_size(rng, p.max_tokens)
    use_ae = p.autoencoder and rng.random() < 0.5
    single = not use_ae and rng.random() < 0.33
    heads = p.heads if use_ae else 1 if single else rng.randint(1, p.heads)
    shape = (heads, tokens, p.head_dim)
    q, k, v = (draw_operands(rng, gen, shape, lo, hi) for _ in range(3))
    head_mask = 0 if single or rng.random() < 0.5 else rng.randrange(1 << heads)
    if head_mask == (1 << heads) - 1 and rng.random() < 0.8:
        head_mask = 0              # every head skipped (nothing sent) now and then only
    kept = [h for h in range(heads) if not head_mask >> h & 1]
    threshold = GLOBAL_THRESHOLD if rng.random() < 0.5 else rng.randint(0, tokens + 1)
    balance = rng.random() < 0.7

    kwargs = {}
    if threshold != GLOBAL_THRESHOLD:
        kwargs["threshold"] = threshold
    if not balance:
        kwargs["balance"] = False
    if head_mask:
        kwargs["head_mask"] = head_mask
    qaes = None
    if use_ae:
        qaes = _autoencoders(p.heads, rng.randrange(4))
        kwargs["autoencoder"] = qaes
        if rng.random() < 0.5:
            kwargs["encode_on_chip"] = True
        q_used, k_used = (decode_int(qae, encode_int(qae, x[None]))[0]
                          for qae, x in zip(qaes, (q, k)))
    else:
        q_used, k_used = q, k

    shared = single or rng.random() < 0.4
    for attempt in range(5):
        if attempt == 4:      # the CLS column a global one (the only way with no sparser engine)
            threshold = 0
            kwargs["threshold"] = 0
        if shared:
            mask = _mask(rng, tokens, p, attempt)
            masks = [mask] * heads
        else:
            masks = [_mask(rng, tokens, p, attempt if h in kept else 3) for h in range(heads)]
            if any(m is None for m in masks):
                masks = [torch.ones(tokens, tokens, dtype=torch.bool) if m is None else m
                         for m in masks]
            mask = torch.stack(masks)
        try:
            plans = _plans(p, q_used, k_used, v, masks, kept, threshold, balance)
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"no mask of {tokens} tokens fits the engine {p}")

    scales = (1.0, 1.0, 1.0)
    if rng.random() < 0.33:
        scales = tuple(2.0 ** rng.uniform(-9, 0) for _ in range(3))
        kwargs["scales"] = scales
    steps = [None] * heads
    if rng.random() < 0.25:
        if single or rng.random() < 0.5:
            out_scale = 2.0 ** rng.uniform(-12, 4)
            steps = [out_scale] * heads
        else:
            out_scale = steps = [2.0 ** rng.uniform(-12, 4) for _ in range(heads)]
        try:          # an output step the registers cannot reach is rejected: leave it out
            for h in kept:
                calibrate_head(plans[h], p, scales=scales, out_step=steps[h])
            kwargs["out_scale"] = out_scale
        except ValueError:
            steps = [None] * heads
    want = []
    for h in kept:
        plan = plans[h]
        head_scales, _ = calibrate_head(plan, p, scales=scales, out_step=steps[h])
        want.append(attention_head_int(plan.q, plan.k, plan.v, plan.kept, head_scales, p))
    if single:
        q, k, v, want = q[0], k[0], v[0], want[0]

    def run(device):
        return device.vitcod.sparse_attention(q, k, v, mask, **kwargs)

    what = "one head (2-D)" if single else f"{heads} head{'s' * (heads > 1)} (3-D)"
    if mask is None:
        masked = "dense"
    else:
        density = float(mask.float().mean())
        masked = f"{'one mask' if mask.ndim == 2 else 'a mask a head'}, {density:.0%} kept"
    shown = {name: value for name, value in kwargs.items() if name != "autoencoder"}
    if qaes is not None:
        shown["autoencoder"] = "random"
    options_text = "".join(f", {name}={value!r}" for name, value in shown.items())
    return (f"sparse_attention of {what}, N={tokens}, d={p.head_dim}, {masked}"
            f"{options_text}", run, want)
