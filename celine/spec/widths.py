"""Integer widths shared by the generators' parameter classes."""


def signed_width(lo, hi):
    """The narrowest two's-complement width holding every integer in [lo, hi]."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def ceil_log2(n):
    """The smallest k with 2**k >= n (n >= 1)."""
    return (n - 1).bit_length()
