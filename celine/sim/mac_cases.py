"""Stimulus for the MAC array testbench: tiles with their golden outputs, as JSON-ready data.

A tile is a dict: `request` (the value on the `precision` input), `rps` (Random Precision
Switch on), `precision` (the precision it runs at: the request, or the LFSR draw),
`requant` (dict), `act`/`weight` (K beats of lane values) and `expected` (output rows).
"""

import random

import torch

from celine.golden.mac import MacArrayModel, Requant, tile_matmul


def operand_range(params, precision):
    """Lane values the testbench draws: stored int8 values, or int16 at p = 16."""
    bits = 16 if precision == 16 else 8
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def random_lanes(rng, count, lanes, lo, hi, *, extreme=0.1):
    """K x lanes values; a fraction of them are the extreme values lo and hi."""
    out = []
    for _ in range(count):
        row = []
        for _ in range(lanes):
            r = rng.random()
            row.append(lo if r < extreme / 2 else hi if r < extreme else rng.randint(lo, hi))
        out.append(row)
    return out


class TileBuilder:
    """Builds tiles in order, replaying the array's RPS LFSR through the golden model."""

    def __init__(self, params, seed):
        self.params = params
        self.model = MacArrayModel(params)
        self.rng = random.Random(seed)
        self.tiles = []

    def add(self, *, precision=None, rps=False, depth=None, requant=None, act=None,
            weight=None, extreme=0.1):
        p = self.params
        run = self.model.tile_precision(precision, rps=rps)
        depth = depth or (len(act) if act is not None else self.rng.randint(1, 12))
        lo, hi = operand_range(p, run)
        if act is None:
            act = random_lanes(self.rng, depth, p.act_lanes, lo, hi, extreme=extreme)
        if weight is None:
            weight = random_lanes(self.rng, depth, p.weight_lanes, lo, hi, extreme=extreme)
        requant = requant or Requant()
        expected = self.model.tile(torch.tensor(act), torch.tensor(weight), run, requant)
        self.tiles.append({
            "request": precision if precision is not None else p.precisions[0],
            "rps": int(rps),
            "precision": run,
            "requant": {"enable": int(requant.enable), "multiplier": requant.multiplier,
                        "shift": requant.shift},
            "act": [list(map(int, row)) for row in act],
            "weight": [list(map(int, row)) for row in weight],
            "expected": expected.tolist(),
        })
        return self.tiles[-1]

    def add_matmul(self, a, w, precision, requant=None):
        """All tiles of A @ W at one precision (for throughput measurements)."""
        for m0, n0, act, weight in tile_matmul(a, w, precision, self.params):
            tile = self.add(precision=precision, act=act.tolist(), weight=weight.tolist(),
                            requant=requant)
            tile["origin"] = [m0, n0]


def mixed_tiles(params, seed, *, count=12, rps_tiles=4, max_depth=12, worst_depth=1024):
    """Per precision: a tile of min(max_reduction, worst_depth) beats of only the most
    negative operands (the accumulators' worst case) and a one-beat tile; then tiles at random precisions
    (switched between tiles without reset), depths 1..max_depth, requantization on some;
    then RPS-drawn tiles."""
    builder = TileBuilder(params, seed)
    rng = builder.rng
    for p in params.precisions:
        lo, _ = operand_range(params, p)
        depth = min(params.max_reduction, worst_depth)
        builder.add(precision=p, act=[[lo] * params.act_lanes] * depth,
                    weight=[[lo] * params.weight_lanes] * depth)
        builder.add(precision=p, depth=1)
    for _ in range(count):
        requant = Requant(True, rng.randint(1, 65535), rng.randint(0, 40)) \
            if rng.random() < 0.4 else None
        builder.add(precision=rng.choice(params.precisions), depth=rng.randint(1, max_depth),
                    requant=requant)
    for _ in range(rps_tiles):
        builder.add(rps=True, depth=rng.randint(1, max_depth))
    return builder.tiles
