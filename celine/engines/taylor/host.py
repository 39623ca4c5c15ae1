"""Attention heads on the Taylor-attention engine: settings checks, calibration, layout.

One call runs up to `heads` heads (the device's parameter) with one token count N, one
context and value-term scale (ctx_shift, v_mult, v_shift) and an output scale per head
(the out_mult_<h>, out_shift_<h> registers). Head h's rows go to its own slot of the q, k
and v buffers (beat x of token i at word (h * max_tokens + i) * row_beats + x, 8 lanes a
word, lane 0 lowest); only kept heads are sent and read back. Heads the caller did not
give are skipped on the device too (their head_mask bits are set).

The scale registers come from golden.taylor.calibrate unless given (docs/taylor.md,
"Choosing the registers"):
- `scales` (s_q, s_k, s_v): the real values the integers stand for (real = scale *
  integer). Default: 1.0 each, i.e. the integers are the values. Taylor attention is not
  scale-invariant in q and k, so integers quantized from real data need their scales.
- `out_scale`: the real value of one output step, one number for every head or one per
  head of the call. Default: calibrated from the data, per head: the float Taylor output
  of the head's integers at `scales`, its largest magnitude mapped to the top of the
  output range (127 at int8). So every head uses the whole range and no output
  saturates beyond rounding, whatever its size.
The result comes back as integers in units of the output step: head h's real output is
`out * last_output_scales[h]` (`last_output_scales` is None when registers are given,
as the real scale of the inputs is then unknown).
"""

import torch

from ...firmware.errors import EngineError, ProtocolError, SettingError
from ...firmware.tensors import attention_heads
from ...firmware.words import pack_words, unpack_words
from ...golden.taylor import TaylorRegisters, calibrate, output_scales
from .spec import HEAD_REGISTERS, LANES, TaylorParams, head_register

__all__ = ["TaylorHost"]


class TaylorHost:
    """`dev.taylor`: attention heads on a Taylor-attention device."""

    def __init__(self, device):
        self.device = device
        self.params = TaylorParams.from_dict(device.info["params"])
        self.last_registers = None
        self.last_output_scales = None

    # -- checks ------------------------------------------------------------------------

    def _check(self, q, k, v, head_mask):
        """(q, k, v as H x N x d int64, head_mask); SettingError for anything the device
        cannot take."""
        p = self.params
        single, q, k, v = attention_heads(q, k, v, head_dim=p.head_dim,
                                          max_tokens=p.max_tokens, heads=p.heads,
                                          operand_width=p.operand_width)
        heads, tokens, _ = q.shape
        if single and head_mask != 0:
            raise SettingError(f"head_mask must be 0 for one head (2-D q, k, v), "
                               f"not {head_mask!r}")
        if not isinstance(head_mask, int) or isinstance(head_mask, bool) or \
                not 0 <= head_mask < 1 << heads:
            raise SettingError(f"head_mask must be between 0 and {(1 << heads) - 1}, "
                               f"not {head_mask!r}")
        return single, q, k, v

    def _registers(self, q, k, v, registers, scales, out_scale, head_mask):
        """(registers, output scale per head of the call or None)."""
        heads, tokens, head_dim = q.shape
        if registers is not None:
            if not isinstance(registers, TaylorRegisters):
                raise SettingError(f"registers must be a golden.taylor.TaylorRegisters or "
                                   f"None, not {registers!r}")
            if scales is not None or out_scale is not None:
                raise SettingError(f"scales and out_scale must be None when registers are "
                                   f"given, not {scales!r} and {out_scale!r}")
            if registers.heads not in (None, heads):
                raise SettingError(f"registers must hold out_mult and out_shift for the "
                                   f"{heads} heads of q, not {registers.heads}")
            return registers, None
        try:
            regs = calibrate(q, k, v, scales=scales, out_scale=out_scale,
                             width=self.params.operand_width, head_mask=head_mask)
        except (TypeError, ValueError) as error:
            raise SettingError(str(error)) from None
        steps = output_scales(regs, scales=scales, tokens=tokens, head_dim=head_dim)
        return regs, steps if isinstance(steps, tuple) else (steps,) * heads

    # -- running -----------------------------------------------------------------------

    def _head_offset(self, head, info):
        """Byte offset of head `head`'s slot (max_tokens rows) in buffer `info`."""
        return head * self.params.max_tokens * self.params.row_beats * info.word_stride

    def attention(self, q, k, v, *, registers=None, head_mask=0, scales=None, out_scale=None,
                  timeout=10.0):
        """Taylor attention of one head (q, k, v: N x d) or several (H x N x d).

        Returns the output (N x d int64) of one head, or a list with the output of each
        kept head (bit h of head_mask set skips head h) for several: bit-exact with
        golden.taylor.taylor_int with the same registers (kept in `last_registers`; for
        calibrated ones, out_mult and out_shift hold one value per head of the call).
        The values are in units of each head's output step: real output = value *
        `last_output_scales[i]` for the i-th returned head (a float for one head).
        registers: a golden.taylor.TaylorRegisters, or None to calibrate them (see the
        module docstring): by default (no `scales`, no `out_scale`) the integers are taken
        as the values and each head's output scale is chosen from its data so that its
        largest output is +-127 (int8). scales: (s_q, s_k, s_v), the real value of one
        step of q, k and v. out_scale: the real value of one output step, for every head
        or one per head of the call. timeout: seconds for the run.
        """
        p = self.params
        single, q, k, v = self._check(q, k, v, head_mask)
        heads, tokens, _ = q.shape
        kept = [h for h in range(heads) if not head_mask >> h & 1]
        if not kept:
            self.last_registers, self.last_output_scales = registers, None
            return []
        regs, steps = self._registers(q, k, v, registers, scales, out_scale, head_mask)

        device = self.device
        words = tokens * p.row_beats
        for name, tensor in (("k", k), ("v", v), ("q", q)):
            info = device.buffers[name]
            for h in kept:
                rows = tensor[h].reshape(words, LANES).tolist()
                words_bytes = pack_words(rows, p.operand_width, info.word_bytes, info.word_stride)
                device.write_buffer(name, self._head_offset(h, info), words_bytes)
        device_mask = head_mask | (((1 << p.heads) - 1) & ~((1 << heads) - 1))
        values = regs.values(heads)
        for h in range(heads):              # skipped heads' output registers stay as they are
            if head_mask >> h & 1:
                for name in HEAD_REGISTERS:
                    del values[head_register(name, h)]
        device.configure(tokens=tokens, head_mask=device_mask, **values)
        self.last_registers = regs
        self.last_output_scales = None if steps is None else \
            (steps[0] if single else [steps[h] for h in kept])
        report = device.run(timeout=timeout)
        if report.engine_errors:
            raise EngineError(report.engine_errors, f"run ended with engine error flags "
                                                    f"{report.engine_errors:#04x}")
        if report.result_words != min(len(kept) * words, 0xFFFF):
            raise ProtocolError(f"run wrote {report.result_words} result words, "
                                f"not {len(kept) * words}")
        info = device.buffers["out"]
        outs = []
        for h in kept:
            data = device.read_buffer("out", self._head_offset(h, info),
                                      words * info.word_stride)
            rows = unpack_words(data, words, LANES, p.operand_width, info.word_stride)
            outs.append(rows.reshape(tokens, p.head_dim))
        return outs[0] if single else outs
