"""Cycle model of the MAC array (rtl/mac/array.py) for an M x K x N matmul.

A product is cut into tiles of tile_rows(p) x tile_cols(p) outputs (golden.mac.tile_matmul);
each tile streams K beats, one a cycle, `passes(p)` cycles each (four at 16 bits on
bricks), back to back with the input always valid and the output always ready (the
bench's conditions). The array's pipeline adds `pipeline_latency(params)` cycles from
the first beat to the first output row, and a tile's rows leave one a cycle behind it,
overlapped with the next tile's beats; only the last tile's rows are exposed.
"""

from .. import CycleEstimate
from .spec import MacArrayParams


def pipeline_latency(params: MacArrayParams) -> int:
    """Cycles from the first beat in to the first output row out, as the bench counts
    them (from the cycle the first beat is offered to the cycle after the row is taken):
    a tile of one beat's first row is offered params.result_latency cycles after the
    beat (the PEs, the shadow copy, the drain's requantizers and queue), taken that cycle.
    tests/test_mac_cycles.py holds it to RTL simulation (`celine bench --only mac` too)."""
    return params.result_latency + 1


def _ceil_div(a, b):
    return -(-a // b)


def tiles(params: MacArrayParams, m, n, precision):
    return _ceil_div(m, params.tile_rows(precision)) * _ceil_div(n, params.tile_cols(precision))


def _check(params, precision, **counts):
    """`precision` (None: the largest) if it is one of the array's; ValueError otherwise,
    or for a count that is not a positive integer."""
    precision = max(params.precisions) if precision is None else precision
    if precision not in params.precisions:
        raise ValueError(f"precision must be one of {', '.join(map(str, params.precisions))}, "
                         f"not {precision!r}")
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return precision


def run_cycles(params: MacArrayParams, tile_count, k, precision=None) -> int:
    """Cycles from the first beat to the last output row of `tile_count` tiles of k beats
    streamed back to back (one run of the host's, or a whole matmul in one stream)."""
    precision = _check(params, precision, tile_count=tile_count, k=k)
    streaming = tile_count * k * params.passes(precision)
    return streaming + pipeline_latency(params) + params.tile_rows(precision) - 1


def cycles(params: MacArrayParams, m=64, k=64, n=64, precision=None) -> int:
    """Cycles from the first beat to the last output row of an m x k x n matmul."""
    precision = _check(params, precision, m=m, k=k, n=n)
    return run_cycles(params, tiles(params, m, n, precision), k, precision)


def estimate(params: MacArrayParams, m=64, k=64, n=64, precision=None) -> CycleEstimate:
    precision = max(params.precisions) if precision is None else precision
    return CycleEstimate(cycles(params, m, k, n, precision), m * k * n,
                         params.macs_per_cycle_ideal(precision))
