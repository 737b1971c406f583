"""gatecheck.render."""
