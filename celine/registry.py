"""The engines Celine generates: one record each (celine.engines.Accelerator).

Adding an engine adds one line to PACKAGES: the name of its package under
celine/engines/, whose `ENGINE` is its record. docs/engines.md says what a record names.
The first engine is the default design (`make bitstream`, `celine bitstream`).
"""

from importlib import import_module

PACKAGES = (
    "mac",
    "taylor",
    "activation",
    "vitcod",
    "smartdeal",
)

ENGINES = tuple(import_module(f"{__package__}.engines.{name}").ENGINE for name in PACKAGES)
BY_NAME = {engine.name: engine for engine in ENGINES}
DEFAULT = ENGINES[0].name


def get(name):
    """The record of engine `name`; ValueError naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"accelerator must be one of {', '.join(BY_NAME)}, "
                         f"not {name!r}") from None
