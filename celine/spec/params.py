"""The base of every engine's generator-parameter class."""

from dataclasses import fields

__all__ = ["Params"]


class Params:
    """Mixin of the frozen dataclasses of generator parameters: JSON round trips (tuples
    travel as lists) of the constructor arguments. A subclass adds its checks
    (`__post_init__`) and its derived values (`derived()`)."""

    def to_dict(self):
        """The constructor arguments, JSON-ready (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self) if f.init}

    @classmethod
    def from_dict(cls, values):
        """The parameters from `to_dict`'s form (lists become tuples again)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def derived(self):
        """Derived values, JSON-ready (none unless the subclass has some)."""
        return {}
