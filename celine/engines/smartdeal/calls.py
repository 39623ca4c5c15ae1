"""The SmartDeal engine's random call (celine.engines.Accelerator.random_call): one
`linear` of int8 activations (1 to three runs' worth of rows, drawn with the extremes)
through a layer of a few kept per device: hardware-form layers drawn directly (the
smallest, 1 x 1; the largest the device holds; random shapes, block heights, Ce densities
and exponents, B with -128; one with every coefficient at the clip) and layers decomposed
from random weights, given as SmartDealWeights, packed words or (the decomposed ones) the
float Decomposition; exact sums or requantized to int8 by a random (multiplier, shift)."""

import dataclasses
import functools
import random

import torch

from ...golden.smartdeal.decomposition import decompose
from ...golden.smartdeal.format import BASIS, LayerHeader
from ...golden.smartdeal.hardware import (SmartDealWeights, quantize_decomposition,
                                          weight_shift)
from ...golden.smartdeal.integer import linear_int, rebuild_int
from ...sim.calls import draw_size
from ...spec.numerics import MULT_BITS, SHIFT_BITS

LAYERS = 10          # hardware-form layers kept per device (and 3 decomposed ones)


def _block_rows(rng, rows, limit, *, largest=False):
    """m0: a divisor of `rows` (rows of 3 an output) of at most `limit`: the largest
    (fewest blocks), or a random one."""
    divisors = [d for d in range(1, min(rows, limit) + 1) if rows % d == 0]
    return divisors[-1] if largest or rng.random() < 0.5 else rng.choice(divisors)


def _with_shift(sd, rng):
    """`sd` with the weight shift that keeps every int8 weight unsaturated (mostly) or a
    random one (the weights may saturate)."""
    largest = int(rebuild_int(sd).abs().max()) if sd.ce.numel() else 0
    shift = weight_shift(largest) if rng.random() < 0.8 else rng.randint(0, (1 << SHIFT_BITS) - 1)
    return dataclasses.replace(sd, header=dataclasses.replace(sd.header, weight_shift=shift))


def _hardware_layer(params, rng, outputs, length, *, clip=False, largest=False):
    """A random hardware-form layer (outputs x length; fewer outputs if its words do not
    fit the weight buffer) the device takes, or None if even one output does not fit.
    clip: every coefficient at +-2^(2^E - 1) and B at -128 (the largest sums). largest:
    the tallest blocks (the fewest B), some Ce nonzero."""
    p = params
    gen = torch.Generator().manual_seed(rng.getrandbits(63))
    rows = -(-length // BASIS)
    block_rows = _block_rows(rng, rows, p.max_block_rows, largest=largest)
    top = (1 << p.exponent_bits) - 1
    density = rng.choice((0.1, 0.5, 0.9) if largest else (0.0, 0.1, 0.5, 0.9, 1.0))
    while outputs >= 1:
        blocks = outputs * (rows // block_rows)
        shape = (blocks, block_rows, BASIS)
        if clip:
            ce = torch.full(shape, 1 << top, dtype=torch.int64)
            ce[: blocks // 2] *= -1
            basis = torch.full((blocks, BASIS, BASIS), -128, dtype=torch.int64)
        else:
            f = torch.randint(0, top + 1, shape, generator=gen)
            f = torch.where(torch.rand(shape, generator=gen) < 0.2, top, f)
            sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1, 1)
            kept = torch.rand(shape, generator=gen) < density
            ce = torch.where(kept, sign * (1 << f), 0)
            basis = torch.randint(-128, 128, (blocks, BASIS, BASIS), generator=gen)
            basis = torch.where(torch.rand(basis.shape, generator=gen) < 0.1, -128, basis)
        header = LayerHeader("linear", outputs, length, block_rows, rows // block_rows,
                             p.exponent_bits, 1, 0)
        sd = _with_shift(SmartDealWeights(header, (outputs, length), basis, ce), rng)
        if sd.packed_words <= p.weight_words:
            return sd
        outputs = outputs * p.weight_words // sd.packed_words     # fewer, and try again
    return None


def _decomposed(params, rng, outputs, length):
    """(Decomposition, its hardware form) of a random float weight (outputs x length),
    or None if it does not fit the device."""
    p = params
    gen = torch.Generator().manual_seed(rng.getrandbits(63))
    weight = torch.randn(outputs, length, generator=gen, dtype=torch.float64)
    rows = -(-length // BASIS)
    decomposition = decompose(weight, threshold=rng.choice((0.0, 0.05, 0.3)),
                              block_rows=_block_rows(rng, rows, p.max_block_rows))
    sd = quantize_decomposition(decomposition, exponent_bits=p.exponent_bits)
    return (decomposition, sd) if sd.packed_words <= p.weight_words else None


@functools.lru_cache(maxsize=4)
def _layers(params):
    """(the largest hardware-form layer that fits (max_outputs x max_inputs, fewer outputs
    if the weight buffer needs; None if none does), the other hardware-form layers (the
    smallest, 1 x 1, first), the (Decomposition, hardware form) pairs) for a device, drawn
    once from a fixed seed."""
    p = params
    rng = random.Random(1)
    largest = _hardware_layer(p, rng, p.max_outputs, p.max_inputs, largest=True)
    shapes = [(1, 1)] + [(draw_size(rng, p.max_outputs), draw_size(rng, p.max_inputs))
                         for _ in range(LAYERS - 3)]
    layers = [_hardware_layer(p, rng, outputs, length) for outputs, length in shapes]
    if p.max_outputs >= 3:
        layers.append(_hardware_layer(p, rng, 3, rng.randint(1, p.max_inputs), clip=True))
    small = [(min(p.max_outputs, n), min(p.max_inputs, m)) for n, m in ((1, 2), (7, 10), (12, 25))]
    decomposed = [_decomposed(p, rng, outputs, length) for outputs, length in small]
    return (largest, tuple(sd for sd in layers if sd is not None),
            tuple(pair for pair in decomposed if pair is not None))


@functools.lru_cache(maxsize=64)
def _words(sd):
    """The packed words of a kept layer (packed once)."""
    return sd.pack()


def _activations(rng, gen, shape):
    kind = rng.random()
    if kind < 0.05:
        return torch.full(shape, rng.choice((-128, 127)), dtype=torch.int64)
    x = torch.randint(-128, 128, shape, generator=gen)
    share = rng.choice((0.0, 0.02, 0.2))
    if share:
        at = torch.rand(shape, generator=gen) < share
        ends = torch.where(torch.rand(shape, generator=gen) < 0.5, -128, 127)
        x = torch.where(at, ends, x)
    return x


def random_call(params, options, rng):
    """`dev.smartdeal.linear(x, layer[, requant=(mult, shift)])`: x M x L int8, M = 1 ..
    3 max_tokens (skewed small; max_tokens and max_tokens + 1 now and then), L the layer's
    inputs; the layer one of the device's kept ones (the largest on 5% of the calls), as
    SmartDealWeights or packed words, a decomposed one now and then as its Decomposition;
    requant on half of the calls (mult and shift anywhere, their ends included). The
    expected result: golden.smartdeal.integer.linear_int with the int8 weights (impl
    "rebuild") or the exact rebuilt ones (impl "bitop")."""
    p = params
    largest, hardware, decomposed = _layers(p)
    gen = torch.Generator().manual_seed(rng.getrandbits(63))
    draw = rng.random()
    if decomposed and draw < 0.15:
        decomposition, sd = rng.choice(decomposed)
        given, form = (decomposition, "Decomposition") if rng.random() < 0.5 else \
            (sd, "SmartDealWeights")
    else:
        sd = largest if largest is not None and (draw > 0.95 or not hardware) else \
            rng.choice(hardware)
        given, form = (sd, "SmartDealWeights") if rng.random() < 0.6 else \
            (list(_words(sd)), "packed words")
    h = sd.header
    if rng.random() < 0.1:
        tokens = rng.choice((p.max_tokens, p.max_tokens + 1))
    else:
        tokens = draw_size(rng, 3 * p.max_tokens)
    x = _activations(rng, gen, (tokens, h.length))
    kwargs, requant = {}, (None, None)
    if rng.random() < 0.5:
        mult = rng.choice((0, 1, (1 << MULT_BITS) - 1, rng.randint(0, (1 << MULT_BITS) - 1)))
        shift = rng.choice((0, (1 << SHIFT_BITS) - 1, rng.randint(0, 24)))
        kwargs["requant"] = requant = (mult, shift)
    weights = "int8" if p.impl == "rebuild" else "wide"
    want = linear_int(x, sd, mult=requant[0], shift=requant[1], weights=weights)

    def run(device):
        return device.smartdeal.linear(x, given, **kwargs)

    return (f"linear of {tokens} x {h.length} activations, a {h.outputs} x {h.length} layer "
            f"(m0 {h.block_rows}, {sd.nonzeros} nonzero Ce, weight shift {h.weight_shift}) "
            f"as {form}" + (f", requant={requant}" if kwargs else ""), run, want)
