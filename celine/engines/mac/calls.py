"""The MAC array's random call (celine.engines.Accelerator.random_call): a matmul of a
random shape at a random precision of the device, operands drawn with their extremes."""

import torch

from ...golden.mac import reference_matmul


def _operands(rng, rows, cols, bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = [[rng.choice((lo, hi)) if rng.random() < 0.1 else rng.randint(lo, hi)
               for _ in range(cols)] for _ in range(rows)]
    return torch.tensor(values, dtype=torch.int64)


def random_call(params, options, rng):
    """An (m x k) @ (k x n) matmul: m and n from 1 to three tiles' worth, k from 1 to the
    operand buffers' depth (one tile a run at the most), int8 operands (int16 at
    precision 16), at a precision the device has."""
    precision = rng.choice(params.precisions)
    bits = 16 if precision == 16 else 8
    m = rng.randint(1, 3 * params.tile_rows(precision))
    n = rng.randint(1, 3 * params.tile_cols(precision))
    k = rng.randint(1, options["operand_depth"])
    a, w = _operands(rng, m, k, bits), _operands(rng, k, n, bits)

    def run(device):
        return device.mac.matmul(a, w, precision=precision)

    return (f"matmul {m}x{k}x{n} at precision {precision}", run,
            reference_matmul(a, w, precision))
