"""``gatecheck serve``: evaluate phases on a schedule, record them, serve gauges and an API.

Modules: :mod:`.core` (the service's state and schedule), :mod:`.collector` (``/metrics``),
:mod:`.app` (the routes), :mod:`.schemas` (the API's documents), :mod:`.auth` (tokens, rate
limits), :mod:`.middleware` (body limit, Host check), :mod:`.server` (uvicorn, signals,
``gatecheck serve``), :mod:`.worker` (the evaluation process) and :mod:`.notify`
(``notify:`` targets).

One asyncio event loop holds everything: APScheduler's asyncio scheduler runs one job per
interval (coalesced, one instance at a time), uvicorn serves the FastAPI app. A per-phase lock keeps
evaluations of one phase from overlapping, whether started by the schedule or by
``POST /api/v1/phases/{phase}/evaluate``. Sources have their own timeouts, so a slow one
costs its own checks, never the schedule.

A loop that cannot die: any exception in one evaluation is logged with its traceback and
kept as that phase's ``last_error``; the service carries on. A failing source degrades
verdicts to INCONCLUSIVE (its checks are ``error``) and ``gatecheck_source_up`` to 0.

Shutdown (SIGTERM/SIGINT): uvicorn stops serving, then the scheduler is shut down and the
cycles under way are cancelled and awaited — an evaluation in flight is dropped unrecorded,
or, if its verdict is complete, its record is written whole (one atomic INSERT) before the
engine closes the ledger.
Only the service's own tasks are cancelled; nothing is killed.
"""
