"""One evaluation, step by step: :mod:`.plan` (which checks, over which windows, with which
parameters), the sources' answers (the engine's fetch), :mod:`.validation` (Great
Expectations, and nothing else), :mod:`.compare` (a comparison's two sides joined),
:mod:`.gate` (checks judged into a verdict with requires, soak, waivers and approvals),
:mod:`.engine` (the one place that holds sources, the ledger and the validation thread, and
records). Beside it: :mod:`.backtest` (a gate over past moments), :mod:`.explain` (what a gate
would send, nothing run), :mod:`.sourcecheck` (``gatecheck check-sources``) and
:mod:`.overtime` (a check and a verdict in the light of the phase's earlier evaluations:
accumulation, deadlines, shadow checks).
"""
