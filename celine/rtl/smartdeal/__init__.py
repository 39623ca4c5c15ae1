"""The SmartDeal generator's RTL (issue 10): the SD decoder (packed words -> rows of Ce
codes -> int8 weights, shifts and adds only). docs/smartdeal.md, "The SD decoder"."""

from .decoder import SdDecoder
from .parser import SdParser
from .rebuild import SdRebuild
from .synth import decoder_resources

__all__ = ["SdDecoder", "SdParser", "SdRebuild", "decoder_resources"]
