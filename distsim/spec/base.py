"""The base of every spec model and the constrained number types its fields use.

Every model forbids unknown fields (a misspelt key is an error naming it, never a silently ignored
setting), rejects NaN and infinity, and is frozen. A bound on an optional field (`X | None`) has to
sit inside the type, hence the bounded aliases next to the plain ones.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=64)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]

# Bounded versions: hardware figures, rates and sizes (<= 1e12), small durations (<= 1e6 s),
# counts (<= 1e6) and tensor-parallel degrees (<= 1024).
BoundedPositiveFloat = Annotated[float, Field(gt=0, le=1e12)]
BoundedSeconds = Annotated[float, Field(ge=0, le=1e6)]
BoundedCount = Annotated[int, Field(gt=0, le=1_000_000)]
ParallelDegree = Annotated[int, Field(gt=0, le=1024)]


class StrictModel(BaseModel):
    """Base of every spec model: unknown fields, NaN and infinity are errors; models are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
