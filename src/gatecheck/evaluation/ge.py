"""Great Expectations, imported with what gatecheck never uses of it deferred.

Importing this module imports GE, which takes seconds: :mod:`gatecheck.evaluation.validation`
imports it inside its functions (only a process that validates pays for it) and the service's
fork server imports it once for all its workers. altair (GE's renderers) and scipy.stats (its
distribution expectations) run on their first use instead of during GE's import: 0.8 s of CPU
of its 2.7 s (:mod:`gatecheck._deferred`).
"""

from gatecheck._deferred import deferring

with deferring("altair", "scipy.stats"):
    import great_expectations as gx

__all__ = ["gx"]
