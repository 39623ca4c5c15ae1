"""Out-of-context place and route (celine.gen.synth.place_and_route) on the LFE5U-85F.

The argument checks run in `make test` (they fail before any tool starts); the real build
of eight MACs on an 8-unit MAC bank (about 10 s) is a sweep test.
"""

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from celine.gen.synth import OOC_CLOCK_MHZ, OOC_KEYS, place_and_route
from celine.rtl.vitcod.mac_bank import MacBank
from celine.sim.emit import build_root

ACC_WIDTH = 40


class _Macs(wiring.Component):
    """`units` MACs: the bank's products summed into ACC_WIDTH-bit accumulators (so that
    a fabric path leaves each multiplier block)."""

    def __init__(self, units):
        self.units = units
        super().__init__({"a": In(data.ArrayLayout(signed(8), units)),
                          "b": In(data.ArrayLayout(signed(8), units)),
                          "acc": Out(data.ArrayLayout(signed(ACC_WIDTH), units))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bank = bank = MacBank(self.units)
        for k in range(self.units):
            m.d.comb += [bank.bus.a[k].eq(self.a[k]), bank.bus.b[k].eq(self.b[k])]
            m.d.sync += self.acc[k].eq(self.acc[k] + bank.bus.p[k])
        return m


@pytest.mark.parametrize("kwargs, error, message", [
    ({"top": "mac bank"}, ValueError, "top must be a Verilog identifier, not 'mac bank'"),
    ({"seed": -1}, ValueError, "seed must be at least 0, not -1"),
    ({"seed": True}, TypeError, "seed must be an integer, not True"),
    ({"device": "100k"}, ValueError, "device must be '12k' or "),
    ({"package": "CABGA 381"}, ValueError,
     "package must be an ECP5 package name such as 'CABGA381', not 'CABGA 381'"),
    ({"speed": 5}, ValueError, "speed must be 6 or 7 or 8, not 5"),
    ({"clock_mhz": 0}, ValueError, "clock_mhz must be a positive number of MHz, not 0"),
    ({"clock_mhz": "125"}, ValueError, "clock_mhz must be a positive number of MHz, not '125'"),
])
def test_place_and_route_rejects_bad_arguments(tmp_path, monkeypatch, kwargs, error, message):
    monkeypatch.chdir(tmp_path)
    arguments = {"top": "mac_bank", "workdir": "ooc", **kwargs}
    with pytest.raises(error) as info:
        place_and_route(MacBank(1), **arguments)
    assert str(info.value).startswith(message)
    assert not (tmp_path / "ooc").exists()


def test_place_and_route_needs_workdir_under_cwd(tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    outside = tmp_path / "outside"
    with pytest.raises(ValueError, match=r"^workdir must be under the current directory .* "
                                         r"\(the YoWASP tools' sandbox\), not "):
        place_and_route(MacBank(1), top="mac_bank", workdir=outside)
    assert not outside.exists()


@pytest.mark.sweep
def test_mac_bank_out_of_context(monkeypatch):
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(root)            # the work directory must lie under the cwd
    lines = []
    result = place_and_route(_Macs(8), top="mac_bank8", workdir="synth_ooc/mac_bank8",
                             seed=2, log=lines.append)
    assert tuple(result) == OOC_KEYS
    assert result["mult18x18d"] == 8 and result["dp16kd"] == 0
    # The operand and product registers are the MULT18X18Ds' own (RegisteredMultiplier):
    # the only flip-flops are the accumulators, and the path out of a block is its
    # output register's clock-to-out (well above the timing issue's 125 MHz).
    assert result["ff"] == 8 * ACC_WIDTH
    assert 125 < result["fmax_mhz"] < 500
    assert (result["clock_mhz"], result["seed"]) == (OOC_CLOCK_MHZ, 2)
    assert result["seconds"] > 0
    workdir = root / "synth_ooc" / "mac_bank8"
    for suffix in (".v", ".json", ".pnr.log", ".report.json"):
        assert (workdir / f"mac_bank8{suffix}").exists()
    assert any("pnr: done" in line for line in lines)
