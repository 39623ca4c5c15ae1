"""Element-wise activations on the activation engine: settings checks, packing, chunking.

`dev.activation.apply(x, table)` maps every element of an int8 tensor of any shape
through a 256-entry table (entry x + 128 for input x); `dev.activation.gelu(x, in_scale,
out_scale)` does so with golden.activation.gelu_table. The elements are flattened in
row-major order into words of `lanes` elements (lane 0 lowest, one byte a lane, word i at
byte i * word_stride of `x`), the last word padded with zeros, and sent in runs of at most
max_words words (the `x`/`y` buffer depth); the table goes to the `table` buffer once a
call and is loaded by the first run only (`load_table` 0 afterwards).

x may be a torch tensor, a numpy array or nested lists of ints. The result has x's shape
and int64 values: a torch tensor for a torch tensor, a numpy array otherwise. numpy is
imported when a call runs, torch never (a torch tensor brings it along).
"""

from ...firmware.errors import EngineError, ProtocolError, SettingError
from .spec import ELEMENT_BITS, ActivationParams

__all__ = ["ActivationHost"]

INT8_MIN, INT8_MAX = -(1 << (ELEMENT_BITS - 1)), (1 << (ELEMENT_BITS - 1)) - 1


def _is_torch(value):
    return type(value).__module__.partition(".")[0] == "torch"


def _as_int8(x):
    """(x as a numpy int64 array, whether x was a torch tensor); SettingError for anything
    that is not an integer tensor of int8 values."""
    import numpy as np
    torch_input = _is_torch(x)
    if torch_input:
        if not hasattr(x, "detach"):
            raise SettingError(f"x must be an integer tensor, not {x!r}")
        x = x.detach().cpu().numpy()
    if isinstance(x, (str, bytes, bytearray, dict, set)) or x is None:
        raise SettingError(f"x must be an integer tensor, array or nested list, not {x!r}")
    try:
        array = np.asarray(x)
    except (ValueError, TypeError) as error:    # ragged lists, odd objects
        raise SettingError(f"x must be a rectangular integer tensor, not {x!r} "
                           f"({error})") from None
    if array.dtype.kind not in "iu":
        raise SettingError(f"x must hold integers, not {array.dtype} values")
    array = array.astype(np.int64)
    if array.size and (int(array.min()) < INT8_MIN or int(array.max()) > INT8_MAX):
        raise SettingError(f"x must hold int8 values ({INT8_MIN}..{INT8_MAX}), not values "
                           f"{int(array.min())}..{int(array.max())}")
    return array, torch_input


def _table(table):
    from ...golden.activation import check_table
    try:
        return check_table(table)
    except (TypeError, ValueError) as error:
        raise SettingError(str(error)) from None


class ActivationHost:
    """`dev.activation`: element-wise activations by table on an activation device."""

    def __init__(self, device):
        self.device = device
        self.params = ActivationParams.from_dict(device.info["params"])
        self.last_table = None        # the table of the last call
        self.last_cycles = None       # engine cycles of the last call's runs (STATUS)

    def gelu(self, x, in_scale, out_scale=None, *, timeout=10.0):
        """GELU of the int8 tensor x (real value = in_scale * x), as int8 values of scale
        `out_scale` (default in_scale: the output keeps the input's scale, and no entry
        saturates since |gelu(r)| <= |r|). The table is golden.activation.gelu_table;
        the result is bit-exact with golden.activation.lookup(x, that table)."""
        from ...golden.activation import check_scale, gelu_table
        try:
            in_scale = check_scale("in_scale", in_scale)
            out_scale = in_scale if out_scale is None else check_scale("out_scale", out_scale)
            table = gelu_table(in_scale, out_scale)
        except (TypeError, ValueError) as error:
            raise SettingError(str(error)) from None
        return self.apply(x, table, timeout=timeout)

    def apply(self, x, table, *, timeout=10.0):
        """table[x + 128] for every element of the int8 tensor x (any shape): int64
        values of x's shape (see the module docstring). table: 256 ints in -128 .. 127,
        entry x + 128 for input x. timeout: seconds for each run."""
        import numpy as np
        array, torch_input = _as_int8(x)
        table = _table(table)
        self.last_table = table
        p, device = self.params, self.device
        results = []
        self.last_cycles = 0
        if array.size:
            info = device.buffers["table"]
            device.write_buffer("table", 0, b"".join(
                (value & 0xFF).to_bytes(info.word_bytes, "little")
                + bytes(info.word_stride - info.word_bytes) for value in table))
            flat = array.reshape(-1)
            words = p.words_for(flat.size)
            padded = np.zeros(words * p.lanes, dtype=np.int64)
            padded[:flat.size] = flat
            lanes = padded.reshape(words, p.lanes)
            configured = {}
            for first in range(0, words, p.max_words):
                chunk = lanes[first:first + p.max_words]
                settings = {"words": len(chunk), "load_table": int(first == 0)}
                device.configure(**{name: value for name, value in settings.items()
                                    if configured.get(name) != value})
                configured = settings
                results.append(self._run(chunk, timeout).reshape(-1))
        flat_out = np.concatenate(results) if results else np.zeros(0, dtype=np.int64)
        out = flat_out[:array.size].reshape(array.shape)
        if torch_input:
            import torch
            return torch.from_numpy(out)
        return out

    def _run(self, chunk, timeout):
        """One run over `chunk` (words x lanes int64): the y words, same shape."""
        import numpy as np
        device = self.device
        words = chunk.shape[0]
        x_info, y_info = device.buffers["x"], device.buffers["y"]
        device.write_buffer("x", 0, _pack(chunk, x_info))
        report = device.run(timeout=timeout)
        if report.engine_errors:
            raise EngineError(report.engine_errors, f"run ended with engine error flags "
                                                    f"{report.engine_errors:#04x}")
        if report.result_words != words:
            raise ProtocolError(f"run wrote {report.result_words} result words, not {words}")
        self.last_cycles += report.cycles
        data = device.read_buffer("y", 0, words * y_info.word_stride)
        raw = np.frombuffer(data, dtype=np.uint8).reshape(words, y_info.word_stride)
        return raw[:, :chunk.shape[1]].view(np.int8).astype(np.int64)


def _pack(chunk, info):
    """Bytes of words of int8 lanes (one byte a lane), word i at i * word_stride."""
    import numpy as np
    words, lanes = chunk.shape
    raw = np.zeros((words, info.word_stride), dtype=np.uint8)
    raw[:, :lanes] = chunk.astype(np.int8).view(np.uint8)
    return raw.tobytes()

