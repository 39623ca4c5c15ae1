"""Operands of the engines' host calls -> int64 torch tensors, or a SettingError.

An operand may be a torch tensor, a numpy array or nested lists/tuples of integers; what
cannot be one (a string, a ragged list, non-integer or too large values, the wrong number
of dimensions) is a SettingError "<name> must be <rule>, not <what it is>". torch is
imported on first use, so importing this module needs nothing but the standard library.
"""

import numbers

from .errors import SettingError

__all__ = ["as_int_tensor"]

_REPR_LIMIT = 60


def _short(value):
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT - 3] + "..."


def _nested_shape(value):
    """The shape of nested lists/tuples of scalars; None if ragged (a list beside a scalar
    counts as ragged too)."""
    if not isinstance(value, (list, tuple)):
        return ()
    shapes = {_nested_shape(item) for item in value}
    if None in shapes or len(shapes) > 1:
        return None
    return (len(value), *(shapes.pop() if shapes else ()))


def _leaves(value):
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def as_int_tensor(name, value, *, ndims, rule):
    """`value` as an int64 tensor with one of the dimension counts `ndims`, else
    SettingError "{name} must be {rule}, not ..." (rule e.g. "a 2-D integer tensor")."""
    import torch

    def reject(what):
        raise SettingError(f"{name} must be {rule}, not {what}")

    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, (list, tuple)):
        if _nested_shape(value) is None:
            reject(f"a ragged list {_short(value)}")
        leaves = list(_leaves(value))
        if any(not isinstance(v, numbers.Number) for v in leaves) or any(
                isinstance(v, numbers.Integral) and not -(1 << 63) <= int(v) < 1 << 63
                for v in leaves):
            reject(_short(value))
        try:
            tensor = torch.as_tensor(value) if leaves else \
                torch.zeros(_nested_shape(value), dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            reject(_short(value))
    elif hasattr(value, "__array__") and hasattr(value, "dtype") and hasattr(value, "shape"):
        # a numpy array (numpy is not imported here: torch converts it)
        if getattr(value.dtype, "kind", None) not in ("i", "u") or (
                value.dtype.kind == "u" and value.size and int(value.max()) >= 1 << 63):
            reject(f"{value.dtype} of shape {tuple(value.shape)}")
        try:
            tensor = torch.as_tensor(value.astype("int64"))
        except (TypeError, ValueError, RuntimeError, OverflowError):
            reject(f"{value.dtype} of shape {tuple(value.shape)}")
    else:
        reject(_short(value))
    if tensor.ndim not in ndims or tensor.dtype.is_floating_point or tensor.dtype.is_complex \
            or tensor.dtype == torch.bool:
        reject(f"{tensor.dtype} of shape {tuple(tensor.shape)}")
    return tensor.to(torch.int64)


def attention_heads(q, k, v, *, head_dim, max_tokens, heads, operand_width):
    """(single, q, k, v) for an attention call: q, k, v one head (N x d) or several
    (H x N x d) of the same shape, as H x N x d int64 tensors (`single`: one head was
    given), checked against the device's head_dim, max_tokens, heads and signed operand
    width; SettingError otherwise."""
    rule = "a 2-D (tokens x head_dim) or 3-D (heads x tokens x head_dim) integer tensor"
    q, k, v = (as_int_tensor(name, value, ndims=(2, 3), rule=rule)
               for name, value in (("q", q), ("k", k), ("v", v)))
    for name, tensor in (("k", k), ("v", v)):
        if tensor.shape != q.shape:
            raise SettingError(f"{name} must have the shape of q {tuple(q.shape)}, "
                               f"not {tuple(tensor.shape)}")
    single = q.ndim == 2
    if single:
        q, k, v = q[None], k[None], v[None]
    count, tokens, dim = q.shape
    if dim != head_dim:
        raise SettingError(f"head_dim must be {head_dim} (the device's), not {dim}")
    if not 1 <= tokens <= max_tokens:
        raise SettingError(f"tokens must be between 1 and {max_tokens}, not {tokens}")
    if not 1 <= count <= heads:
        raise SettingError(f"heads must be between 1 and {heads} (the device's), not {count}")
    lo, hi = -(1 << (operand_width - 1)), (1 << (operand_width - 1)) - 1
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        low, high = int(tensor.min()), int(tensor.max())
        if low < lo or high > hi:
            raise SettingError(f"{name} must hold int{operand_width} values "
                               f"({lo}..{hi}), not values {low}..{high}")
    return single, q, k, v
