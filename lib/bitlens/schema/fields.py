"""The schema's vocabulary: a leaf (`Field`), a mapping of user-named entries (`MapOf`) and the error a profile that
does not fit raises. Kept apart from `bitlens.config`, which validates with them, so the schema modules import
downwards only."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

REQUIRED = object()


class ParamsError(ValueError):
    """A profile or override that does not fit the schema."""


@dataclass(frozen=True)
class Field:
    """One leaf of the schema."""

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    choices: Sequence[Any] | None = None
    help: str = ""
    nullable: bool = False
    item_type: type | tuple[type, ...] | None = None  # for list fields
    # a dataset/weights path the profile needs before any work; `hint` says where to get it
    data_path: bool = False
    hint: str = ""
    # inclusive bounds of a number (counts ≥ 1, rates in (0, 1], ...); None = unbounded. For a list field,
    # the bounds (and choices) apply to each item
    min: float | None = None
    max: float | None = None
    above: float | None = None  # exclusive lower bound (rates, temperatures: > 0)

    def out_of_range(self, value: float) -> bool:
        return ((self.min is not None and value < self.min) or (self.max is not None and value > self.max)
                or (self.above is not None and value <= self.above))

    def range_text(self) -> str:
        low = (f"greater than {self.above:g}" if self.above is not None else
               f"at least {self.min:g}" if self.min is not None else "")
        high = f"at most {self.max:g}" if self.max is not None else ""
        return " and ".join(x for x in (low, high) if x)


@dataclass(frozen=True)
class MapOf:
    """A mapping with user-chosen keys (e.g. named experiments), each value validated by `schema`."""

    schema: Mapping[str, Any]
    help: str = ""
    default: Any = field(default_factory=dict)
