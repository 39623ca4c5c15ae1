"""Parameter validation shared by every generator dataclass.

Messages follow one pattern, "<name> must be <rule>, not <value!r>", and are part of the
API: tests pin them. Type errors raise TypeError, out-of-range values ValueError. `bool`
is rejected where an integer is expected (it is an int subclass, but never meant).
"""


def check_int(name, value, *, minimum=None, maximum=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if minimum is not None and maximum is not None:
        if not minimum <= value <= maximum:
            raise ValueError(f"{name} must be between {minimum} and {maximum}, not {value!r}")
    elif minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
    elif maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, not {value!r}")
    return value


def check_choice(name, value, choices):
    if value not in choices:
        rule = " or ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be {rule}, not {value!r}")
    return value


def check_int_tuple(name, value, *, allowed):
    """A non-empty collection of distinct integers from `allowed`; returned sorted as a tuple."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a tuple of integers, not {value!r}")
    items = tuple(value)
    if not items or any(not isinstance(v, int) or isinstance(v, bool) for v in items):
        raise TypeError(f"{name} must be a non-empty tuple of integers, not {value!r}")
    if len(set(items)) != len(items) or any(v not in allowed for v in items):
        rule = ", ".join(str(v) for v in sorted(allowed))
        raise ValueError(f"{name} must be distinct values from {{{rule}}}, not {value!r}")
    return tuple(sorted(items))
