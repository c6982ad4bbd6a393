"""Scores, rankings and titles for the warehouse: the entry point the pipeline and tests call.

The engine is shequ.appraisal (scheme files in models/schemes/); this module keeps the two names the rest of
the code base uses: load_scheme(path) and score_period(con, period_key, scheme).
"""

import duckdb

from .appraisal.scheme import Scheme, SchemeError, load_scheme
from .appraisal.store import appraise_period

__all__ = ["Scheme", "SchemeError", "load_scheme", "score_period"]


def score_period(con: duckdb.DuckDBPyConnection, period_key: str, scheme: Scheme, draws: int | None = None
                 ) -> dict[str, int]:
    """Replace one period's scores, rankings, titles and explanations under ``scheme``; returns row counts."""
    return appraise_period(con, period_key, scheme, draws=draws)
