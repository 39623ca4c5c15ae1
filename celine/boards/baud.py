"""UART baud rates: the one rule every UART rate in Celine follows (the host shell's and the
board top's), and which standard rates a clock and a USB-serial chip allow."""

__all__ = ["STANDARD_BAUDS", "baud_error", "baud_range", "check_baud", "default_baud",
           "MAX_BAUD_ERROR", "MIN_BAUD", "MIN_CYCLES_PER_BIT"]

from ..spec.uart import STANDARD_BAUDS  # highest first (defined once, dependency-free)

MIN_BAUD = 1200             # the slowest rate a host shell is built for
MAX_BAUD_ERROR = 0.02       # bit time error, relative, below which a rate is reachable
MIN_CYCLES_PER_BIT = 4      # the UART receiver samples mid-bit, so at least 4 clock cycles a bit


def baud_error(clock_hz, baud):
    """Relative error of the bit time when a bit lasts round(clock_hz / baud) cycles."""
    cycles = round(clock_hz / baud)
    return abs(clock_hz / cycles - baud) / baud if cycles else float("inf")


def baud_range(clock_hz, max_baud=None):
    """(lowest, highest) rate the rule allows at `clock_hz` (and for a USB-serial chip whose
    highest rate is `max_baud`, if given)."""
    highest = int(clock_hz // MIN_CYCLES_PER_BIT)
    if max_baud is not None:
        highest = min(highest, max_baud)
    return MIN_BAUD, highest


def check_baud(clock_hz, baud, max_baud=None):
    """`baud` if it follows the rule, else TypeError/ValueError (one message for the rule).

    The rule: an integer from MIN_BAUD up to `max_baud` (the board's USB-serial chip, when
    given) and clock_hz / MIN_CYCLES_PER_BIT, whose bit time of round(clock_hz / baud)
    cycles is less than MAX_BAUD_ERROR off.
    """
    if isinstance(baud, bool) or not isinstance(baud, int):
        raise TypeError(f"baud must be an integer, not {baud!r}")
    lowest, highest = baud_range(clock_hz, max_baud)
    in_range = lowest <= baud <= highest
    if not in_range or baud_error(clock_hz, baud) >= MAX_BAUD_ERROR:
        detail = "" if not in_range else f" (error {baud_error(clock_hz, baud):.1%})"
        raise ValueError(f"baud must be between {lowest} and {highest} and reachable from "
                         f"{clock_hz / 1e6:g} MHz within {MAX_BAUD_ERROR:.0%}, "
                         f"not {baud}{detail}")
    return baud


def default_baud(clock_hz, max_baud):
    """The highest standard rate that `check_baud` accepts."""
    for baud in STANDARD_BAUDS:
        try:
            return check_baud(clock_hz, baud, max_baud)
        except ValueError:
            continue
    raise ValueError(f"clock must allow at least {STANDARD_BAUDS[-1]} baud, "
                     f"not {clock_hz / 1e6:g} MHz")
