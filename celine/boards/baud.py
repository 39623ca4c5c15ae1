"""UART baud rates: which standard rates a clock and a USB-serial chip allow."""

__all__ = ["STANDARD_BAUDS", "baud_error", "check_baud", "default_baud",
           "MAX_BAUD_ERROR", "MIN_CYCLES_PER_BIT"]

from ..spec.uart import STANDARD_BAUDS  # highest first (defined once, dependency-free)

MAX_BAUD_ERROR = 0.02
MIN_CYCLES_PER_BIT = 4


def baud_error(clock_hz, baud):
    """Relative error of the bit time when a bit lasts round(clock_hz / baud) cycles."""
    cycles = round(clock_hz / baud)
    return abs(clock_hz / cycles - baud) / baud if cycles else float("inf")


def check_baud(clock_hz, baud, max_baud):
    """ValueError unless `baud` suits the chip and the clock (< 2 % error, >= 4 cycles/bit)."""
    if isinstance(baud, bool) or not isinstance(baud, int):
        raise TypeError(f"baud must be an integer, not {baud!r}")
    if not 0 < baud <= max_baud:
        raise ValueError(f"baud must be between 1 and {max_baud} (the board's USB-serial "
                         f"chip), not {baud}")
    if clock_hz / baud < MIN_CYCLES_PER_BIT:
        raise ValueError(f"baud must leave at least {MIN_CYCLES_PER_BIT} clock cycles per "
                         f"bit at {clock_hz / 1e6:g} MHz, not {baud}")
    if baud_error(clock_hz, baud) >= MAX_BAUD_ERROR:
        raise ValueError(f"baud must be reachable from {clock_hz / 1e6:g} MHz within "
                         f"{MAX_BAUD_ERROR:.0%}, not {baud} "
                         f"(error {baud_error(clock_hz, baud):.1%})")
    return baud


def default_baud(clock_hz, max_baud):
    """The highest standard rate that `check_baud` accepts."""
    for baud in STANDARD_BAUDS:
        try:
            return check_baud(clock_hz, baud, max_baud)
        except ValueError:
            continue
    raise ValueError(f"clock must allow at least 115200 baud, not {clock_hz / 1e6:g} MHz")
