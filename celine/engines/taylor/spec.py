"""The Taylor-attention engine's declarations: generator parameters, registers, error
flags and shell buffers (docs/taylor.md, docs/protocol.md). Dependency-free."""

from dataclasses import dataclass
from enum import IntFlag

from ...spec.checks import check_int
from ...spec.fields import BufferSpec, Register, RegisterMap
from ...spec.numerics import LANES, MULT_BITS, REQUANT_LATENCY, SHIFT_BITS
from ...spec.params import Params
from ...spec.widths import ceil_log2, signed_width

# The output lane's numerator stages (rtl/taylor/output_lane.py): copies of the column's
# low bits, the column groups' picks, the pick over the groups, the registered
# multiplier (2), the rounding add, the shift, the score's add.
NUMERATOR_LATENCY = 8
# Cycles from an address on the context memory (rtl/taylor/context_memory.py) to its
# block: the block RAMs' output registers are on, so the word that goes to a multiplier
# leaves a register, not a block RAM's read path.
CONTEXT_READ_LATENCY = 2

__all__ = ["TaylorParams", "LANES", "MULT_BITS", "SHIFT_BITS", "CONTEXT_READ_LATENCY",
           "registers", "head_register", "HEAD_REGISTERS", "Errors", "buffers"]


@dataclass(frozen=True, kw_only=True)
class TaylorParams(Params):
    """One Taylor-attention pipeline: `mac_units` multipliers over `heads` heads in sequence.

    head_dim d: the per-head feature size (a multiple of the 8-lane beat).
    max_tokens: the largest runtime token count N; sets the accumulator widths.
    mac_units M: a power of two, at most d; arranged as tile_rows x tile_cols.
    operand_width w: the width of Q, K, V and of the output; the context G is 2w bits.
    heads: heads per run, processed one after another; a runtime mask skips some.
    out_mult, out_shift: the output scale every head's `out_mult_<h>`/`out_shift_<h>`
        registers reset to.
    """

    head_dim: int = 64
    max_tokens: int = 256
    mac_units: int = 16
    operand_width: int = 8
    heads: int = 3
    out_mult: int = 1
    out_shift: int = 0

    def __post_init__(self):
        check_int("head_dim", self.head_dim, minimum=LANES, maximum=256)
        if self.head_dim % LANES:
            raise ValueError(f"head_dim must be a multiple of {LANES}, not {self.head_dim!r}")
        check_int("max_tokens", self.max_tokens, minimum=1, maximum=4096)
        check_int("mac_units", self.mac_units, minimum=1, maximum=self.head_dim)
        if self.mac_units & (self.mac_units - 1):
            raise ValueError(f"mac_units must be a power of two, not {self.mac_units!r}")
        if self.head_dim % self.tile_rows or self.head_dim % self.tile_cols:
            raise ValueError(f"head_dim must be a multiple of the {self.tile_rows}x"
                             f"{self.tile_cols} MAC tile, not {self.head_dim!r}")
        check_int("operand_width", self.operand_width, minimum=2, maximum=16)
        check_int("heads", self.heads, minimum=1, maximum=16)
        check_int("out_mult", self.out_mult, minimum=0, maximum=(1 << MULT_BITS) - 1)
        check_int("out_shift", self.out_shift, minimum=0, maximum=(1 << SHIFT_BITS) - 1)

    def derived(self):
        """The derived tile, memory and widths, JSON-ready."""
        names = ("tile_rows", "tile_cols", "row_beats", "blocks", "context_width", "sum_width",
                 "kv_width", "score_width", "numerator_width", "recip_shift")
        return {name: getattr(self, name) for name in names}

    # -- the MAC tile and the context memory -------------------------------------------

    @property
    def lanes(self):
        return LANES

    @property
    def tile_cols(self):
        """c: output columns per block (and lanes of the centering unit)."""
        return 1 << ((self.mac_units.bit_length() - 1 + 1) // 2)

    @property
    def tile_rows(self):
        """r: rows of K (or Q elements) per block; r * c = mac_units."""
        return self.mac_units // self.tile_cols

    @property
    def blocks(self):
        """Words of the context memory: one r x c block of the d x d matrix each."""
        return self.head_dim * self.head_dim // self.mac_units

    @property
    def row_beats(self):
        """Stream beats per d-element row."""
        return self.head_dim // LANES

    # -- widths (worst case, so that nothing overflows) --------------------------------

    @property
    def operand_range(self):
        return -(1 << (self.operand_width - 1)), (1 << (self.operand_width - 1)) - 1

    @property
    def context_width(self):
        """G_q, the requantized global context."""
        return 2 * self.operand_width

    @property
    def sum_width(self):
        """S_K, S_V: sums of up to max_tokens operands."""
        lo, hi = self.operand_range
        return signed_width(self.max_tokens * lo, self.max_tokens * hi)

    @property
    def product_range(self):
        lo, hi = self.operand_range
        return lo * hi, lo * lo

    @property
    def kv_width(self):
        """P = K^T V: sums of up to max_tokens products."""
        lo, hi = self.product_range
        return signed_width(self.max_tokens * lo, self.max_tokens * hi)

    @property
    def element_width(self):
        """One element of the context memory (P during KV, G_q after centering)."""
        return max(self.kv_width, self.context_width)

    @property
    def token_width(self):
        """The runtime token count N, 0..max_tokens."""
        return self.max_tokens.bit_length()

    @property
    def centered_width(self):
        """G_N = N*P - S_K*S_V."""
        lo, hi = self.operand_range
        n = self.max_tokens
        p_lo, p_hi = self.product_range
        s_max = n * max(-lo, hi)
        return signed_width(n * n * p_lo - s_max * s_max, n * n * p_hi + s_max * s_max)

    @property
    def score_width(self):
        """A = Q_i . G_q[:, b], sums of head_dim products of w x 2w bits."""
        lo, hi = self.operand_range
        g_lo, g_hi = -(1 << (self.context_width - 1)), (1 << (self.context_width - 1)) - 1
        return signed_width(self.head_dim * min(lo * g_hi, hi * g_lo),
                            self.head_dim * lo * g_lo)

    @property
    def numerator_width(self):
        """num = A + round_shift(S_V * v_mult, v_shift) (worst case v_shift = 0)."""
        lo, hi = self.operand_range
        a = 1 << (self.score_width - 1)
        v_max = (1 << MULT_BITS) - 1
        return signed_width(-a + self.max_tokens * lo * v_max, a - 1 + self.max_tokens * hi * v_max)

    @property
    def recip_shift(self):
        """R: recip = (2^R + N//2) // N keeps at least 16 significant bits at N = max_tokens."""
        return 16 + ceil_log2(self.max_tokens)

    @property
    def recip_width(self):
        return self.recip_shift + 1

    # -- latencies and buffers ---------------------------------------------------------

    @property
    def output_latency(self):
        """Cycles through the output lane (rtl/taylor/output_lane.py): the numerator
        (NUMERATOR_LATENCY), division and requantizer (REQUANT_LATENCY each)."""
        return NUMERATOR_LATENCY + 2 * REQUANT_LATENCY

    @property
    def centering_latency(self):
        """Cycles through the centering unit (rtl/taylor/centering.py): the registered
        multipliers (2), the chunk sum (1), the difference (1), shift/round/clamp."""
        return 4 + REQUANT_LATENCY

    @property
    def row_tail(self):
        """Cycles from a Q row's last issue until its last beat is in the output FIFO."""
        return 4 + self.tile_cols + self.output_latency + 1

    @property
    def output_fifo_depth(self):
        """Beats: room for every row in flight, so that rows start without waiting."""
        in_flight = 2 + -(-self.row_tail // self.blocks)
        return self.row_beats * in_flight

    # -- ideal figures -----------------------------------------------------------------

    def useful_macs(self, tokens):
        """MACs of one head: N*d^2 for K^T V and N*d^2 for Q*G."""
        return 2 * tokens * self.head_dim ** 2

    def softmax_macs(self, tokens):
        """MACs of one head of softmax attention: N^2*d for Q K^T and N^2*d for A V."""
        return 2 * tokens * tokens * self.head_dim


# -- the engine in the shell ------------------------------------------------------------

HEAD_REGISTERS = ("out_mult", "out_shift")     # one register of each per head


def head_register(name, head):
    """The name of head `head`'s register `name` (one of HEAD_REGISTERS): "out_mult_2"."""
    return f"{name}_{head}"


def registers(params):
    """The pipeline's runtime inputs, sampled by RUN: the token count, the head mask, the
    context and value-term scales (every head), then each head's output scale
    (`out_mult_<h>`, `out_shift_<h>` for h = 0 .. heads - 1, in that order)."""
    per_head = []
    for h in range(params.heads):
        per_head += [
            Register(head_register("out_mult", h), f"head {h}'s output multiplier",
                     width=MULT_BITS, reset=params.out_mult),
            Register(head_register("out_shift", h), f"head {h}'s output shift",
                     width=SHIFT_BITS, reset=params.out_shift),
        ]
    return RegisterMap([
        Register("tokens", "the token count N, 1 .. max_tokens", width=16),
        Register("head_mask", "bit h set: head h is skipped", width=params.heads),
        Register("ctx_shift", "the context's shift (every head)", width=SHIFT_BITS),
        Register("v_mult", "the value term's multiplier (every head)", width=MULT_BITS),
        Register("v_shift", "the value term's shift (every head)", width=SHIFT_BITS),
        *per_head,
    ])


class Errors(IntFlag):
    """STATUS engine error flags of a run."""
    FRAMING = 0x01        # a beat's `last` disagreed with the block structure (internal)
    TOKENS = 0x02         # `tokens` outside 1 .. max_tokens: nothing ran


def buffers(params):
    """q, k, v (written by the host) and out: one 8-lane beat a word, a slot of
    max_tokens rows per head (head h, token i, beat x at word (h * max_tokens + i) *
    row_beats + x)."""
    p = params
    depth = p.heads * p.max_tokens * p.row_beats
    width = LANES * p.operand_width
    # q, k and v are read through a BufferReader, their addresses and words registered in
    # the block RAMs (BufferSpec.read_latency): each is dozens of blocks across the die.
    return [BufferSpec(name, width, depth, True, read_latency=3) for name in ("q", "k", "v")] \
        + [BufferSpec("out", width, depth, False)]
