"""The base of every configuration model, for the config package and the source leaves alike
(each source module owns its configuration and query models)."""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

#: A name that becomes a column or a threshold: lowercase letters, digits and _.
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Thresholds are exported as float gauges and JSON numbers: beyond this they lose precision.
MAX_MAGNITUDE = 1e15


def sane_number(value: Any) -> Any:
    """A threshold, bound or minimum must be a finite number of a sane size (NaN would make
    every comparison false; 10**400 cannot become a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"must be at most {MAX_MAGNITUDE:.0e} in magnitude")
    return value


class Frozen(BaseModel):
    """Base for every configuration model: immutable, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
