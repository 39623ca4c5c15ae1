from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import TaylorParams


class PhaseSequencer(wiring.Component):
    """The Taylor pipeline's phase controller: which block of which phase issues when.

    `start` (with `tokens` and `head_mask` held for the run) begins a run; `running`
    holds until every head is done. Per head, in order (bit h of `head_mask` set skips
    head h at one cycle):
      SELECT        `selecting` is high; the counters restart;
      KV            per token, while `slot_ready`: one block (ta, tb) per cycle, tb
                    fastest (`issue_kv`), d²/M blocks; `release` on the token's last;
      KV_DRAIN      until `mac_empty` (the last write-back is in the context memory);
      CENTER        one block row (ta, tb, sub) per cycle, sub fastest (`issue_center`);
      CENTER_DRAIN  until `center_empty`;
      Q             per query row: its first block waits for `slot_ready`, `room` (output
                    space for the row) and `recip_done`, then one block per cycle, ta
                    fastest (`issue_q`); `release` on the row's last;
      Q_DRAIN       until `mac_empty` and `lane_empty`, then the next head.
    `row_start` marks a Q row's first issue, `first_token` the K/V blocks of token 0.
    `ta_steps` / `tb_steps` say whether the next clock edge changes ta / tb, and
    `ta_zero_if_step` / `ta_zero_if_hold` (and tb's) whether ta is 0 after that edge if it
    steps / if it does not: flags for the tile feed's registers, made from the step
    decisions directly rather than by comparing next values (the next values through
    compares into the feed's flag copies were a Taylor build's worst path, 9.0 ns, 5
    levels, 7.3 ns of it routing). The two outcomes come from registers alone, and the
    feed picks one by its registered copy of the step, so that the step decision runs
    straight into the feed's copies (through `zero_next`, a LUT more and a net across the
    feed, it was a Taylor build's worst path, 8.3 ns, 6.6 of it routing).
    """

    def __init__(self, params: TaylorParams):
        self.params = p = params
        super().__init__({
            "start": In(1),
            "tokens": In(p.token_width),
            "head_mask": In(p.heads),
            "slot_ready": In(1),
            "room": In(1),
            "recip_done": In(1),
            "mac_empty": In(1),
            "center_empty": In(1),
            "lane_empty": In(1),
            "running": Out(1),
            "selecting": Out(1),
            "head": Out(range(p.heads + 1)),
            "token": Out(p.token_width),
            "ta": Out(range(p.head_dim // p.tile_rows)),
            "tb": Out(range(p.head_dim // p.tile_cols)),
            "ta_zero_if_step": Out(1),
            "ta_zero_if_hold": Out(1),
            "tb_zero_if_step": Out(1),
            "tb_zero_if_hold": Out(1),
            "ta_steps": Out(1),
            "tb_steps": Out(1),
            "sub": Out(range(p.tile_rows)),
            "issue_kv": Out(1),
            "issue_center": Out(1),
            "issue_q": Out(1),
            "release": Out(1),
            "row_start": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        r = p.tile_rows
        head, token, ta, tb, sub = self.head, self.token, self.ta, self.tb, self.sub
        # Whether ta / tb are at their last values: registers that follow the counters
        # (`last_next` below). As compares they sat on the issue decision's path into the
        # tile feed's flag copies (a Taylor build's worst path: 8.3 ns, 5 levels).
        last_ta = Signal(init=p.head_dim // r == 1)
        last_tb = Signal(init=p.head_dim // p.tile_cols == 1)
        # Whether ta = tb = 0, a register set where the counters wrap (from ta and tb,
        # synthesis shared its logic with the tile feed's block address, and ta through
        # it into ta's enable was a Taylor build's worst path: 9.1 ns, 6 levels).
        block_0 = Signal(init=1)
        # Whether ta and tb are both at their last values (the block ends a token or a row):
        # a register that follows ta_next and tb_next, so that `release` (into the row
        # loader's slot-select copies, a Taylor build's worst path at 8.2 ns) is the issue
        # and this flag, not the issue and two counter compares.
        both_wrap = Signal(init=p.blocks == 1)
        # Whether `token` is the head's last, registered: a cycle late after `token`
        # moves, but it is read only at a token's last block, blocks = d²/M >= 8 cycles
        # after (the compare with N - 1 into the state was a Taylor build's worst path,
        # 9.3 ns and 11 levels).
        last_token = Signal()
        m.d.sync += last_token.eq(token == self.tokens - 1)
        m.d.comb += self.row_start.eq(self.issue_q & block_0)
        # ta and tb's next values. Each counter only steps by one (wrapping to 0 after its
        # last value) or goes to 0 in SELECT, where it already is 0 (every phase ends with
        # both wrapped), so whether it is 0 next and whether it changes follow from the
        # step decision (`step_a`, `step_b`) and registers alone.
        ta_next = Signal.like(ta)
        tb_next = Signal.like(tb)
        step_a, step_b = Signal(), Signal()
        ta_zero, tb_zero = Signal(init=1), Signal(init=1)
        m.d.comb += [ta_next.eq(ta), tb_next.eq(tb)]
        # A step is the state's issue decision (`advance`: a block issues) and, from
        # registers alone, which counters it moves (`a_if`, `b_if`): the flags below take
        # the decision last, as a pick between outcomes made from registers (through
        # step_b and two LUTs after it, the issue into `both_wrap` was a Taylor build's
        # worst path, 8.3 ns, 6 levels).
        advance, a_if, b_if = Signal(), Signal(), Signal()
        m.d.comb += [step_a.eq(advance & a_if), step_b.eq(advance & b_if)]
        m.d.sync += [ta.eq(ta_next), tb.eq(tb_next)]
        # Per counter: whether it is 0 next and whether it steps (for the tile feed), and
        # whether it is at its last value next: on a step, whether it is one before it now
        # (or, with one value, always); else whether it is there now. `both_wrap` from
        # compares of ta_next and tb_next (after the state's decisions) was a Taylor
        # build's worst path (the state -> both_wrap, 8.1 ns, 6 levels).
        last_if_advance = []
        for counter, zero, if_step, if_hold, steps, step, moves, last, count in (
                (ta, ta_zero, self.ta_zero_if_step, self.ta_zero_if_hold, self.ta_steps,
                 step_a, a_if, last_ta, p.head_dim // r),
                (tb, tb_zero, self.tb_zero_if_step, self.tb_zero_if_hold, self.tb_steps,
                 step_b, b_if, last_tb, p.head_dim // p.tile_cols)):
            # (With one value, both outcomes are 1 and `steps` is 0.)
            m.d.comb += [if_step.eq(self.selecting | last), if_hold.eq(self.selecting | zero),
                         steps.eq(step if count > 1 else 0)]
            m.d.sync += zero.eq(Mux(step, if_step, if_hold))
            before_last = counter == count - 2 if count > 1 else Const(1, 1)
            last_if_advance.append(Mux(moves, before_last, last))
        m.d.sync += [both_wrap.eq(Mux(advance, last_if_advance[0] & last_if_advance[1],
                                      both_wrap)),
                     last_ta.eq(Mux(advance, last_if_advance[0], last_ta)),
                     last_tb.eq(Mux(advance, last_if_advance[1], last_tb))]

        with m.If(self.start):
            m.d.sync += self.running.eq(1)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += head.eq(0)
                    m.next = "SELECT"
            with m.State("SELECT"):
                m.d.comb += self.selecting.eq(1)
                m.d.sync += [token.eq(0), sub.eq(0), block_0.eq(1)]
                m.d.comb += [ta_next.eq(0), tb_next.eq(0)]
                with m.If(head == p.heads):
                    m.d.sync += self.running.eq(0)
                    m.next = "IDLE"
                with m.Elif(self.head_mask.bit_select(head, 1)):
                    m.d.sync += head.eq(head + 1)
                with m.Else():
                    m.next = "KV"
            with m.State("KV"):
                m.d.comb += [advance.eq(self.slot_ready), a_if.eq(last_tb), b_if.eq(1)]
                with m.If(self.slot_ready):
                    m.d.comb += self.issue_kv.eq(1)
                    m.d.sync += block_0.eq(both_wrap)
                    m.d.comb += tb_next.eq(tb + 1)
                    with m.If(last_tb):
                        m.d.comb += [tb_next.eq(0), ta_next.eq(ta + 1)]
                        with m.If(last_ta):
                            m.d.comb += ta_next.eq(0)
                            m.d.sync += token.eq(token + 1)
                            with m.If(last_token):
                                m.next = "KV_DRAIN"
            with m.State("KV_DRAIN"):
                m.d.sync += token.eq(0)
                with m.If(self.mac_empty):
                    m.next = "CENTER"
            with m.State("CENTER"):
                m.d.comb += self.issue_center.eq(1)
                m.d.sync += sub.eq(sub + 1)
                m.d.comb += [advance.eq(sub == r - 1), a_if.eq(last_tb), b_if.eq(1)]
                with m.If(sub == r - 1):
                    m.d.sync += [sub.eq(0), block_0.eq(both_wrap)]
                    m.d.comb += tb_next.eq(tb + 1)
                    with m.If(last_tb):
                        m.d.comb += [tb_next.eq(0), ta_next.eq(ta + 1)]
                        with m.If(last_ta):
                            m.d.comb += ta_next.eq(0)
                            m.next = "CENTER_DRAIN"
            with m.State("CENTER_DRAIN"):
                with m.If(self.center_empty):
                    m.next = "Q"
            with m.State("Q"):
                issue = ~block_0 | (self.slot_ready & self.room & self.recip_done)
                m.d.comb += [advance.eq(issue), a_if.eq(1), b_if.eq(last_ta)]
                with m.If(issue):
                    m.d.comb += self.issue_q.eq(1)
                    m.d.sync += block_0.eq(both_wrap)
                    m.d.comb += ta_next.eq(ta + 1)
                    with m.If(last_ta):
                        m.d.comb += [ta_next.eq(0), tb_next.eq(tb + 1)]
                        with m.If(last_tb):
                            m.d.comb += tb_next.eq(0)
                            m.d.sync += token.eq(token + 1)
                            with m.If(last_token):
                                m.next = "Q_DRAIN"
            with m.State("Q_DRAIN"):
                with m.If(self.mac_empty & self.lane_empty):
                    m.d.sync += head.eq(head + 1)
                    m.next = "SELECT"
        # `release`: the issue of a token's or a row's last block. At a row's last block
        # (with more than one block) block_0 is low, so a Q issue is the state alone and only
        # a K/V issue waits for `slot_ready`: two levels of logic from registers.
        if p.blocks > 1:
            m.d.comb += self.release.eq(both_wrap & (fsm.ongoing("Q") |
                                                     (fsm.ongoing("KV") & self.slot_ready)))
        else:
            m.d.comb += self.release.eq(both_wrap & (self.issue_kv | self.issue_q))
        return m
