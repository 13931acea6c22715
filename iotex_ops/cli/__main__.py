"""`python -m iotex_ops.cli ...` is `iotex-ops ...` (for hosts and roles that run the toolkit's interpreter)."""

from iotex_ops.cli import main

main(prog_name="iotex-ops")
