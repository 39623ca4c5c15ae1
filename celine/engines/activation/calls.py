"""The activation engine's random call (celine.engines.Accelerator.random_call): one
`gelu` (random input and output scales) or `apply` (a random, identity, negating,
constant or other GELU table) of an int8 tensor of 0 to 3 dimensions, from one element
(or none) to three runs' worth (max_words words of `lanes` elements a run), the counts
around a word's and a run's ends among them, drawn with the extremes -128 and 127; given
as a torch tensor, a numpy array or nested lists."""


import numpy as np
import torch

from ...golden.activation import INT8_MAX, INT8_MIN, gelu_table, lookup
from ...sim.calls import draw_operands, draw_size


def _elements(rng, params):
    """How many elements: none now and then, one of the counts at a word's or a run's
    end, or 1 .. three runs' worth."""
    lanes, run = params.lanes, params.max_elements
    draw = rng.random()
    if draw < 0.02:
        return 0
    if draw < 0.17:
        ends = {1, lanes - 1, lanes, lanes + 1, run - 1, run, run + 1, 2 * run, 2 * run + 1}
        return rng.choice(sorted(n for n in ends if n >= 1))
    return draw_size(rng, 3 * run)


def _shape(rng, elements):
    """A shape of 0 (one element) to 3 dimensions holding `elements` elements."""
    if elements == 1 and rng.random() < 0.2:
        return ()
    dims = rng.randint(1, 3)
    if elements == 0:
        shape = [rng.randint(0, 3) for _ in range(dims)]
        shape[rng.randrange(dims)] = 0
        return tuple(shape)
    shape, rest = [], elements
    for _ in range(dims - 1):
        size = rng.choice([d for d in range(1, min(rest, 64) + 1) if rest % d == 0])
        shape.append(size)
        rest //= size
    shape.append(rest)
    rng.shuffle(shape)
    return tuple(shape)


def _scale(rng):
    return 2.0 ** rng.uniform(-9, 1)


def _table(rng):
    """(name, table): random entries (the extremes at the ends now and then), identity,
    negation (-(-128) saturates to 127), a constant, or GELU at other scales."""
    kind = rng.randrange(5)
    if kind == 0:
        table = [rng.randint(INT8_MIN, INT8_MAX) for _ in range(256)]
        if rng.random() < 0.5:
            table[0], table[255] = INT8_MAX, INT8_MIN
        return "random", table
    if kind == 1:
        return "identity", list(range(INT8_MIN, INT8_MAX + 1))
    if kind == 2:
        return "negate", [min(INT8_MAX, -x) for x in range(INT8_MIN, INT8_MAX + 1)]
    if kind == 3:
        value = rng.choice((INT8_MIN, 0, INT8_MAX, rng.randint(INT8_MIN, INT8_MAX)))
        return f"constant {value}", [value] * 256
    in_scale, out_scale = _scale(rng), _scale(rng)
    return f"gelu_table({in_scale:.4g}, {out_scale:.4g})", gelu_table(in_scale, out_scale)


def random_call(params, options, rng):
    """`dev.activation.gelu(x, in_scale[, out_scale])` (half the calls: in_scale random,
    out_scale random or the default) or `dev.activation.apply(x, table)`, x int8 of
    0 .. 3 runs' worth of elements in 0 .. 3 dimensions: an int64 or int8 torch tensor
    (the result a torch tensor), a numpy array or nested lists (the result a numpy array,
    which `run` turns into a torch tensor to compare; anything else it returns as its
    type's name, which compares unequal)."""
    gen = torch.Generator().manual_seed(rng.getrandbits(63))
    elements = _elements(rng, params)
    shape = _shape(rng, elements)
    x = draw_operands(rng, gen, shape, INT8_MIN, INT8_MAX)
    if rng.random() < 0.5:
        in_scale = _scale(rng)
        out_scale = _scale(rng) if rng.random() < 0.5 else None
        table = gelu_table(in_scale, in_scale if out_scale is None else out_scale)
        args = (in_scale,) if out_scale is None else (in_scale, out_scale)
        what = f"gelu(x, {', '.join(f'{s:.4g}' for s in args)})"

        def call(device, x):
            return device.activation.gelu(x, *args)
    else:
        name, table = _table(rng)
        what = f"apply(x, {name} table)"

        def call(device, x):
            return device.activation.apply(x, table)
    want = lookup(x, table)

    form = rng.random()
    if form < 0.6:
        given, form = x, "int64 tensor"
    elif form < 0.75:
        given, form = x.to(torch.int8), "int8 tensor"
    elif form < 0.9:
        dtype = rng.choice((np.int8, np.int16, np.int64))
        given, form = x.numpy().astype(dtype), f"numpy {np.dtype(dtype).name} array"
    elif 1 <= elements <= 64:
        given, form = x.tolist(), "nested lists"
    else:
        given, form = x, "int64 tensor"
    torch_given = isinstance(given, torch.Tensor)

    def run(device):
        out = call(device, given)
        if torch_given:
            return out
        return torch.from_numpy(out) if isinstance(out, np.ndarray) else type(out).__name__

    return (f"{what}, x of shape {tuple(shape)} ({elements} elements) as {form}", run, want)
