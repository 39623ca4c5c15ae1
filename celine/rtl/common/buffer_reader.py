"""Reads block-RAM buffers into a stream, prefetching into a queue."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from .shaped_queue import ShapedQueue, _rejected

__all__ = ["BufferReader"]

_REQUEST_FIELDS = ("addr", "buffer")


class BufferReader(wiring.Component):
    """Turns a stream of read requests into a stream of the words read, for block RAMs
    with one cycle of read latency.

    - ``mem.<name>`` for each name of `buffers`: a read port like an engine adapter's
      (celine/rtl/shell/contract.py): ``addr`` out, ``data`` in one cycle later. Every
      port gets the same address (a request's ``addr``, combinationally).
    - ``req``: the requests, ``{"addr", "buffer", <tags>}``: the word address, which
      buffer to take the word from (an index into `buffers`; the field exists only with
      more than one buffer) and every field of `payload` but ``data``, carried along.
    - ``o``: the words read, in request order, as beats of `payload`: ``data`` the word,
      the other fields the request's tags. A caller that needs to know which buffer a
      word came from puts that in a tag of its own.

    A request is taken (``req.ready``) only while the queue has room for it counting the
    read in flight (``level + in flight < queue_depth - 1``), so no word is ever lost,
    whatever ``o.ready`` does; ``req.ready`` depends only on registers. With ``o`` always
    ready and a request every cycle, one word per cycle flows from queue_depth 5 on
    (below, queue_depth - 1 words every 4 cycles: the read in flight and the queue's two
    stages count against the bound); a word is on ``o`` three cycles after its request
    was taken.

    Parameters
    ----------
    payload : data.StructLayout
        The output beat: a ``data`` field (the word's shape; ``mem.<name>.data`` has it
        too) and any tags (no field named ``addr`` or ``buffer``).
    buffer_depth : int
        Words of each buffer (``addr`` is ``range(buffer_depth)``).
    buffers : tuple of str
        Names of the read ports, distinct identifiers.
    queue_depth : int
        Beats the prefetch queue holds (at least 2).
    """

    def __init__(self, payload, *, buffer_depth, buffers=("buffer",), queue_depth=4):
        try:
            if not isinstance(payload, data.StructLayout):
                raise TypeError(f"payload must be a data.StructLayout, not {payload!r}")
            names = [name for name, _field in payload]
            if "data" not in names or set(names) & set(_REQUEST_FIELDS):
                raise ValueError(f"payload must have a 'data' field and none named 'addr' "
                                 f"or 'buffer', not {payload!r}")
            check_int("buffer_depth", buffer_depth, minimum=1)
            if (not isinstance(buffers, tuple) or not buffers
                    or not all(isinstance(b, str) and b.isidentifier() for b in buffers)
                    or len(set(buffers)) != len(buffers)):
                raise ValueError(f"buffers must be a non-empty tuple of distinct names, "
                                 f"not {buffers!r}")
            check_int("queue_depth", queue_depth, minimum=2)
        except Exception:
            _rejected(self)
            raise
        self._payload = payload
        self._buffers = buffers
        self._queue_depth = queue_depth
        data_shape = payload["data"].shape
        request = {"addr": range(buffer_depth)}
        if len(buffers) > 1:
            request["buffer"] = range(len(buffers))
        request.update((name, field.shape) for name, field in payload if name != "data")
        port = wiring.Signature({"addr": Out(range(buffer_depth)), "data": In(data_shape)})
        super().__init__({
            "req": In(stream.Signature(data.StructLayout(request))),
            "o": Out(stream.Signature(payload)),
            "mem": Out(wiring.Signature({name: Out(port) for name in buffers})),
        })

    @property
    def payload(self):
        return self._payload

    @property
    def buffers(self):
        return self._buffers

    @property
    def queue_depth(self):
        return self._queue_depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = ShapedQueue(self._payload, self._queue_depth)
        wiring.connect(m, wiring.flipped(self.o), queue.o)

        tags = [name for name, _field in self._payload if name != "data"]
        ports = [getattr(self.mem, name) for name in self._buffers]
        inflight = Signal()          # a read whose data arrives this cycle
        inflight_tags = {name: Signal(field.shape, name=f"inflight_{name}")
                         for name, field in self.req.payload.shape() if name != "addr"}

        # Never more reads than the queue can take, counting the one in flight.
        m.d.comb += self.req.ready.eq(queue.level + inflight < self._queue_depth - 1)
        for port in ports:
            m.d.comb += port.addr.eq(self.req.payload.addr)
        m.d.sync += inflight.eq(self.req.valid & self.req.ready)
        m.d.sync += [signal.eq(getattr(self.req.payload, name))
                     for name, signal in inflight_tags.items()]

        word = ports[-1].data
        for index in reversed(range(len(ports) - 1)):
            word = Mux(inflight_tags["buffer"] == index, ports[index].data, word)
        m.d.comb += [
            queue.i.valid.eq(inflight),
            queue.i.payload.data.eq(word),
        ]
        m.d.comb += [getattr(queue.i.payload, name).eq(inflight_tags[name]) for name in tags]
        return m
