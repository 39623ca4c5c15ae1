"""A condition on counters, kept in a register that is computed a cycle ahead."""

from amaranth.hdl import Mux, Signal

__all__ = ["lookahead"]


def lookahead(m, name, now, step, wrapped, advanced):
    """A register that equals the condition `now` on a set of counters, for control paths
    that cannot afford the counters' adders and compares before their decision.

    In a cycle with `step` the counters move, and the register takes the condition on
    their next values: `wrapped` if this register was set (the counters restart), else
    `advanced`; both are computed from the current registers. In other cycles it takes
    `now`. So it is right in every cycle after one in which the condition's other inputs
    (limits such as a length) were stable; the caller must not step in the cycle after
    such an input changes.
    """
    flag = Signal(name=name)
    m.d.sync += flag.eq(Mux(step, Mux(flag, wrapped, advanced), now))
    return flag
