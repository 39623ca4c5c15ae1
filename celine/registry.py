"""The engines Celine generates: one record each (celine.engines.Accelerator).

Adding an engine adds one line here; docs/engines.md says what the record names.
"""

from .engines import activation, mac, taylor

ENGINES = (
    mac.ENGINE,
    taylor.ENGINE,
    activation.ENGINE,
)

BY_NAME = {engine.name: engine for engine in ENGINES}
DEFAULT = ENGINES[0].name


def get(name):
    """The record of engine `name`; ValueError naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"accelerator must be one of {', '.join(BY_NAME)}, "
                         f"not {name!r}") from None
