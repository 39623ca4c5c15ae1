"""The SmartDeal generator's RTL (docs/smartdeal.md): the SD decoder (packed words -> rows
of Ce codes -> int8 weights, shifts and adds only: parser, rebuild, decoder), the run
(run.SdRun: the check once), the SD linear layer (linear.SdLinear: decoder -> tile buffer
-> MAC array; bitop.SdBitop: x·Ce by shifts and adds, then ·B) and the shell adapter."""

from .decoder import SdDecoder
from .parser import SdParser
from .rebuild import SdRebuild
from .synth import decoder_resources

__all__ = ["SdDecoder", "SdParser", "SdRebuild", "decoder_resources"]
