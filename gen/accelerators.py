"""The accelerators the `celine` command can generate: name -> parameters and component."""

from dataclasses import dataclass

from rtl.mac.array import MacArray
from rtl.mac.params import MacArrayParams


@dataclass(frozen=True)
class Accelerator:
    name: str
    params: type
    component: type
    summary: str


ACCELERATORS = {
    "mac": Accelerator("mac", MacArrayParams, MacArray,
                       "precision-scalable MAC array (2-in-1 Accelerator, InstantNet)"),
}


def get(name):
    try:
        return ACCELERATORS[name]
    except KeyError:
        raise ValueError(f"accelerator must be one of {', '.join(sorted(ACCELERATORS))}, "
                         f"not {name!r}") from None
