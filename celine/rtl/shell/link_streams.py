"""What the host link's three parts pass each other (celine.rtl.shell.link).

    rx bytes -> FrameDecoder -> request -> CommandExecutor -> reply -> ReplyEncoder -> tx bytes

A *request* is a received frame, checked for framing (length, CRC, inter-byte timeout):
its command, sequence number, payload length and first payload bytes (`args`; the whole
payload stays in the decoder's staging RAM, read through the `staging` port), or the error
status the frame earned. A *reply* describes a reply frame: status, sequence number, payload
length, and where the payload bytes come from (a buffer, the STATUS snapshot it carries, or
the INFO ROM).
"""

from amaranth.hdl import Cat, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from ...spec.protocol import ADDRESS_BYTES, STATUS_BYTES, configure_payload, read_payload

__all__ = ["READ_BYTES", "CONFIGURE_BYTES", "ARG_BYTES", "Source", "request_layout",
           "reply_layout", "staging_signature", "STAGING_LATENCY", "buffer_write_signature",
           "buffer_read_signature", "memory_port_signature", "request_fields", "byte_lane",
           "READ_LATENCY", "HOST_ADDRESS_STAGES", "HOST_READ_STAGES",
           "BYTES_A_GROUP"]

READ_BYTES = len(read_payload(0, 0, 0))                # buffer, offset, count
CONFIGURE_BYTES = len(configure_payload(0, 0))         # register, value
ARG_BYTES = max(READ_BYTES, CONFIGURE_BYTES, ADDRESS_BYTES)
COUNT_BYTES = READ_BYTES - ADDRESS_BYTES


class Source(enum.Enum, shape=2):
    """Where a reply's payload bytes come from."""
    NONE = 0
    BUFFER = 1        # `length` bytes of buffer `buffer` from byte `offset` (READ)
    STATUS = 2        # the reply's `snapshot` (STATUS)
    INFO = 3          # the INFO ROM


def request_layout():
    return data.StructLayout({
        "status": 8,          # Status.OK, or BAD_LENGTH / BAD_CRC / TIMEOUT: reply just that
        "command": 8,
        "seq": 8,             # 0 when the frame timed out before its sequence number
        "length": 16,
        "args": data.ArrayLayout(8, ARG_BYTES),    # payload bytes 0 .. ARG_BYTES - 1 (0 beyond)
    })


def reply_layout(buffers):
    return data.StructLayout({
        "status": 8,
        "seq": 8,
        "length": 16,
        "source": Source,
        "buffer": range(len(buffers)),
        "offset": 32,
        "snapshot": 8 * STATUS_BYTES,
    })


# Cycles from the staging RAM's read address to its byte: the block's own output register
# is on (BlockRAM(output_register=True)), so the byte leaves a register, not the block's
# array (5.8 ns after the clock, then the nets to every buffer's data pins).
STAGING_LATENCY = 2


def staging_signature(depth):
    """A reader's port into the decoder's staging RAM: payload byte `addr`, STAGING_LATENCY
    cycles later."""
    return wiring.Signature({"addr": Out(range(depth)), "data": In(8)})


def _word_bytes(buffers):
    return max(b.word_bytes for b in buffers)


def _depth(buffers):
    return max(b.depth for b in buffers)


def buffer_write_signature(buffers):
    """The executor's port into the buffers: byte writes (`mask`) to word `addr` of `select`.
    `write_to` is `select` one-hot (bit k for buffer k), a register: each buffer's write
    enables take their own bit, not a compare of the select that the link multiplexes
    with the encoder's (that compare into an engine build's write enables was its worst
    path, 9.15 ns)."""
    return wiring.Signature({
        "select": Out(range(len(buffers))),
        "write_to": Out(len(buffers)),
        "addr": Out(range(_depth(buffers))),
        "write": Out(1),
        "mask": Out(_word_bytes(buffers)),
        "wdata": Out(8 * _word_bytes(buffers)),
    })


# Cycles from a read port's `addr`, `lane` and `select` to its `rdata`: the address
# registered beside each buffer (HOST_ADDRESS_STAGES; a write's address, enables and data
# too, so a write lands a cycle after the link presents it), the block RAM's read, then
# HOST_READ_STAGES register stages (HostedBuffer, beside the buffer: the word as read, the
# word again, BYTES_A_GROUP : 1 byte multiplexers, one multiplexer over the groups; Shell:
# the pick among the buffers' bytes). So no word-wide bus runs from the buffers to the
# link, no logic follows a block RAM's output in the cycle it is read, the link's
# address fans out to the buffers over a whole cycle, and the buffers' bytes come across
# the die into a register of their own (picked into the encoder's byte in one cycle, one
# engine build's worst path: 8.2 ns, two 2 ns nets). The link holds `addr`, `lane` and
# `select` for these cycles.
HOST_ADDRESS_STAGES = 1
BYTES_A_GROUP = 8
HOST_READ_STAGES = 5
READ_LATENCY = HOST_ADDRESS_STAGES + 1 + HOST_READ_STAGES


def _lane_shape(buffers):
    return range(max(b.word_stride for b in buffers))


def buffer_read_signature(buffers):
    """The encoder's port into the buffers: byte `lane` of word `addr` of `select` on
    `rdata`, READ_LATENCY cycles later."""
    return wiring.Signature({
        "select": Out(range(len(buffers))),
        "addr": Out(range(_depth(buffers))),
        "lane": Out(_lane_shape(buffers)),
        "rdata": In(8),
    })


def memory_port_signature(buffers):
    """The link's one port into the buffers (the shell routes it by `select`): byte writes,
    and byte reads READ_LATENCY cycles after `addr` and `lane`."""
    return wiring.Signature({
        **buffer_write_signature(buffers).members,
        "lane": Out(_lane_shape(buffers)),
        "rdata": In(8),
    })


def request_fields(request):
    """(buffer or register id, offset or value, count) of a request's payload view."""
    args = request.args
    return (args[0], Cat(*(args[1 + k] for k in range(4))),
            Cat(*(args[ADDRESS_BYTES + k] for k in range(COUNT_BYTES))))


def byte_lane(m, buffers, select, address):
    """(word, lane, lane_ok): where byte `address` of buffer `select` lives (comb logic).

    Word `address // word_stride`, byte lane `address % word_stride`; `lane_ok` is 0 for
    the padding bytes after a word (word_bytes <= lane < word_stride)."""
    word = Signal(range(_depth(buffers)))
    lane = Signal(_lane_shape(buffers))
    lane_ok = Signal()
    for k, b in enumerate(buffers):
        with m.If(select == k):
            stride_bits = (b.word_stride - 1).bit_length()
            m.d.comb += [
                word.eq(address >> stride_bits),
                lane.eq(address & (b.word_stride - 1)),
                lane_ok.eq((address & (b.word_stride - 1)) < b.word_bytes),
            ]
    return word, lane, lane_ok

