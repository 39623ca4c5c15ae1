"""The datapath of bit-op computing (impl "bitop"), per token lane: x·Ce by shifts and adds
of activations (ShiftAddLanes), then ·B, the only multiplies (BasisProducts).
docs/smartdeal.md, "The integer arithmetic"; golden: integer.linear_bitop_int."""

import math

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.smartdeal.spec import ACT_BITS, SmartDealParams
from ...golden.smartdeal.format import BASIS, BASIS_BITS, BASIS_VALUES
from ...golden.smartdeal.integer import rebuilt_width
from .layouts import row_layout

__all__ = ["ShiftAddLanes", "BasisProducts", "partial_width", "act_rows_layout"]


def partial_width(params):
    """Bits of a partial sum t[k][j] = sum_r s_rk (x[3r+j] << f_rk) over a block: no more
    rows than max_block_rows, and no more with a nonzero activation than ceil(L/3)
    (the steps past L are 0)."""
    rows = min(params.max_block_rows, math.ceil(params.max_inputs / BASIS))
    return rebuilt_width(params.exponent_bits, max(rows, 2))


def act_rows_layout(params):
    """The activations of R Ce rows: row i, step j (k = 3r + j), token lane a: [i][j][a]."""
    lanes = data.ArrayLayout(signed(ACT_BITS), params.array_rows)
    return data.ArrayLayout(data.ArrayLayout(lanes, BASIS), params.rows_per_cycle)


def _basis_layout():
    return data.ArrayLayout(signed(BASIS_BITS), BASIS_VALUES)


def _partials_layout(params):
    """t[a][3k + j] of every token lane a."""
    return data.ArrayLayout(data.ArrayLayout(signed(partial_width(params)), BASIS_VALUES),
                            params.array_rows)


class ShiftAddLanes(wiring.Component):
    """x·Ce for array_rows token lanes, R Ce rows a beat, shifts and adds only.

    In: a beat each cycle `valid` is high (`x` (act_rows_layout), `codes` (R rows of Ce
    codes; the rows past the beat's valid ones are all-zero codes, as the parser emits
    them), `end_block`, `end_output`, `basis`). For each token lane a, k and j:
        t[a][k][j] += sum_i s_ik (x[i][j][a] << f_ik)      (zero codes add nothing)
    over the block's beats; at the block's end `block_valid` pulses with the block's t
    (`block_t`, _partials_layout), its `block_basis` and `block_end_output`, and t starts
    again from 0.

    A pipeline that never stalls, `latency` cycles from a beat to its block's pulse: the
    activations; the terms (a shift, negated for a negative code, or 0); for R > 1 the
    sum of the beat's R terms; then t. `busy`: a beat is in a stage.
    """

    def __init__(self, params):
        if not isinstance(params, SmartDealParams):
            raise TypeError(f"params must be a SmartDealParams, not {params!r}")
        self.params = params
        E, R = params.exponent_bits, params.rows_per_cycle
        self.latency = 2 if R == 1 else 3
        super().__init__({
            "valid": In(1),
            "x": In(act_rows_layout(params)),
            "codes": In(data.ArrayLayout(row_layout(E), R)),
            "end_block": In(1),
            "end_output": In(1),
            "basis": In(_basis_layout()),
            "block_valid": Out(1),
            "block_t": Out(_partials_layout(params)),
            "block_basis": Out(_basis_layout()),
            "block_end_output": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        E, R, tokens = p.exponent_bits, p.rows_per_cycle, p.array_rows
        term_width = ACT_BITS + 1 + (1 << E) - 1     # +-(x << f): -(-128 << f) needs 1 more
        stages = self.latency

        # The beat's control and B through the stages.
        valid = [Signal(name=f"valid{s}") for s in range(stages)]
        end_block = [Signal(name=f"end_block{s}") for s in range(stages)]
        end_output = [Signal(name=f"end_output{s}") for s in range(stages)]
        basis = [Signal(_basis_layout(), name=f"basis{s}") for s in range(stages)]
        m.d.sync += [valid[0].eq(self.valid), end_block[0].eq(self.end_block),
                     end_output[0].eq(self.end_output), basis[0].eq(self.basis)]
        for s in range(1, stages):
            m.d.sync += [valid[s].eq(valid[s - 1]), end_block[s].eq(end_block[s - 1]),
                         end_output[s].eq(end_output[s - 1]), basis[s].eq(basis[s - 1])]
        last = stages - 1
        m.d.comb += self.busy.eq(Cat(*valid).any())

        # 0. the activations and the codes, registered; the codes once for each token
        # lane (kept apart: each copy drives the shifts of one lane).
        x = Signal(act_rows_layout(p))
        codes = [Signal.like(self.codes, name=f"codes_lane{a}", attrs={"keep": 1})
                 for a in range(tokens)]
        m.d.sync += [x.eq(self.x), *[copy.eq(self.codes) for copy in codes]]

        # 1. the terms: x[i][j][a] << f_ik, negated for a negative code, or 0.
        terms = [[[[Signal(signed(term_width), name=f"term{i}_{k}_{j}_{a}")
                    for a in range(tokens)] for j in range(BASIS)] for k in range(BASIS)]
                 for i in range(R)]
        for i in range(R):
            for k in range(BASIS):
                for j in range(BASIS):
                    for a in range(tokens):
                        c = codes[a][i][k]
                        shifted = Signal(signed(term_width), name=f"shifted{i}_{k}_{j}_{a}")
                        m.d.comb += shifted.eq(x[i][j][a] << c.f)
                        m.d.sync += terms[i][k][j][a].eq(
                            Mux(c.nonzero, Mux(c.sign, -shifted, shifted), 0))

        # 2. (R > 1) the beat's sum over its R rows, one or two adder levels.
        if R == 1:
            sums = [[[terms[0][k][j][a] for a in range(tokens)] for j in range(BASIS)]
                    for k in range(BASIS)]
        else:
            sums = [[[Signal(signed(term_width + (R - 1).bit_length()),
                             name=f"sum{k}_{j}_{a}") for a in range(tokens)]
                     for j in range(BASIS)] for k in range(BASIS)]
            for k in range(BASIS):
                for j in range(BASIS):
                    for a in range(tokens):
                        m.d.sync += sums[k][j][a].eq(sum(terms[i][k][j][a] for i in range(R)))

        # 3. the running partial sums t, cleared at a block's end (their control bits
        # copied for each token lane: each copy drives 9 sums, not 9·array_rows).
        width = self.block_t.shape().elem_shape.elem_shape
        t = Signal(_partials_layout(p))
        for a in range(tokens):
            valid_a, end_a = Signal(name=f"valid_lane{a}"), Signal(name=f"end_block_lane{a}")
            m.d.sync += [valid_a.eq(valid[last - 1]), end_a.eq(end_block[last - 1])]
            for k in range(BASIS):
                for j in range(BASIS):
                    n = BASIS * k + j
                    total = Signal(width, name=f"total{k}_{j}_{a}")
                    m.d.comb += [total.eq(t[a][n] + sums[k][j][a]),
                                 self.block_t[a][n].eq(total)]
                    with m.If(valid_a):
                        m.d.sync += t[a][n].eq(Mux(end_a, 0, total))
        m.d.comb += [
            self.block_valid.eq(valid[last] & end_block[last]),
            self.block_basis.eq(basis[last]),
            self.block_end_output.eq(end_output[last]),
        ]
        return m


class BasisProducts(wiring.Component):
    """·B: for each block, y[a] += sum_{k,j} B[k][j] t[a][k][j], bitop_multipliers (P)
    products a token lane a cycle; at an output's end the exact y of every token lane
    goes out (`o_valid`, a pulse, `o_y`: array_rows lanes of params.result_width bits).

    A block (`load`, with `t`, `basis`, `end_output`) is held while its `groups` = 9/P
    groups of products are issued, a group a cycle from the next; the next block may be
    loaded `groups` cycles after this one, not sooner (the caller spaces the blocks'
    ends). Each multiply has a register before (the operands) and after (the product);
    the P products of a group are added in one (P = 3) or two (P = 9) stages; then y.
    `busy`: anything held or in flight.
    """

    def __init__(self, params):
        if not isinstance(params, SmartDealParams):
            raise TypeError(f"params must be a SmartDealParams, not {params!r}")
        self.params = params
        self.groups = BASIS_VALUES // params.bitop_multipliers
        super().__init__({
            "load": In(1),
            "t": In(_partials_layout(params)),
            "basis": In(_basis_layout()),
            "end_output": In(1),
            "o_valid": Out(1),
            "o_y": Out(data.ArrayLayout(signed(params.result_width), params.array_rows)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        P, tokens = p.bitop_multipliers, p.array_rows
        groups = BASIS_VALUES // P
        width = partial_width(p)
        product_width = width + BASIS_BITS

        # The hold: a block's t and B while its groups are issued.
        held = Signal(_partials_layout(p))
        held_basis = Signal(_basis_layout())
        held_end = Signal()
        held_valid = Signal()
        group = Signal(range(groups))
        issue_last = Signal()
        m.d.comb += issue_last.eq(held_valid & (group == groups - 1))
        with m.If(held_valid):
            m.d.sync += group.eq(Mux(issue_last, 0, group + 1))
        with m.If(issue_last):
            m.d.sync += held_valid.eq(0)
        with m.If(self.load):
            m.d.sync += [held.eq(self.t), held_basis.eq(self.basis),
                         held_end.eq(self.end_output), held_valid.eq(1)]

        # Operands (registered), products (registered).
        op_t = [[Signal(signed(width), name=f"op_t{a}_{q}") for q in range(P)]
                for a in range(tokens)]
        op_b = [Signal(signed(BASIS_BITS), name=f"op_b{q}") for q in range(P)]
        products = [[Signal(signed(product_width), name=f"product{a}_{q}") for q in range(P)]
                    for a in range(tokens)]
        op_valid, op_end = Signal(), Signal()
        pr_valid, pr_end = Signal(), Signal()
        m.d.sync += [op_valid.eq(held_valid), op_end.eq(issue_last & held_end),
                     pr_valid.eq(op_valid), pr_end.eq(op_end)]
        for q in range(P):
            index = group * P + q if groups > 1 else q
            m.d.sync += op_b[q].eq(held_basis[index])
            for a in range(tokens):
                m.d.sync += [op_t[a][q].eq(held[a][index]),
                             products[a][q].eq(op_t[a][q] * op_b[q])]

        # The group's sum: P = 1: the product; 3: one stage; 9: two (threes of threes).
        levels = {1: 0, 3: 1, 9: 2}[P]
        sum_valid, sum_end = pr_valid, pr_end
        in_flight = [held_valid, op_valid, pr_valid]
        for level in range(levels):
            v, e = Signal(name=f"tree_valid{level}"), Signal(name=f"tree_end{level}")
            m.d.sync += [v.eq(sum_valid), e.eq(sum_end)]
            sum_valid, sum_end = v, e
            in_flight.append(v)
        y = [Signal(signed(p.result_width), name=f"y{a}") for a in range(tokens)]
        for a in range(tokens):
            values = products[a]
            for level in range(levels):
                out = []
                for n in range(0, len(values), BASIS):
                    s = Signal(signed(product_width + 2 * (level + 1)),
                               name=f"tree{level}_{n // BASIS}_{a}")
                    m.d.sync += s.eq(sum(values[n:n + BASIS]))
                    out.append(s)
                values = out
            total = Signal(signed(p.result_width), name=f"total{a}")
            m.d.comb += total.eq(y[a] + values[0])
            with m.If(sum_valid):
                # At an output's end its y goes out and the next starts from 0.
                m.d.sync += y[a].eq(Mux(sum_end, 0, total))
                with m.If(sum_end):
                    m.d.sync += self.o_y[a].eq(total)
        m.d.sync += self.o_valid.eq(sum_valid & sum_end)
        m.d.comb += self.busy.eq(Cat(*in_flight, self.o_valid).any())
        return m
