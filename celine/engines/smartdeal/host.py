"""Linear layers with SmartDeal weights on the SmartDeal engine.

`dev.linear(x, sd_weights)` sends the layer's packed weights (celine.golden.smartdeal
format) once: the device keeps them in its `weights` buffer, and further calls with the
same layer send only activations. x (M x L int8) goes in runs of at most max_tokens rows,
packed into token tiles (`act`), and the result words come back, in the layouts of the
device's implementation (spec.buffers: pack_act, unpack_result). Everything the device
would reject is checked first (SettingError), so a bad layer or tensor never reaches the
link.
"""

import math

from ...firmware.errors import EngineError, ProtocolError, SettingError
from ...firmware.tensors import as_int_tensor
from ...spec.numerics import MULT_BITS, SHIFT_BITS
from .spec import (REQUANT_REGISTER, SmartDealParams, act_span, pack_act, result_count,
                   unpack_result)

__all__ = ["SmartDealHost"]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class SmartDealHost:
    """`dev.smartdeal`: linear layers whose weights travel and stay packed."""

    def __init__(self, device):
        self.device = device
        self.params = SmartDealParams.from_dict(device.info["params"])
        self._loaded = None              # the packed words now in the device's buffer
        self.last_link_bytes = None

    # -- checks --------------------------------------------------------------------------

    def layer(self, sd_weights):
        """The hardware form (SmartDealWeights) of `sd_weights`: SmartDealWeights, a float
        Decomposition (smartdeal.decompose; quantized with the device's exponent width),
        or packed words; SettingError if the device cannot run it."""
        from ...golden.smartdeal.decomposition import Decomposition
        from ...golden.smartdeal.format import FormatError
        from ...golden.smartdeal.hardware import SmartDealWeights, quantize_decomposition
        p = self.params
        if isinstance(sd_weights, Decomposition):
            sd_weights = quantize_decomposition(sd_weights, exponent_bits=p.exponent_bits)
        elif isinstance(sd_weights, (list, tuple)):
            try:
                sd_weights = SmartDealWeights.from_packed(sd_weights)
            except (FormatError, TypeError) as error:
                raise SettingError(f"sd_weights must be a valid packed layer: {error}") from None
        if not isinstance(sd_weights, SmartDealWeights):
            raise SettingError(f"sd_weights must be SmartDealWeights, a smartdeal "
                               f"Decomposition or packed words, not {type(sd_weights).__name__}")
        h = sd_weights.header
        if h.exponent_bits != p.exponent_bits:
            raise SettingError(f"sd_weights must have {p.exponent_bits} exponent bits (the "
                               f"device's), not {h.exponent_bits}")
        if h.weight_mult != 1:
            raise SettingError(f"sd_weights must have a power-of-two weight scale (weight "
                               f"multiplier 1), not {h.weight_mult}")
        for name, value, limit in (("inputs", h.length, p.max_inputs),
                                   ("outputs", h.outputs, p.max_outputs),
                                   ("block rows", h.block_rows, p.max_block_rows),
                                   ("packed words", sd_weights.packed_words, p.weight_words)):
            if value > limit:
                raise SettingError(f"sd_weights must have at most {limit} {name} (the "
                                   f"device's), not {value}")
        return sd_weights

    @staticmethod
    def _requant(requant):
        if requant is None:
            return 0, 0, 0
        if not isinstance(requant, (tuple, list)) or len(requant) != 2 or \
                not all(_is_int(v) for v in requant):
            raise SettingError(f"requant must be None or a (multiplier, shift) pair of "
                               f"integers, not {requant!r}")
        mult, shift = requant
        if not 0 <= mult < 1 << MULT_BITS:
            raise SettingError(f"requant multiplier must be between 0 and "
                               f"{(1 << MULT_BITS) - 1}, not {mult!r}")
        if not 0 <= shift < 1 << SHIFT_BITS:
            raise SettingError(f"requant shift must be between 0 and {(1 << SHIFT_BITS) - 1}, "
                               f"not {shift!r}")
        return 1, mult, shift

    # -- running -------------------------------------------------------------------------

    def linear(self, x, sd_weights, *, requant=None, timeout=10.0):
        """y = x · W^T for int8 activations x (M x L, any M) and a SmartDeal layer W
        (N x L): an (M x N) int64 tensor, the exact sums (requant None) or int8
        clamp((sum·M + 2^(S−1)) >> S) with requant = (M, S). W is the int8 weights the
        decoder rebuilds (impl "rebuild") or the exact rebuilt weights (impl "bitop"):
        celine.golden.smartdeal.integer.linear_int (weights "int8" / "wide"), bit for bit.
        `last_link_bytes`: {"weights": bytes the weights took on the link in this call (0
        when the device already held the layer), "weights_int8": what int8 weights would
        take, "activations", "results"}."""
        import torch
        p = self.params
        device = self.device
        device.check_open()
        sd = self.layer(sd_weights)
        h = sd.header
        x = as_int_tensor("x", x, ndims=(2,), rule="a 2-D (tokens x inputs) integer tensor")
        if x.shape[1] != h.length:
            raise SettingError(f"x must have {h.length} columns (the layer's inputs), "
                               f"not {x.shape[1]}")
        if x.shape[0] < 1:
            raise SettingError("x must have at least one row, not 0")
        if x.numel() and not (-128 <= int(x.min()) and int(x.max()) <= 127):
            raise SettingError(f"x must hold int8 values (-128..127), not values "
                               f"{int(x.min())}..{int(x.max())}")
        enable, mult, shift = self._requant(requant)
        words = tuple(sd.pack())
        info = device.buffers["weights"]
        link = {"weights": 0, "weights_int8": h.outputs * h.length, "activations": 0,
                "results": 0}
        if words != self._loaded:
            self._loaded = None
            device.write_buffer("weights", 0, b"".join(
                w.to_bytes(info.word_bytes, "little") + bytes(info.word_stride - info.word_bytes)
                for w in words))
            self._loaded = words
            link["weights"] = len(words) * info.word_stride
        device.configure(requant=REQUANT_REGISTER.pack(enable=enable, multiplier=mult,
                                                       shift=shift))
        act_info, result_info = device.buffers["act"], device.buffers["result"]
        span = act_span(p, h.length)
        out = torch.zeros(x.shape[0], h.outputs, dtype=torch.int64)
        for start in range(0, x.shape[0], p.max_tokens):
            chunk = x[start:start + p.max_tokens]
            tokens = chunk.shape[0]
            packed = pack_act(p, chunk.tolist())
            for t in range(math.ceil(tokens / p.array_rows)):
                base = t * p.act_tile_words
                data = b"".join(
                    packed[word].to_bytes(act_info.word_bytes, "little")
                    + bytes(act_info.word_stride - act_info.word_bytes)
                    for word in range(base, base + span))
                device.write_buffer("act", base * act_info.word_stride, data)
                link["activations"] += len(data)
            device.configure(tokens=tokens)
            report = device.run(timeout=timeout)
            if report.engine_errors:
                raise EngineError(report.engine_errors, f"run ended with engine error flags "
                                                        f"{report.engine_errors:#04x}")
            count = result_count(p, tokens, h.outputs)
            if report.result_words != min(count, 0xFFFF):
                raise ProtocolError(f"run wrote {report.result_words} result words, "
                                    f"not {count}")
            data = device.read_buffer("result", 0, count * result_info.word_stride)
            link["results"] += len(data)
            stride = result_info.word_stride
            values = [int.from_bytes(data[n * stride:n * stride + result_info.word_bytes],
                                     "little") for n in range(count)]
            y = unpack_result(p, values, tokens, h.outputs)
            out[start:start + tokens] = torch.tensor(y, dtype=torch.int64)
        self.last_link_bytes = link
        return out
