"""Sparse (or dense) softmax attention heads on the ViTCoD engine.

One call runs up to `heads` heads (the device's parameter) with one token count N. For
each head the host polarizes the mask for the device (its global columns, up to its
max_global, as a table of token indices; K and V stay in token order; by default only
those that make the head faster go to the denser engine), builds and checks
the index lists and chooses the scales
(celine/golden/vitcod/plan.py), and checks everything the device would reject before it
sends anything. The result is bit-exact with golden.vitcod.attention.attention_head_int on
the head's plan (`last_plans`, `last_scales`).

Scales (real = scale * integer): `scales` (s_q, s_k, s_v) default 1.0 each; `out_scale`
the real value of one output step, for every head or one per head, by default chosen per
head so that its largest float output maps to the top of the output range.

With `autoencoder` (a device built with it) Q and K travel as ceil(H/2) code heads
(encode_int) that the engine decodes on chip (decode_int) before the heads run; the
result is the attention of the decoded heads, and the plans are built on them. Q and K
are encoded in token order for every head (the engine reads them so). With
`encode_on_chip` they travel plain and the engine's encoders compress them first (the
whole path on chip, the same result); `encode` runs only the encoders and reads the codes
back (what a Q/K producer on chip would send off chip).
"""

from ...firmware.errors import EngineError, ProtocolError, SettingError
from ...firmware.tensors import attention_heads
from .spec import (AE_OPERANDS, AeEnable, VitcodParams, ae_encoder_settings, ae_settings,
                   code_word, head_register, row_of_words, row_words)

__all__ = ["VitcodHost"]


def _as_heads(name, value):
    from ...firmware.tensors import as_int_tensor
    return as_int_tensor(name, value, ndims=(2, 3), rule="a 2-D (tokens x head_dim) or 3-D "
                         "(heads x tokens x head_dim) integer tensor")


class VitcodHost:
    """`dev.vitcod`: softmax attention over fixed sparse masks."""

    def __init__(self, device):
        self.device = device
        self.params = VitcodParams.from_dict(device.info["params"])
        self.last_plans = None
        self.last_scales = None
        self.last_output_scales = None
        self.last_link_bytes = None

    def _check(self, q, k, v, mask, head_mask, scales, out_scale):
        import torch
        p = self.params
        single, q, k, v = attention_heads(q, k, v, head_dim=p.head_dim,
                                          max_tokens=p.max_tokens, heads=p.heads,
                                          operand_width=p.operand_width)
        heads, tokens, _ = q.shape
        if not isinstance(head_mask, int) or isinstance(head_mask, bool) or \
                not 0 <= head_mask < 1 << heads or (single and head_mask):
            raise SettingError(f"head_mask must be between 0 and {(1 << heads) - 1 if not single else 0}, "
                               f"not {head_mask!r}")
        if mask is None:
            masks = [None] * heads
        else:
            mask = torch.as_tensor(mask)
            if mask.dtype != torch.bool or mask.shape not in ((tokens, tokens), (heads, tokens, tokens)):
                raise SettingError(f"mask must be None or a bool tensor of shape ({tokens}, {tokens}) "
                                   f"or ({heads}, {tokens}, {tokens}) (True = kept), not "
                                   f"{mask.dtype} {tuple(mask.shape)}")
            masks = [mask] * heads if mask.ndim == 2 else list(mask)
        if scales is None:
            scales = (1.0, 1.0, 1.0)
        if len(scales) != 3 or any(not isinstance(s, (int, float)) or not s > 0 for s in scales):
            raise SettingError(f"scales must be three positive numbers (s_q, s_k, s_v), "
                               f"not {scales!r}")
        if out_scale is None or isinstance(out_scale, (int, float)):
            steps = [out_scale] * heads
        else:
            steps = list(out_scale)
            if len(steps) != heads:
                raise SettingError(f"out_scale must be a number or one per head ({heads}), "
                                   f"not {out_scale!r}")
        return single, q, k, v, masks, tuple(float(s) for s in scales), steps

    def plan(self, q, k, v, mask=None, *, head_mask=0, threshold=50, scales=None,
             out_scale=None, balance=True):
        """[(head, HeadPlan, HeadScales, output step)] for the kept heads: everything the
        device will be sent, checked (SettingError for what it cannot take). `balance`:
        give the denser engine only the global columns that make the head faster
        (plan_head)."""
        from ...golden.vitcod.plan import calibrate_head, plan_head
        _, q, k, v, masks, scales, steps = self._check(q, k, v, mask, head_mask, scales, out_scale)
        plans = []
        for h in range(q.shape[0]):
            if head_mask >> h & 1:
                continue
            try:
                plan = plan_head(self.params, q[h], k[h], v[h], masks[h], threshold=threshold,
                                 balance=balance)
                head_scales, step = calibrate_head(plan, self.params, scales=scales,
                                                   out_step=steps[h])
            except ValueError as error:
                raise SettingError(f"head {h}: {error}") from None
            plans.append((h, plan, head_scales, step))
        return plans

    def _check_autoencoder(self, autoencoder):
        """SettingError unless the device has the auto-encoder and `autoencoder` is a pair
        (Q's, K's) of QuantizedAutoEncoders of the device's heads."""
        from ...golden.vitcod.autoencoder import QuantizedAutoEncoder
        p = self.params
        if not p.autoencoder:
            raise SettingError("autoencoder must be None on a device built without the "
                               "auto-encoder, not a pair of QuantizedAutoEncoders")
        if not isinstance(autoencoder, (tuple, list)) or len(autoencoder) != 2 or \
                not all(isinstance(a, QuantizedAutoEncoder) for a in autoencoder):
            raise SettingError(f"autoencoder must be None or a pair (Q's, K's) of "
                               f"QuantizedAutoEncoders, not {autoencoder!r}")
        for name, qae in zip(AE_OPERANDS, autoencoder):
            if qae.heads != p.heads:
                raise SettingError(f"the {name} autoencoder must have {p.heads} heads (the "
                                   f"device's), not {qae.heads}")

    def _all_heads(self, single, q):
        p = self.params
        if single or q.shape[0] != p.heads:
            raise SettingError(f"q must hold all {p.heads} heads (the device's) with an "
                               f"autoencoder, not {1 if single else q.shape[0]}")

    def compress(self, q, k, v, mask=None, *, head_mask=0, threshold=50, scales=None,
                 out_scale=None, autoencoder=None):
        """(decoded q, decoded k, (q's codes, k's codes)) of H x N x d heads through the
        auto-encoders `autoencoder` = (Q's, K's QuantizedAutoEncoder): the codes are
        encode_int of q and of k in token order (as the engine holds them, whatever the
        heads' masks); decoded = decode_int(codes). SettingError for what the device cannot
        take."""
        from ...golden.vitcod.autoencoder import decode_int, encode_int
        self._check_autoencoder(autoencoder)
        single, qt, kt, _, _, _, _ = self._check(q, k, v, mask, head_mask, scales, out_scale)
        self._all_heads(single, qt)
        # The masks must be ones the device can take (checked before anything is sent).
        self.plan(q, k, v, mask, head_mask=head_mask, threshold=threshold, scales=scales,
                  out_scale=out_scale)
        qae_q, qae_k = autoencoder
        codes = (encode_int(qae_q, qt[None])[0], encode_int(qae_k, kt[None])[0])
        return decode_int(qae_q, codes[0][None])[0], decode_int(qae_k, codes[1][None])[0], codes

    def encode(self, q, k, *, autoencoder, timeout=10.0):
        """(q's codes, k's codes), each C x N x d int64 (C = ceil(H/2)): Q and K (H x N x d
        int8, all the device's heads) sent plain, compressed by the engine's encoders
        (`autoencoder` = (Q's, K's QuantizedAutoEncoder)) in a run of no head, and the code
        slots read back: bit-exact with encode_int. SettingError before anything is sent
        for what the device cannot take. `last_link_bytes`: {"plain": bytes of Q and K sent,
        "compressed": bytes of the codes read back, "ae_registers": the encoders'
        registers}."""
        p = self.params
        self._check_autoencoder(autoencoder)
        single, qt, kt, _ = attention_heads(q, k, q, head_dim=p.head_dim,
                                            max_tokens=p.max_tokens, heads=p.heads,
                                            operand_width=p.operand_width)
        self._all_heads(single, qt)
        device, tokens = self.device, qt.shape[1]
        values = {"ae_enable": int(AeEnable.ENCODE_Q | AeEnable.ENCODE_K)}
        for name, qae in zip(AE_OPERANDS, autoencoder):
            values.update(ae_encoder_settings(p, name, qae.w_enc, qae.b_enc, qae.enc_mult,
                                              qae.enc_shift))
        self._send_heads({"q": qt, "k": kt}, tokens)
        device.configure(tokens=tokens, head_mask=(1 << p.heads) - 1, **values)
        report = device.run(timeout=timeout)
        if report.engine_errors:
            raise EngineError(report.engine_errors, f"run ended with engine error flags "
                                                    f"{report.engine_errors:#04x}")
        import torch
        codes = []
        for name in AE_OPERANDS:
            rows = [self._read_rows(name, code_word(p, c, 0), tokens)
                    for c in range(p.code_heads)]
            codes.append(torch.stack(rows))
        stride = device.buffers["q"].word_stride
        self.last_link_bytes = {"plain": 2 * p.heads * tokens * stride,
                                "compressed": 2 * p.code_heads * tokens * stride,
                                "ae_registers": 4 * (len(values) - 1)}
        return tuple(codes)

    def _write_rows(self, name, row, x):
        """Write the rows of `x` (n x d values) into buffer `name` from row index `row` on,
        each in its buffer words (spec.row_words)."""
        p, info = self.params, self.device.buffers[name]
        pad = bytes(info.word_stride - info.word_bytes)
        data = b"".join(word.to_bytes(info.word_bytes, "little") + pad
                        for values in x.tolist() for word in row_words(p, values))
        self.device.write_buffer(name, row * p.beats * info.word_stride, data)

    def _read_rows(self, name, row, count):
        """`count` rows of buffer `name` from row index `row` on, a (count x d) tensor
        (spec.row_of_words)."""
        import torch
        p, info = self.params, self.device.buffers[name]
        stride, beats = info.word_stride, p.beats
        data = self.device.read_buffer(name, row * beats * stride, count * beats * stride)
        words = [int.from_bytes(data[n * stride:(n + 1) * stride], "little")
                 for n in range(count * beats)]
        return torch.tensor([row_of_words(p, words[i * beats:(i + 1) * beats])
                             for i in range(count)], dtype=torch.int64)

    def _send_heads(self, heads, tokens):
        """Write every head of each {buffer name: H x N x d tensor} into its slots."""
        p, device = self.params, self.device
        for name, x in heads.items():
            for h in range(x.shape[0]):
                self._write_rows(name, h * p.max_tokens, x[h])

    def sparse_attention(self, q, k, v, mask=None, *, head_mask=0, threshold=50, scales=None,
                         out_scale=None, autoencoder=None, encode_on_chip=False, balance=True,
                         timeout=10.0):
        """Softmax attention of one head (q, k, v: N x d, mask N x N bool, True = kept) or
        several (H x N x d; mask N x N for all or H x N x N); mask=None is dense attention.
        Returns the output (N x d int64) or a list of the kept heads' outputs, in units of
        each head's output step (`last_output_scales`).

        `autoencoder` (Q's, K's QuantizedAutoEncoder, on a device built with the
        auto-encoder; q and k all H heads, int8 in the auto-encoders' input scale): only
        the code heads of Q and K are sent (`compress`) and the engine decodes them; the
        result is that of the decoded heads. With `encode_on_chip` Q and K are sent plain
        (all H heads) and the engine encodes them before it decodes them (its encoders,
        then its decoders): the same result, bit for bit. `last_link_bytes`: {"plain":
        bytes Q and K of the kept heads take, "compressed": bytes they took on the link
        (the codes; with encode_on_chip all H heads), "ae_registers": bytes of the
        decoders' (and encoders') registers}.

        `balance` (default True): the denser engine computes only the global columns that
        make each head faster; the sparser one the rest, kept whole (the same result).
        False gives it all of them, up to max_global."""
        p = self.params
        if not isinstance(encode_on_chip, bool):
            raise SettingError(f"encode_on_chip must be True or False, not {encode_on_chip!r}")
        if encode_on_chip and autoencoder is None:
            raise SettingError("encode_on_chip must be False without an autoencoder, not True")
        single = _as_heads("q", q).ndim == 2
        codes, plain = None, (q, k)
        if autoencoder is not None:
            q, k, codes = self.compress(q, k, v, mask, head_mask=head_mask, threshold=threshold,
                                        scales=scales, out_scale=out_scale,
                                        autoencoder=autoencoder)
        plans = self.plan(q, k, v, mask, head_mask=head_mask, threshold=threshold,
                          scales=scales, out_scale=out_scale, balance=balance)
        self.last_plans = [plan for _, plan, _, _ in plans]
        self.last_scales = [s for _, _, s, _ in plans]
        self.last_output_scales = [step for _, _, _, step in plans]
        if not plans:
            return []
        device = self.device
        tokens = plans[0][1].q.shape[0]
        values = {}
        sent = ("v",) if codes is not None else ("q", "k", "v")
        for h, plan, head_scales, _ in plans:
            for name in sent:
                self._write_rows(name, h * p.max_tokens, getattr(plan, name))
            for name, words in (("csc", plan.csc_words), ("csr", plan.csr_words)):
                info = device.buffers[name]
                if words:
                    data = b"".join(w.to_bytes(info.word_bytes, "little") +
                                    bytes(info.word_stride - info.word_bytes) for w in words)
                    device.write_buffer(name, h * p.sparse_capacity * info.word_stride, data)
            if plan.gcols:
                info = device.buffers["gcols"]
                data = b"".join(c.to_bytes(info.word_bytes, "little") +
                                bytes(info.word_stride - info.word_bytes) for c in plan.gcols)
                device.write_buffer("gcols", h * p.max_global * info.word_stride, data)
            values.update({head_register("globals", h): plan.globals,
                           head_register("nnz", h): plan.nnz,
                           head_register("exp_mult", h): head_scales.exp_mult,
                           head_register("exp_shift", h): head_scales.exp_shift,
                           head_register("out_mult", h): head_scales.out_mult,
                           head_register("out_shift", h): head_scales.out_shift})
        stride = device.buffers["q"].word_stride * p.beats       # the bytes of a row
        size = 2 * len(plans) * tokens * stride
        link = {"plain": size, "compressed": size, "ae_registers": 0}
        enable = AeEnable(0)
        if encode_on_chip:
            # The encoders read every head, skipped ones too (compress checked them all).
            self._send_heads({"q": _as_heads("q", plain[0]), "k": _as_heads("k", plain[1])},
                             tokens)
            link["compressed"] = 2 * p.heads * tokens * stride
            enable |= AeEnable.ENCODE_Q | AeEnable.ENCODE_K
            for name, qae in zip(AE_OPERANDS, autoencoder):
                settings = ae_encoder_settings(p, name, qae.w_enc, qae.b_enc, qae.enc_mult,
                                               qae.enc_shift)
                values.update(settings)
                link["ae_registers"] += 4 * len(settings)
        elif codes is not None:
            for name, code in zip(AE_OPERANDS, codes):
                # Code head c of token i at code_word(c, i): the slots are max_tokens apart.
                for c in range(p.code_heads):
                    self._write_rows(name, code_word(p, c, 0), code[c])
            link["compressed"] = 2 * p.code_heads * tokens * stride
        if codes is not None:
            enable |= AeEnable.DECODE_Q | AeEnable.DECODE_K
            for name, qae in zip(AE_OPERANDS, autoencoder):
                settings = ae_settings(p, name, qae.w_dec, qae.b_dec, qae.dec_mult,
                                       qae.dec_shift)
                values.update(settings)
                link["ae_registers"] += 4 * len(settings)
        if p.autoencoder:
            values["ae_enable"] = int(enable)
        self.last_link_bytes = link
        kept = {h for h, *_ in plans}
        device_mask = ((1 << p.heads) - 1) & ~sum(1 << h for h in kept)
        device.configure(tokens=tokens, head_mask=device_mask, **values)
        report = device.run(timeout=timeout)
        if report.engine_errors:
            raise EngineError(report.engine_errors, f"run ended with engine error flags "
                                                    f"{report.engine_errors:#04x}")
        words = len(kept) * tokens * p.beats          # row_beats words a row
        if report.result_words != min(words, 0xFFFF):
            raise ProtocolError(f"run wrote {report.result_words} result words, not {words}")
        outs = [self._read_rows("out", h * p.max_tokens, tokens) for h, *_ in plans]
        return outs[0] if single else outs
