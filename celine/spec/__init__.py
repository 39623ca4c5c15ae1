"""Declarations shared by the hardware, the golden models and the host runtime.

Everything here is plain data and pure Python (the standard library only), so that the
host runtime needs neither Amaranth nor torch: the protocol's frames, command and status
codes and STATUS layout (`protocol`), register and field tables and buffer descriptions
(`fields`), the integer formats every engine shares (`numerics`), and the parameter
checks and width helpers of the generator parameter classes (`checks`, `widths`). Each
fact lives here once; `rtl`, `golden` and `firmware` import it.
"""
