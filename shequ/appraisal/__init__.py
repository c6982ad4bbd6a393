"""三级评比: the scheme-driven composite index and appraisal engine (no Dagster; callable from a notebook).

    from shequ.appraisal import load_scheme, units_from_frame, run
"""

from .engine import Appraisal, Units, rank_desc, run, score_components, units_from_frame, weighted_components
from .scheme import Scheme, SchemeError, load_scheme

__all__ = ["Appraisal", "Scheme", "SchemeError", "Units", "load_scheme", "rank_desc", "run", "score_components",
           "units_from_frame", "weighted_components"]
