"""Turn `key=value` words from the command line into a generator-parameter dataclass."""

from dataclasses import fields


def parse_value(text):
    """'8' -> 8, '0xACE1' -> 44257, '2,4,8' -> (2, 4, 8), 'none' -> None, else the text."""
    if text.lower() == "none":
        return None
    if "," in text:
        return tuple(parse_value(part) for part in text.split(",") if part)
    try:
        return int(text, 0)
    except ValueError:
        return text


def parse_params(cls, words):
    """Build `cls` from ['rows=8', 'impl=dsp', ...]; ValueError/TypeError on bad input."""
    known = [f.name for f in fields(cls) if f.init]
    values, given = {}, {}
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or not key:
            raise ValueError(f"parameters must be written key=value, not {word!r}")
        if key not in known:
            raise ValueError(f"unknown parameter {key!r} (known: {', '.join(known)})")
        if key in given:
            raise ValueError(f"parameter {key!r} must be given once, not {given[key]!r} "
                             f"and {word!r}")
        given[key] = word
        value = parse_value(text)
        if key.endswith("precisions") and isinstance(value, int):
            value = (value,)
        values[key] = value
    return cls(**values)
