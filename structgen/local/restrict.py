"""Narrowing one step's candidate tokens where a back-off said so (``decode.Loop``): tokens ruled out at a
position, or the only ones wanted there. The candidates come as the grammar's allowed ids, or (when most tokens are
allowed) as the blocked ones; neither narrowing ever leaves a step with no candidate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["only", "without"]


def without(ids: NDArray[np.intp] | None, blocked: NDArray[np.intp] | None,
             banned: set[int] | None) -> tuple[NDArray[np.intp] | None, NDArray[np.intp] | None]:
    """The candidates less the ``banned`` tokens (a back-off's), unless nothing would be left."""
    if not banned:
        return ids, blocked
    out = np.fromiter(banned, dtype=np.intp, count=len(banned))
    if ids is not None:
        keep = ids[~np.isin(ids, out)]
        return (keep if keep.size else ids), blocked
    return ids, out if blocked is None else np.union1d(blocked, out)


def only(ids: NDArray[np.intp] | None, blocked: NDArray[np.intp] | None,
          wanted: NDArray[np.intp]) -> tuple[NDArray[np.intp] | None, NDArray[np.intp] | None]:
    """The candidates that are also ``wanted`` (as allowed ids), unless none would be left."""
    if ids is not None:
        keep = ids[np.isin(ids, wanted)]
    else:
        keep = wanted if blocked is None else wanted[~np.isin(wanted, blocked)]
    return (keep, None) if keep.size else (ids, blocked)
