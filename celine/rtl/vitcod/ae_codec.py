"""The Q/K auto-encoder's engines, shared part: a head mixer on the MAC bank and its row
requantizer.

The encoder and the decoder (celine.golden.vitcod.autoencoder, `encode_int` / `decode_int`)
are the same computation with different sizes: for every token i and output row o,

    y_o[i, c] = requantize(sum_{r < in_rows} W[o][r] * x_r[i, c] + bias[o], mult, shift)

for c < d, with int8 x, y, W, int32 biases and the common requantizer (16-bit mult, 6-bit
shift, round half up, saturation to int8). The decoder has in_rows = C = ceil(H/2) code
rows and out_rows = H heads, the encoder the reverse. `HeadMixer` computes it on the shared
MAC bank; AeDecoder (ae_decoder.py) and AeEncoder (ae_encoder.py) fix its sizes.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.requant import Requantizer
from ...engines.vitcod.spec import QK_READ_LATENCY, VitcodParams, buffers
from ...spec.checks import check_int
from ...spec.numerics import MULT_BITS, SHIFT_BITS
from ...spec.widths import signed_width
from .mac_bank import MacBank, bank_signature
from .row_requantizer import RowRequantizer, write_port_signature

__all__ = ["HeadMixer", "RowRequantizer", "WEIGHT_BITS", "BIAS_BITS", "VALUE_BITS",
           "MIXER_LATENCY", "check_params", "code_rows", "mixer_acc_width", "mixer_period",
           "mixer_cycles", "row_port_depth"]

# The integer auto-encoder's formats (QuantizedAutoEncoder): int8 weights and values,
# int32 biases.
WEIGHT_BITS = 8
BIAS_BITS = 32
VALUE_BITS = 8

# Cycles of a run beyond its issue cycles ((N * out_rows - 1) * P + in_rows * S, counted
# from the start pulse's cycle: the first pass issues the cycle after it) and the last
# row's d / lanes cycles in the requantizers' working register: the input row's read
# (QK_READ_LATENCY), MacBank.latency, Requantizer.latency, and busy falls the cycle after
# the last write (1).
MIXER_LATENCY = QK_READ_LATENCY + MacBank.latency + Requantizer.latency + 1


def code_rows(heads):
    """C = ceil(H/2): the code rows of H heads (golden autoencoder.code_heads)."""
    return (check_int("heads", heads, minimum=1) + 1) // 2


def mixer_acc_width(in_rows):
    """The accumulator of an output value: an int32 bias plus `in_rows` int8 x int8
    products, whatever the weights (the hardware is built before they are known)."""
    lo_w, hi_w = -(1 << (WEIGHT_BITS - 1)), (1 << (WEIGHT_BITS - 1)) - 1
    lo_x, hi_x = -(1 << (VALUE_BITS - 1)), (1 << (VALUE_BITS - 1)) - 1
    lo_b, hi_b = -(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1
    products = (lo_w * lo_x, lo_w * hi_x, hi_w * lo_x, hi_w * hi_x)
    return signed_width(lo_b + in_rows * min(products), hi_b + in_rows * max(products))


def row_port_depth(params):
    """The default address range of the input and output ports: the q buffer's words."""
    return next(b for b in buffers(params) if b.name == "q").depth


def mixer_period(params, in_rows, lanes=None):
    """Cycles between two output rows: in_rows * d/M on the bank, or d/lanes through the
    requantizers if that is longer."""
    lanes = params.out_lanes if lanes is None else lanes
    return max(in_rows * params.spmm_cycles, params.head_dim // lanes)


def mixer_cycles(params, in_rows, out_rows, tokens, lanes=None):
    """Cycles from the start pulse of an N-token run (N >= 1) until `busy` falls (HeadMixer):
    (N * out_rows - 1) * P + in_rows * d/M + d/lanes + MIXER_LATENCY, P = mixer_period.
    When the bank bounds the rate (in_rows * d/M >= d/lanes) that is
    N * out_rows * in_rows * d/M + d/lanes + MIXER_LATENCY."""
    lanes = params.out_lanes if lanes is None else lanes
    period = mixer_period(params, in_rows, lanes)
    passes = in_rows * params.spmm_cycles
    return (tokens * out_rows - 1) * period + passes + params.head_dim // lanes + MIXER_LATENCY


def check_params(params):
    """`params` itself if it is a VitcodParams with int8 operands (the auto-encoder's)."""
    if not isinstance(params, VitcodParams):
        raise TypeError(f"params must be a VitcodParams, not {params!r}")
    if params.operand_width != VALUE_BITS:
        raise ValueError(f"operand_width must be {VALUE_BITS} for the auto-encoder "
                         f"(int8 values), not {params.operand_width!r}")
    return params


def _read_port_signature(depth, width):
    """A read port (contract.read_port_signature): data is the word at the addr of
    QK_READ_LATENCY cycles before."""
    return wiring.Signature({"addr": Out(range(depth)), "data": In(width)})


class HeadMixer(wiring.Component):
    """y_o[i] = requantize(sum_r W[o][r] * x_r[i] + bias[o]) row by row on the MAC bank.

    `in_rows` input rows and `out_rows` output rows per token, each a row of d int8 values
    (one buffer word, element c in bits [8c, 8c+8)). Input row r of token i is read at word
    `in_base + r * max_tokens + i` through `src` (address out, data in the next cycle),
    output row o of token i is written at word `out_base + o * max_tokens + i` through
    `dst` ({addr, data, write}, one word a write): the buffers' layout (docs/vitcod.md,
    "Buffers"), a slot of max_tokens rows per head. The caller keeps the bases such that
    every address is below `depth` (default: the q buffer's depth, heads * max_tokens).

    `start` (while not busy) samples `tokens` N (0 does nothing), the bases, `weights`
    (W[o][r], int8), `biases` (int32), `mult` and `shift`; `busy` stays high until every
    one of the N * out_rows rows is written, tokens in order, output rows in order within
    a token.

    Schedule: an output row takes in_rows passes of S = d/M cycles on the M multipliers of
    the bank (`mul`). Pass r presents slice s of input row r (x_r[i, sM .. sM+M-1],
    sign-extended) with the weight W[o][r] broadcast; the input row's address is on `src`
    the cycle before its first slice and stays there for the others, and the next pass's
    row is addressed while the last slice of this one is on the bank, so the bank is busy
    every cycle. The products come back MacBank.latency cycles later into S rotating
    groups of M accumulators (mixer_acc_width bits, exact): the first pass adds the bias,
    the final product hands the whole row to a RowRequantizer (`lanes` requantizers,
    default params.out_lanes). Rows start every P = max(in_rows * S, d / lanes) cycles
    (mixer_period): the bank bounds the rate unless rows are shorter than the
    requantizers' d / lanes cycles, when the issue waits instead. Nothing else ever
    stalls, so a run takes exactly `mixer_cycles` from the start pulse to `busy` falling.

    In place is not safe: an output row is written while later output rows of the same
    token still read its inputs, so a run's output words must not be input words of the
    same run (the same buffer with other slots is fine).
    """

    def __init__(self, params, in_rows, out_rows, *, lanes=None, depth=None):
        check_params(params)
        check_int("in_rows", in_rows, minimum=1, maximum=params.heads)
        check_int("out_rows", out_rows, minimum=1, maximum=params.heads)
        lanes = params.out_lanes if lanes is None else lanes
        check_int("lanes", lanes, minimum=1, maximum=params.head_dim)
        if params.head_dim % lanes:
            raise ValueError(f"lanes must divide head_dim ({params.head_dim}), not {lanes!r}")
        if depth is None:
            depth = row_port_depth(params)
        check_int("depth", depth, minimum=max(in_rows, out_rows) * params.max_tokens)
        self.params = params
        self.in_rows, self.out_rows, self.lanes, self.depth = in_rows, out_rows, lanes, depth
        self.slices = params.spmm_cycles
        self.passes = in_rows * self.slices           # bank cycles of one output row
        self.period = mixer_period(params, in_rows, lanes)
        self.acc_width = mixer_acc_width(in_rows)
        row_bits = params.head_dim * VALUE_BITS
        super().__init__({
            "start": In(1),
            "tokens": In(unsigned(params.token_bits + 1)),
            "in_base": In(range(depth)),
            "out_base": In(range(depth)),
            "weights": In(data.ArrayLayout(data.ArrayLayout(signed(WEIGHT_BITS), in_rows),
                                           out_rows)),
            "biases": In(data.ArrayLayout(signed(BIAS_BITS), out_rows)),
            "mult": In(unsigned(MULT_BITS)),
            "shift": In(unsigned(SHIFT_BITS)),
            "busy": Out(1),
            "src": Out(_read_port_signature(depth, row_bits)),
            "dst": Out(write_port_signature(depth, row_bits)),
            "mul": Out(bank_signature(params.spmm_units)),
        })

    def cycles(self, tokens):
        """mixer_cycles of this mixer for an N-token run."""
        return mixer_cycles(self.params, self.in_rows, self.out_rows, tokens, self.lanes)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        units, slices, w = p.spmm_units, self.slices, VALUE_BITS
        in_rows, out_rows, stride = self.in_rows, self.out_rows, p.max_tokens
        pad = self.period - self.passes              # idle issue cycles after each row

        m.submodules.output = output = RowRequantizer(
            head_dim=p.head_dim, acc_width=self.acc_width, lanes=self.lanes,
            out_width=VALUE_BITS, depth=self.depth)
        wiring.connect(m, wiring.flipped(self.dst), output.out)

        start = Signal()
        m.d.comb += start.eq(self.start & ~self.busy)

        # -- the run's values, held from the start pulse ------------------------------------
        weights = Signal(data.ArrayLayout(signed(WEIGHT_BITS), out_rows * in_rows))  # W[o][r]
        biases = Signal.like(self.biases)
        mult = Signal.like(self.mult)
        shift = Signal.like(self.shift)
        m.d.comb += [output.multiplier.eq(mult), output.shift.eq(shift)]
        with m.If(start):
            m.d.sync += [weights.as_value().eq(self.weights.as_value()), biases.eq(self.biases),
                         mult.eq(self.mult), shift.eq(self.shift)]

        # -- A: the issue counters; `src` addresses the row of the pass being issued ------
        active = Signal()                          # passes remain to be issued
        tokens_left = Signal(range(p.max_tokens + 1))
        s = Signal(range(slices))                  # no bits when S = 1
        r = Signal(range(in_rows))
        o = Signal(range(out_rows))
        widx = Signal(range(out_rows * in_rows))   # o * in_rows + r
        token_addr = Signal(range(self.depth))     # in_base + i
        row_addr = Signal(range(self.depth))       # in_base + r * max_tokens + i
        wait = Signal(range(pad + 1))              # idle cycles left after a row
        issue = Signal()
        m.d.comb += [issue.eq(active & (wait == 0)), self.src.addr.eq(row_addr)]

        last_slice = s == slices - 1
        last_pass = r == in_rows - 1
        last_row = o == out_rows - 1
        with m.If(start):
            m.d.sync += [active.eq(self.tokens != 0), tokens_left.eq(self.tokens),
                         s.eq(0), r.eq(0), o.eq(0), widx.eq(0), wait.eq(0),
                         token_addr.eq(self.in_base), row_addr.eq(self.in_base)]
        with m.Elif(issue):
            with m.If(~last_slice):
                m.d.sync += s.eq(s + 1)
            with m.Else():
                m.d.sync += s.eq(0)
                with m.If(~last_pass):
                    m.d.sync += [r.eq(r + 1), widx.eq(widx + 1), row_addr.eq(row_addr + stride)]
                with m.Else():
                    m.d.sync += [r.eq(0), wait.eq(pad)]
                    with m.If(~last_row):
                        m.d.sync += [o.eq(o + 1), widx.eq(widx + 1), row_addr.eq(token_addr)]
                    with m.Else():
                        m.d.sync += [o.eq(0), widx.eq(0), row_addr.eq(token_addr + 1),
                                     token_addr.eq(token_addr + 1),
                                     tokens_left.eq(tokens_left - 1)]
                        with m.If(tokens_left == 1):
                            m.d.sync += active.eq(0)
        with m.Elif(wait != 0):
            m.d.sync += wait.eq(wait - 1)

        # -- B: the pass's slice on the bank; its row arrives from `src` now --------------
        b_valid, b_first, b_final = Signal(), Signal(), Signal()
        b_s = Signal.like(s)
        b_weight = Signal(signed(WEIGHT_BITS))
        b_bias = Signal(signed(BIAS_BITS))
        m.d.sync += [b_valid.eq(issue), b_first.eq(r == 0), b_final.eq(last_pass & last_slice),
                     b_s.eq(s), b_weight.eq(weights[widx]), b_bias.eq(biases[o])]
        # ... QK_READ_LATENCY - 1 cycles later, when the row its address asked for arrives
        # (`src` reads through the block RAMs' output registers).
        waiting = [b_valid]
        for stage in range(QK_READ_LATENCY - 1):
            held = [Signal.like(v, name=f"{v.name}_wait{stage}")
                    for v in (b_valid, b_first, b_final, b_s, b_weight, b_bias)]
            m.d.sync += [h.eq(v) for h, v in
                         zip(held, (b_valid, b_first, b_final, b_s, b_weight, b_bias))]
            b_valid, b_first, b_final, b_s, b_weight, b_bias = held
            waiting.append(b_valid)
        row = self.src.data
        part = row.word_select(b_s, units * w) if slices > 1 else row
        for k in range(units):
            m.d.comb += [self.mul.a[k].eq(part[k * w:(k + 1) * w].as_signed()),
                         self.mul.b[k].eq(b_weight)]

        # The products' tags, MacBank.latency cycles behind the operands.
        valid, first, final, bias = b_valid, b_first, b_final, b_bias
        in_flight = list(waiting)
        for stage in range(MacBank.latency):
            tags = (Signal(name=f"prod_valid_{stage}"), Signal(name=f"prod_first_{stage}"),
                    Signal(name=f"prod_final_{stage}"),
                    Signal(signed(BIAS_BITS), name=f"prod_bias_{stage}"))
            m.d.sync += [t.eq(v) for t, v in zip(tags, (valid, first, final, bias))]
            valid, first, final, bias = tags
            in_flight.append(valid)

        # -- accumulators: S groups of M rotating with the slices (acc[0] = this slice) ---
        acc_width = self.acc_width
        acc = [Signal(data.ArrayLayout(unsigned(acc_width), units), name=f"acc_{g}")
               for g in range(slices)]
        new = Signal(data.ArrayLayout(unsigned(acc_width), units))
        for k in range(units):
            # Two's complement modulo 2^acc_width: the exact sum fits, so it comes out right.
            m.d.comb += new[k].eq(Mux(first, bias, acc[0][k]) + self.mul.p[k])
        rotated = acc[1:] + [new]
        with m.If(valid):
            m.d.sync += [a.eq(b) for a, b in zip(acc, rotated)]

        # -- the finished row to the requantizers, its output word counted here ------------
        out_token = Signal(range(self.depth))      # out_base + i
        out_addr = Signal(range(self.depth))       # out_base + o * max_tokens + i
        out_row = Signal(range(out_rows))
        complete = Signal()
        m.d.comb += [
            complete.eq(valid & final),
            # Ready by the schedule (rows P apart); every copy of `load` from one net.
            output.load.eq(complete.replicate(len(output.load))),
            output.sums.as_value().eq(Cat(*(g.as_value() for g in rotated))),
            output.addr.eq(out_addr),
        ]
        with m.If(start):
            m.d.sync += [out_token.eq(self.out_base), out_addr.eq(self.out_base), out_row.eq(0)]
        with m.Elif(complete):
            with m.If(out_row == out_rows - 1):
                m.d.sync += [out_row.eq(0), out_token.eq(out_token + 1),
                             out_addr.eq(out_token + 1)]
            with m.Else():
                m.d.sync += [out_row.eq(out_row + 1), out_addr.eq(out_addr + stride)]

        m.d.comb += self.busy.eq(active | Cat(*in_flight).any() | output.busy)
        return m
