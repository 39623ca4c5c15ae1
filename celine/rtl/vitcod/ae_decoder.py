"""The auto-encoder's decoder engine: Q or K of all H heads rebuilt from the C = ceil(H/2)
code rows, bit-exact with celine.golden.vitcod.autoencoder.decode_int."""

from .ae_codec import HeadMixer, check_params, code_rows

__all__ = ["AeDecoder", "decoder_settings"]


def decoder_settings(qae):
    """The run values of a QuantizedAutoEncoder's decoder: {weights, biases, mult, shift}
    for AeDecoder's inputs of the same names (weights[h][j] = w_dec[h][j])."""
    return {"weights": [list(row) for row in qae.w_dec], "biases": list(qae.b_dec),
            "mult": qae.dec_mult, "shift": qae.dec_shift}


class AeDecoder(HeadMixer):
    """x_h[i, c] = requantize(sum_{j<C} w_dec[h][j] * z_j[i, c] + b_dec[h], dec_mult,
    dec_shift) for h < H = params.heads, on the MAC bank: a HeadMixer with in_rows = C code
    rows (z_j of token i at word in_base + j * max_tokens + i) and out_rows = H (x_h at
    out_base + h * max_tokens + i). An output row takes C * d/M bank cycles (at least
    d/lanes); a run of N tokens `cycles(N)` = mixer_cycles.
    """

    def __init__(self, params, *, lanes=None, depth=None):
        check_params(params)
        super().__init__(params, code_rows(params.heads), params.heads, lanes=lanes, depth=depth)
