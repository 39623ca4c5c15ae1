"""Pack and unpack Amaranth data-layout values to and from the integers of flat Verilog ports.

Amaranth flattens a stream payload into one port (``i__payload``) whose bits follow the
layout's field offsets. Here a ``StructLayout``/``UnionLayout`` value is a ``dict``, an
``ArrayLayout`` value a ``list``, a signed field a (possibly negative) Python ``int`` and
an unsigned field a non-negative ``int``. A bare shape (``signed(8)``, ``8``) is an int.
"""

from amaranth.hdl import Shape, ShapeCastable
from amaranth.lib import data

__all__ = ["layout_width", "pack", "unpack"]


def _as_layout_or_shape(layout):
    if isinstance(layout, data.Layout):
        return layout
    if isinstance(layout, ShapeCastable):
        cast = layout.as_shape()
        return _as_layout_or_shape(cast)
    return Shape.cast(layout)


def layout_width(layout):
    """Number of bits of *layout* (a data layout or shape)."""
    layout = _as_layout_or_shape(layout)
    return layout.size if isinstance(layout, data.Layout) else layout.width


def pack(layout, value):
    """Return the unsigned integer whose bits hold *value* laid out as *layout*.

    Raises ``ValueError`` when a field does not fit its shape, ``KeyError``/``IndexError``
    when a struct field or array element is missing.
    """
    layout = _as_layout_or_shape(layout)
    if isinstance(layout, data.Layout):
        if isinstance(layout, data.ArrayLayout):
            if len(value) != layout.length:
                raise ValueError(
                    f"value for {layout!r} must have {layout.length} elements, not {len(value)}")
        bits = 0
        for key, field in layout:
            bits |= pack(field.shape, value[key]) << field.offset
        return bits
    if not isinstance(value, int):
        value = int(value)
    lo, hi = (-(1 << (layout.width - 1)), (1 << (layout.width - 1)) - 1) if layout.signed \
        else (0, (1 << layout.width) - 1)
    if layout.width == 0:
        lo = hi = 0
    if not lo <= value <= hi:
        raise ValueError(f"value {value!r} does not fit {layout!r} (range {lo}..{hi})")
    return value & ((1 << layout.width) - 1)


def unpack(layout, bits):
    """Inverse of :func:`pack`: turn the integer *bits* into dicts, lists and ints."""
    layout = _as_layout_or_shape(layout)
    bits = int(bits)
    if isinstance(layout, data.Layout):
        fields = {key: unpack(field.shape, (bits >> field.offset) & ((1 << field.width) - 1))
                  for key, field in layout}
        if isinstance(layout, data.ArrayLayout):
            return [fields[index] for index in range(layout.length)]
        return fields
    bits &= (1 << layout.width) - 1
    if layout.signed and layout.width and bits >> (layout.width - 1):
        bits -= 1 << layout.width
    return bits
