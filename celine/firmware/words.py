"""Buffer words <-> tensors of signed lanes: the byte layout of docs/protocol.md.
(torch is imported by unpack_words only, which returns a tensor.)"""

from ..spec.lanes import pack_lanes, unpack_lanes

__all__ = ["pack_words", "unpack_words"]


def pack_words(rows, width, word_bytes, word_stride):
    """Bytes of words (rows of signed lanes of `width` bits), word i at i*word_stride."""
    out = bytearray()
    for row in rows:
        out += pack_lanes(row, width).to_bytes(word_bytes, "little") + \
            bytes(word_stride - word_bytes)
    return bytes(out)


def unpack_words(data, count, lanes, width, word_stride):
    """Inverse of pack_words: a (count x lanes) int64 tensor of signed lanes."""
    import torch
    rows = [unpack_lanes(int.from_bytes(data[i * word_stride:(i + 1) * word_stride], "little"),
                         lanes, width) for i in range(count)]
    return torch.tensor(rows, dtype=torch.int64).reshape(count, lanes)
