"""The designs a board top can carry: name -> parameters class and factory.

A factory is called as `factory(params, clock_hz, baud)` (`params` is None for a design
without parameters) and returns a component with ports rx: In(1), tx: Out(1),
busy: Out(1). Accelerator designs wrap an engine in the host shell (`rtl.shell`); their
`core` is the engine's own component (what `celine verilog` generates, see
gen/accelerators.py, which lists the designs that have one).
"""

from dataclasses import dataclass

from rtl.mac.array import MacArray
from rtl.mac.params import MacArrayParams
from rtl.shell.shell import build_shell
from rtl.taylor.params import TaylorParams
from rtl.taylor.pipeline import TaylorPipeline

from .echo import UartEcho

__all__ = ["Design", "ACCEL_DESIGNS", "get_design"]


@dataclass(frozen=True)
class Design:
    name: str
    params: type | None
    factory: object
    summary: str
    core: type | None = None

    def component(self, params, clock_hz, baud):
        return self.factory(params, clock_hz, baud)


def _echo(params, clock_hz, baud):
    return UartEcho(clock_hz, baud)


def _shell(accel):
    def factory(params, clock_hz, baud):
        return build_shell(accel=accel, accel_params=params, clock_hz=clock_hz, baud=baud)
    return factory


ACCEL_DESIGNS = {design.name: design for design in (
    Design("echo", None, _echo, "UART echo (rx -> tx), for board bring-up"),
    Design("mac", MacArrayParams, _shell("mac"),
           "precision-scalable MAC array (2-in-1 Accelerator, InstantNet)", MacArray),
    Design("taylor", TaylorParams, _shell("taylor"),
           "ViTALiTy Taylor-attention pipeline (linear attention)", TaylorPipeline),
)}


def get_design(name):
    try:
        return ACCEL_DESIGNS[name]
    except KeyError:
        raise ValueError(f"accelerator must be one of {', '.join(ACCEL_DESIGNS)}, "
                         f"not {name!r}") from None
