"""Celine: an Amaranth generator of vision-transformer accelerators for open ECP5 FPGAs.

Subpackages: ``celine.rtl`` (hardware), ``celine.golden`` (bit-exact PyTorch models),
``celine.sim`` (cocotb harness), ``celine.gen`` (the ``celine`` command, flows,
benchmarks), ``celine.boards`` (ECP5 boards), ``celine.firmware`` (host runtime),
``celine.spec`` (dependency-free declarations shared by all of them) and
``celine.registry`` (the engines).
"""
