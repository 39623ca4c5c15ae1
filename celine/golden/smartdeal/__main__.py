"""`python -m celine.golden.smartdeal [--json]`: the SmartDeal report on the digits ViT."""

from .report import main

main()
