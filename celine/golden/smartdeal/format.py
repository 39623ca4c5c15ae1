"""The packed storage format of SmartDeal weights: every field width, code and check.

Dependency-free (plain Python, no torch): the host runtime and the RTL generator can import
it; every width and code value of the format is written here once. docs/smartdeal.md,
"The packed format", has the field table and a worked example.

A layer is a sequence of 32-bit words: a header of HEADER_WORDS words, then one stream of
W-bit symbols, `symbols_per_word` to a word from bit 0 up (a symbol never crosses a word;
the spare top bits of each word are 0). W = max(3, 1 + E), E the exponent bits. Symbol i of
the stream is in word HEADER_WORDS + i // P at bit W * (i % P), P = 32 // W. The stream
holds the blocks in order (output row major), each block:

    B        ceil(72 / W) symbols: the 9 int8 values B[k][j] (row-major), value n at
             bits 8n .. 8n+7 of a 72-bit little-endian number cut into W-bit symbols, low
             symbol first (the bits above 72 are 0)
    rows     m0 records, one per row r of Ce:
               mask symbol: bit k set when Ce[r][k] != 0 (k = 0, 1, 2; higher bits 0)
               then one code symbol per set bit, k ascending:
                 bits 0 .. E-1: f = e - e_min, bit E: sign (1: negative)

Ce is given in integer form: each entry 0 or +-2^f with 0 <= f < 2^E, i.e. the real
coefficient divided by 2^e_min, e_min = MAX_EXPONENT + 1 - 2^E (the window [e_min, 5]).
After the last block the rest of the last word is 0.

Header words:
    0: magic (bits 0-7) = MAGIC, version (8-11) = VERSION, exponent bits E (12-15),
       kind (16-17: 0 linear or 1x1 conv, 1 3x3 conv), 18-31 zero
    1: outputs (0-15), length L: weights per output before padding (16-31)
    2: block rows m0 (0-15), blocks per output (16-31)
    3: weight multiplier M (0-15), weight shift S (16-21), 22-31 zero: the rebuilt
       weights' requantizer to int8 lanes, w8 = clamp((w * M + 2^(S-1)) >> S). Layers in
       hardware form (hardware.py) have M = 1 (HARDWARE_WEIGHT_MULT): a pure shift, so the
       SD decoder needs no multiplier; the field stays general here (`unpack` accepts any
       M), but the SD decoder Celine generates flags M != 1 as bad_header.
    4: the layer's length in words, header included

A stream that breaks these rules raises FormatError, whose `kind` names the case (one of
ERRORS, the flags the decoder raises for the same streams).
"""

import dataclasses

from ...spec.numerics import MULT_BITS, SHIFT_BITS      # the requantizer's M and S widths

WORD_BITS = 32
WORD_MASK = (1 << WORD_BITS) - 1
MAGIC = 0x5D
VERSION = 1
HEADER_WORDS = 5
LENGTH_WORD = 4             # the header word that holds the layer's length in words

BASIS = 3                   # B is 3 x 3, a row of Ce has 3 coefficients
BASIS_BITS = 8              # B entries are int8
BASIS_VALUES = BASIS * BASIS
MAX_EXPONENT = 5            # Ce magnitudes are at most 2^5 = 32 (the window's top)
EXPONENT_BITS = (2, 3, 4)   # the exponent field widths the format defines
KINDS = ("linear", "conv3x3")
LENGTH_BITS = 16            # outputs, length, block rows, blocks per output
HARDWARE_WEIGHT_MULT = 1    # header word 3's M in every hardware-form layer (a pure shift)

# The cases of a bad stream, as FormatError.kind (and the decoder's error flags).
BAD_HEADER = "bad_header"           # magic, version, E, kind, reserved bits or a size field
BAD_CODE = "bad_code"               # a nonzero spare/reserved bit in a word, a mask symbol
                                    # or the bits above B's 72 (a code no writer produces)
TRUNCATED_BLOCK = "truncated_block"  # the words end inside a block
WRONG_LENGTH = "wrong_length"       # word count differs from the header's, or words are
                                    # left over after the last block
ERRORS = (BAD_HEADER, BAD_CODE, TRUNCATED_BLOCK, WRONG_LENGTH)


class FormatError(ValueError):
    """A packed stream that breaks the format; `kind` is one of ERRORS."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _check_int(name, value, minimum, maximum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, not {value!r}")
    return value


def symbol_bits(exponent_bits):
    """W: the width of every symbol of the stream."""
    return max(BASIS, 1 + exponent_bits)


def symbols_per_word(exponent_bits):
    """P = 32 // W."""
    return WORD_BITS // symbol_bits(exponent_bits)


def min_exponent(exponent_bits):
    """e_min: the lowest exponent of the window [e_min, MAX_EXPONENT] of 2^E exponents."""
    return MAX_EXPONENT + 1 - (1 << exponent_bits)


def basis_symbols(exponent_bits):
    """Symbols that hold one block's B (72 bits, the top padded with zeros)."""
    return -(-BASIS_VALUES * BASIS_BITS // symbol_bits(exponent_bits))


@dataclasses.dataclass(frozen=True)
class LayerHeader:
    """What the header says about a layer; all validated (ValueError/TypeError).

    kind: "linear" (and 1x1 conv) or "conv3x3"; outputs: output rows (channels); length:
    weights per output before padding (in_features, or Cin*9); block_rows m0;
    blocks_per_output (so each output is padded to 3 * m0 * blocks_per_output >= length);
    exponent_bits E; weight_mult / weight_shift: the requantizer of the rebuilt weights.
    """
    kind: str
    outputs: int
    length: int
    block_rows: int
    blocks_per_output: int
    exponent_bits: int
    weight_mult: int
    weight_shift: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be {' or '.join(map(repr, KINDS))}, not {self.kind!r}")
        limit = (1 << LENGTH_BITS) - 1
        for name in ("outputs", "length", "block_rows", "blocks_per_output"):
            _check_int(name, getattr(self, name), 1, limit)
        _check_int("exponent_bits", self.exponent_bits, 0, WORD_BITS)
        if self.exponent_bits not in EXPONENT_BITS:
            raise ValueError(f"exponent_bits must be "
                             f"{' or '.join(map(str, EXPONENT_BITS))}, not {self.exponent_bits!r}")
        _check_int("weight_mult", self.weight_mult, 0, (1 << MULT_BITS) - 1)
        _check_int("weight_shift", self.weight_shift, 0, (1 << SHIFT_BITS) - 1)
        if self.padded < self.length:
            raise ValueError(f"blocks_per_output must give at least length {self.length} "
                             f"weights per output (3 * block_rows * blocks_per_output), "
                             f"not {self.blocks_per_output!r}")
        if self.padded - self.length >= BASIS * self.block_rows:
            raise ValueError(f"blocks_per_output must not give a block of padding only, "
                             f"not {self.blocks_per_output!r}")

    @property
    def blocks(self):
        return self.outputs * self.blocks_per_output

    @property
    def padded(self):
        """Weights per output after padding: 3 * m0 * blocks_per_output."""
        return BASIS * self.block_rows * self.blocks_per_output

    @property
    def min_exponent(self):
        return min_exponent(self.exponent_bits)

    @property
    def max_code(self):
        """The largest |Ce| in integer form: 2^(2^E - 1)."""
        return 1 << ((1 << self.exponent_bits) - 1)

    def words(self):
        """The header's first four words (the fifth, the length, is the packer's)."""
        return (MAGIC | VERSION << 8 | self.exponent_bits << 12 | KINDS.index(self.kind) << 16,
                self.outputs | self.length << 16,
                self.block_rows | self.blocks_per_output << 16,
                self.weight_mult | self.weight_shift << 16)


# -- packing -------------------------------------------------------------------------------

def _ce_symbols(value, exponent_bits, where):
    """(nonzero, code) of one integer Ce entry: 0 or +-2^f, 0 <= f < 2^E."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"ce entries must be integers, not {value!r} at {where}")
    if value == 0:
        return False, 0
    magnitude = abs(value)
    f = magnitude.bit_length() - 1
    if magnitude != 1 << f or f >= 1 << exponent_bits:
        raise ValueError(f"ce entries must be 0 or +-2^f with 0 <= f < {1 << exponent_bits}, "
                         f"not {value!r} at {where}")
    return True, f | (value < 0) << exponent_bits


def _nested(name, value, shape, level=0):
    """`value` as nested lists of the given shape (TypeError/ValueError otherwise)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if level == len(shape):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be nested sequences of shape {shape}, not {value!r}")
    if len(value) != shape[level]:
        raise ValueError(f"{name} must have shape {shape}, not length {len(value)} "
                         f"at a level of length {shape[level]}")
    return [_nested(name, item, shape, level + 1) for item in value]


def pack(header, basis, ce):
    """The words of a layer: `header` (LayerHeader), basis (blocks x 3 x 3 int8) and ce
    (blocks x m0 x 3 integer Ce: 0 or +-2^f), as nested sequences or tensors. Returns a
    tuple of ints 0 .. 2^32 - 1."""
    if not isinstance(header, LayerHeader):
        raise TypeError(f"header must be a LayerHeader, not {header!r}")
    e_bits, width = header.exponent_bits, symbol_bits(header.exponent_bits)
    basis = _nested("basis", basis, (header.blocks, BASIS, BASIS))
    ce = _nested("ce", ce, (header.blocks, header.block_rows, BASIS))
    symbols = []
    for block in range(header.blocks):
        value = 0
        for n, b in enumerate(v for row in basis[block] for v in row):
            if isinstance(b, bool) or not isinstance(b, int):
                raise TypeError(f"basis entries must be integers, not {b!r} in block {block}")
            if not -(1 << BASIS_BITS - 1) <= b < 1 << BASIS_BITS - 1:
                raise ValueError(f"basis entries must be between {-(1 << BASIS_BITS - 1)} and "
                                 f"{(1 << BASIS_BITS - 1) - 1}, not {b!r} in block {block}")
            value |= (b & 0xFF) << BASIS_BITS * n
        symbols.extend((value >> width * s) & ((1 << width) - 1)
                       for s in range(basis_symbols(e_bits)))
        for r, row in enumerate(ce[block]):
            entries = [_ce_symbols(v, e_bits, f"block {block}, row {r}") for v in row]
            symbols.append(sum(1 << k for k, (nonzero, _) in enumerate(entries) if nonzero))
            symbols.extend(code for nonzero, code in entries if nonzero)
    per_word = symbols_per_word(e_bits)
    body = []
    for first in range(0, len(symbols), per_word):
        body.append(sum(s << width * i for i, s in enumerate(symbols[first:first + per_word])))
    return (*header.words(), HEADER_WORDS + len(body), *body)


def packed_words(header, nonzeros):
    """The length in words of a layer with `nonzeros` nonzero Ce entries (without packing)."""
    symbols = header.blocks * (basis_symbols(header.exponent_bits) + header.block_rows) + nonzeros
    return HEADER_WORDS + -(-symbols // symbols_per_word(header.exponent_bits))


# -- unpacking -----------------------------------------------------------------------------

def _header(words):
    w0, w1, w2, w3, length = words[:HEADER_WORDS]
    if w0 & 0xFF != MAGIC:
        raise FormatError(BAD_HEADER, f"bad header: magic must be {MAGIC:#04x}, "
                                      f"not {w0 & 0xFF:#04x}")
    if (w0 >> 8) & 0xF != VERSION:
        raise FormatError(BAD_HEADER, f"bad header: version must be {VERSION}, "
                                      f"not {(w0 >> 8) & 0xF}")
    if w0 >> 18 or w3 >> (MULT_BITS + SHIFT_BITS):
        raise FormatError(BAD_HEADER, "bad header: reserved bits must be 0")
    kind = (w0 >> 16) & 0x3
    if kind >= len(KINDS):
        raise FormatError(BAD_HEADER, f"bad header: kind must be 0 or 1, not {kind}")
    try:
        header = LayerHeader(kind=KINDS[kind], outputs=w1 & 0xFFFF, length=w1 >> 16,
                             block_rows=w2 & 0xFFFF, blocks_per_output=w2 >> 16,
                             exponent_bits=(w0 >> 12) & 0xF, weight_mult=w3 & 0xFFFF,
                             weight_shift=(w3 >> 16) & 0x3F)
    except ValueError as error:
        raise FormatError(BAD_HEADER, f"bad header: {error}") from None
    return header, length


def unpack(words):
    """(header, basis, ce) of a packed layer, as a LayerHeader and nested tuples (basis:
    blocks x 3 x 3 ints, ce: blocks x m0 x 3 ints 0 or +-2^f): the inverse of `pack`.

    Raises FormatError (a ValueError) naming the case for a stream that breaks the format
    (module docstring), TypeError for words that are not 32-bit integers.
    """
    if isinstance(words, (str, bytes)) or not hasattr(words, "__len__"):
        raise TypeError(f"words must be a sequence of 32-bit integers, not {words!r}")
    words = list(words)
    for word in words:
        if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word <= WORD_MASK:
            raise TypeError(f"words must be a sequence of 32-bit integers, not {word!r}")
    if len(words) < HEADER_WORDS:
        raise FormatError(WRONG_LENGTH, f"wrong length: a layer has at least {HEADER_WORDS} "
                                        f"words, not {len(words)}")
    header, length = _header(words)
    if length != len(words):
        raise FormatError(WRONG_LENGTH, f"wrong length: the header says {length} words, "
                                        f"the stream has {len(words)}")
    e_bits = header.exponent_bits
    width, per_word = symbol_bits(e_bits), symbols_per_word(e_bits)
    symbol_mask = (1 << width) - 1
    for index, word in enumerate(words[HEADER_WORDS:], HEADER_WORDS):
        if word >> width * per_word:
            raise FormatError(BAD_CODE, f"bad code: word {index} has spare bits set "
                                        f"({word:#010x})")
    available = (len(words) - HEADER_WORDS) * per_word
    position = 0

    def take(block, row):
        nonlocal position
        if position >= available:
            where = "its basis" if row is None else f"row {row}"
            raise FormatError(TRUNCATED_BLOCK, f"truncated block {block}: the words end in "
                                               f"{where}")
        word = words[HEADER_WORDS + position // per_word]
        symbol = (word >> width * (position % per_word)) & symbol_mask
        position += 1
        return symbol

    basis, ce = [], []
    sign_bit, exponent_mask = 1 << e_bits, (1 << e_bits) - 1
    for block in range(header.blocks):
        value = 0
        for s in range(basis_symbols(e_bits)):
            value |= take(block, None) << width * s
        if value >> BASIS_VALUES * BASIS_BITS:
            raise FormatError(BAD_CODE, f"bad code: block {block} has bits set above its "
                                        f"basis")
        raw = [(value >> BASIS_BITS * n) & 0xFF for n in range(BASIS_VALUES)]
        values = [v - 0x100 if v & 0x80 else v for v in raw]
        basis.append(tuple(tuple(values[k * BASIS:(k + 1) * BASIS]) for k in range(BASIS)))
        rows = []
        for row in range(header.block_rows):
            mask = take(block, row)
            if mask >> BASIS:
                raise FormatError(BAD_CODE, f"bad code: block {block}, row {row} has mask "
                                            f"symbol {mask:#x}")
            entries = []
            for k in range(BASIS):
                if mask >> k & 1:
                    code = take(block, row)
                    magnitude = 1 << (code & exponent_mask)
                    entries.append(-magnitude if code & sign_bit else magnitude)
                else:
                    entries.append(0)
            rows.append(tuple(entries))
        ce.append(tuple(rows))
    used = HEADER_WORDS + -(-position // per_word)
    if used != len(words):
        raise FormatError(WRONG_LENGTH, f"wrong length: the blocks end at word {used}, "
                                        f"the stream has {len(words)}")
    if position % per_word:
        last = words[-1] >> width * (position % per_word)
        if last:
            raise FormatError(BAD_CODE, f"bad code: the padding after the last block is "
                                        f"not 0 ({last:#x})")
    return header, tuple(basis), tuple(ce)
