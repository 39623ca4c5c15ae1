"""Random engine calls (each engine record's `random_call`) and how their results compare.

`same(got, want)`: bit-exact equality of results made of tensors, numbers, and tuples,
lists or dicts of them (torch.equal for tensors: same shape, dtype-independent values).
`calls(record, params, options, seed)`: an endless stream of the record's random calls,
drawn from random.Random(seed).
"""

import random

__all__ = ["same", "calls"]


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
