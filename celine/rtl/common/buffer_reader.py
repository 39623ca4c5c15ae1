"""Reads block-RAM buffers into a stream, prefetching into a queue."""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_choice, check_int
from ...spec.fields import READER_LATENCY
from .shaped_queue import ShapedQueue, _rejected

__all__ = ["BufferReader"]

_REQUEST_FIELDS = ("addr", "buffer")


class BufferReader(wiring.Component):
    """Turns a stream of read requests into a stream of the words read, for block RAMs
    whose words come out registered: by the block's own output register (`read_latency`
    2 or 3, BufferSpec.read_latency: 3 with the address registered first) or, with one
    cycle of read latency, by a register here as they come out (a block RAM's array has a
    long clock-to-out, so no logic follows it in the same cycle).

    - ``mem.<name>`` for each name of `buffers`: a read port like an engine adapter's
      (celine/rtl/shell/contract.py): ``addr`` out, ``data`` in `read_latency` cycles
      later. Every port gets the same address (a request's ``addr``, combinationally).
    - ``req``: the requests, ``{"addr", "buffer", <tags>}``: the word address, which
      buffer to take the word from (an index into `buffers`; the field exists only with
      more than one buffer) and every field of `payload` but ``data``, carried along.
    - ``o``: the words read, in request order, as beats of `payload`: ``data`` the word,
      the other fields the request's tags. A caller that needs to know which buffer a
      word came from puts that in a tag of its own.

    A request is taken (``req.ready``) only while the queue has room for it counting the
    reads in flight (``level + in flight < queue_depth - 1``; a read is in flight for
    two cycles, the block RAM's and its output register's, or three with the address
    registered), so no word is ever lost, whatever ``o.ready`` does; ``req.ready`` is a
    register. With ``o`` always ready and a request every cycle, one word per cycle flows
    from queue_depth `latency` + 2 on (below, queue_depth - 1 words every `latency` + 1
    cycles); a word is on ``o`` `latency` cycles after its request was taken:
    READER_LATENCY (4), one more at read latency 3, one more with `word_register`.

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
    read_latency : int
        Cycles from an address to its word on every port of `buffers`: 1, 2 or 3.
    word_register : bool
        With `read_latency` 2 or 3, each port's word is registered here too, before the
        buffer multiplexer and the queue (a cycle more): for buffers of many blocks
        across the die, whose output nets are long (at read latency 1 it always is).
    """

    def __init__(self, payload, *, buffer_depth, buffers=("buffer",), queue_depth=4,
                 read_latency=1, word_register=False):
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
            check_int("read_latency", read_latency)
            check_choice("read_latency", read_latency, (1, 2, 3))
            if not isinstance(word_register, bool):
                raise TypeError(f"word_register must be True or False, not "
                                f"{word_register!r}")
        except Exception:
            _rejected(self)
            raise
        self._payload = payload
        self._buffers = buffers
        self._queue_depth = queue_depth
        self._read_latency = read_latency
        # At read latency 1 the words are always registered here.
        self._word_register = word_register and read_latency >= 2
        # request taken -> its word on `o` (read, output register, queue)
        self.latency = READER_LATENCY + max(0, read_latency - 2) + self._word_register
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

    @property
    def read_latency(self):
        return self._read_latency

    @property
    def word_register(self):
        return self._word_register

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = ShapedQueue(self._payload, self._queue_depth)
        wiring.connect(m, wiring.flipped(self.o), queue.o)

        tags = [name for name, _field in self._payload if name != "data"]
        ports = [getattr(self.mem, name) for name in self._buffers]
        # The reads in flight, a stage a cycle: the last (`inflight`) is the read whose
        # word is in the output registers now, the one before it coming out of the block.
        stages = max(2, self._read_latency + self._word_register)
        flight = [Signal(name=f"flight_{k}") for k in range(stages)]
        flight_tags = [{name: Signal(field.shape, name=f"flight_{k}_{name}")
                        for name, field in self.req.payload.shape() if name != "addr"}
                       for k in range(stages)]
        inflight, inflight_tags = flight[-1], flight_tags[-1]

        # Never more reads than the queue can take, counting the ones in flight: a request
        # is taken while `committed` (the words in the queue and the reads in flight, kept
        # as a counter of its own) is at most queue_depth - 2. `req.ready` is a register
        # holding that verdict for the counter's next value, chosen by whether a request
        # is taken and a word leaves in this cycle (each case a compare of the register
        # against a constant), so no adder or compare lies between the queue and the
        # requester's counters.
        committed = Signal(range(self._queue_depth + 1))
        ready = Signal(init=1)
        take = self.req.valid & self.req.ready
        leave = queue.o.valid & queue.o.ready
        limit = self._queue_depth - 2

        def at_most(bound):
            return committed <= bound if bound >= 0 else Const(0)

        m.d.sync += [
            committed.eq(committed + take - leave),
            ready.eq(Mux(take, Mux(leave, at_most(limit), at_most(limit - 1)),
                         Mux(leave, at_most(limit + 1), at_most(limit)))),
        ]
        m.d.comb += self.req.ready.eq(ready)
        for port in ports:
            m.d.comb += port.addr.eq(self.req.payload.addr)
        m.d.sync += flight[0].eq(take)
        m.d.sync += [signal.eq(getattr(self.req.payload, name))
                     for name, signal in flight_tags[0].items()]
        for k in range(1, stages):
            m.d.sync += flight[k].eq(flight[k - 1])
            m.d.sync += [flight_tags[k][name].eq(signal)
                         for name, signal in flight_tags[k - 1].items()]

        # Each port's word registered as it leaves the block RAM (no reset: only read
        # with `inflight`), by the block's output register or here (or both, with
        # `word_register`); the buffer multiplexer comes after.
        words = []
        for name, port in zip(self._buffers, ports):
            if self._read_latency >= 2 and not self._word_register:
                words.append(port.data)
                continue
            held = Signal.like(port.data, name=f"word_{name}", reset_less=True)
            m.d.sync += held.eq(port.data)
            words.append(held)
        word = words[-1]
        for index in reversed(range(len(words) - 1)):
            word = Mux(inflight_tags["buffer"] == index, words[index], word)
        m.d.comb += [
            queue.i.valid.eq(inflight),
            queue.i.payload.data.eq(word),
        ]
        m.d.comb += [getattr(queue.i.payload, name).eq(inflight_tags[name]) for name in tags]
        return m
