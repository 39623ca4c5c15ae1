"""The accelerators the `celine` command can generate: name -> parameters and component.

The designs of boards/designs.py that have an engine core; `celine verilog` generates the
core alone, `celine bitstream` the design (the core inside the host shell).
"""

from dataclasses import dataclass

from boards.designs import ACCEL_DESIGNS


@dataclass(frozen=True)
class Accelerator:
    name: str
    params: type
    component: type
    summary: str


ACCELERATORS = {design.name: Accelerator(design.name, design.params, design.core, design.summary)
                for design in ACCEL_DESIGNS.values() if design.core is not None}


def get(name):
    try:
        return ACCELERATORS[name]
    except KeyError:
        raise ValueError(f"accelerator must be one of {', '.join(sorted(ACCELERATORS))}, "
                         f"not {name!r}") from None
