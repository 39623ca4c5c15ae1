"""The JSON file through which a pytest case hands its parameters and data to a testbench.

The runner writes ``case.json`` into the case's directory and points ``$CELINE_PARAMS`` at
it; inside the simulator the cocotb test calls :func:`load_case`.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ENV_VAR", "Case", "write_case", "load_case"]

ENV_VAR = "CELINE_PARAMS"


@dataclass(frozen=True)
class Case:
    case_id: str
    seed: int
    sim: str
    params: dict = field(default_factory=dict)   # generator parameters
    data: dict = field(default_factory=dict)     # test vectors, golden outputs, knobs


def write_case(path, case):
    """Write *case* as JSON to *path* (values must be JSON-serialisable: ints, lists, dicts)."""
    from .emit import write_if_changed
    write_if_changed(path, json.dumps(case.__dict__, indent=1, sort_keys=True) + "\n")


def load_case(path=None):
    """Read the case from *path*, or from the file named by ``$CELINE_PARAMS``."""
    if path is None:
        try:
            path = os.environ[ENV_VAR]
        except KeyError:
            raise RuntimeError(f"${ENV_VAR} is not set: run this testbench through "
                               f"sim.runner.run_cocotb") from None
    return Case(**json.loads(Path(path).read_text()))
