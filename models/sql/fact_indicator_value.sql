-- fact_indicator_value for one quarter ($period_key).
-- Per community x indicator, the latest loaded file version that reported the cell wins, for all of its roles
-- together (value, numerator, denominator): a corrected file's rate is never recomputed from an older file's
-- parts. Earlier versions stay in stg_value. A rate is recomputed from its numerator and denominator when both
-- came, the stated value kept beside it.
-- A cell reported for the quarter itself wins. A cell reported only by month (2024-07, 2024-08, 2024-09) is
-- rolled up by the indicator's time rule (dim_indicator.time_rollup): the latest month's value and parts for
-- stocks, flags, surveys and end-of-period rates; the months added for flows; summed parts for rates of
-- events. Only complete quarters roll up: all three months for sums, the last month for end-of-period values.
-- The qualifier then says months:k/3 (k < 3 only for end-of-period values).
-- A year-to-date cell (qualifier ytd: 截至9月30日, 1-9月) is the level itself for stocks and end-of-period rates;
-- for flows and rates of events it is differenced against the previous quarter's year-to-date cell (parts
-- too) and marked ytd_differenced. Without that previous cell it cannot be differenced and stays out (the
-- fact suite's warning lists it).
-- Last, an active manual correction (manual_correction, `shequ correct`) replaces the files' value of its cell
-- or supplies one no file gave; correction_id says so.
WITH this_q AS (
    SELECT quarter, start_date FROM dim_period WHERE period_key = $period_key
),
prev_ytd AS (     -- previous quarter's year-to-date cells, latest file per cell, roles pivoted
    SELECT community_key, indicator_code,
           max(value) FILTER (WHERE role = 'value')       AS v,
           max(value) FILTER (WHERE role = 'numerator')   AS n,
           max(value) FILTER (WHERE role = 'denominator') AS d
    FROM (SELECT s.*, f.ingest_seq,
                 max(f.ingest_seq) OVER (PARTITION BY s.community_key, s.indicator_code) AS latest
          FROM stg_value s
          JOIN raw_file f USING (file_id)
          JOIN dim_period p USING (period_key)
          WHERE f.status = 'loaded' AND s.qualifier LIKE 'ytd%' AND p.period_type = 'quarter'
            AND p.end_date = (SELECT start_date FROM this_q) - INTERVAL 1 DAY)
    WHERE ingest_seq = latest
    GROUP BY community_key, indicator_code
),
periods AS (      -- the quarter itself and its three months
    SELECT period_key, period_type, end_date FROM dim_period
    WHERE period_key = $period_key OR (period_type = 'month' AND quarter_key = $period_key)
),
staged AS (      -- what picking the latest version needs; stg_row finds the row's provenance afterwards
    SELECT s.community_key, s.indicator_code, s.period_key, s.role, s.value, s.rowid AS stg_row, f.ingest_seq,
           p.period_type, p.end_date
    FROM stg_value s
    JOIN periods p USING (period_key)
    JOIN raw_file f USING (file_id)
    WHERE f.status = 'loaded'
),
month_cells AS (  -- cells reported by month (few, usually none)
    SELECT DISTINCT community_key, indicator_code FROM staged WHERE period_type = 'month'
),
covered AS (      -- month cells the quarter itself also reported: the quarter wins (hash built on the few)
    SELECT DISTINCT q.community_key, q.indicator_code FROM staged q
    SEMI JOIN month_cells m USING (community_key, indicator_code)
    WHERE q.period_type = 'quarter'
),
per_version AS (  -- a month row only where the quarter itself was not reported; one row per community x
                  -- indicator x period x file version, roles pivoted; prov_row: the staged row whose provenance the
                  -- cell carries (value, else numerator, else denominator). Fixed-width aggregates only: the
                  -- provenance strings are joined back once per cell below, not carried through the hash tables
    SELECT community_key, indicator_code, period_key, ingest_seq,
           any_value(period_type)                         AS period_type,
           any_value(end_date)                            AS end_date,
           max(value) FILTER (WHERE role = 'value')       AS v,
           max(value) FILTER (WHERE role = 'numerator')   AS n,
           max(value) FILTER (WHERE role = 'denominator') AS d,
           arg_min(stg_row, CASE role WHEN 'value' THEN 0 WHEN 'numerator' THEN 1 ELSE 2 END) AS prov_row
    FROM (SELECT * FROM staged WHERE period_type = 'quarter'
          UNION ALL
          SELECT m.* FROM staged m
          ANTI JOIN covered c USING (community_key, indicator_code)
          WHERE m.period_type = 'month')
    GROUP BY community_key, indicator_code, period_key, ingest_seq
),
latest AS (       -- the latest file version of each community x indicator x period wins, all roles together
    SELECT community_key, indicator_code, period_key,
           any_value(period_type)             AS period_type,
           any_value(end_date)                AS end_date,
           arg_max_null(v, ingest_seq)        AS reported_value,
           arg_max_null(n, ingest_seq)        AS numerator,
           arg_max_null(d, ingest_seq)        AS denominator,
           count(*)                           AS n_versions,      -- distinct file versions of the cell
           arg_max(prov_row, ingest_seq)      AS prov_row
    FROM per_version
    GROUP BY community_key, indicator_code, period_key
),
per_period AS (   -- one row per community x indicator x period (quarter or month), with its provenance
    SELECT l.community_key, l.indicator_code, l.period_key, l.period_type, l.end_date, l.reported_value,
           l.numerator, l.denominator, l.n_versions,
           {'unit': s.unit, 'qualifier': s.qualifier, 'source_file': f.source_file, 'sheet': s.source_sheet,
            'row': s.source_row, 'col': s.source_column, 'cell': s.source_cell, 'file_id': s.file_id} AS prov
    FROM latest l
    JOIN stg_value s ON s.rowid = l.prov_row
    JOIN raw_file f USING (file_id)
),
pivoted AS (      -- quarter cells (year-to-date flows differenced); month cells rolled up to the quarter
    SELECT q.community_key, q.indicator_code,
           CASE WHEN NOT diff THEN q.reported_value
                WHEN i.time_rollup = 'ratio_of_sums' THEN NULL      -- a rate of events: only its parts difference
                ELSE q.reported_value - y.v END                        AS reported_value,
           CASE WHEN diff THEN q.numerator - y.n ELSE q.numerator END     AS numerator,
           CASE WHEN diff THEN q.denominator - y.d ELSE q.denominator END AS denominator,
           q.n_versions,
           CASE WHEN diff THEN struct_update(q.prov, qualifier := replace(q.prov.qualifier, 'ytd', 'ytd_differenced'))
                ELSE q.prov END                                        AS prov
    FROM (SELECT *, coalesce(prov.qualifier LIKE 'ytd%', FALSE) AS is_ytd    -- NULL qualifier: not ytd
          FROM per_period WHERE period_type = 'quarter') q
    JOIN dim_indicator i USING (indicator_code)
    LEFT JOIN prev_ytd y USING (community_key, indicator_code)
    CROSS JOIN this_q t
    CROSS JOIN LATERAL (SELECT q.is_ytd AND i.time_rollup <> 'last' AND t.quarter > 1 AS diff)
    UNION ALL
    SELECT m.community_key, m.indicator_code,
           CASE i.time_rollup
                WHEN 'sum' THEN sum(m.reported_value::DECIMAL(38, 10))::DOUBLE
                WHEN 'ratio_of_sums' THEN NULL
                ELSE arg_max({'v': m.reported_value, 'n': m.numerator, 'd': m.denominator}, m.end_date).v
           END,
           CASE i.time_rollup WHEN 'last' THEN arg_max({'v': m.reported_value, 'n': m.numerator,
                                                        'd': m.denominator}, m.end_date).n
                ELSE CASE WHEN count(m.numerator) = count(*) THEN sum(m.numerator::DECIMAL(38, 10))::DOUBLE END
           END,
           CASE i.time_rollup WHEN 'last' THEN arg_max({'v': m.reported_value, 'n': m.numerator,
                                                        'd': m.denominator}, m.end_date).d
                ELSE CASE WHEN count(m.denominator) = count(*) THEN sum(m.denominator::DECIMAL(38, 10))::DOUBLE END
           END,
           max(m.n_versions),
           struct_update(arg_max(m.prov, m.end_date),
                         qualifier := 'months:' || count(*) || '/3'
                                      || coalesce(',' || arg_max(m.prov, m.end_date).qualifier, ''))
    FROM per_period m
    JOIN dim_indicator i USING (indicator_code)
    WHERE m.period_type = 'month'
    GROUP BY m.community_key, m.indicator_code, i.time_rollup
    -- only a complete quarter: all three months for sums, the quarter's last month for end-of-period values;
    -- anything less stays out (the fact suite's warning lists it) rather than looking like a full quarter
    HAVING CASE i.time_rollup
                WHEN 'last' THEN max(m.end_date) = (SELECT max(end_date) FROM periods)
                ELSE count(*) = 3 END
),
from_files AS (   -- one row per community x indicator as the files say
    SELECT p.community_key,
           p.indicator_code,
           $period_key                                       AS period_key,
           CASE WHEN i.aggregation = 'ratio' AND p.numerator IS NOT NULL AND p.denominator > 0
                THEN p.numerator / p.denominator * coalesce(i.ratio_scale, 1)
                ELSE p.reported_value END                    AS value,
           p.reported_value,
           p.numerator,
           p.denominator,
           i.unit                                            AS unit,
           p.prov.qualifier                                  AS qualifier,
           p.prov.source_file                                AS source_file,
           p.prov.sheet                                      AS source_sheet,
           p.prov.row                                        AS source_row,
           p.prov.col                                        AS source_column,
           p.prov.cell                                       AS source_cell,
           p.prov.file_id                                    AS file_id,
           p.n_versions,
           current_timestamp::TIMESTAMP                      AS loaded_at
    FROM pivoted p
    JOIN dim_indicator i USING (indicator_code)
    WHERE (CASE WHEN i.aggregation = 'ratio' AND p.numerator IS NOT NULL AND p.denominator > 0
                THEN p.numerator / p.denominator * coalesce(i.ratio_scale, 1)
                ELSE p.reported_value END) IS NOT NULL
),
corr AS (         -- active manual corrections of the quarter (shequ correct), the latest per cell, on the
                  -- community version valid on the quarter's last day
    SELECT m.correction_id, m.indicator_code, m.value, d.community_key, d.community_code
    FROM manual_correction m
    JOIN dim_community d ON d.community_code = m.community_code
    JOIN dim_period q ON q.period_key = m.period_key
    WHERE m.period_key = $period_key AND m.active
      AND d.valid_from <= q.end_date AND (d.valid_to IS NULL OR d.valid_to > q.end_date)
    QUALIFY row_number() OVER (PARTITION BY m.community_code, m.indicator_code ORDER BY m.correction_id DESC) = 1
),
coded AS (
    SELECT f.*, d.community_code FROM from_files f JOIN dim_community d USING (community_key)
)
-- A correction wins over the files' value: the value is the corrected one, reported_value keeps what the file
-- stated, numerator/denominator are dropped (they no longer make the value), qualifier says corrected and
-- correction_id points at the audit row. The file's provenance stays when a file reported the cell; a value
-- only a correction gives names the correction as its source.
SELECT coalesce(f.community_key, c.community_key)                         AS community_key,
       coalesce(f.indicator_code, c.indicator_code)                       AS indicator_code,
       $period_key                                                        AS period_key,
       coalesce(c.value, f.value)                                         AS value,
       f.reported_value,
       CASE WHEN c.correction_id IS NULL THEN f.numerator END             AS numerator,
       CASE WHEN c.correction_id IS NULL THEN f.denominator END           AS denominator,
       coalesce(f.unit, i.unit)                                           AS unit,
       CASE WHEN c.correction_id IS NULL THEN f.qualifier ELSE 'corrected' END AS qualifier,
       coalesce(f.source_file, '人工更正 #' || c.correction_id)           AS source_file,
       f.source_sheet,
       f.source_row,
       f.source_column,
       f.source_cell,
       coalesce(f.file_id, 'correction:' || c.correction_id)              AS file_id,
       coalesce(f.n_versions, 0)                                          AS n_versions,
       coalesce(f.loaded_at, current_timestamp::TIMESTAMP)                AS loaded_at,
       c.correction_id
FROM coded f
FULL JOIN corr c ON c.community_code = f.community_code AND c.indicator_code = f.indicator_code
JOIN dim_indicator i ON i.indicator_code = coalesce(f.indicator_code, c.indicator_code)
