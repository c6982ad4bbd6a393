"""Publish time of a large quarter into the lake (docs/lake.md, 实测).

    SHEQU_HOME=... SHEQU_LAKE_NAMESPACE=bench .venv/bin/python scripts/lake_publish_bench.py SRC.duckdb [FACTOR] [QUARTER]

Replicates QUARTER (default 2024Q1) of an embedded warehouse FACTOR times (default 152: the 3-quarter test sample's
132 communities become 20,064) into a scratch DuckDB next to SRC (community keys and codes offset, so rows stay
distinct), then publishes that quarter twice and reads it back through lake.attach. Measures the lake's write and
read path only, not reading files or appraisal.
"""
import sys
import time
from pathlib import Path

import duckdb

from shequ import lake

src = Path(sys.argv[1])
factor = int(sys.argv[2]) if len(sys.argv) > 2 else 152
q = sys.argv[3] if len(sys.argv) > 3 else "2024Q1"
dst = src.with_name(f"{src.stem}_x{factor}_{q}.duckdb")
if not dst.exists():
    con = duckdb.connect(str(dst))
    con.execute(f"ATTACH '{src}' AS s (READ_ONLY)")
    rep = f"range(0, {factor}) r(k)"
    con.execute(f"CREATE TABLE fact_indicator_value AS SELECT * REPLACE (community_key + k * 1000000 AS community_key) "
                f"FROM s.fact_indicator_value, {rep} WHERE period_key = '{q}'")
    for t in ("fact_score", "fact_ranking"):
        con.execute(f"CREATE TABLE {t} AS SELECT * REPLACE (CASE WHEN entity_level = 'community' "
                    f"THEN entity_code || '-' || k ELSE entity_code END AS entity_code) FROM s.{t}, {rep} "
                    f"WHERE period_key = '{q}' AND (entity_level = 'community' OR k = 0)")
    for t in lake.KEY_TABLES:
        if t not in ("fact_indicator_value", "fact_score", "fact_ranking"):
            con.execute(f"CREATE TABLE {t} AS SELECT * FROM s.{t}")
    con.close()
con = duckdb.connect(str(dst), read_only=True)
n = con.execute("SELECT count(DISTINCT community_key), count(*) FROM fact_indicator_value").fetchall()[0]
print(f"{q}: {n[0]} communities, {n[1]} fact rows")
for _ in range(2):
    r = lake.publish_quarter(con, q)
    print(f"publish {r['seconds']} s, {sum(r['rows'].values())} rows")
t = time.perf_counter()
c = duckdb.connect()
lake.attach(c)
got = c.execute(f"SELECT count(*) FROM fact_indicator_value WHERE period_key = '{q}'").fetchall()[0][0]
print(f"attach + count {time.perf_counter() - t:.2f} s ({got} rows)")
