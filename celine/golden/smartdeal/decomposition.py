"""The SmartDeal decomposition of a weight: W ~ Ce * B, Ce sparse powers of two, B 3x3.

This follows the authors' training code (VITA-Group/SmartDeal, `se/alg.py`: `vector_decompose`,
`matrix_decompose`, `factor_long`, `core_decompose`) with its inference defaults; the
differences are listed at the end. docs/smartdeal.md has the formulas.

Shapes. Each output row of a linear weight (out, L) -- or of a 1x1 conv (out, L, 1, 1) -- is
zero-padded to Lp, a multiple of 3, and read as a tall matrix of m = Lp/3 rows of 3
consecutive weights; a 3x3 conv's output channel (Cin, 3, 3) is the matrix of m = 3*Cin rows
(cin, kh) and 3 columns (kw). The tall matrix is cut into m/m0 blocks A of m0 rows
(`block_rows`, the reference's rule), and every block is decomposed alone:

    A (m0 x 3)  ~  Ce (m0 x 3) . B (3 x 3),   Ce entries 0 or +-2^k, k <= max_exponent.

Iterations (one block; `_fit` runs them on every block of a layer at once):
  start B = I, Ce = A;
  repeat (iterations - 1) times:
    Q  = pow2(Ce)                   every nonzero c -> sign(c) * 2^k, k the nearer of
                                    floor/ceil(log2|c|) by linear error (ties: floor),
                                    then |.| clipped to 2^max_exponent; zeros stay zero
    stop if Q equals the previous Q (Frobenius distance <= tolerance)
    B  = argmin ||Q B - A||         least squares (minimum norm, rcond)
    Ce = argmin ||Ce B - A||        least squares
    Ce[|Ce| < threshold] = 0
  final pass: Ce = pow2(Ce), B = argmin ||Ce B - A||.
If a column of the final Ce is all zero (one basis vector unused by the whole block; a row
of Ce in the reference's transposed orientation) while A is not zero, the block is
decomposed again from the start with threshold * decay (at most `max_retries` times).

Differences from the reference, all deliberate:
- The reference runs that retry only with its optional row scaling (`decompose_scale`,
  off by default there) and recurses without bound (an all-zero block recurses until
  Python's recursion limit); here the retry is always on, bounded, and an all-zero block
  gives Ce = 0, B = 0 at once.
- Its table of extra padding for 2048 and 4096 inputs (to 2052 and 4104, so that m splits
  into blocks of 171) is kept; its preset m0 = 171 for m = 1638, which does not divide m
  and leaves rows undecomposed, is not.
- B stays float here, as in the reference; `hardware.py` quantizes it.
"""

import dataclasses
import math
import numbers

import torch

from ...spec.checks import check_int
from .format import BASIS, MAX_EXPONENT

ITERATIONS = 30             # the reference's inference defaults (SmartDeal-Inference/main.py)
THRESHOLD = 1e-3
DECAY = 0.5
TOLERANCE = 1e-10           # "Ce stopped changing": ||Q - Q_prev||_F <= TOLERANCE
RCOND = 1e-10               # least squares: singular values below rcond * largest are zero
MAX_RETRIES = 10            # threshold decays at most to THRESHOLD * DECAY^10
MAX_BLOCK_ROWS = 64 * BASIS  # the reference's factor_long(m, n0): blocks up to 64 * n0 rows
# Inputs the reference pads beyond the next multiple of 3 (its VEC_2_SHAPE table), so that
# the rows split into blocks of 171.
EXTRA_PADDING = {2048: 2052, 4096: 4104}


# -- shapes ----------------------------------------------------------------------------------

def _prime_factors(n):
    """The prime factors of n >= 1 in ascending order, with multiplicity."""
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    if n > 1:
        factors.append(n)
    return factors


def reference_block_rows(rows):
    """The reference's block height m0 for a tall matrix of `rows` rows (factor_long(m, 3)).

    m itself when m <= 192 or m is prime; otherwise the first product of m's largest prime
    factors (taken from the largest down) that is at most 192, or, if none is, the largest
    prime factor itself (then blocks are taller than 192).
    """
    check_int("rows", rows, minimum=1)
    factors = _prime_factors(rows)
    if rows <= MAX_BLOCK_ROWS or len(factors) == 1:
        return rows
    for first in range(len(factors)):
        product = math.prod(factors[first:])
        if product <= MAX_BLOCK_ROWS:
            return product
    return factors[-1]


def padded_length(length):
    """Lp: a weight row of `length` inputs, zero-padded to a multiple of 3 (or the
    reference's table EXTRA_PADDING)."""
    check_int("length", length, minimum=1)
    return EXTRA_PADDING.get(length, -(-length // BASIS) * BASIS)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a weight of `shape` maps onto blocks: `rows` (m) rows of 3 per output row (or
    output channel), in blocks of `block_rows` (m0); `length` weights per output row before
    padding, `padded` after. kind: "linear" (2-d, or a 1x1 conv) or "conv3x3"."""
    shape: tuple
    kind: str
    outputs: int
    length: int
    padded: int
    block_rows: int

    @property
    def rows(self):
        return self.padded // BASIS

    @property
    def blocks_per_output(self):
        return self.rows // self.block_rows

    @property
    def blocks(self):
        return self.outputs * self.blocks_per_output

    def to_blocks(self, weight):
        """(blocks, m0, 3) float64: the blocks A of `weight`, output row major."""
        w = torch.as_tensor(weight, dtype=torch.float64).reshape(self.outputs, self.length)
        w = torch.nn.functional.pad(w, (0, self.padded - self.length))
        return w.reshape(self.blocks, self.block_rows, BASIS)

    def from_blocks(self, blocks):
        """The weight of `shape` whose blocks are `blocks` (same dtype); the padding dropped."""
        w = torch.as_tensor(blocks).reshape(self.outputs, self.padded)
        return w[:, :self.length].reshape(self.shape)


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    return repr(value)


def weight_layout(shape, block_rows=None):
    """The Layout of a weight of `shape`: (out, L) linear, (out, L, 1, 1) 1x1 conv or
    (out, Cin, 3, 3) conv. block_rows (m0) defaults to the reference's rule and must
    divide m."""
    shape = tuple(shape)
    if len(shape) == 2 or (len(shape) == 4 and shape[2:] == (1, 1)):
        kind, outputs, length = "linear", shape[0], shape[1]
        padded = padded_length(length) if length >= 1 else 0
    elif len(shape) == 4 and shape[2:] == (BASIS, BASIS):
        kind, outputs, length = "conv3x3", shape[0], shape[1] * BASIS * BASIS
        padded = length
    else:
        raise ValueError(f"weight must be a linear (out, in), 1x1 conv (out, in, 1, 1) or 3x3 "
                         f"conv (out, in, 3, 3) weight, not of shape {shape!r}")
    if outputs < 1 or length < 1:
        raise ValueError(f"weight must not be empty, not of shape {shape!r}")
    rows = padded // BASIS
    if block_rows is None:
        block_rows = reference_block_rows(rows)
    else:
        check_int("block_rows", block_rows, minimum=1, maximum=rows)
        if rows % block_rows:
            raise ValueError(f"block_rows must divide the {rows} rows of 3 of each output, "
                             f"not {block_rows!r}")
    return Layout(shape, kind, outputs, length, padded, block_rows)


# -- the iterations --------------------------------------------------------------------------

def pow2_exponents(values, max_exponent=MAX_EXPONENT):
    """(signs, exponents) of pow2(values): sign in {-1, 0, 1} and the exponent k of each
    nonzero (0 where the value is zero), as int64 tensors.

    k is the nearer of floor(log2|c|) and ceil(log2|c|) by linear error, ties to the floor:
    with |c| = f * 2^e, 0.5 <= f < 1 (exact, frexp), k = e - 1 if f <= 0.75 else e; then
    k = min(k, max_exponent).
    """
    values = torch.as_tensor(values, dtype=torch.float64)
    fraction, exponent = torch.frexp(values.abs())
    k = torch.where(fraction <= 0.75, exponent - 1, exponent).to(torch.int64)
    signs = torch.sign(values).to(torch.int64)
    k = torch.where(signs != 0, k.clamp(max=max_exponent), torch.zeros_like(k))
    return signs, k


def pow2(values, max_exponent=MAX_EXPONENT):
    """values rounded to sign * 2^k (`pow2_exponents`), float64; zeros stay zero."""
    signs, k = pow2_exponents(values, max_exponent)
    return signs.to(torch.float64) * torch.ldexp(torch.ones_like(k, dtype=torch.float64), k)


def least_squares(a, b, rcond):
    """argmin_x ||a x - b|| (minimum norm; singular values below rcond * largest are zero),
    batched: a (..., r, n), b (..., r, p) -> (..., n, p), float64."""
    return torch.linalg.lstsq(a, b, rcond=rcond, driver="gelsd").solution


def _fit(blocks, thresholds, *, iterations, max_exponent, tolerance, rcond):
    """The iterations on every block at once: (ce, basis, iterations_run, errors).

    blocks (n, m0, 3) float64, thresholds (n,) float64. A block stops as soon as its
    quantized Ce stops changing (`iterations_run` counts its quantizations, the final one
    included); errors (iterations, n): ||Ce B - A||_F after each B fit, the last row after
    the final pass (rows after a block stopped repeat its value).
    """
    n = blocks.shape[0]
    ce = blocks.clone()
    basis = torch.eye(BASIS, dtype=torch.float64).expand(n, BASIS, BASIS).clone()
    previous = None
    active = torch.ones(n, dtype=torch.bool)
    ran = torch.zeros(n, dtype=torch.int64)
    errors = torch.zeros(iterations, n, dtype=torch.float64)

    def error(q, b):
        return torch.linalg.matrix_norm(q @ b - blocks)

    for i in range(iterations - 1):
        quantized = pow2(ce, max_exponent)
        ran += active
        if previous is not None:
            changed = torch.linalg.matrix_norm(quantized - previous) > tolerance
            active &= changed
        if not bool(active.any()):
            errors[i:-1] = errors[i - 1]
            break
        previous = torch.where(active[:, None, None], quantized, previous) \
            if previous is not None else quantized
        fitted = least_squares(quantized, blocks, rcond)
        basis = torch.where(active[:, None, None], fitted, basis)
        errors[i] = torch.where(active, error(quantized, fitted), errors[i - 1] if i else 0)
        refit = least_squares(basis.transpose(1, 2), blocks.transpose(1, 2), rcond).transpose(1, 2)
        refit = torch.where(refit.abs() < thresholds[:, None, None], 0.0, refit)
        ce = torch.where(active[:, None, None], refit, ce)
    quantized = pow2(ce, max_exponent)
    basis = least_squares(quantized, blocks, rcond)
    errors[-1] = error(quantized, basis)
    return quantized, basis, ran + 1, errors


# -- the result ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Decomposition:
    """A weight's decomposition: block i is A_i ~ ce[i] @ basis[i].

    layout: the weight's Layout; target (blocks, m0, 3): the blocks A of the weight (float64,
    padding included); ce (blocks, m0, 3) float64, every entry 0 or +-2^k
    (k <= max_exponent); basis (blocks, 3, 3) float64; thresholds (blocks,): the threshold
    each block ended with (after decay-and-retry); iterations_run (blocks,): quantizations
    of Ce until it stopped changing (the final pass included); errors (iterations, blocks):
    ||Ce B - A||_F after each B fit (`_fit`); the settings it was made with.
    """
    layout: Layout
    target: torch.Tensor
    ce: torch.Tensor
    basis: torch.Tensor
    thresholds: torch.Tensor
    iterations_run: torch.Tensor
    errors: torch.Tensor
    iterations: int
    threshold: float
    decay: float
    max_exponent: int

    @property
    def shape(self):
        return self.layout.shape

    def signs_exponents(self):
        """(signs, exponents) of Ce as int64 tensors (exponent 0 where Ce is 0)."""
        return pow2_exponents(self.ce, self.max_exponent)

    @property
    def sparsity(self):
        """The fraction of Ce entries that are zero (padding rows included)."""
        return float((self.ce == 0).double().mean())

    def reconstruct(self):
        """The float64 weight Ce B, of the original shape."""
        return self.layout.from_blocks(self.ce @ self.basis)

    def weight(self):
        """The weight that was decomposed (float64, its original shape)."""
        return self.layout.from_blocks(self.target)

    @property
    def relative_error(self):
        """||Ce B - W|| / ||W|| over the whole weight (0 for an all-zero weight)."""
        weight = self.weight()
        norm = float(torch.linalg.vector_norm(weight))
        return float(torch.linalg.vector_norm(self.reconstruct() - weight)) / norm if norm else 0.0


def _check_real(name, value, rule, ok):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {value!r}")
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be {rule}, not {value!r}")
    return float(value)


def decompose(weight, *, iterations=ITERATIONS, threshold=THRESHOLD, decay=DECAY,
              max_exponent=MAX_EXPONENT, block_rows=None, max_retries=MAX_RETRIES,
              tolerance=TOLERANCE, rcond=RCOND):
    """The SmartDeal decomposition of `weight` (module docstring): a Decomposition.

    weight: a float tensor (or nested list), linear (out, in), 1x1 conv (out, in, 1, 1) or
    3x3 conv (out, in, 3, 3). iterations >= 1 (the final pass counts as one), threshold >= 0
    (0: no sparsification), 0 < decay < 1, max_exponent an integer (Ce magnitudes clipped
    to 2^max_exponent), block_rows m0 (default: the reference's rule; must divide the rows
    of 3 of each output), max_retries >= 0, tolerance >= 0, rcond > 0. Deterministic: the
    same arguments give the same result (float64, one batched LAPACK solve per step).
    """
    if isinstance(weight, torch.Tensor):
        if weight.is_complex() or weight.dtype == torch.bool:
            raise TypeError(f"weight must be a real tensor, not {_describe(weight)}")
        weight = weight.detach().to(torch.float64)
    else:
        try:
            weight = torch.tensor(weight, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"weight must be a real tensor, not {weight!r}") from None
    if not bool(torch.isfinite(weight).all()):
        raise ValueError(f"weight must be finite, not {_describe(weight)} with "
                         f"non-finite entries")
    check_int("iterations", iterations, minimum=1)
    threshold = _check_real("threshold", threshold, "a finite number >= 0", lambda v: v >= 0)
    decay = _check_real("decay", decay, "a number between 0 and 1 (exclusive)",
                        lambda v: 0 < v < 1)
    check_int("max_exponent", max_exponent, minimum=-64, maximum=64)
    check_int("max_retries", max_retries, minimum=0)
    tolerance = _check_real("tolerance", tolerance, "a finite number >= 0", lambda v: v >= 0)
    rcond = _check_real("rcond", rcond, "a finite number above 0", lambda v: v > 0)
    layout = weight_layout(weight.shape, block_rows)
    blocks = layout.to_blocks(weight)

    n = layout.blocks
    ce = torch.zeros_like(blocks)
    basis = torch.zeros(n, BASIS, BASIS, dtype=torch.float64)
    thresholds = torch.full((n,), threshold, dtype=torch.float64)
    ran = torch.zeros(n, dtype=torch.int64)
    errors = torch.zeros(iterations, n, dtype=torch.float64)
    todo = (blocks != 0).flatten(1).any(1).nonzero().flatten()      # all-zero: Ce = 0, B = 0
    for attempt in range(max_retries + 1):
        if not len(todo):
            break
        fit = _fit(blocks[todo], thresholds[todo], iterations=iterations,
                   max_exponent=max_exponent, tolerance=tolerance, rcond=rcond)
        ce[todo], basis[todo], ran[todo], errors[:, todo] = fit
        if attempt == max_retries or threshold == 0:
            break
        unused = (fit[0] == 0).all(1).any(1)
        todo = todo[unused]
        thresholds[todo] *= decay
    return Decomposition(layout, blocks, ce, basis, thresholds, ran, errors, iterations, threshold,
                         decay, max_exponent)
