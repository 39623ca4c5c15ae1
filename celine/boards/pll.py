"""ECP5 PLL (EHXPLLL): divider search for a requested frequency, and the instance.

The search is the one Project Trellis' `ecppll` does, in exact rational arithmetic: every
input divider (CLKI_DIV 1..128) whose phase-detector frequency lies in 3.125-400 MHz,
every feedback divider (CLKFB_DIV 1..80) and output divider (CLKOP_DIV 1..128) with a VCO
in 400-800 MHz; the closest output wins, ties go to the VCO nearest 600 MHz. Feedback is
taken from CLKOP (FEEDBK_PATH "CLKOP"), so f_out = f_in * CLKFB_DIV / CLKI_DIV and
f_vco = f_out * CLKOP_DIV.
"""

from dataclasses import dataclass
from fractions import Fraction

from amaranth import Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PllConfig", "pll_config", "EcpPll",
           "PFD_RANGE_HZ", "VCO_RANGE_HZ", "OUTPUT_RANGE_HZ"]

PFD_RANGE_HZ = (3_125_000, 400_000_000)
VCO_RANGE_HZ = (400_000_000, 800_000_000)
OUTPUT_RANGE_HZ = (3_125_000, 400_000_000)
INPUT_RANGE_HZ = (8_000_000, 400_000_000)
_VCO_PREFERRED_HZ = 600_000_000


def _mhz(hz):
    return f"{float(hz) / 1e6:g} MHz"


@dataclass(frozen=True)
class PllConfig:
    """EHXPLLL settings for one output (CLKOP) and the frequencies they give."""
    input_hz: int
    requested_hz: int
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def pfd_hz(self):
        return Fraction(self.input_hz, self.clki_div)

    @property
    def output_hz(self):
        """The achieved output frequency (exact; may be fractional)."""
        return self.pfd_hz * self.clkfb_div

    @property
    def vco_hz(self):
        return self.output_hz * self.clkop_div

    @property
    def error(self):
        """Relative error of the achieved frequency, signed (achieved/requested - 1)."""
        return float(self.output_hz / self.requested_hz - 1)

    @property
    def clkop_cphase(self):
        """Coarse phase of CLKOP in VCO cycles: about 180 degrees, as `ecppll` writes it.

        (`ecppll` computes CLKOP_DIV/2 in float and truncates, which gives CLKOP_DIV/2 - 1
        or CLKOP_DIV/2 depending on rounding noise; this is the noise-free (DIV - 1) // 2.)
        """
        return (self.clkop_div - 1) // 2

    def parameters(self):
        """The EHXPLLL parameters (p_...) and attributes (a_...) for `Instance`."""
        return dict(
            a_FREQUENCY_PIN_CLKI=f"{self.input_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{float(self.output_hz) / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=self.clki_div,
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=self.clkop_div,
            p_CLKOP_CPHASE=self.clkop_cphase, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=self.clkfb_div,
        )

    def describe(self):
        return (f"PLL {_mhz(self.input_hz)} -> {_mhz(self.output_hz)} "
                f"(requested {_mhz(self.requested_hz)}; CLKI_DIV={self.clki_div} "
                f"CLKFB_DIV={self.clkfb_div} CLKOP_DIV={self.clkop_div}, "
                f"VCO {_mhz(self.vco_hz)})")


def pll_config(input_hz, output_hz, *, tolerance=0.01):
    """The EHXPLLL dividers giving the frequency nearest `output_hz` from `input_hz`.

    Raises ValueError if the frequencies are outside the ECP5 ranges or the nearest
    reachable output is more than `tolerance` (relative) away from the request.
    """
    for name, value in (("input_hz", input_hz), ("output_hz", output_hz)):
        if isinstance(value, bool) or not isinstance(value, (int, Fraction)):
            if not (isinstance(value, float) and value.is_integer()):
                raise TypeError(f"{name} must be an integer number of Hz, not {value!r}")
    input_hz, output_hz = int(input_hz), int(output_hz)
    lo, hi = INPUT_RANGE_HZ
    if not lo <= input_hz <= hi:
        raise ValueError(f"input frequency must be between {_mhz(lo)} and {_mhz(hi)}, "
                         f"not {_mhz(input_hz)}")
    lo, hi = OUTPUT_RANGE_HZ
    if not lo <= output_hz <= hi:
        raise ValueError(f"frequency must be between {_mhz(lo)} and {_mhz(hi)}, "
                         f"not {_mhz(output_hz)}")
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 1):
        raise ValueError(f"tolerance must be a fraction in [0, 1), not {tolerance!r}")

    best = None
    for clki_div in range(1, 129):
        pfd = Fraction(input_hz, clki_div)
        if not PFD_RANGE_HZ[0] <= pfd <= PFD_RANGE_HZ[1]:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            if not OUTPUT_RANGE_HZ[0] <= out <= OUTPUT_RANGE_HZ[1]:
                continue
            for clkop_div in range(1, 129):
                vco = out * clkop_div
                if vco < VCO_RANGE_HZ[0]:
                    continue
                if vco > VCO_RANGE_HZ[1]:
                    break
                key = (abs(out - output_hz), abs(vco - _VCO_PREFERRED_HZ))
                if best is None or key < best[0]:
                    best = (key, PllConfig(input_hz, output_hz, clki_div, clkfb_div, clkop_div))
    config = best[1]
    if abs(config.error) > tolerance:
        raise ValueError(
            f"frequency must be reachable from {_mhz(input_hz)} within {tolerance:.1%}, "
            f"not {_mhz(output_hz)} (nearest: {_mhz(config.output_hz)})")
    return config


class EcpPll(wiring.Component):
    """One EHXPLLL: `clk_out` runs at `config.output_hz`; `locked` is asynchronous."""

    clk_in: In(1)
    clk_out: Out(1)
    locked: Out(1)

    def __init__(self, config):
        if not isinstance(config, PllConfig):
            raise TypeError(f"config must be a PllConfig, not {config!r}")
        self.config = config
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.pll = Instance(
            "EHXPLLL",
            **self.config.parameters(),
            i_CLKI=self.clk_in, i_CLKFB=self.clk_out, o_CLKOP=self.clk_out,
            o_LOCK=self.locked,
            i_RST=0, i_STDBY=0,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
        )
        return m
