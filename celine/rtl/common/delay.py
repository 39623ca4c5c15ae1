"""A value delayed by a chain of registers."""

from amaranth.hdl import Signal

__all__ = ["delayed"]


def delayed(m, value, cycles, name):
    """`value` delayed by `cycles` sync registers of `m` (the value itself for 0), named
    `<name>_d1` ..."""
    for stage in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{stage + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value
