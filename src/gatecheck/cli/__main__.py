"""``python -m gatecheck.cli``."""

from gatecheck.cli import main

main()
