"""The ViTCoD engine's declarations: generator parameters, the softmax unit's integer
formats, registers, error flags and shell buffers (docs/vitcod.md). Dependency-free."""

import math
from dataclasses import dataclass
from enum import IntFlag

from ...spec.checks import check_int
from ...spec.fields import BufferSpec, Register, RegisterMap
from ...spec.lanes import pack_lanes, unpack_lanes
from ...spec.numerics import LANES, MULT_BITS, SHIFT_BITS
from ...spec.params import Params
from ...spec.widths import ceil_log2, signed_width

__all__ = ["VitcodParams", "V_READ_LATENCY", "V_OPERAND_REGISTER", "QK_READ_LATENCY", "CSR_READ_LATENCY", "CSC_READ_LATENCY", "INDEX_CHECK_LATENCY", "CSR_CHECK_TAIL", "EXP_LATENCY", "DPU_WIDTH", "EXP_FRAC_BITS", "EXP_TABLE_BITS",
           "E_BITS", "X_BITS", "EXP_HI_TABLE", "EXP_LO_TABLE", "registers", "head_register",
           "HEAD_REGISTERS", "Errors", "buffers", "AE_OPERANDS", "AE_WEIGHTS_PER_REGISTER",
           "AeEnable", "AE_STEPS", "AE_PARTS", "AE_REGISTER_PREFIX", "AE_MAX_HEADS",
           "MAX_REGISTERS", "ae_shape", "ae_register", "ae_weight_registers",
           "pack_ae_weights", "unpack_ae_weights", "ae_settings", "ae_values",
           "ae_encoder_settings", "ae_encoder_values", "code_word", "gcols_depth",
           "AE_VALUE_BITS", "AE_BIAS_BITS", "MAC_BANK_LATENCY"]

# -- the engines' dot-product units --------------------------------------------------------

DPU_WIDTH = LANES          # MACs of one dot-product unit; an engine has a whole number of them
# The shared MAC bank (rtl/vitcod/mac_bank.py): operands in -> products out, a registered
# multiplier (2), then each product into a register in the fabric (the multiplier
# block's output crossing to its user's adder in the same cycle, a 5.8 ns net into the
# SpMM's accumulators, was a build's worst path). (A register after the operand
# multiplexer instead was tried against the V buffer -> bank path: the default design's
# routing then diverged on seed 1 with router2; docs/timing.md.)
MAC_BANK_LATENCY = 3
# v's read latency (BufferSpec.read_latency): its block RAMs' output registers are on, so
# the SpMM's slice into the MAC bank leaves a register, not a block RAM's read path; and
# (3) the read address is registered beside every few of v's blocks, so the SpMM's
# address does not cross the die to all of them in one cycle (one build: a 7.0 ns net).
V_READ_LATENCY = 3
# The SpMM's slice of a v word registered in the SpMM, before the MAC bank's operand
# multiplexer (a v block's output through that multiplexer into a multiplier across the
# die was a build's worst path, 8.2 ns: nets of 3.2 and 3.8 ns).
V_OPERAND_REGISTER = 1
# q's and k's read latency, likewise (3): the SDDMM engines' rows and the auto-encoder's
# mixer slices leave the blocks' output registers (a k block's 5.6 ns clock-to-out and
# an 8.9 ns net to the host's read register was a build's worst path), and both ports'
# addresses are registered beside the blocks, the auto-encoder's writes with them (the
# k address through the auto-encoder's and the ownership multiplexers to a block across
# the die was another, 8.65 ns with one 5.6 ns net).
QK_READ_LATENCY = 3
# The CSR list's read latency, on both its read ports: the words leave the blocks' output
# registers, which take the place of the registers the list's readers (the CSR check, the
# index check, the softmax unit's prefetch) had after them (the block's 5.6 ns clock-to-
# out and a 3.7 ns net into the CSR check's word register was a build's worst path).
CSR_READ_LATENCY = 2
# The CSC list's, the same way (the block's clock-to-out without its output register and
# a 3.9 ns net into the index check's word register was a build's worst path, 9.7 ns).
CSC_READ_LATENCY = 2
# IndexCheck's stages from an entry's issue to its comparison: the CSC word in
# (CSC_READ_LATENCY), into a register, the CSR word in (CSR_READ_LATENCY), into a register
# (rtl/vitcod/index_check.py).
INDEX_CHECK_LATENCY = CSC_READ_LATENCY + CSR_READ_LATENCY + 2
# CsrCheck's cycles from its last read to `busy` low (rtl/vitcod/csr_check.py): the word
# in (CSR_READ_LATENCY), into a register, each check into a register of its own (with
# the global-column lookup's first step), the lookup's second step, their OR into `error`.
CSR_CHECK_TAIL = 4 + CSR_READ_LATENCY
# The softmax unit's ExpUnit (rtl/vitcod/exp_unit.py): x in -> e out, fully pipelined.
# (The tables' ROMs in logic straight into the HI·LO multiplier's input registers, one
# register fewer, put a 4.0 ns net into the multiplier block on a build's worst path.)
EXP_LATENCY = 9

# -- the softmax unit's exponential (docs/vitcod.md, "The integer softmax") ---------------
#
# x = min(m - s, 2^X_BITS - 1) >= 0 is a score's distance below its row's maximum;
# z = (x * exp_mult) >> exp_shift is x * scale * log2(e) in units of 2^-EXP_FRAC_BITS;
# e = 2^(E_BITS) * 2^(-z / 2^EXP_FRAC_BITS), from two tables of the fraction's halves and
# a shift by its integer part, rounded half up: at most 2^E_BITS (the row maximum).

X_BITS = 17                # the clamp of x: an unsigned 17-bit operand of a MULT18X18D
EXP_FRAC_BITS = 12         # z's fraction bits
EXP_TABLE_BITS = EXP_FRAC_BITS // 2    # each table covers half of the fraction
E_BITS = 16                # e is unsigned with E_BITS fraction bits, 0 .. 2^E_BITS


def _exp_table(step_bits):
    """round(2^E_BITS * 2^(-a / 2^step_bits)) for a in 0 .. 2^EXP_TABLE_BITS - 1."""
    return tuple(int(math.floor((1 << E_BITS) * 2.0 ** (-a / (1 << step_bits)) + 0.5))
                 for a in range(1 << EXP_TABLE_BITS))


EXP_HI_TABLE = _exp_table(EXP_TABLE_BITS)      # the fraction's high half: 2^(-a/64)
EXP_LO_TABLE = _exp_table(EXP_FRAC_BITS)       # its low half: 2^(-b/4096)


@dataclass(frozen=True, kw_only=True)
class VitcodParams(Params):
    """One ViTCoD attention engine: a denser and a sparser SDDMM engine, a softmax unit and
    an SpMM over the kept entries, for `heads` heads in sequence (docs/vitcod.md).

    head_dim d: the per-head feature size (a multiple of the 8-MAC dot-product unit).
    max_tokens: the largest runtime token count N.
    heads: heads per run, processed one after another; a runtime mask skips some.
    max_global: key columns the denser engine computes densely for every row (its score
        memory holds max_tokens x max_global scores); 0 with no denser engine.
    sparse_capacity: kept entries of the sparse region per head (the sparser engine's
        score memory and the index lists); 0 with no sparser engine.
    dense_macs, sparse_macs: the MAC units of the denser and of the sparser engine, whole
        dot-product units of 8, each at most d (one score a cycle). Their sum M either
        divides d, and the SpMM (and the auto-encoder's mixers) use all M (a kept entry
        takes d/M cycles), or exceeds d, and they use d of them (a kept entry a cycle).
    operand_width w: the width of Q, K, V and of the output.
    prob_bits F: fraction bits of the probabilities (unsigned, 0 .. 2^F).
    out_lanes: output values requantized per cycle (a divisor of d).
    out_mult, out_shift: the output scale every head's registers reset to.
    autoencoder: with the Q/K auto-encoder's encoders and decoders (docs/vitcod.md, "The
        Q/K auto-encoder"): before the first head the engine may compress q and k into
        ceil(H/2) code heads and/or rebuild the H heads from them (register ae_enable).
        Needs int8 operands and 2 <= heads <= AE_MAX_HEADS (its registers must fit the
        protocol's one-byte register ids).
    row_beats: buffer words a row of q, k, v and out takes (a power of two dividing d / 8):
        the buffers' ports are d·w / row_beats bits wide, so the block RAMs' data wires
        into the engine narrow by that much (docs/vitcod.md, "Row beats"). An engine then
        reads a row over row_beats cycles: each SDDMM engine has at most d / (8 row_beats)
        dot-product units, the SpMM at most d / row_beats MAC units and the output stage
        at most d / row_beats lanes. 1 with the auto-encoder. None (the default): the most
        that these allow (`beats`), so the engine keeps its rates with the narrowest ports.
    """

    head_dim: int = 64
    max_tokens: int = 197
    heads: int = 1
    max_global: int = 32
    sparse_capacity: int = 2048
    dense_macs: int = 8
    sparse_macs: int = 24
    operand_width: int = 8
    prob_bits: int = 12
    out_lanes: int = 16
    out_mult: int = 1
    out_shift: int = 0
    autoencoder: bool = False
    row_beats: int | None = None

    def __post_init__(self):
        check_int("head_dim", self.head_dim, minimum=DPU_WIDTH, maximum=256)
        if self.head_dim % DPU_WIDTH:
            raise ValueError(f"head_dim must be a multiple of {DPU_WIDTH}, not {self.head_dim!r}")
        check_int("max_tokens", self.max_tokens, minimum=1, maximum=1024)
        check_int("heads", self.heads, minimum=1, maximum=16)
        check_int("max_global", self.max_global, minimum=0, maximum=self.max_tokens)
        check_int("sparse_capacity", self.sparse_capacity, minimum=0,
                  maximum=self.max_tokens * self.max_tokens)
        for name in ("dense_macs", "sparse_macs"):
            value = getattr(self, name)
            check_int(name, value, minimum=0, maximum=self.head_dim)
            if value % DPU_WIDTH:
                raise ValueError(f"{name} must be a multiple of {DPU_WIDTH}, not {value!r}")
        if (self.dense_macs == 0) != (self.max_global == 0):
            raise ValueError(f"max_global must be 0 exactly when dense_macs is 0, "
                             f"not {self.max_global!r}")
        if (self.sparse_macs == 0) != (self.sparse_capacity == 0):
            raise ValueError(f"sparse_capacity must be 0 exactly when sparse_macs is 0, "
                             f"not {self.sparse_capacity!r}")
        if self.mac_units == 0:
            raise ValueError("dense_macs + sparse_macs must be at least 8, not 0")
        if self.mac_units < self.head_dim and self.head_dim % self.mac_units:
            raise ValueError(f"dense_macs + sparse_macs must divide head_dim "
                             f"({self.head_dim}) or exceed it, not {self.mac_units!r}")
        check_int("operand_width", self.operand_width, minimum=2, maximum=8)
        check_int("prob_bits", self.prob_bits, minimum=4, maximum=15)
        check_int("out_lanes", self.out_lanes, minimum=1, maximum=self.head_dim)
        if self.head_dim % self.out_lanes:
            raise ValueError(f"out_lanes must divide head_dim ({self.head_dim}), "
                             f"not {self.out_lanes!r}")
        check_int("out_mult", self.out_mult, minimum=0, maximum=(1 << MULT_BITS) - 1)
        check_int("out_shift", self.out_shift, minimum=0, maximum=(1 << SHIFT_BITS) - 1)
        if not isinstance(self.autoencoder, bool):
            raise TypeError(f"autoencoder must be True or False, not {self.autoencoder!r}")
        if self.autoencoder and self.operand_width != AE_VALUE_BITS:
            raise ValueError(f"operand_width must be {AE_VALUE_BITS} with the auto-encoder, "
                             f"not {self.operand_width!r}")
        if self.autoencoder and self.heads < 2:
            raise ValueError(f"heads must be at least 2 with the auto-encoder, "
                             f"not {self.heads!r}")
        if self.row_beats is not None:
            self._check_row_beats()
        if self.autoencoder and len(registers(self)) > MAX_REGISTERS:
            raise ValueError(f"heads must be at most {AE_MAX_HEADS} with the auto-encoder "
                             f"(its registers must fit {MAX_REGISTERS} ids), not {self.heads!r}")

    def _check_row_beats(self):
        beats, slices = self.row_beats, self.slices
        check_int("row_beats", beats, minimum=1, maximum=slices)
        if beats & (beats - 1) or slices % beats:
            raise ValueError(f"row_beats must be a power of two dividing head_dim / "
                             f"{DPU_WIDTH} ({slices}), not {beats!r}")
        if beats == 1:
            return
        if self.autoencoder:
            raise ValueError(f"row_beats must be 1 with the auto-encoder, not {beats!r}")
        widest = slices // beats * DPU_WIDTH
        for name in ("dense_macs", "sparse_macs"):
            if getattr(self, name) > widest:
                raise ValueError(f"{name} must be at most {widest} with row_beats {beats} "
                                 f"(a dot-product unit takes a row every row_beats cycles), "
                                 f"not {getattr(self, name)!r}")
        if self.spmm_cycles % beats:
            raise ValueError(f"dense_macs + sparse_macs must be at most "
                             f"{self.head_dim // beats} with row_beats {beats} (the SpMM "
                             f"reads a v row over row_beats cycles), not {self.mac_units!r}")
        if (self.head_dim // self.out_lanes) % beats:
            raise ValueError(f"out_lanes must be at most {self.head_dim // beats} with "
                             f"row_beats {beats} (an out row is written over row_beats "
                             f"cycles), not {self.out_lanes!r}")

    @property
    def beats(self):
        """The words a q, k, v or out row takes: row_beats, or with None the largest power
        of two that divides t = d/8, with each SDDMM engine's DPUs taking a row every
        `beats` cycles within t, d/spmm_units and d/out_lanes multiples of it (1 with the
        auto-encoder)."""
        if self.row_beats is not None:
            return self.row_beats
        if self.autoencoder:
            return 1
        beats, t = 1, self.slices
        while (t % (2 * beats) == 0 and
               max(self.dense_dpus, self.sparse_dpus) * 2 * beats <= t and
               self.spmm_cycles % (2 * beats) == 0 and
               (self.head_dim // self.out_lanes) % (2 * beats) == 0):
            beats *= 2
        return beats

    @property
    def row_word_bits(self):
        """The bits of a q, k, v or out buffer word: d·w / beats."""
        return self.head_dim * self.operand_width // self.beats

    def derived(self):
        """The derived units, widths and latencies, JSON-ready."""
        names = ("mac_units", "spmm_units", "dense_dpus", "sparse_dpus", "slices", "spmm_cycles",
                 "beats", "row_word_bits", "score_width", "sum_width", "recip_shift", "recip_width",
                 "out_acc_width", "token_bits", "position_bits")
        return {name: getattr(self, name) for name in names}

    # -- units ---------------------------------------------------------------------------

    @property
    def code_heads(self):
        """C = ceil(H/2): the auto-encoder's code heads (golden autoencoder.code_heads)."""
        return (self.heads + 1) // 2

    @property
    def mac_units(self):
        """M: every MAC unit; the SDDMM splits them, the SpMM uses them all."""
        return self.dense_macs + self.sparse_macs

    @property
    def dense_dpus(self):
        return self.dense_macs // DPU_WIDTH

    @property
    def sparse_dpus(self):
        return self.sparse_macs // DPU_WIDTH

    @property
    def slices(self):
        """t: cycles a dot-product unit takes for one score (d / 8)."""
        return self.head_dim // DPU_WIDTH

    @property
    def spmm_units(self):
        """The MAC units of the SpMM and of the auto-encoder's mixers: M, or d when M
        exceeds d (units d .. M-1 are the SDDMM engines' only)."""
        return min(self.mac_units, self.head_dim)

    @property
    def spmm_cycles(self):
        """Cycles of one kept entry in the SpMM: d / spmm_units."""
        return self.head_dim // self.spmm_units

    # -- widths (worst case, so that nothing overflows) ----------------------------------

    @property
    def operand_range(self):
        return -(1 << (self.operand_width - 1)), (1 << (self.operand_width - 1)) - 1

    @property
    def token_bits(self):
        """A token index, 0 .. max_tokens - 1 (and the count N in token_bits + 1)."""
        return max(1, ceil_log2(self.max_tokens))

    @property
    def position_bits(self):
        """A position in a head's sparse lists, 0 .. sparse_capacity - 1."""
        return max(1, ceil_log2(max(1, self.sparse_capacity)))

    @property
    def score_width(self):
        """s = q . k: d products of w-bit operands."""
        lo, hi = self.operand_range
        return signed_width(self.head_dim * lo * hi, self.head_dim * lo * lo)

    @property
    def sum_width(self):
        """The row sum of e: at most max_tokens entries of at most 2^E_BITS."""
        return (self.max_tokens << E_BITS).bit_length()

    @property
    def recip_shift(self):
        """R: r = (2^R + sum//2) // sum keeps F + 3 significant bits at the largest sum."""
        return E_BITS + self.prob_bits + ceil_log2(self.max_tokens) + 3

    @property
    def recip_width(self):
        """r <= 2^(R - E_BITS) since sum >= 2^E_BITS (the row maximum's own e)."""
        return self.recip_shift - E_BITS + 1

    @property
    def prob_width(self):
        """p, unsigned 0 .. 2^F."""
        return self.prob_bits + 1

    @property
    def out_acc_width(self):
        """o = sum_j p_j v_j: |o| <= max|v| * (2^F + N/2) (each p rounds up by at most 1/2)."""
        lo, hi = self.operand_range
        bound = (1 << self.prob_bits) + (self.max_tokens + 1) // 2
        return signed_width(lo * bound, hi * bound)

    # -- ideal figures -------------------------------------------------------------------

    def useful_macs(self, work):
        """MACs of one head whose kept work (g*N + sparse kept entries) is `work`:
        d per score (SDDMM) and d per kept entry (SpMM)."""
        return 2 * work * self.head_dim


# -- the engine in the shell ------------------------------------------------------------

HEAD_REGISTERS = ("globals", "nnz", "exp_mult", "exp_shift", "out_mult", "out_shift")


def head_register(name, head):
    """The name of head `head`'s register `name` (one of HEAD_REGISTERS): "nnz_2"."""
    return f"{name}_{head}"


def registers(params):
    """The runtime inputs, sampled by RUN: the token count and the head mask, then per head
    h: its global columns g, its sparse kept entries, its exponent scale and its output
    scale (docs/vitcod.md, "Registers")."""
    p = params
    per_head = []
    for h in range(p.heads):
        per_head += [
            Register(head_register("globals", h), f"head {h}'s global columns g",
                     width=p.token_bits + 1),
            Register(head_register("nnz", h), f"head {h}'s sparse kept entries",
                     width=p.position_bits + 1),
            Register(head_register("exp_mult", h), f"head {h}'s exponent multiplier",
                     width=MULT_BITS),
            Register(head_register("exp_shift", h), f"head {h}'s exponent shift",
                     width=SHIFT_BITS),
            Register(head_register("out_mult", h), f"head {h}'s output multiplier",
                     width=MULT_BITS, reset=p.out_mult),
            Register(head_register("out_shift", h), f"head {h}'s output shift",
                     width=SHIFT_BITS, reset=p.out_shift),
        ]
    return RegisterMap([
        Register("tokens", "the token count N, 1 .. max_tokens", width=16),
        Register("head_mask", "bit h set: head h is skipped", width=p.heads),
        *per_head,
        *(_ae_registers(p) if p.autoencoder else ()),
    ])


# -- the auto-encoder's encoders and decoders (only with VitcodParams.autoencoder) ---------
#
# Q and K each have an encoder and a decoder (golden autoencoder.encode_int / decode_int),
# each a weight matrix (int8), biases (int32), mult and shift (the common requantizer):
#   encoder: z_c = requantize(sum_h W_enc[c][h] x_h + b_enc[c], enc_mult, enc_shift), C x H
#   decoder: x_h = requantize(sum_c W_dec[h][c] z_c + b_dec[h], dec_mult, dec_shift), H x C
# A matrix travels packed, AE_WEIGHTS_PER_REGISTER a register, row-major (W_dec[h][c] is
# entry h*C + c, W_enc[c][h] entry c*H + h), low byte first, each int8 in two's complement.

AE_OPERANDS = ("q", "k")
MAX_REGISTERS = 256                 # the protocol's one-byte register id (configure_payload)
AE_MAX_HEADS = 14                   # the most heads whose registers fit MAX_REGISTERS with the AE
AE_VALUE_BITS = 8                   # int8 values and weights
AE_BIAS_BITS = 32                   # int32 biases
AE_WEIGHTS_PER_REGISTER = 32 // AE_VALUE_BITS


class AeEnable(IntFlag):
    """The bits of register `ae_enable`: which of Q's and K's encoders and decoders run
    before the first head (in the order of AE_STEPS)."""
    DECODE_Q = 0x1        # rebuild Q's H heads from its C code heads
    DECODE_K = 0x2
    ENCODE_Q = 0x4        # compress Q's H heads into its C code heads
    ENCODE_K = 0x8

    @classmethod
    def of(cls, operand, part):
        """The bit of operand `operand` ("q" or "k")'s `part` ("encoder" or "decoder")."""
        return next(flag for flag, x, y in AE_STEPS if (x, y) == (operand, part))


# The auto-encoder phase of a run, in order: (ae_enable bit, operand, part). The encoders
# first, so that a run with both compresses Q and K and rebuilds them from the codes.
AE_STEPS = ((AeEnable.ENCODE_Q, "q", "encoder"), (AeEnable.ENCODE_K, "k", "encoder"),
            (AeEnable.DECODE_Q, "q", "decoder"), (AeEnable.DECODE_K, "k", "decoder"))
AE_PARTS = ("decoder", "encoder")       # the registers' order: the decoders', then the encoders'

# Per part: its registers' name prefix after "ae_<operand>_" ("ae_q_weights_0" /
# "ae_q_enc_weights_0").
AE_REGISTER_PREFIX = {"decoder": "", "encoder": "enc_"}


def ae_shape(params, part):
    """(rows, columns) of `part`'s weight matrix: H x C for a decoder, C x H for an encoder."""
    h, c = params.heads, params.code_heads
    return (h, c) if part == "decoder" else (c, h)


def ae_register(operand, name, index=None):
    """The name of operand `operand`'s ("q" or "k") auto-encoder register `name` ("weights",
    "bias", "mult", "shift" for the decoder; "enc_weights", "enc_bias", "enc_mult",
    "enc_shift" for the encoder), with its index for weights and biases: "ae_k_bias_2"."""
    return f"ae_{operand}_{name}" if index is None else f"ae_{operand}_{name}_{index}"


def ae_weight_registers(params):
    """How many registers one encoder's or decoder's H x C weights take."""
    return -(-params.heads * params.code_heads // AE_WEIGHTS_PER_REGISTER)


def _ae_registers(p):
    regs = [Register("ae_enable", "bit 0/1: decode Q/K from their code heads; bit 2/3: "
                     "encode Q/K into them first", width=len(AeEnable))]
    entries = p.heads * p.code_heads
    for part in AE_PARTS:
        prefix = AE_REGISTER_PREFIX[part]
        rows, _ = ae_shape(p, part)
        for x in AE_OPERANDS:
            for n in range(ae_weight_registers(p)):
                count = min(AE_WEIGHTS_PER_REGISTER, entries - n * AE_WEIGHTS_PER_REGISTER)
                regs.append(Register(ae_register(x, prefix + "weights", n),
                                     f"{x} {part} weights {n * AE_WEIGHTS_PER_REGISTER} .. "
                                     f"(int8, row-major, low byte first)",
                                     width=count * AE_VALUE_BITS))
            regs += [Register(ae_register(x, prefix + "bias", r),
                              f"{x} {part} bias of row {r} (int32)", width=AE_BIAS_BITS)
                     for r in range(rows)]
            regs += [Register(ae_register(x, prefix + "mult"), f"{x} {part} multiplier",
                              width=MULT_BITS),
                     Register(ae_register(x, prefix + "shift"), f"{x} {part} shift",
                              width=SHIFT_BITS)]
    return regs


def pack_ae_weights(weights):
    """The register values of a weight matrix (rows of int8), packed
    AE_WEIGHTS_PER_REGISTER a register, row-major, low byte first."""
    flat = [w for row in weights for w in row]
    mask = (1 << AE_VALUE_BITS) - 1
    return [sum((w & mask) << (AE_VALUE_BITS * b)
                for b, w in enumerate(flat[n:n + AE_WEIGHTS_PER_REGISTER]))
            for n in range(0, len(flat), AE_WEIGHTS_PER_REGISTER)]


def _signed(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def unpack_ae_weights(words, rows, cols):
    """The `rows` rows of `cols` int8 weights of the register values `words`
    (pack_ae_weights')."""
    flat = [_signed(words[n // AE_WEIGHTS_PER_REGISTER] >>
                    (AE_VALUE_BITS * (n % AE_WEIGHTS_PER_REGISTER)), AE_VALUE_BITS)
            for n in range(rows * cols)]
    return [flat[r * cols:(r + 1) * cols] for r in range(rows)]


def _part_settings(params, operand, part, weights, biases, mult, shift):
    p = params
    rows, cols = ae_shape(p, part)
    shape = [len(row) for row in weights]
    if shape != [cols] * rows:
        raise ValueError(f"weights must be {rows} rows of {cols}, not rows of {shape}")
    if len(biases) != rows:
        raise ValueError(f"biases must be {rows} values, not {len(biases)}")
    lo, hi = -(1 << (AE_VALUE_BITS - 1)), (1 << (AE_VALUE_BITS - 1)) - 1
    for row in weights:
        for w in row:
            check_int("weights entries", w, minimum=lo, maximum=hi)
    for b in biases:
        check_int("biases entries", b, minimum=-(1 << (AE_BIAS_BITS - 1)),
                  maximum=(1 << (AE_BIAS_BITS - 1)) - 1)
    check_int("mult", mult, minimum=0, maximum=(1 << MULT_BITS) - 1)
    check_int("shift", shift, minimum=0, maximum=(1 << SHIFT_BITS) - 1)
    prefix = AE_REGISTER_PREFIX[part]
    values = {ae_register(operand, prefix + "weights", n): word
              for n, word in enumerate(pack_ae_weights(weights))}
    values.update({ae_register(operand, prefix + "bias", r): b & ((1 << AE_BIAS_BITS) - 1)
                   for r, b in enumerate(biases)})
    values.update({ae_register(operand, prefix + "mult"): mult,
                   ae_register(operand, prefix + "shift"): shift})
    return values


def ae_settings(params, operand, weights, biases, mult, shift):
    """{register name: value} of operand `operand`'s decoder: weights H x C int8, biases H
    int32 (as 32-bit words), mult, shift."""
    return _part_settings(params, operand, "decoder", weights, biases, mult, shift)


def ae_encoder_settings(params, operand, weights, biases, mult, shift):
    """{register name: value} of operand `operand`'s encoder: weights C x H int8, biases C
    int32 (as 32-bit words), mult, shift."""
    return _part_settings(params, operand, "encoder", weights, biases, mult, shift)


def _part_values(params, operand, part, values):
    p = params
    regmap = registers(p)
    field = lambda name: regmap[name].field(name).extract(values[name])  # noqa: E731
    prefix = AE_REGISTER_PREFIX[part]
    rows, cols = ae_shape(p, part)
    weights = unpack_ae_weights([field(ae_register(operand, prefix + "weights", n))
                                 for n in range(ae_weight_registers(p))], rows, cols)
    biases = [_signed(field(ae_register(operand, prefix + "bias", r)), AE_BIAS_BITS)
              for r in range(rows)]
    return (weights, biases, field(ae_register(operand, prefix + "mult")),
            field(ae_register(operand, prefix + "shift")))


def ae_values(params, operand, values):
    """(weights H x C, biases H, mult, shift) of operand `operand`'s decoder from register
    values {name: value} (each register keeps its own bits): the inverse of ae_settings."""
    return _part_values(params, operand, "decoder", values)


def ae_encoder_values(params, operand, values):
    """(weights C x H, biases C, mult, shift) of operand `operand`'s encoder from register
    values {name: value}: the inverse of ae_encoder_settings."""
    return _part_values(params, operand, "encoder", values)


def code_word(params, code, token):
    """The q/k word of code head `code`, token `token`: after the H heads' slots."""
    return (params.heads + code) * params.max_tokens + token


class Errors(IntFlag):
    """STATUS engine error flags of a run."""
    TOKENS = 0x01         # `tokens` outside 1 .. max_tokens: nothing ran
    CAPACITY = 0x02       # a head's globals > max_global or nnz > sparse_capacity: nothing ran
    INDEX = 0x04          # a head's index lists are malformed: that head and later ones did not run


def csc_fields(params):
    """A CSC word of the sparse region: (column, row, CSR position), low bits first."""
    return (("col", params.token_bits), ("row", params.token_bits),
            ("pos", params.position_bits))


def csr_fields(params):
    """A CSR word of the sparse region: (row, column), low bits first."""
    return (("row", params.token_bits), ("col", params.token_bits))


def gcols_depth(params):
    """Words of the gcols buffer: max_global a head (at least one word)."""
    return max(1, params.heads * params.max_global)


def buffers(params):
    """q, k, v (written by the host; two engine read ports each, one per SDDMM engine) and
    out: one d-element row in row_beats words (elements b·d/row_beats onwards in word b),
    a slot of max_tokens rows per head (head h, token i at row h * max_tokens + i, its
    words row_beats times that onwards); csc and csr: a head's sparse index lists, a slot of
    sparse_capacity words per head, with two read ports each (the sparser engine and the
    list checks read them at once); gcols: head h's global columns (token indices,
    strictly increasing) at words h * max_global + j, two read ports (the denser engine;
    the list check in phase 1 and the softmax unit in phase 2)."""
    p = params
    row_bits = p.row_word_bits
    rows = p.heads * p.max_tokens * p.beats
    lists = max(1, p.heads * p.sparse_capacity)
    # With the auto-encoder, q and k hold the C code heads after the H heads (code_word):
    # the engine's encoders write the code slots, its decoders the heads' slots.
    ae = p.autoencoder
    qk_rows = (p.heads + p.code_heads) * p.max_tokens if ae else rows
    return [
        BufferSpec("q", row_bits, qk_rows, True, read_ports=2, engine_writes=ae,
                   read_latency=QK_READ_LATENCY),
        BufferSpec("k", row_bits, qk_rows, True, read_ports=2, engine_writes=ae,
                   read_latency=QK_READ_LATENCY),
        BufferSpec("v", row_bits, rows, True,           # the SpMM reads it, alone
                   read_latency=V_READ_LATENCY),
        BufferSpec("csc", sum(w for _, w in csc_fields(p)), lists, True, read_ports=2,
                   read_latency=CSC_READ_LATENCY),
        BufferSpec("csr", sum(w for _, w in csr_fields(p)), lists, True, read_ports=2,
                   read_latency=CSR_READ_LATENCY),
        BufferSpec("gcols", p.token_bits, gcols_depth(p), True, read_ports=2),
        BufferSpec("out", row_bits, rows, False),
    ]


def row_words(params, row):
    """The row_beats buffer words of one q, k, v or out row (d signed
    values): word j holds values j·d/row_beats onwards (buffers)."""
    n = params.head_dim // params.beats
    return [pack_lanes(list(row[j * n:(j + 1) * n]), params.operand_width)
            for j in range(params.beats)]


def row_of_words(params, words):
    """The d signed values of a row from its row_beats words (inverse of row_words)."""
    n = params.head_dim // params.beats
    return [value for word in words for value in unpack_lanes(word, n, params.operand_width)]


def pack_word(fields, values):
    """The word of `fields` ((name, width), low bits first) holding `values` {name: int}."""
    word, shift = 0, 0
    for name, width in fields:
        value = values[name]
        if not 0 <= value < 1 << width:
            raise ValueError(f"{name} must be between 0 and {(1 << width) - 1}, not {value!r}")
        word |= value << shift
        shift += width
    return word


def unpack_word(fields, word):
    """{name: value} of a word of `fields` (inverse of pack_word)."""
    values, shift = {}, 0
    for name, width in fields:
        values[name] = (word >> shift) & ((1 << width) - 1)
        shift += width
    return values
