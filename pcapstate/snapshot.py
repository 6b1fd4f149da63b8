"""``Analysis.states_at(t)``: every connection's pair of states at one moment.

What ``netstat -an`` on both hosts would have shown at ``t``, read from the
transitions table (the last transition of each endpoint at or before ``t``);
the rules for endpoints with no transition yet are in
:meth:`pcapstate.analysis.Analysis.states_at`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pcapstate.analysis import STATE_DTYPE
from pcapstate.states import SIDE_NAMES


def states_at(analysis, t, closed: bool = True) -> pd.DataFrame:
    """See :meth:`pcapstate.analysis.Analysis.states_at`."""
    kind, when = moment(t)
    flows = analysis.flows
    flows = flows[flows["start_epoch" if kind == "epoch" else "start"] <= when]
    ids = flows["flow"].to_numpy()
    result = flows[["flow", "client_addr", "client_port", "server_addr", "server_port"]].reset_index(drop=True)
    transitions = analysis.transitions
    since = {}
    for side in SIDE_NAMES:
        mine = transitions[(transitions["endpoint"] == side) & transitions["flow"].isin(ids)]
        final = flows[f"{side}_state"].cat.codes.to_numpy()
        codes, since[side] = _state_codes_at(mine, ids, final, "ts_epoch" if kind == "epoch" else "ts", when)
        result[f"{side}_state"] = pd.Categorical.from_codes(codes, dtype=STATE_DTYPE)
    for side in SIDE_NAMES:
        result[f"{side}_since"] = since[side]
    if not closed:
        ended = (result["client_state"] == "CLOSED") & (result["server_state"] == "CLOSED")
        result = result[~ended].reset_index(drop=True)
    return result


def moment(t) -> tuple[str, object]:
    """``t`` as ``("epoch", seconds)`` for a number, else ``("ts", UTC Timestamp)``.

    Numbers are compared with the ``*_epoch`` columns and times with the
    datetime columns, so a value taken from either compares exactly.
    """
    if isinstance(t, (bool, np.bool_)):
        raise TypeError(f"a time is a datetime, a pandas Timestamp or epoch seconds, not {t!r}")
    if isinstance(t, (int, float, np.integer, np.floating)):
        return "epoch", float(t)
    when = pd.Timestamp(t)
    return "ts", when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


def _state_codes_at(transitions: pd.DataFrame, ids: np.ndarray, final: np.ndarray,
                    column: str, when) -> tuple[np.ndarray, pd.Series]:
    """State codes of one endpoint of the flows ``ids`` at ``when``, and since when they hold."""
    done = transitions[column] <= when
    last = transitions[done].groupby("flow").tail(1).set_index("flow")
    first = transitions[~done].groupby("flow").head(1).set_index("flow")
    codes = np.array(final, dtype=np.int64)
    has_next = np.isin(ids, first.index.to_numpy())
    codes[has_next] = first["from_state"].cat.codes.reindex(ids).to_numpy()[has_next]
    has_last = np.isin(ids, last.index.to_numpy())
    codes[has_last] = last["to_state"].cat.codes.reindex(ids).to_numpy()[has_last]
    since = last["ts"].reindex(ids).astype(transitions["ts"].dtype).reset_index(drop=True)
    return codes, since
