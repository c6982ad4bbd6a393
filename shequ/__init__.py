"""shequ: 社区建设指标仓库 (community-construction indicator warehouse).

Plain-Python domain library: reading survey files, normalising values, loading the DuckDB star schema,
scoring and ranking. It is usable from a notebook without Dagster; ``pipelines/`` only wires it into assets.
"""

__version__ = "0.1.0"
