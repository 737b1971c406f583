"""Great Expectations, imported with what gatecheck never uses of it deferred.

Importing this module imports GE, which takes seconds: :mod:`gatecheck.evaluation.validation`
imports it inside its functions (only a process that validates pays for it) and the service's
fork server imports it once for all its workers. altair (GE's renderers) and scipy.stats (its
distribution expectations) run on their first use instead of during GE's import: 0.8 s of CPU
of its 2.7 s (:mod:`gatecheck._deferred`).

The import leaves several hundred thousand objects that live as long as the process (modules,
classes, GE's registries, pydantic's schemas). Python's cyclic garbage collector scanned them
all again in every full collection — about a fifth of an evaluation's CPU (py-spy). So the
collector is paused during the import, and afterwards every object then alive is moved out of
its reach (:func:`gc.freeze`): collections scan only what evaluations allocate, and a worker
forked from the service's fork server keeps those pages shared instead of writing the
collector's marks into them. What was alive at that moment is never collected: module state,
and at most once the objects of whatever was running when GE was first imported.
"""

import gc

from gatecheck._deferred import deferring

_collecting = gc.isenabled()
gc.disable()
try:
    with deferring("altair", "scipy.stats"):
        import great_expectations as gx
finally:
    if _collecting:
        gc.enable()
gc.freeze()

__all__ = ["gx"]
