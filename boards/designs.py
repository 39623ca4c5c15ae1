"""The designs a board top can carry: name -> parameters class and factory.

A factory is called as `factory(params, clock_hz, baud)` (`params` is None for a design
without parameters) and returns a component with ports rx: In(1), tx: Out(1),
busy: Out(1). Accelerator designs wrap an engine in the host shell (`rtl.shell`).
"""

from dataclasses import dataclass

from rtl.mac.params import MacArrayParams
from rtl.shell.shell import build_shell

from .echo import UartEcho

__all__ = ["Design", "ACCEL_DESIGNS", "get_design"]


@dataclass(frozen=True)
class Design:
    name: str
    params: type | None
    factory: object
    summary: str

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
           "host shell + precision-scalable MAC array"),
)}


def get_design(name):
    try:
        return ACCEL_DESIGNS[name]
    except KeyError:
        raise ValueError(f"accelerator must be one of {', '.join(ACCEL_DESIGNS)}, "
                         f"not {name!r}") from None
