"""The designs a board top can carry: the UART echo, and every registered engine in the
host shell.

A design's `component(params, clock_hz, baud)` (`params` None for a design without
parameters) returns a component with ports rx: In(1), tx: Out(1), busy: Out(1). An
engine design wraps the engine's shell adapter in the host shell (`rtl.shell`); its
`accelerator` is the engine's registry record.
"""

from dataclasses import dataclass

from .. import registry
from .echo import UartEcho
from .top import DEFAULT_CLOCK_HZ

__all__ = ["Design", "DESIGNS", "get_design"]


@dataclass(frozen=True)
class Design:
    name: str
    params: type | None
    factory: object
    summary: str
    accelerator: object = None

    def component(self, params, clock_hz, baud, **options):
        """The design; `options`: the engine's shell options (buffer depths, ...)."""
        return self.factory(params, clock_hz, baud, **options)

    @property
    def clock_hz(self):
        """The PLL clock a board build takes by default: the engine's `clock_mhz`, else
        the board top's DEFAULT_CLOCK_HZ."""
        mhz = getattr(self.accelerator, "clock_mhz", None)
        return DEFAULT_CLOCK_HZ if mhz is None else round(mhz * 1_000_000)


def _echo(params, clock_hz, baud, **options):
    if options:
        raise ValueError(f"the echo takes no options, not {', '.join(sorted(options))}")
    return UartEcho(clock_hz, baud)


def _shell(record):
    def factory(params, clock_hz, baud, **options):
        from ..rtl.shell.shell import build_shell
        return build_shell(accel=record.name, accel_params=params, clock_hz=clock_hz,
                           baud=baud, **options)
    return factory


# {name: Design}: the echo, then one per registered engine.
DESIGNS = {design.name: design for design in (
    Design("echo", None, _echo, "UART echo (rx -> tx), for board bring-up"),
    *(Design(record.name, record.params, _shell(record), record.summary, record)
      for record in registry.ENGINES),
)}


def get_design(name):
    try:
        return DESIGNS[name]
    except (KeyError, TypeError):
        raise ValueError(f"accelerator must be one of {', '.join(DESIGNS)}, "
                         f"not {name!r}") from None
