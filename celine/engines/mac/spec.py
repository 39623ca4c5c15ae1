"""The precision-scalable MAC array's declarations: generator parameters, registers,
error flags and shell buffers (docs/mac.md, docs/protocol.md). Dependency-free."""

from dataclasses import dataclass, field
from enum import IntFlag

from ...spec.checks import check_choice, check_int, check_int_tuple
from ...spec.fields import BufferSpec, Field, Register, RegisterMap
from ...spec.numerics import MULT_BITS, REQUANT_LATENCY, SHIFT_BITS
from ...spec.params import Params
from ...spec.widths import signed_width

PRECISIONS = (2, 4, 8, 16)
IMPLS = ("bricks", "dsp")
LFSR_WIDTH = 16


@dataclass(frozen=True, kw_only=True)
class MacArrayParams(Params):
    """A rows x cols array of processing elements (PEs), output-stationary.

    impl="bricks": a PE is an 8x8 multiplier built from (8/b)^2 b x b "bricks"; at a
      precision p <= 8 its bricks regroup into (8/p)^2 independent p x p multipliers (the
      "fusion" f = 8/p), so the array acts as (rows*f) x (cols*f) p-bit MACs. 16-bit
      operands take 4 passes through the 8x8 multiplier with shift-accumulate.
    impl="dsp": a PE is one native multiplier (an ECP5 MULT18X18D), one MAC per cycle at
      every precision; narrow products are not packed into one multiplier.

    acc_width: the accumulator width at the largest precision; derived from
      max_reduction so that no reduction of that length can overflow, unless given (then
      longer sums wrap around, and the golden model wraps alike).
    """

    rows: int = 2
    cols: int = 2
    brick_width: int = 2
    precisions: tuple = (2, 4, 8, 16)
    impl: str = "bricks"
    max_reduction: int = 1024
    acc_width: int | None = None
    rps_precisions: tuple | None = None
    lfsr_seed: int = 0xACE1
    _rps: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        check_int("rows", self.rows, minimum=1, maximum=64)
        check_int("cols", self.cols, minimum=1, maximum=64)
        check_int("brick_width", self.brick_width, minimum=1, maximum=8)
        check_choice("brick_width", self.brick_width, (1, 2, 4, 8))
        precisions = check_int_tuple("precisions", self.precisions, allowed=PRECISIONS)
        for p in precisions:
            if p % self.brick_width:
                raise ValueError(f"precisions must be multiples of brick_width {self.brick_width}, "
                                 f"not {self.precisions!r}")
        object.__setattr__(self, "precisions", precisions)
        check_choice("impl", self.impl, IMPLS)
        check_int("max_reduction", self.max_reduction, minimum=1, maximum=1 << 20)
        if self.acc_width is not None:
            check_int("acc_width", self.acc_width, minimum=2 * max(precisions), maximum=64)
        rps = self.precisions if self.rps_precisions is None else self.rps_precisions
        rps = check_int_tuple("rps_precisions", rps, allowed=PRECISIONS)
        if not set(rps) <= set(precisions):
            raise ValueError(f"rps_precisions must be a subset of precisions {precisions!r}, "
                             f"not {self.rps_precisions!r}")
        object.__setattr__(self, "_rps", rps)
        check_int("lfsr_seed", self.lfsr_seed, minimum=1, maximum=(1 << LFSR_WIDTH) - 1)

    # -- derived quantities ------------------------------------------------------------

    def derived(self):
        """The derived lanes and widths and the ideal MACs per cycle, JSON-ready."""
        return {
            "act_lanes": self.act_lanes, "weight_lanes": self.weight_lanes,
            "operand_width": self.operand_width, "result_width": self.result_width,
            "max_fusion": self.max_fusion,
            "macs_per_cycle_ideal": {str(p): self.macs_per_cycle_ideal(p)
                                     for p in self.precisions},
        }

    @property
    def rps_candidates(self):
        return self._rps

    def fusion(self, precision):
        """p-bit multipliers per PE along each operand: (8/p) for bricks at p <= 8, else 1."""
        if self.impl == "bricks" and precision <= 8:
            return 8 // precision
        return 1

    def passes(self, precision):
        """Cycles a PE spends on one pair of operand vectors."""
        if self.impl == "bricks" and precision == 16:
            return 4
        return 1

    @property
    def multiplier_stages(self):
        """Register stages of a PE's multiplier after its operand register: bricks, the
        fused multiplier's cells and two levels of sums, the 8-bit one in two stages
        (rtl/mac/fused_multiplier.py; a shallower one is padded); dsp, a MULT18X18D's
        product register and a register in the fabric after it (the block's product
        crossed the die to its accumulators in one net of 10.7 ns in a 16 x 8 array)."""
        return 4 if self.impl == "bricks" else 2

    @property
    def pe_latency(self):
        """Cycles from a pass at a PE's inputs to its sum in the accumulators: the input
        register, the reduced operands' register, the operand register, the multiplier's
        stages, the accumulator (rtl/mac/pe.py)."""
        return 3 + self.multiplier_stages + 1

    @property
    def result_latency(self):
        """Cycles from a tile's last beat accepted by the array to its first output row
        offered on `o` (rtl/mac/array.py): the PEs (pe_latency; the array presents a beat
        to them the cycle it accepts it), the copy into the shadow registers, the result
        drain's requantizers (REQUANT_LATENCY) and its queue's output register."""
        return self.pe_latency + 1 + REQUANT_LATENCY + 1

    @property
    def max_fusion(self):
        return max(self.fusion(p) for p in self.precisions)

    @property
    def operand_width(self):
        """Width of an operand lane: 16 if 16-bit operands are supported, else 8."""
        return 16 if 16 in self.precisions else 8

    @property
    def act_lanes(self):
        return self.rows * self.max_fusion

    @property
    def weight_lanes(self):
        return self.cols * self.max_fusion

    def tile_rows(self, precision):
        """Activation lanes (output rows) of one tile at `precision`."""
        return self.rows * self.fusion(precision)

    def tile_cols(self, precision):
        """Weight lanes (output columns) of one tile at `precision`."""
        return self.cols * self.fusion(precision)

    def needed_acc_width(self, precision):
        """Width that holds any sum of max_reduction products of two p-bit operands."""
        magnitude = self.max_reduction << (2 * precision - 2)
        return signed_width(-magnitude, magnitude)

    def acc_width_at(self, precision):
        """The accumulator width results wrap to at `precision`."""
        needed = self.needed_acc_width(precision)
        return needed if self.acc_width is None else min(self.acc_width, needed)

    def slot_width(self, ga, gw):
        """Accumulator width of product slot (ga, gw) of a PE: set by the widest precision
        that uses the slot (slots beyond the first exist only for narrow precisions)."""
        used_by = [p for p in self.precisions if self.fusion(p) > max(ga, gw)]
        return self.acc_width_at(max(used_by))

    def lane_width(self, lane):
        """Width of the sums output lane `lane` carries (lane gw*cols + c holds slots (., gw))."""
        return self.slot_width(0, lane // self.cols)

    @property
    def result_width(self):
        """Width of an output lane: int32, wider only if an accumulator is wider."""
        return max(32, self.acc_width_at(max(self.precisions)))

    def macs_per_cycle_ideal(self, precision):
        return self.rows * self.cols * self.fusion(precision) ** 2 / self.passes(precision)

    def encode_precision(self, precision):
        """Index of a precision in `precisions` (the hardware's internal encoding)."""
        return self.precisions.index(precision)


# -- the engine in the shell ------------------------------------------------------------

DEFAULT_OPERAND_DEPTH = 512
DEFAULT_RESULT_DEPTH = 512

REQUANT_REGISTER = Register("requant", "output requantization", fields=(
    Field("enable", 0, 1, "1: int8 = clamp((x * M + 2^(S-1)) >> S); 0: the exact sum"),
    Field("multiplier", 1, MULT_BITS, "M"),
    Field("shift", 1 + MULT_BITS, SHIFT_BITS, "S"),
))


def registers(params):
    """The registers, sampled by RUN."""
    return RegisterMap([
        Register("depth", "beats per tile K", width=16),
        Register("tiles", "tiles per run T (T * K <= the operand buffers' depth)", width=16),
        Register("precision", "2, 4, 8 or 16 (reset: the largest supported)",
                 reset=max(params.precisions)),
        Register("rps_enable", "1: the LFSR draws each tile's precision", width=1),
        REQUANT_REGISTER,
        Register("grid_cols", "0: tile t pairs act and weight block t; C >= 1: the grid, "
                 "tile t pairs act block t // C with weight block t % C", width=16),
        Register("weight_base", "the grid's weight block 0 starts at this weight word",
                 width=16),
    ])


class Errors(IntFlag):
    """STATUS engine error flags of a run."""
    FRAMING = 0x01        # a tile's `last` disagreed with the depth register
    PRECISION = 0x02      # the precision register was not supported (ran at the largest)
    OVERFLOW = 0x04       # result rows beyond the result buffer were dropped


def buffers(params, *, operand_depth=DEFAULT_OPERAND_DEPTH, result_depth=DEFAULT_RESULT_DEPTH):
    """act and weight (one reduction step a word), result (one output row a word)."""
    check_int("operand_depth", operand_depth, minimum=1, maximum=1 << 16)
    check_int("result_depth", result_depth, minimum=1, maximum=1 << 16)
    p = params
    return [
        # Read through a BufferReader, registered in the block RAMs (BufferSpec.read_latency).
        BufferSpec("act", p.act_lanes * p.operand_width, operand_depth, True, read_latency=2),
        BufferSpec("weight", p.weight_lanes * p.operand_width, operand_depth, True,
                   read_latency=2),
        BufferSpec("result", p.weight_lanes * p.result_width, result_depth, False),
    ]
