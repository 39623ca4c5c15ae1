from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common.lfsr import LFSR
from ...engines.mac.spec import MacArrayParams, LFSR_WIDTH
from .pe import ProcessingElement
from .result_drain import REQUANT_LAYOUT, ResultDrain, output_layout


def operand_layout(lanes, width):
    return data.StructLayout({"data": data.ArrayLayout(signed(width), lanes), "last": 1})


class MacArray(wiring.Component):
    """Precision-scalable, output-stationary MAC array (2-in-1 Accelerator, InstantNet).

    Computes tiles: out[m][n] = sum_k act_k[m] * weight_k[n], where act_k and weight_k are
    the k-th beats of `act` and `weight` (consumed together; `last` on both marks the
    tile's final k). At precision p a tile is tile_rows(p) x tile_cols(p): activation
    lanes 0..tile_rows-1 and weight lanes 0..tile_cols-1 carry operands, higher lanes are
    ignored. Lanes hold stored 8-bit values (the low 8 bits) reduced to p bits on entry,
    or whole 16-bit operands at p = 16. The tile leaves on `o` as tile_rows(p) beats of
    one output row each (lanes beyond tile_cols(p) read 0), `last` on the final row, with
    the tile's precision; int8 (sign-extended) when requant.enable, else the exact sum.

    Runtime settings are sampled at each tile's first beat: `precision` (2/4/8/16), or,
    with `rps_enable`, a precision drawn by the LFSR from params.rps_candidates (Random
    Precision Switch; golden/mac.py replays the draws), and `requant`. They may change
    between tiles without reset; `precision` and `rps_enable` must then be stable from the
    cycle before the tile's first beat (whether a tile starts at 16 bits is decoded from
    them into a register, off the path from the array's state to `ready`).

    Throughput: one beat per cycle (one per 4 cycles at p = 16 on bricks). A finished
    tile moves to the PEs' shadow registers and drains while the next tile computes; the
    final beat of a tile waits only if the previous tile has not yet drained.

    Error flags (sticky until reset or `clear_errors`): `errors.framing` when `act.last`
    and `weight.last` disagree on an accepted beat (the activation stream's `last` ends
    the tile); `errors.precision` when a tile starts with an unsupported `precision` (it then runs at
    the largest supported precision).
    """

    def __init__(self, params: MacArrayParams):
        if not isinstance(params, MacArrayParams):
            raise TypeError(f"params must be a MacArrayParams, not {params!r}")
        self.params = params
        super().__init__({
            "act": In(stream.Signature(operand_layout(params.act_lanes, params.operand_width))),
            "weight": In(stream.Signature(operand_layout(params.weight_lanes, params.operand_width))),
            "o": Out(stream.Signature(output_layout(params))),
            "precision": In(unsigned(5)),
            "rps_enable": In(1),
            "requant": In(REQUANT_LAYOUT),
            "busy": Out(1),
            "errors": Out(data.StructLayout({"framing": 1, "precision": 1})),
            "clear_errors": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        params = self.params
        precisions = params.precisions
        prec_shape = range(len(precisions))

        # -- precision of a starting tile ----------------------------------------------
        m.submodules.lfsr = lfsr = LFSR(width=LFSR_WIDTH, seed=params.lfsr_seed)
        # The drawn precision is a register: it holds the draw of the LFSR's state, and
        # follows the state to its next value on the cycle the LFSR steps (both draws
        # are made from registers; the step only chooses), so a tile's start does not
        # wait for the constant multiply and the compare.
        candidates = params.rps_candidates
        n = len(candidates)

        def precision_index(value):
            index = Signal(prec_shape)
            for k, p in enumerate(candidates):
                with m.If(lfsr.draw(n, value) == k):
                    m.d.comb += index.eq(precisions.index(p))
            return index

        seed_draw = (params.lfsr_seed * n) >> LFSR_WIDTH
        drawn = Signal(prec_shape, init=precisions.index(candidates[seed_draw]) if n else 0)
        drawn_next = Mux(lfsr.en, precision_index(lfsr.stepped()), precision_index(lfsr.value))
        m.d.sync += drawn.eq(drawn_next)
        requested = Signal(prec_shape, init=len(precisions) - 1)
        supported = Signal()
        for k, p in enumerate(precisions):
            with m.If(self.precision == p):
                m.d.comb += [requested.eq(k), supported.eq(1)]

        in_tile = Signal()
        tile_precision = Signal(prec_shape)
        tile_requant = Signal(REQUANT_LAYOUT)
        pass_index = Signal(2)
        copy_pending = Signal()

        precision = Signal(prec_shape)
        m.d.comb += precision.eq(Mux(in_tile, tile_precision,
                                     Mux(self.rps_enable, drawn, requested)))
        requant = Mux(in_tile, tile_requant, self.requant)
        # Whether this pass is its beat's last: from registers inside a tile (a 16-bit
        # tile's flag, the pass index), from the starting precision at a tile's start.
        last_pass = Signal()
        m.d.comb += last_pass.eq(1)
        if params.passes(16) > 1 and 16 in precisions:
            tile_is16 = Signal()
            # Whether the drawn precision is 16, a register beside `drawn` (the compare
            # made on its next value), so that a tile's first pass knows at once.
            sixteen = params.encode_precision(16)
            drawn_is16 = Signal(init=int(drawn.init == sixteen))
            m.d.sync += drawn_is16.eq(drawn_next == sixteen)
            # An unsupported precision runs at the largest (`requested`'s reset value).
            # The settings' decode is a register, as is the RPS switch beside it (both
            # lead a tile's first beat by a cycle).
            requested_is16, rps_enabled = Signal(), Signal()
            m.d.sync += [
                requested_is16.eq((self.precision == 16)
                                  | (~supported if sixteen == len(precisions) - 1 else 0)),
                rps_enabled.eq(self.rps_enable),
            ]
            starts_is16 = Mux(rps_enabled, drawn_is16, requested_is16)
            m.d.comb += last_pass.eq(Mux(in_tile, ~tile_is16 | (pass_index == params.passes(16) - 1),
                                         ~starts_is16))

        # -- issue: one pass per cycle into the PEs ----------------------------------
        # A pass goes to the PEs the cycle it is accepted; each PE registers it (and
        # reduces the operands to the tile precision) itself.
        both_valid = self.act.valid & self.weight.valid
        closes_tile = self.act.payload.last & last_pass
        m.submodules.drain = drain = ResultDrain(params)
        # A tile's last beat waits while the previous tile's copy is pending or the drain
        # is busy: a register here (the drain sits by the requantizers' multipliers).
        hold = Signal()
        blocked = closes_tile & hold
        issue = Signal()
        m.d.comb += [
            issue.eq(both_valid & ~blocked),
            self.act.ready.eq(issue & last_pass),
            self.weight.ready.eq(issue & last_pass),
        ]
        with m.If(issue):
            m.d.sync += [
                in_tile.eq(~closes_tile),
                pass_index.eq(Mux(last_pass, 0, pass_index + 1)),
            ]
            with m.If(~in_tile):
                m.d.sync += [tile_precision.eq(precision), tile_requant.eq(self.requant)]
                if params.passes(16) > 1 and 16 in precisions:
                    m.d.sync += tile_is16.eq(starts_is16)
                m.d.comb += lfsr.en.eq(self.rps_enable)
                with m.If(~self.rps_enable & ~supported):
                    m.d.sync += self.errors.precision.eq(1)
            with m.If(last_pass & (self.act.payload.last != self.weight.payload.last)):
                m.d.sync += self.errors.framing.eq(1)

        with m.If(self.clear_errors):
            m.d.sync += self.errors.eq(0)

        # -- the PE grid ----------------------------------------------------------------
        fusion = params.max_fusion
        rows, cols = params.rows, params.cols
        pes = [[ProcessingElement(params) for c in range(cols)] for r in range(rows)]
        for r in range(rows):
            for c in range(cols):
                pe = pes[r][c]
                m.submodules[f"pe_{r}_{c}"] = pe
                m.d.comb += [
                    pe.valid.eq(issue), pe.first.eq(~in_tile), pe.last.eq(closes_tile),
                    pe.precision.eq(precision), pe.pass_index.eq(pass_index),
                    pe.shift.eq(drain.shift[r * cols + c]),
                ]
                # Activation lane ga*rows + r feeds PE row r, group ga (likewise weights),
                # so lanes 0..tile_rows(p)-1 are the used ones at every precision.
                for g in range(fusion):
                    m.d.comb += [pe.act[g].eq(self.act.payload.data[g * rows + r]),
                                 pe.weight[g].eq(self.weight.payload.data[g * cols + c])]
                # Output row ga*rows + r is PE (r, c)'s slot row ga, so the rows leave in
                # order when each column's shadow registers shift up one PE per row and
                # the top PE's next slot row wraps around to the bottom PE.
                for ga in range(fusion):
                    for gw in range(fusion):
                        if r + 1 < rows:
                            source = pes[r + 1][c].shadow[ga * fusion + gw]
                        elif ga + 1 < fusion:
                            source = pes[0][c].shadow[(ga + 1) * fusion + gw]
                        else:
                            continue
                        m.d.comb += pe.shadow_next[ga * fusion + gw].eq(source)
        for c in range(cols):
            for gw in range(fusion):
                m.d.comb += drain.row[gw * cols + c].eq(pes[0][c].shadow[gw])

        # -- hand a finished tile to the drain -----------------------------------------
        # Control travels beside the PE pipeline: the PEs copy a tile's sums into their
        # shadow registers params.pe_latency cycles after its last pass is issued, and the
        # drain loads then too.
        valid, last, tile_prec, tile_req = issue, closes_tile, precision, requant
        in_flight = []
        for k in range(params.pe_latency):
            copy_next = valid & last            # the copy's cycle is the cycle after
            stage = (Signal(name=f"pe{k}_valid"), Signal(name=f"pe{k}_last"),
                     Signal(prec_shape, name=f"pe{k}_precision"),
                     Signal(REQUANT_LAYOUT, name=f"pe{k}_requant"))
            m.d.sync += [reg.eq(value) for reg, value in
                         zip(stage, (valid, last, tile_prec, tile_req))]
            valid, last, tile_prec, tile_req = stage
            in_flight.append(valid)
        # The copy (valid & last of the last stage) as a register, and the drain told
        # a cycle ahead, so that its decisions come from registers (ResultDrain).
        copy = Signal()
        m.d.sync += copy.eq(copy_next)
        copy_pending_next = Mux(issue & closes_tile, 1, Mux(copy, 0, copy_pending))
        m.d.sync += [copy_pending.eq(copy_pending_next),
                     hold.eq(copy_pending_next | drain.busy_next)]
        m.d.comb += [
            drain.load_next.eq(copy_next),
            drain.precision.eq(tile_prec),
            drain.requant.eq(tile_req),
        ]
        wiring.connect(m, drain.o, wiring.flipped(self.o))

        m.d.comb += self.busy.eq(in_tile | Cat(*in_flight).any() | copy_pending
                                 | drain.pending)
        return m
