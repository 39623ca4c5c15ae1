"""The auto-encoder's encoder engine: Q or K of H heads compressed into C = ceil(H/2) code
rows, bit-exact with celine.golden.vitcod.autoencoder.encode_int."""

from .ae_codec import HeadMixer, check_params, code_rows

__all__ = ["AeEncoder", "encoder_settings"]


def encoder_settings(qae):
    """The run values of a QuantizedAutoEncoder's encoder: {weights, biases, mult, shift}
    for AeEncoder's inputs of the same names (weights[j][h] = w_enc[j][h])."""
    return {"weights": [list(row) for row in qae.w_enc], "biases": list(qae.b_enc),
            "mult": qae.enc_mult, "shift": qae.enc_shift}


class AeEncoder(HeadMixer):
    """z_j[i, c] = requantize(sum_{h<H} w_enc[j][h] * x_h[i, c] + b_enc[j], enc_mult,
    enc_shift) for j < C = ceil(H/2), H = params.heads, on the MAC bank: a HeadMixer with
    in_rows = H (x_h of token i at word in_base + h * max_tokens + i) and out_rows = C (z_j
    at out_base + j * max_tokens + i). An output row takes H * d/M bank cycles (at least
    d/lanes); a run of N tokens `cycles(N)` = mixer_cycles.
    """

    def __init__(self, params, *, lanes=None, depth=None):
        check_params(params)
        super().__init__(params, params.heads, code_rows(params.heads), lanes=lanes, depth=depth)
