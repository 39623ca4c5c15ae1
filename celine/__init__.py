"""Celine: an Amaranth generator of vision-transformer accelerators for open ECP5 FPGAs.

Subpackages: ``celine.rtl`` (hardware), ``celine.golden`` (bit-exact PyTorch models),
``celine.sim`` (cocotb harness), ``celine.gen`` (the ``celine`` command, flows,
benchmarks), ``celine.boards`` (ECP5 boards), ``celine.firmware`` (host runtime),
``celine.spec`` (dependency-free declarations shared by all of them),
``celine.registry`` (the engines) and ``celine.models`` (whole models on the engines;
``celine.offload`` is its ``offload``).
"""


def __getattr__(name):
    """`celine.offload`: celine.models.offload (imported on first use: it needs torch)."""
    if name == "offload":
        from .models import offload
        return offload
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
