"""Scores and rankings from a scheme file (models/schemes/*.yaml).

This is the first scheme reading (category weights, catalogue directions, min-max within city): the seam the
full 三级评比 engine fills. The scheme is loaded into temp tables (_scheme_indicator, _scheme_category,
_scheme_grade) and the SQL models score_indicator -> score_community -> ranking_community -> ranking_area run
in DuckDB; one period's fact_score and fact_ranking rows are replaced in a single transaction.
"""

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import yaml

from .catalogue import load_catalogue
from .config import DEFAULT_SCHEME
from .warehouse import bind, model_sql, transaction


@dataclass(frozen=True)
class Scheme:
    scheme_id: str
    version: str
    name: str
    categories: dict[str, float]
    grades: list[tuple[str, float]]
    rank_round: int = 2
    min_coverage: float = 0.6
    exclude_indicators: tuple[str, ...] = ()
    direction_overrides: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def indicators(self) -> pl.DataFrame:
        """Scored indicators: catalogue minus `context` and excluded, with the scheme's directions."""
        cat = load_catalogue()
        df = cat.filter((pl.col("direction") != "context") & ~pl.col("code").is_in(list(self.exclude_indicators))
                        & pl.col("category").is_in(list(self.categories)))
        return df.select(
            pl.col("code").alias("indicator_code"), "category",
            pl.col("code").replace_strict(self.direction_overrides, default=pl.col("direction"),
                                          return_dtype=pl.String).alias("direction"))


def load_scheme(path: Path = DEFAULT_SCHEME) -> Scheme:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"评价方案 {path} 无法读取：{e}") from e
    for key in ("scheme_id", "version", "categories", "grades"):
        if key not in doc:
            raise ValueError(f"评价方案 {path} 缺少字段 {key}")
    cats = {str(k): float(v) for k, v in doc["categories"].items()}
    known = set(load_catalogue()["category"].unique().to_list())
    unknown = set(cats) - known
    if unknown:
        raise ValueError(f"评价方案 {path} 含目录中不存在的类别：{sorted(unknown)}")
    if any(w < 0 for w in cats.values()) or sum(cats.values()) <= 0:
        raise ValueError(f"评价方案 {path} 的权重必须非负且总和为正")
    grades = sorted(((str(g["grade"]), float(g["min"])) for g in doc["grades"]), key=lambda x: -x[1])
    return Scheme(scheme_id=str(doc["scheme_id"]), version=str(doc["version"]), name=str(doc.get("name", "")),
                  categories=cats, grades=grades, rank_round=int(doc.get("rank_round", 2)),
                  min_coverage=float(doc.get("min_coverage", 0.6)),
                  exclude_indicators=tuple(doc.get("exclude_indicators") or ()),
                  direction_overrides=dict(doc.get("direction_overrides") or {}), path=path)


def _load_scheme_tables(con: duckdb.DuckDBPyConnection, scheme: Scheme) -> None:
    con.register("_si", scheme.indicators())
    con.execute("CREATE OR REPLACE TEMP TABLE _scheme_indicator AS SELECT * FROM _si")
    con.unregister("_si")
    con.register("_sc", pl.DataFrame({"category": list(scheme.categories),
                                      "weight": list(scheme.categories.values())}))
    con.execute("CREATE OR REPLACE TEMP TABLE _scheme_category AS SELECT * FROM _sc")
    con.unregister("_sc")
    con.register("_sg", pl.DataFrame({"grade": [g for g, _ in scheme.grades],
                                      "min_score": [m for _, m in scheme.grades]}))
    con.execute("CREATE OR REPLACE TEMP TABLE _scheme_grade AS SELECT * FROM _sg")
    con.unregister("_sg")


def score_period(con: duckdb.DuckDBPyConnection, period_key: str, scheme: Scheme) -> dict[str, int]:
    """Replace one period's scores and rankings under ``scheme``. Returns row counts written."""
    _load_scheme_tables(con, scheme)
    p = {"period_key": period_key}
    con.execute(f"CREATE OR REPLACE TEMP TABLE _score_indicator AS {model_sql('score_indicator')}", p)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _score_community AS {model_sql('score_community')}")
    rp = {"period_key": period_key, "scheme_id": scheme.scheme_id, "scheme_version": scheme.version,
          "rank_round": scheme.rank_round, "min_coverage": scheme.min_coverage}
    with transaction(con):
        con.execute("DELETE FROM fact_score WHERE period_key = ? AND scheme_id = ?", [period_key, scheme.scheme_id])
        con.execute("DELETE FROM fact_ranking WHERE period_key = ? AND scheme_id = ?",
                    [period_key, scheme.scheme_id])
        common = "'community', c.community_code, $period_key, $scheme_id, $scheme_version"
        sp = {"period_key": period_key, "scheme_id": scheme.scheme_id, "scheme_version": scheme.version}
        con.execute(f"""INSERT INTO fact_score
            SELECT {common}, 'indicator', s.indicator_code, s.score, NULL
            FROM _score_indicator s JOIN dim_community c USING (community_key)""", sp)
        con.execute(f"""INSERT INTO fact_score
            SELECT {common}, 'category', x.category, x.score, x.weight
            FROM (SELECT community_key, unnest(categories, recursive := true) FROM _score_community) x
            JOIN dim_community c USING (community_key)""", sp)
        con.execute(f"""INSERT INTO fact_score
            SELECT {common}, 'index', $scheme_id, s.score, NULL
            FROM _score_community s JOIN dim_community c USING (community_key)""", sp)
        for model in ("ranking_community", "ranking_area"):
            sql = model_sql(model)
            con.execute(f"INSERT INTO fact_ranking SELECT * FROM ({sql})", bind(sql, rp))
    counts = dict(con.execute(
        "SELECT entity_level, count(*) FROM fact_ranking WHERE period_key = ? AND scheme_id = ? GROUP BY 1",
        [period_key, scheme.scheme_id]).fetchall())
    counts["fact_score"] = con.execute("SELECT count(*) FROM fact_score WHERE period_key = ? AND scheme_id = ?",
                                       [period_key, scheme.scheme_id]).fetchall()[0][0]
    return counts
