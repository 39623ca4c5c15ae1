from amaranth.hdl import Module, Signal, Cat, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_choice, check_int_tuple


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

    Purely combinational; products depend on `a`, `w`, `group`, `a_signed`, `w_signed`.
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
        super().__init__({
            "a": In(8),
            "w": In(8),
            "group": In(range(len(groups))),   # index into group_widths
            "a_signed": In(1),
            "w_signed": In(1),
            "products": Out(data.ArrayLayout(signed(18), self.fusion * self.fusion)),
        })

    def elaborate(self, platform):
        m = Module()
        b = self.brick_width
        slices = 8 // b

        def is_top(i):
            # Slice i is the top slice of its operand at the selected group width.
            tops = [k for k, g in enumerate(self.group_widths) if ((i + 1) * b) % g == 0]
            return Cat(*(self.group == k for k in tops)).any() if tops else 0

        def brick_operand(word, i, signed_):
            bits = word[i * b:(i + 1) * b]
            return Cat(bits, bits[-1] & signed_ & is_top(i)).as_signed()

        def brick_product(x, y):
            # x * y for (b+1)-bit signed x, y as shifted adds of y, written out so that
            # synthesis builds LUT logic (a `*` would be mapped onto a DSP block).
            x_bits = Signal(b + 1)
            m.d.comb += x_bits.eq(x)
            total = 0
            for bit in range(b):
                total = total + Mux(x_bits[bit], y << bit, 0)
            return total - Mux(x_bits[b], y << b, 0)

        # Level 0: one product per brick.
        level = [[Signal(signed(2 * b + 2), name=f"brick_{i}_{j}") for j in range(slices)]
                 for i in range(slices)]
        for i in range(slices):
            for j in range(slices):
                m.d.comb += level[i][j].eq(brick_product(brick_operand(self.a, i, self.a_signed),
                                                         brick_operand(self.w, j, self.w_signed)))

        # Higher levels: a width-2w product is the sum of four width-w partial products.
        levels = {b: level}
        width = b
        while width < max(self.group_widths):
            n = len(level) // 2
            nxt = [[Signal(signed(4 * width + 2), name=f"prod{2 * width}_{i}_{j}")
                    for j in range(n)] for i in range(n)]
            for i in range(n):
                for j in range(n):
                    m.d.comb += nxt[i][j].eq(
                        level[2 * i][2 * j]
                        + (level[2 * i + 1][2 * j] << width)
                        + (level[2 * i][2 * j + 1] << width)
                        + (level[2 * i + 1][2 * j + 1] << (2 * width)))
            level, width = nxt, 2 * width
            levels[width] = level

        for ga in range(self.fusion):
            for gw in range(self.fusion):
                value = 0
                for k, g in enumerate(self.group_widths):
                    if max(ga, gw) < 8 // g:
                        value = Mux(self.group == k, levels[g][ga][gw], value)
                m.d.comb += self.products[ga * self.fusion + gw].eq(value)
        return m
