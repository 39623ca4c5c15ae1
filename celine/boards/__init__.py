"""ECP5 boards: platforms (`platforms.BOARDS`), the PLL, the board top and its designs."""
