"""Random engine calls (each engine record's `random_call`) and how their results compare.

`same(got, want)`: bit-exact equality of results made of tensors, numbers, and tuples,
lists or dicts of them (torch.equal for tensors: same shape, dtype-independent values).
`calls(record, params, options, seed)`: an endless stream of the record's random calls,
drawn from random.Random(seed). `draw_size` and `draw_operands`: the sizes and operands
the engines' random calls draw.
"""

import math
import random

__all__ = ["same", "calls", "draw_size", "draw_operands"]


def same(got, want):
    """Whether `got` equals `want` exactly (tensors by value and shape)."""
    import torch
    if isinstance(want, torch.Tensor):
        return isinstance(got, torch.Tensor) and got.shape == want.shape and \
            torch.equal(got.to(torch.int64) if not got.is_floating_point() else got,
                        want.to(torch.int64) if not want.is_floating_point() else want)
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and \
            all(same(got[key], want[key]) for key in want)
    if isinstance(want, (tuple, list)):
        return isinstance(got, (tuple, list)) and len(got) == len(want) and \
            all(same(g, w) for g, w in zip(got, want))
    return type(got) is type(want) and got == want


def calls(record, params, options, seed):
    """(description, run, want) of `record`'s random calls, one after another, forever."""
    rng = random.Random(seed)
    make = record.random_call.load()
    while True:
        yield make(params, options, rng)


def draw_size(rng, hi):
    """1 .. hi: hi or 1 now and then, else uniform up to 24 or log-uniform up to hi (the
    small sizes most of the time, and the cost about an eighth of hi's on average)."""
    draw = rng.random()
    if draw < 0.03:
        return hi
    if draw < 0.1:
        return 1
    if draw < 0.6:
        return rng.randint(1, min(hi, 24))
    return min(hi, int(math.exp(rng.uniform(0, math.log(hi + 1)))))


def draw_operands(rng, gen, shape, lo, hi):
    """Random integers in lo .. hi of `shape`: uniform, with a share of them (now and then
    all) at the extremes, or now and then a narrow range around 0."""
    import torch
    kind = rng.random()
    if kind < 0.05:
        return torch.full(shape, rng.choice((lo, hi)), dtype=torch.int64)
    if kind < 0.15:
        narrow = rng.randint(0, max(0, hi // 8))
        return torch.randint(-narrow, narrow + 1, shape, generator=gen)
    x = torch.randint(lo, hi + 1, shape, generator=gen)
    share = rng.choice((0.0, 0.02, 0.2))
    if share:
        at = torch.rand(shape, generator=gen) < share
        ends = torch.where(torch.rand(shape, generator=gen) < 0.5, lo, hi)
        x = torch.where(at, ends, x)
    return x
