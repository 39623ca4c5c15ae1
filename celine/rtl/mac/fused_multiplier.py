from amaranth.hdl import Module, Signal, Cat, Const, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_choice, check_int_tuple


def _cell_product(x, y, width):
    """x * y for two (width+1)-bit two's complement values, as a truth table per product
    bit (2 * (width+1) inputs: a LUT6 at width 2). A `*` would be mapped onto a DSP block
    and shifted adds onto carry chains; a table is one level of LUT logic."""
    n = width + 1
    inputs = 2 * n
    index = Cat(x, y)
    bits = []
    for bit in range(2 * n):
        table = 0
        for k in range(1 << inputs):
            xv, yv = k & ((1 << n) - 1), k >> n
            xv -= (xv >> (n - 1)) << n
            yv -= (yv >> (n - 1)) << n
            if (xv * yv) >> bit & 1:
                table |= 1 << k
        bits.append(Const(table, 1 << inputs).bit_select(index, 1))
    return Cat(*bits).as_signed()


# Sum levels (by the width of the products they make) whose middle sums are registered
# before the total: the 8-bit level's 18-bit sums would otherwise chain two carry chains
# in one stage, the PE's slowest path on ECP5.
SPLIT_LEVELS = (8,)


class FusedMultiplier(wiring.Component):
    """An 8x8 multiplier made of b x b bricks that regroups into narrower multipliers.

    The 8-bit words `a` and `w` are cut into 8/b slices of b bits. Brick (i, j) multiplies
    a-slice i by w-slice j as (b+1)-bit signed numbers: a slice is sign-extended when it
    is the top slice of its operand and that operand is signed, zero-extended otherwise.
    At group width g (g in `group_widths`) the words hold 8/g operands of g bits each
    (operand k in bits [k*g, (k+1)*g)), and the bricks sum hierarchically, 2 x 2 at a
    time with shifts, into the (8/g)^2 products a_k * w_l, output as slot k*(8/g_min)+l
    (g_min the narrowest group width). Unused slots read 0.

    A 16-bit multiply runs as four passes at g = 8 with the low bytes unsigned
    (`a_signed`/`w_signed` low); the caller shifts and accumulates.

    The bricks are built from 2-bit cells (1-bit ones too when 1 is a group width): a cell
    product is a table in LUTs, and a brick wider than 2 bits is the first levels of the
    hierarchical sum, so every brick width has the same pipeline.

    Pipelined, one multiply per cycle, no stall: `products` are those of the `a`, `w`,
    `group`, `a_signed`, `w_signed` presented `latency` cycles earlier. Stage 1 registers
    the cell products (a sign-extension bit, then the table), each further stage one
    level of the sum (two carry chains: the middle terms, then the outer ones; the 8-bit
    level in two stages, one chain each: SPLIT_LEVELS) while products already finished
    at the group width pass along, so `latency` is log2(max(group_widths)), at least 1,
    plus 1 with an 8-bit group. The group index travels with its data.
    """

    def __init__(self, *, brick_width=2, group_widths=(2, 4, 8)):
        check_choice("brick_width", brick_width, (1, 2, 4, 8))
        groups = check_int_tuple("group_widths", group_widths, allowed=(1, 2, 4, 8))
        if min(groups) < brick_width:
            raise ValueError(f"group_widths must be at least brick_width {brick_width}, "
                             f"not {group_widths!r}")
        self.brick_width = brick_width
        self.group_widths = groups
        self.fusion = 8 // min(groups)
        # Stage 1 holds the 2-bit cells (1-bit ones at group 1); one more stage per level,
        # two for a level in SPLIT_LEVELS.
        widest = max(groups)
        self.latency = max(1, widest.bit_length() - 1) + \
            sum(1 for level in SPLIT_LEVELS if level <= widest)
        super().__init__({
            "a": In(8),
            "w": In(8),
            "group": In(range(len(groups))),   # index into group_widths
            "a_signed": In(1),
            "w_signed": In(1),
            "products": Out(data.ArrayLayout(signed(18), self.fusion * self.fusion)),
        })

    def _finished(self, group, width):
        """Whether the group width selected by `group` is at most `width` (None: never)."""
        done = [k for k, g in enumerate(self.group_widths) if g <= width]
        return Cat(*(group == k for k in done)).any() if done else None

    def _cells(self, width):
        """The products of the `width`-bit slices of `a` and `w` (8/width of each): a slice
        is sign-extended when its operand is signed and it is the top slice of an operand
        at the selected group width (group widths of at least `width` count)."""
        def is_top(i):
            tops = [k for k, g in enumerate(self.group_widths)
                    if g >= width and ((i + 1) * width) % g == 0]
            return Cat(*(self.group == k for k in tops)).any() if tops else 0

        def operand(word, i, signed_):
            bits = word[i * width:(i + 1) * width]
            return Cat(bits, bits[-1] & signed_ & is_top(i))

        count = 8 // width
        return {(i, j): _cell_product(operand(self.a, i, self.a_signed),
                                      operand(self.w, j, self.w_signed), width)
                for i in range(count) for j in range(count)}

    def elaborate(self, platform):
        m = Module()

        def register(values, flags, stage):
            """Registers for stage `stage` of `values` ({key: Value}, a key a tuple) and of
            `flags` ({width: whether the group width is at most width}). None is reset:
            they carry data that the PE's `valid`, travelling beside them, qualifies."""
            regs = {}
            for key, value in values.items():
                name = "_".join(str(part) for part in key)
                regs[key] = Signal(signed(len(value)), name=f"s{stage}_{name}", reset_less=True)
                m.d.sync += regs[key].eq(value)
            flag_regs = {}
            for width, flag in flags.items():
                flag_regs[width] = Signal(name=f"s{stage}_done{width}", reset_less=True)
                m.d.sync += flag_regs[width].eq(flag)
            return regs, flag_regs

        # The sum levels after stage 1, by the width they start from (2 -> 4, 4 -> 8) up to
        # the widest group, and for each whether the selected group's products are
        # finished before it, decoded here and registered along, so that no stage decodes
        # the group (its flag drives a whole stage's multiplexers and resets).
        widths = [w for w in (2, 4) if w < max(self.group_widths)]
        done = {w: self._finished(self.group, w) for w in widths}
        done = {w: flag for w, flag in done.items() if flag is not None}

        # Stage 1: the products at width 2, and at width 1 when that is a group width.
        # Entry (i, j) of a stage holds the product of slices i and j at the stage's width
        # or, when the group width is narrower, the finished product (i, j).
        cells = self._cells(2) if max(self.group_widths) >= 2 else {}
        if 1 in self.group_widths:
            narrow = self._cells(1)
            at_one = self._finished(self.group, 1)
            cells = {key: Mux(at_one, value, cells.get(key, 0)) for key, value in narrow.items()}
        n = 1
        stage, done = register(cells, done, n)

        # Further stages: a width-2w product is the sum of four width-w partial products,
        # lo + (middle << w) + (hi << 2w) with middle the sum of the two cross products.
        # A level in SPLIT_LEVELS (the 8-bit one: 18-bit sums) has two stages: the middle
        # sums, then the total, so no stage chains two carry chains.
        for width in widths:
            finished = done.get(width)
            parts, kept = {}, {}     # (i, j): its (lo, hi, middle); the finished product
            for (i, j), value in stage.items():
                sums = max(i, j) < 8 // (2 * width)
                if sums:
                    parts[i, j] = (stage[2 * i, 2 * j], stage[2 * i + 1, 2 * j + 1],
                                   stage[2 * i + 1, 2 * j] + stage[2 * i, 2 * j + 1])
                if finished is not None and (sums or any(
                        max(i, j) < 8 // g for g in self.group_widths if g <= width)):
                    kept[i, j] = value
            if 2 * width in SPLIT_LEVELS:
                n += 1
                values = {(part, i, j): term for (i, j), terms in parts.items()
                          for part, term in zip(("lo", "hi", "middle"), terms)}
                values.update({("kept", i, j): value for (i, j), value in kept.items()})
                regs, done = register(values, done, n)
                parts = {key: tuple(regs[(part, *key)] for part in ("lo", "hi", "middle"))
                         for key in parts}
                kept = {key: regs[("kept", *key)] for key in kept}
                finished = done.get(width)
            done.pop(width, None)
            nxt = {}
            for key in {**parts, **kept}:
                total = 0
                if key in parts:
                    lo, hi, middle = parts[key]
                    total = Signal(signed(4 * width + 2), name=f"prod{2 * width}_{key[0]}_{key[1]}")
                    m.d.comb += total.eq(lo + (hi << 2 * width) + (middle << width))
                # A finished product, or the sum (0 where there is none).
                nxt[key] = total if finished is None else Mux(finished, kept[key], total)
            n += 1
            stage, done = register(nxt, done, n)

        for ga in range(self.fusion):
            for gw in range(self.fusion):
                if (ga, gw) in stage:
                    m.d.comb += self.products[ga * self.fusion + gw].eq(stage[ga, gw])
        return m
