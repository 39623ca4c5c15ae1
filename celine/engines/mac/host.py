"""Matrix products on the MAC array engine: settings checks, tiling, packing, batching.

A product is cut into array tiles with golden.mac.tile_matmul; tiles go to the device in
runs of as many as the act/weight buffers (T*K beats) and the result buffer (the rows of
T tiles) hold. Beats pack into words of `operand_width`-bit lanes, lane 0 lowest,
little-endian, word i at byte i*word_stride; result words are weight_lanes lanes of
result_width bits.

The grid (a fixed precision): the weights' column blocks (K words each, tile_cols(p)
columns) lie in the weight buffer, and a run pairs each act block (tile_rows(p) rows of A,
K words) with every weight block of the run (the grid_cols and weight_base registers), so
that A crosses the link once per product and W once per `store`. `store(w)` keeps W in the
buffer for any number of later products (`matmul(a, stored)`: only activations and
results cross the link); a plain `matmul(a, w)` writes W above the stored weights first.
`forget()` frees the buffer (the stored weights then refuse to run).

Random Precision Switch: the device's LFSR draws each tile's precision. The host replays
the draws with one golden.mac.MacArrayModel per device (so it stays in step across runs
and calls) and cuts each tile at its drawn precision. Tiles then differ in shape, so the
output is covered greedily: a tile claims the still-uncovered blocks of its footprint
(blocks being the tile shape of the largest candidate precision) at the first uncovered
block, row-major. `last_precisions` records the precision of every output element.

Operands may be torch tensors, numpy arrays or nested lists of integers
(celine.firmware.tensors); every setting is checked before anything is sent.
"""

from dataclasses import dataclass

import torch

from ...firmware.errors import CelineError, EngineError, ProtocolError, SettingError
from ...firmware.tensors import as_int_tensor
from ...firmware.words import pack_words, unpack_words
from ...golden.mac import MacArrayModel, Requant, assemble, tile_matmul
from ...spec.numerics import MULT_BITS, SHIFT_BITS
from .spec import REQUANT_REGISTER, MacArrayParams

__all__ = ["MacArrayHost", "StoredWeights"]


@dataclass(frozen=True, eq=False)
class StoredWeights:
    """Weights kept in a device's weight buffer (MacArrayHost.store): K x N at
    `precision`, `blocks` column blocks of K words from word `base` on."""
    base: int
    k: int
    n: int
    blocks: int
    precision: int
    owner: object
    epoch: int


def _as_matrix(name, value):
    return as_int_tensor(name, value, ndims=(2,), rule="a 2-D integer tensor")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _as_requant(requant):
    """None or a checked Requant from None, a Requant or a (multiplier, shift) pair."""
    if requant is None:
        return None
    if not isinstance(requant, Requant):
        if not isinstance(requant, (tuple, list)) or len(requant) != 2:
            raise SettingError(f"requant must be None, a golden.mac.Requant or a "
                               f"(multiplier, shift) pair of integers, not {requant!r}")
        requant = Requant(True, *requant)
    if not isinstance(requant.enable, bool):
        raise SettingError(f"requant enable must be True or False, not {requant.enable!r}")
    for name, value, bits in (("multiplier", requant.multiplier, MULT_BITS),
                              ("shift", requant.shift, SHIFT_BITS)):
        if not _is_int(value):
            raise SettingError(f"requant {name} must be an integer, not {value!r}")
        if not 0 <= value < 1 << bits:
            raise SettingError(f"requant {name} must be between 0 and {(1 << bits) - 1}, "
                               f"not {value!r}")
    return requant


class MacArrayHost:
    """`dev.mac`: matrix products on a MAC array device."""

    def __init__(self, device):
        self.device = device
        self.params = MacArrayParams.from_dict(device.info["params"])
        self.model = MacArrayModel(self.params)     # replays the device's LFSR
        self.last_precisions = None
        self.last_runs = None         # the tiles of each run of the last call, in order
        self._top = 0                 # weight words held by stored weights
        self._epoch = 0               # forget() count: older StoredWeights are stale
        self.kept = {}                # for callers that keep weights across calls (models)

    # -- checks ------------------------------------------------------------------------

    def _check(self, a, w, precision, requant, rps):
        p = self.params
        self.device.check_open()
        a, w = _as_matrix("a", a), _as_matrix("w", w)
        if a.shape[1] < 1 or w.shape[0] < 1:
            raise SettingError(f"K must be at least 1 (the columns of a, the rows of w), "
                               f"not {min(a.shape[1], w.shape[0])}")
        if a.shape[1] != w.shape[0]:
            raise SettingError(f"w must have {a.shape[1]} rows (the columns of a), "
                               f"not {w.shape[0]}")
        if not isinstance(rps, bool):
            raise SettingError(f"rps must be True or False, not {rps!r}")
        if not rps and (not _is_int(precision) or precision not in p.precisions):
            rule = ", ".join(map(str, p.precisions))
            raise SettingError(f"precision must be one of {rule}, not {precision!r}")
        wide = (p.rps_candidates if rps else (precision,)) == (16,)
        lo, hi = (-(1 << 15), (1 << 15) - 1) if wide else (-128, 127)
        kind = "int16" if wide else "int8"
        for name, tensor in (("a", a), ("w", w)):
            if tensor.numel() and not (lo <= int(tensor.min()) and int(tensor.max()) <= hi):
                raise SettingError(f"{name} must hold {kind} values ({lo}..{hi}), not values "
                                   f"{int(tensor.min())}..{int(tensor.max())}")
        requant = _as_requant(requant)
        depth = min(self.device.buffers["act"].depth, self.device.buffers["weight"].depth)
        if a.shape[1] > depth:
            raise SettingError(f"K must be at most {depth} (the buffer depth), not {a.shape[1]}")
        return a, w, requant

    # -- tiling ------------------------------------------------------------------------

    def _plan(self, a, w, precision, rps):
        """[(m0, n0, precision, act_beats, weight_beats)] in device order."""
        if not rps:
            return [(m0, n0, precision, act, weight)
                    for m0, n0, act, weight in tile_matmul(a, w, precision, self.params)]
        p = self.params
        unit_r = min(p.tile_rows(c) for c in p.rps_candidates)
        unit_c = min(p.tile_cols(c) for c in p.rps_candidates)
        grid_r, grid_c = -(-a.shape[0] // unit_r), -(-w.shape[1] // unit_c)
        covered = [[False] * grid_c for _ in range(grid_r)]
        plan = []
        for r in range(grid_r):
            for c in range(grid_c):
                if covered[r][c]:
                    continue
                drawn = self.model.tile_precision(rps=True)
                m0, n0 = r * unit_r, c * unit_c
                rows, cols = p.tile_rows(drawn), p.tile_cols(drawn)
                for rr in range(r, min(grid_r, r + rows // unit_r)):
                    for cc in range(c, min(grid_c, c + cols // unit_c)):
                        covered[rr][cc] = True
                (_, _, act, weight), = tile_matmul(a[m0:m0 + rows], w[:, n0:n0 + cols],
                                                   drawn, p)
                plan.append((m0, n0, drawn, act, weight))
        return plan

    def _tiles_per_run(self, size_k, rps, precision):
        p, buffers = self.params, self.device.buffers
        rows = max(p.tile_rows(c) for c in (p.rps_candidates if rps else (precision,)))
        tiles = min(buffers["act"].depth // size_k, buffers["weight"].depth // size_k,
                    buffers["result"].depth // rows, 0xFFFF // rows)
        if tiles < 1:
            raise CelineError(f"the result buffer ({buffers['result'].depth} words) cannot "
                              f"hold one tile of {rows} rows")
        return tiles

    # -- running -----------------------------------------------------------------------

    def matmul(self, a, w, *, precision=None, requant=None, rps=False):
        """A (M x K) @ W (K x N): an (M x N) int64 tensor.

        a, w: integer operands (torch, numpy or nested lists): int16 values at precision
        16, int8 values otherwise (in rps mode int16 only if 16 is the only candidate);
        w may also be a StoredWeights from `store` (not in rps mode): it is on the device
        already, and `precision` defaults to its own.
        precision: one of the device's precisions; None (the default) is the largest, so
        that by default the result is the exact product (a @ w for int16 operands on a
        device with precision 16, for int8 operands on any device).
        Units of the result: without requant, the exact integer sums of products of the
        p-bit operands the device derives. At 8 and 16 those are the values given, so the
        result is a @ w itself; below 8 each int8 value x becomes round(x / 2^(8-p))
        saturated to p bits, so the result approximates (a @ w) / 4^(8-p) (at precision
        4, [[100, -50]] @ [[20], [30]] is 6*1 + (-3)*2 = 0, not 500).
        requant: None (the sums above), or golden.mac.Requant / (multiplier, shift) for
        int8 outputs clamp((sum * multiplier + 2^(shift-1)) >> shift) to -128..127.
        rps: True to let the device draw each tile's precision from its rps candidates
        (see the module docstring; `last_precisions` tells which, `precision` is ignored).
        """
        if isinstance(w, StoredWeights):
            return self._stored_matmul(a, w, precision, requant, rps)
        if precision is None:
            precision = max(self.params.precisions)
        a, w, requant = self._check(a, w, precision, requant, rps)
        if not rps:
            return self._grid_matmul(a, w, precision, requant)
        size_m, size_k = a.shape
        size_n = w.shape[1]
        per_run = self._tiles_per_run(size_k, rps, precision)
        plan = self._plan(a, w, precision, rps)
        self._configure(size_k, max(self.params.precisions), requant, rps=True, grid_cols=0,
                        weight_base=0)
        results, tiles_set = [], None
        self.last_runs = []
        for start in range(0, len(plan), per_run):
            batch = plan[start:start + per_run]
            self.last_runs.append(len(batch))
            if len(batch) != tiles_set:
                self.device.configure(tiles=len(batch))
                tiles_set = len(batch)
            results += self._run_batch(batch)
        return self._assemble(size_m, size_n, plan, results, precision, rps)

    def _configure(self, depth, precision, requant, *, rps, **grid):
        word = requant if requant is not None else Requant()
        self.device.configure(depth=depth, precision=precision, rps_enable=int(rps),
                              requant=REQUANT_REGISTER.pack(enable=int(word.enable),
                                                            multiplier=word.multiplier,
                                                            shift=word.shift), **grid)

    # -- weights kept on the device ----------------------------------------------------

    def store(self, w, *, precision=None):
        """Write W (K x N, int8 values; int16 at precision 16) into the weight buffer, after
        the weights stored before, and keep it there: a StoredWeights for
        `matmul(a, stored)`, which then sends only A. precision: the products' (default
        the largest); it sets the column blocks' width. SettingError if W does not fit the
        buffer's free words (`forget` frees them all)."""
        if precision is None:
            precision = max(self.params.precisions)
        probe = torch.zeros(1, _as_matrix("w", w).shape[0], dtype=torch.int64)
        _, w, _ = self._check(probe, w, precision, None, False)
        blocks = -(-w.shape[1] // self.params.tile_cols(precision))
        words, free = self.weight_words(w.shape, precision), self.free_words
        if words > free:
            raise SettingError(f"w needs {words} words of the weight buffer, but {free} of "
                               f"{self.device.buffers['weight'].depth} are free "
                               f"(forget() frees the stored weights)")
        self._write_blocks(self._top, w, precision)
        stored = StoredWeights(self._top, w.shape[0], w.shape[1], blocks, precision, self,
                               self._epoch)
        self._top += words
        return stored

    def forget(self):
        """Free the weight buffer: the StoredWeights made so far no longer run."""
        self._top = 0
        self._epoch += 1

    def weight_words(self, shape, precision):
        """Words of the weight buffer a K x N `shape` takes at `precision` (its column
        blocks of tile_cols(precision) columns, K words each)."""
        if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != 2 or \
                not all(_is_int(x) and x >= 1 for x in shape):
            raise SettingError(f"shape must be a (K, N) pair of positive integers, "
                               f"not {shape!r}")
        if not _is_int(precision) or precision not in self.params.precisions:
            rule = ", ".join(map(str, self.params.precisions))
            raise SettingError(f"precision must be one of {rule}, not {precision!r}")
        size_k, size_n = shape
        return size_k * -(-size_n // self.params.tile_cols(precision))

    @property
    def free_words(self):
        """Words of the weight buffer not held by stored weights."""
        return self.device.buffers["weight"].depth - self._top

    def holds(self, stored):
        """Whether `stored` (a StoredWeights) is still in this device's weight buffer."""
        if not isinstance(stored, StoredWeights):
            raise SettingError(f"stored must be a StoredWeights, not {type(stored).__name__}")
        return stored.owner is self and stored.epoch == self._epoch

    def _write_blocks(self, base, w, precision):
        """W's column blocks (tile_cols(precision) columns, zero padded, K words each)
        into the weight buffer from word `base` on."""
        p, info = self.params, self.device.buffers["weight"]
        cols = p.tile_cols(precision)
        blocks = -(-w.shape[1] // cols)
        lanes = torch.zeros(blocks, w.shape[0], p.weight_lanes, dtype=torch.int64)
        for j in range(blocks):
            block = w[:, j * cols:(j + 1) * cols]
            lanes[j, :, :block.shape[1]] = block
        self.device.write_buffer("weight", base * info.word_stride,
                                 pack_words(lanes.reshape(-1, p.weight_lanes).tolist(),
                                            p.operand_width, info.word_bytes, info.word_stride))

    def _stored_matmul(self, a, stored, precision, requant, rps):
        if not self.holds(stored):
            raise SettingError("w is a StoredWeights this device no longer holds (another "
                               "device's, or stored before forget())")
        if rps:
            raise SettingError("rps must be False for stored weights (their blocks have "
                               "one precision)")
        if precision is None:
            precision = stored.precision
        if precision != stored.precision:
            raise SettingError(f"precision must be {stored.precision} (the stored weights'), "
                               f"not {precision!r}")
        a = _as_matrix("a", a)
        if a.shape[1] != stored.k:
            raise SettingError(f"a must have {stored.k} columns (the stored weights' rows), "
                               f"not {a.shape[1]}")
        probe = torch.zeros(stored.k, 1, dtype=torch.int64)
        a, _, requant = self._check(a, probe, precision, requant, False)
        return self._grid(a, [(stored.base, 0, stored.blocks)], stored.n, precision, requant)

    def _grid_matmul(self, a, w, precision, requant):
        """A @ W with W written above the stored weights, as many column blocks at a time
        as the free words hold."""
        size_k = w.shape[0]
        cols = self.params.tile_cols(precision)
        blocks = -(-w.shape[1] // cols)
        room = self.free_words // size_k
        if room < 1:
            raise SettingError(f"w needs {size_k} free words of the weight buffer for a column "
                               f"block, but {self.free_words} are free (forget() frees the "
                               f"stored weights)")
        out, runs = [], []
        for first in range(0, blocks, room):
            count = min(room, blocks - first)
            self._write_blocks(self._top, w[:, first * cols:(first + count) * cols], precision)
            out.append(self._grid(a, [(self._top, first, count)], w.shape[1], precision,
                                  requant))
            runs += self.last_runs
        self.last_runs = runs
        return sum(out[1:], out[0]) if len(out) > 1 else out[0]

    def _grid(self, a, spans, size_n, precision, requant):
        """A @ (the weight blocks of `spans`: (base word, first block, count)): runs of the
        grid, each act block written once per run of rows. Columns outside the spans stay
        0 in the M x size_n result."""
        p, buffers = self.params, self.device.buffers
        size_m, size_k = a.shape
        rows, cols = p.tile_rows(precision), p.tile_cols(precision)
        cap = min(buffers["result"].depth, 0xFFFF) // rows        # tiles a run can write
        if cap < 1:
            raise CelineError(f"the result buffer ({buffers['result'].depth} words) cannot "
                              f"hold one tile of {rows} rows")
        self._configure(size_k, precision, requant, rps=False)
        out = torch.zeros(size_m, size_n, dtype=torch.int64)
        act_blocks = -(-size_m // rows)
        self.last_precisions = torch.full((size_m, size_n), precision, dtype=torch.int64)
        self.last_runs = []
        info = buffers["act"]
        for base, first, count in spans:
            per_run_cols = min(count, cap)
            per_run_rows = max(1, min(info.depth // size_k, cap // per_run_cols))
            for row0 in range(0, act_blocks, per_run_rows):
                row_count = min(per_run_rows, act_blocks - row0)
                lanes = torch.zeros(row_count, size_k, p.act_lanes, dtype=torch.int64)
                for i in range(row_count):
                    block = a[(row0 + i) * rows:(row0 + i + 1) * rows].T
                    lanes[i, :, :block.shape[1]] = block
                self.device.write_buffer("act", 0, pack_words(
                    lanes.reshape(-1, p.act_lanes).tolist(), p.operand_width, info.word_bytes,
                    info.word_stride))
                for col0 in range(0, count, per_run_cols):
                    col_count = min(per_run_cols, count - col0)
                    tiles = row_count * col_count
                    self.device.configure(grid_cols=col_count, weight_base=base + col0 * size_k,
                                          tiles=tiles)
                    self.last_runs.append(tiles)
                    words = self._run_tiles(tiles * rows)
                    for t in range(tiles):
                        m0 = (row0 + t // col_count) * rows
                        n0 = (first + col0 + t % col_count) * cols
                        height, width = min(rows, size_m - m0), min(cols, size_n - n0)
                        out[m0:m0 + height, n0:n0 + width] = \
                            words[t * rows:t * rows + height, :width]
        return out

    def _run_tiles(self, expected):
        """Run; the `expected` result words it wrote, as rows of weight lanes."""
        p = self.params
        report = self.device.run()
        if report.engine_errors:
            raise EngineError(report.engine_errors, f"run ended with engine error flags "
                                                    f"{report.engine_errors:#04x}")
        if report.result_words != expected:
            raise ProtocolError(f"run wrote {report.result_words} result words, "
                                f"not {expected}")
        info = self.device.buffers["result"]
        data = self.device.read_buffer("result", 0, expected * info.word_stride)
        return unpack_words(data, expected, p.weight_lanes, p.result_width, info.word_stride)

    def _write_beats(self, name, beats, lanes):
        info = self.device.buffers[name]
        rows = torch.cat(beats).reshape(-1, lanes).tolist()
        self.device.write_buffer(name, 0, pack_words(rows, self.params.operand_width,
                                                     info.word_bytes, info.word_stride))

    def _run_batch(self, batch):
        p = self.params
        self._write_beats("act", [act for *_, act, _ in batch], p.act_lanes)
        self._write_beats("weight", [weight for *_, weight in batch], p.weight_lanes)
        rows = self._run_tiles(sum(p.tile_rows(prec) for _, _, prec, _, _ in batch))
        out, at = [], 0
        for _, _, prec, _, _ in batch:
            out.append(rows[at:at + p.tile_rows(prec)])
            at += p.tile_rows(prec)
        return out

    def _assemble(self, size_m, size_n, plan, results, precision, rps):
        if not rps:
            self.last_precisions = torch.full((size_m, size_n), precision, dtype=torch.int64)
            return assemble(size_m, size_n, [(m0, n0, rows) for (m0, n0, *_), rows
                                             in zip(plan, results)], precision, self.params)
        # Later tiles only own blocks no earlier tile covered; placing tiles last to
        # first lets every block end with its owner's values.
        out = torch.zeros(size_m, size_n, dtype=torch.int64)
        precisions = torch.zeros(size_m, size_n, dtype=torch.int64)
        for (m0, n0, prec, _, _), rows in reversed(list(zip(plan, results))):
            height = min(rows.shape[0], size_m - m0)
            width = min(self.params.tile_cols(prec), size_n - n0)
            out[m0:m0 + height, n0:n0 + width] = rows[:height, :width]
            precisions[m0:m0 + height, n0:n0 + width] = prec
        self.last_precisions = precisions
        return out
