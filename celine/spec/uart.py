"""UART line rates (dependency-free): the standard rates boards are built for and the
order in which the host runtime probes them.

The boards pick their design's rate from STANDARD_BAUDS (celine.boards.baud.default_baud:
the highest one the clock and the USB-serial chip allow); a host that does not know the
rate asks at each of PROBE_BAUDS in turn (celine.firmware.device.Device.open).
"""

__all__ = ["STANDARD_BAUDS", "LIKELY_BAUD", "PROBE_BAUDS"]

# Highest first; the rates above 3 Mbaud exist only on the high-speed FTDI chips (FT2232H).
STANDARD_BAUDS = (12_000_000, 6_000_000, 4_000_000, 3_000_000, 2_000_000, 1_500_000,
                  1_000_000, 921_600, 460_800, 230_400, 115_200)

# The rate of the supported boards' USB-serial chips at full speed, which default_baud
# picks at their usual clocks: the default design's rate.
LIKELY_BAUD = 3_000_000

# Most likely first: the default design's rate, then the lower rates (slower clocks, other
# chips) from the highest down, then the rates above it.
PROBE_BAUDS = (LIKELY_BAUD,
               *(b for b in STANDARD_BAUDS if b < LIKELY_BAUD),
               *sorted(b for b in STANDARD_BAUDS if b > LIKELY_BAUD))
