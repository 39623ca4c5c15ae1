"""Exact comparison of received stream beats with golden beats."""

__all__ = ["first_difference", "check_beats", "Scoreboard"]


def _walk(value, path=""):
    """Yield (path, leaf) for nested dicts/lists: ``.data[3]``, ``.last``, ..."""
    if isinstance(value, dict):
        for key in value:
            yield from _walk(value[key], f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    else:
        yield path, value


def first_difference(expected, received):
    """Return ``(path, expected_leaf, received_leaf)`` of the first difference, or None."""
    if expected == received:
        return None
    exp, rec = list(_walk(expected)), list(_walk(received))
    for (exp_path, exp_leaf), (rec_path, rec_leaf) in zip(exp, rec):
        if exp_path != rec_path or exp_leaf != rec_leaf:
            return exp_path, exp_leaf, rec_leaf
    return "", expected, received   # different structure


def check_beats(expected, received, *, name="output"):
    """Raise ``AssertionError`` unless *received* equals *expected* beat for beat.

    The message names the first mismatching beat and lane (e.g. ``beat 7 .data[2]``)
    with both values, the number of mismatching beats, and missing or extra beats.
    """
    expected, received = list(expected), list(received)
    mismatches = [index for index, (exp, rec) in enumerate(zip(expected, received)) if exp != rec]
    problems = []
    if mismatches:
        index = mismatches[0]
        path, exp, rec = first_difference(expected[index], received[index])
        problems.append(f"first mismatch at beat {index}{' ' + path if path else ''}: "
                        f"expected {exp!r}, received {rec!r} "
                        f"({len(mismatches)} of {min(len(expected), len(received))} beats differ)")
    if len(received) < len(expected):
        problems.append(f"{len(expected) - len(received)} beats missing "
                        f"(expected {len(expected)}, received {len(received)})")
    elif len(received) > len(expected):
        problems.append(f"{len(received) - len(expected)} extra beats "
                        f"(expected {len(expected)}, received {len(received)}); "
                        f"first extra: {received[len(expected)]!r}")
    if problems:
        raise AssertionError(f"{name}: " + "; ".join(problems))


class Scoreboard:
    """Collects expected beats per stream and checks what a sink received against them."""

    def __init__(self):
        self.expected = {}

    def add_expected(self, name, beats):
        self.expected.setdefault(name, []).extend(beats)

    def check(self, name, received):
        check_beats(self.expected.get(name, []), received, name=name)
