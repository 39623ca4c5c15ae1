"""The ViTCoD engine in the shell: what a RUN does to the buffers, bit for bit
(docs/vitcod.md, "Registers", "Buffers", "Errors")."""

import torch

from ...engines.vitcod.spec import (AE_STEPS, Errors, ae_encoder_values, ae_values, buffers,
                                    code_word, csc_fields, csr_fields, head_register,
                                    registers, row_of_words, row_words, unpack_word)
from ..shell import EngineModel, RunResult
from .attention import HeadScales, attention_head_int

__all__ = ["VitcodEngineModel", "head_mask_of_lists", "index_error", "autoencoder_of"]


def autoencoder_of(params, operand, values):
    """The QuantizedAutoEncoder whose encoder and decoder the registers `values` {name:
    value} set for `operand` ("q" or "k"); its scales are 1 (unused)."""
    from .autoencoder import QuantizedAutoEncoder
    w_enc, b_enc, enc_mult, enc_shift = ae_encoder_values(params, operand, values)
    w_dec, b_dec, dec_mult, dec_shift = ae_values(params, operand, values)
    return QuantizedAutoEncoder(
        w_enc=w_enc, b_enc=b_enc, enc_mult=enc_mult, enc_shift=enc_shift,
        w_dec=w_dec, b_dec=b_dec, dec_mult=dec_mult, dec_shift=dec_shift,
        in_scale=1.0, code_scale=1.0, out_scale=1.0)


def index_error(csc, csr, gcols=(), *, tokens, nnz):
    """Why a head's decoded lists (csc: [(col, row, pos)], csr: [(row, col)]) and global
    columns (gcols: [token index], g of them) are malformed, or None: what the engine
    checks while the head's SDDMM runs. Global columns strictly increase and are below N;
    CSC entries strictly increase in (col, row), CSR entries in (row, col); rows and
    columns are below N, positions below nnz, the CSR entry at each CSC entry's position
    is that same (row, col), and no CSR entry is in a global column; with g = 0 every row
    has a CSR entry."""
    previous = None
    for j, col in enumerate(gcols):
        if col >= tokens:
            return f"global column {j} ({col}) is out of range"
        if previous is not None and col <= previous:
            return f"global column {j} ({col}) is out of order"
        previous = col
    previous = None
    for n, (col, row, pos) in enumerate(csc):
        if col >= tokens or row >= tokens or pos >= nnz:
            return f"csc entry {n} (col {col}, row {row}, pos {pos}) is out of range"
        if previous is not None and (col, row) <= previous:
            return f"csc entry {n} is out of order"
        previous = (col, row)
        if csr[pos] != (row, col):
            return f"csc entry {n} points at csr entry {pos}, which is not (row {row}, col {col})"
    previous = None
    global_set = set(gcols)
    for n, (row, col) in enumerate(csr):
        if col >= tokens or row >= tokens:
            return f"csr entry {n} (row {row}, col {col}) is out of range"
        if col in global_set:
            return f"csr entry {n} (row {row}, col {col}) is in a global column"
        if previous is not None and (row, col) <= previous:
            return f"csr entry {n} is out of order"
        previous = (row, col)
    if not gcols and {row for row, _ in csr} != set(range(tokens)):
        return "a row has no entry (and there is no global column)"
    return None


def head_mask_of_lists(csr, gcols, *, tokens):
    """The kept mask (token order) of a head with the global columns `gcols` (token
    indices, kept in every row) and the sparse entries `csr` [(row, col)]."""
    kept = torch.zeros(tokens, tokens, dtype=torch.bool)
    kept[:, list(gcols)] = True
    for row, col in csr:
        kept[row, col] = True
    return kept


class VitcodEngineModel(EngineModel):
    """A RUN computes every kept head with attention_head_int into its slot of `out`
    (skipped heads and rows N .. max_tokens - 1 keep what they held).

    With the auto-encoder (params.autoencoder), first the steps of spec.AE_STEPS whose bit
    of `ae_enable` (spec.AeEnable) is set, in order, whatever `head_mask` says: encoding q
    (k) makes the C code heads' words of tokens 0 .. N-1 (spec.code_word) encode_int of
    its H heads' words; decoding q (k) makes the H heads' words decode_int of its code
    heads' words (as the encoder left them). The run then reads the words so written.

    Errors: TOKENS or CAPACITY (any kept head) and nothing runs; INDEX: the heads before
    the first head with malformed lists are written, that head and the later ones not.
    `cycles` is the ideal 2·W·d/M per head (and N·H·C·d/M per encode or decode); the RTL
    counts real cycles."""

    name = "vitcod"

    def __init__(self, params):
        self.params = params
        self.buffer_specs = buffers(params)
        self.register_map = registers(params)

    def _rows(self, buffer, base, tokens, written=None):
        """Rows base .. base + tokens - 1 of `buffer`, words in `written` {index: word}
        (this run's writes) taking the place of the buffer's."""
        p = self.params
        written = written or {}
        b = p.beats
        return torch.tensor([row_of_words(p, [written.get(w, buffer.words[w])
                                              for w in range((base + i) * b, (base + i + 1) * b)])
                             for i in range(tokens)], dtype=torch.int64)

    def _mix(self, operand, part, fields, buffer, tokens, written):
        """{word: new word} of one auto-encoder step: `part` ("encoder": the C code heads
        from the H heads; "decoder": the reverse) of `operand`, over the buffer's words
        with this run's earlier writes `written` in their place."""
        from .autoencoder import decode_int, encode_int
        p = self.params
        qae = autoencoder_of(p, operand, fields)
        heads = [h * p.max_tokens for h in range(p.heads)]
        codes = [code_word(p, c, 0) for c in range(p.code_heads)]
        sources, targets, mix = ((heads, codes, encode_int) if part == "encoder" else
                                 (codes, heads, decode_int))
        x = torch.stack([self._rows(buffer, base, tokens, written) for base in sources])[None]
        y = mix(qae, x)[0]
        return {(base + i) * p.beats + j: word
                for r, base in enumerate(targets) for i in range(tokens)
                for j, word in enumerate(row_words(p, y[r, i].tolist()))}

    def run(self, registers, buffers):
        p = self.params
        fields = {name: self.register_map[name].field(name).extract(value)
                  for name, value in registers.items()}
        tokens = fields["tokens"]            # a register keeps its field's width
        if not 1 <= tokens <= p.max_tokens:
            return RunResult(errors=int(Errors.TOKENS))
        heads = [h for h in range(p.heads) if not fields["head_mask"] >> h & 1]
        for h in heads:
            if fields[head_register("globals", h)] > p.max_global or \
                    fields[head_register("nnz", h)] > p.sparse_capacity:
                return RunResult(errors=int(Errors.CAPACITY))
        written, cycles, mixed = {}, 0, {}
        if p.autoencoder:
            for flag, name, part in AE_STEPS:
                if fields["ae_enable"] & flag:
                    words = mixed.setdefault(name, {})
                    words.update(self._mix(name, part, fields, buffers[name], tokens, words))
                    cycles += tokens * p.heads * p.code_heads * p.spmm_cycles
        for h in heads:
            g, nnz = fields[head_register("globals", h)], fields[head_register("nnz", h)]
            base, list_base = h * p.max_tokens, h * p.sparse_capacity
            csc = [tuple(unpack_word(csc_fields(p), buffers["csc"].words[list_base + n]).values())
                   for n in range(nnz)]
            csr = [tuple(unpack_word(csr_fields(p), buffers["csr"].words[list_base + n]).values())
                   for n in range(nnz)]
            mask = (1 << p.token_bits) - 1
            gcols = [buffers["gcols"].words[h * p.max_global + j] & mask for j in range(g)]
            if index_error(csc, csr, gcols, tokens=tokens, nnz=nnz):
                return RunResult(writes={**mixed, "out": written}, cycles=cycles,
                                 result_words=len(written), errors=int(Errors.INDEX))
            kept = head_mask_of_lists(csr, gcols, tokens=tokens)
            scales = HeadScales(*(fields[head_register(name, h)] for name in
                                  ("exp_mult", "exp_shift", "out_mult", "out_shift")))
            y = attention_head_int(self._rows(buffers["q"], base, tokens, mixed.get("q")),
                                   self._rows(buffers["k"], base, tokens, mixed.get("k")),
                                   self._rows(buffers["v"], base, tokens), kept, scales, p)
            for i in range(tokens):
                for j, word in enumerate(row_words(p, y[i].tolist())):
                    written[(base + i) * p.beats + j] = word
            cycles += (g * tokens + nnz) * (p.head_dim // p.mac_units + p.spmm_cycles)
        return RunResult(writes={**mixed, "out": written}, cycles=cycles,
                         result_words=len(written))
