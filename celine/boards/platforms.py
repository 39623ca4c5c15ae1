"""The ECP5 boards Celine builds for: amaranth-boards platforms plus what the top needs.

Each board names its oscillator, its USB-serial UART (and the highest baud its USB-serial
chip supports), an LED for the `busy` output and how to program it. Building never needs
the programmer: the ULX3S platform of amaranth-boards lists `openFPGALoader` among its
required tools, so the platforms here drop it from the build requirements and check for it
only when programming.
"""

from dataclasses import dataclass

from amaranth_boards import ecpix5, versa_ecp5
from amaranth_boards.ulx3s import ULX3S_25F_Platform, ULX3S_85F_Platform

__all__ = ["Board", "BOARDS", "DEFAULT_BOARD", "DEVICE_RESOURCES", "get_board"]

_PROGRAMMERS = ("openFPGALoader", "openocd")


class _BuildWithoutProgrammer:
    """Platform mixin: building needs Yosys, nextpnr and ecppack only, never the programmer."""

    board = None        # the Board, set on each subclass below

    # nextpnr derives the PLL output's constraint from the oscillator's (scaled by the PLL
    # dividers), and a derived constraint beats --freq; a net name for the PLL output is
    # not stable across flattening. So a clock constraint other than the PLL frequency is
    # given as this (scaled) oscillator constraint, in Hz; None keeps the board's own.
    oscillator_constraint_hz = None

    def iter_port_clock_constraints(self):
        for port, frequency in super().iter_port_clock_constraints():
            if self.oscillator_constraint_hz is not None and \
                    port.name.startswith(f"{self.board.clock}_0__"):
                frequency = self.oscillator_constraint_hz
            yield port, frequency

    @property
    def required_tools(self):
        return [tool for tool in super().required_tools if tool not in _PROGRAMMERS]

    def toolchain_program(self, products, name, **kwargs):
        # Programming is celine.gen.program's (`celine program`): imported here, as gen
        # imports this module.
        from ..gen.program import program
        with products.extract(f"{name}.bit") as bitstream:
            program(self.board.name, bitstream)


class ULX3S85FPlatform(_BuildWithoutProgrammer, ULX3S_85F_Platform):
    pass


class ULX3S25FPlatform(_BuildWithoutProgrammer, ULX3S_25F_Platform):
    pass


class ECPIX585Platform(_BuildWithoutProgrammer, ecpix5.ECPIX585Platform):
    pass


class VersaECP5Platform(_BuildWithoutProgrammer, versa_ecp5.VersaECP5Platform):
    pass


# Resources of the ECP5 devices of celine.boards (Lattice ECP5 family data sheet,
# FPGA-DS-02012, table 1.1): LUT4 (TRELLIS_COMB), MULT18X18D, DP16KD.
DEVICE_RESOURCES = {
    "LFE5U-25F": {"lut4": 24_288, "mult18x18d": 28, "dp16kd": 56},
    "LFE5U-45F": {"lut4": 43_848, "mult18x18d": 72, "dp16kd": 108},
    "LFE5U-85F": {"lut4": 83_640, "mult18x18d": 156, "dp16kd": 208},
    "LFE5UM-25F": {"lut4": 24_288, "mult18x18d": 28, "dp16kd": 56},
    "LFE5UM-45F": {"lut4": 43_848, "mult18x18d": 72, "dp16kd": 108},
    "LFE5UM-85F": {"lut4": 83_640, "mult18x18d": 156, "dp16kd": 208},
    "LFE5UM5G-25F": {"lut4": 24_288, "mult18x18d": 28, "dp16kd": 56},
    "LFE5UM5G-45F": {"lut4": 43_848, "mult18x18d": 72, "dp16kd": 108},
    "LFE5UM5G-85F": {"lut4": 83_640, "mult18x18d": 156, "dp16kd": 208},
}


@dataclass(frozen=True)
class Board:
    """A board: its platform class and the resources the Celine top uses.

    `led` is (resource, number, subsignal or None) for the `busy` output, or None.
    `openfpgaloader_board` is openFPGALoader's name for the board (`-b`, its
    `--list-boards`), which picks the cable and its pins; None for a board it does not
    list, which names its cable in `openfpgaloader_cable` (`-c`) instead.
    `programmer_env` names the environment variable that overrides the openFPGALoader to
    run (celine/gen/program.py).
    """
    name: str
    title: str
    platform: type
    clock: str
    clock_hz: int
    uart: str
    usb_serial: str
    max_baud: int
    led: tuple | None
    openfpgaloader_board: str | None
    openfpgaloader_cable: str | None = None
    programmer_env: str = "OPENFPGALOADER"

    @property
    def openfpgaloader_target(self):
        """openFPGALoader's options that select this board: ("-b", name) or ("-c", cable)."""
        if self.openfpgaloader_board is not None:
            return ("-b", self.openfpgaloader_board)
        return ("-c", self.openfpgaloader_cable)

    @property
    def device(self):
        return self.platform.device

    @property
    def resources(self):
        """The device's {"lut4", "mult18x18d", "dp16kd"} (DEVICE_RESOURCES)."""
        return dict(DEVICE_RESOURCES[self.device])

    @property
    def package(self):
        return self.platform.package

    @property
    def speed(self):
        return self.platform.speed

    @property
    def nextpnr_options(self):
        """Device, package and speed options of nextpnr-ecp5 (as Amaranth passes them)."""
        return [self.platform._nextpnr_device_options[self.device],
                "--package", self.platform._nextpnr_package_options[self.package].upper(),
                "--speed", str(self.speed)]


def _board(**kwargs):
    board = Board(**kwargs)
    board.platform.board = board
    return board


# FT231X (ULX3S): 300 baud to 3 Mbaud (FTDI DS_FT231X). FT2232H (ECPIX-5, Versa; channel
# A is JTAG, channel B the UART): up to 12 Mbaud (FTDI DS_FT2232H).
# openFPGALoader 1.1.1 lists the ULX3S ("ulx3s") and the ECPIX-5 ("ecpix5"; "ecpix5_r03" is
# the revision with an FT4232H) but no Versa ECP5, whose JTAG is a plain ft2232 cable.
BOARDS = {board.name: board for board in (
    _board(name="ulx3s-85f", title="ULX3S (LFE5U-85F)", platform=ULX3S85FPlatform,
           clock="clk25", clock_hz=25_000_000, uart="uart", usb_serial="FT231X",
           max_baud=3_000_000, led=("led", 0, None), openfpgaloader_board="ulx3s"),
    _board(name="ulx3s-25f", title="ULX3S (LFE5U-25F)", platform=ULX3S25FPlatform,
           clock="clk25", clock_hz=25_000_000, uart="uart", usb_serial="FT231X",
           max_baud=3_000_000, led=("led", 0, None), openfpgaloader_board="ulx3s"),
    _board(name="ecpix5-85f", title="ECPIX-5 (LFE5UM5G-85F)", platform=ECPIX585Platform,
           clock="clk100", clock_hz=100_000_000, uart="uart", usb_serial="FT2232H",
           max_baud=12_000_000, led=("rgb_led", 0, "g"), openfpgaloader_board="ecpix5"),
    _board(name="versa-ecp5", title="Versa ECP5 (LFE5UM-45F)", platform=VersaECP5Platform,
           clock="clk100", clock_hz=100_000_000, uart="uart", usb_serial="FT2232H",
           max_baud=12_000_000, led=("led", 0, None), openfpgaloader_board=None,
           openfpgaloader_cable="ft2232"),
)}

DEFAULT_BOARD = "ulx3s-85f"


def get_board(name):
    """The Board called `name` (a Board passes through); ValueError for an unknown name."""
    if isinstance(name, Board):
        return name
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {name!r}") from None

