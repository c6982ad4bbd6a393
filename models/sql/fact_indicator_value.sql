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
-- Cost at national scale (issue 11): hash tables and the sort carry fixed-width keys and values only. Indicator
-- and period are small integers while grouping, a cell's provenance is its staged row number until one join
-- fetches sheet/row/column/cell for the cells that land, and the rows are sorted (period, indicator, community:
-- warehouse.FACT_ORDER) before the per-file and per-indicator strings (file_id, source_file, indicator_code, unit)
-- are joined from the small raw_file and dim_indicator tables, so the sort never holds them.
WITH this_q AS (
    SELECT quarter, start_date FROM dim_period WHERE period_key = $period_key
),
files AS (        -- the loaded files numbered 1, 2, ... in ingestion order (file_k)
    SELECT file_id, source_file, ingest_seq, row_number() OVER (ORDER BY ingest_seq) AS file_k
    FROM raw_file WHERE status = 'loaded'
),
ind AS (          -- indicator codes as small integers, numbered in code order (the write order sorts on it)
    SELECT indicator_code, (row_number() OVER (ORDER BY indicator_code))::USMALLINT AS ind_id,
           time_rollup, aggregation, ratio_scale, unit
    FROM dim_indicator
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
periods AS (      -- the quarter itself and its three months; pid numbers them
    SELECT period_key, period_type, end_date, (row_number() OVER (ORDER BY period_key))::UTINYINT AS pid
    FROM dim_period
    WHERE period_key = $period_key OR (period_type = 'month' AND quarter_key = $period_key)
),
staged AS (      -- what picking the latest version needs; stg_row finds the row's provenance afterwards
    SELECT s.community_key, i.ind_id, p.pid, s.role, s.value, s.rowid AS stg_row, f.ingest_seq,
           p.period_type, p.end_date, coalesce(s.qualifier LIKE 'ytd%', FALSE) AS is_ytd     -- NULL: not ytd
    FROM stg_value s
    JOIN periods p USING (period_key)
    JOIN raw_file f USING (file_id)
    JOIN ind i USING (indicator_code)
    WHERE f.status = 'loaded'
),
month_cells AS (  -- cells reported by month (few, usually none)
    SELECT DISTINCT community_key, ind_id FROM staged WHERE period_type = 'month'
),
covered AS (      -- month cells the quarter itself also reported: the quarter wins (hash built on the few)
    SELECT DISTINCT q.community_key, q.ind_id FROM staged q
    SEMI JOIN month_cells m USING (community_key, ind_id)
    WHERE q.period_type = 'quarter'
),
per_version AS (  -- a month row only where the quarter itself was not reported; one row per community x
                  -- indicator x period x file version, roles pivoted; prov_row: the staged row whose provenance the
                  -- cell carries (value, else numerator, else denominator), is_ytd: whether its qualifier says ytd
    SELECT community_key, ind_id, pid, ingest_seq,
           any_value(period_type)                         AS period_type,
           any_value(end_date)                            AS end_date,
           max(value) FILTER (WHERE role = 'value')       AS v,
           max(value) FILTER (WHERE role = 'numerator')   AS n,
           max(value) FILTER (WHERE role = 'denominator') AS d,
           arg_min(stg_row, CASE role WHEN 'value' THEN 0 WHEN 'numerator' THEN 1 ELSE 2 END) AS prov_row,
           arg_min(is_ytd, CASE role WHEN 'value' THEN 0 WHEN 'numerator' THEN 1 ELSE 2 END)  AS is_ytd
    FROM (SELECT * FROM staged WHERE period_type = 'quarter'
          UNION ALL
          SELECT m.* FROM staged m
          ANTI JOIN covered c USING (community_key, ind_id)
          WHERE m.period_type = 'month')
    GROUP BY community_key, ind_id, pid, ingest_seq
),
revised AS (      -- communities some cell of which more than one loaded file version reported (few, usually none)
    SELECT community_key FROM staged GROUP BY community_key HAVING min(ingest_seq) < max(ingest_seq)
),
latest AS (       -- the latest file version of each community x indicator x period wins, all roles together.
                  -- Only the revised communities need the second grouping; elsewhere each cell has one version
    SELECT community_key, ind_id, pid,
           any_value(period_type)             AS period_type,
           any_value(end_date)                AS end_date,
           arg_max_null(v, ingest_seq)        AS reported_value,
           arg_max_null(n, ingest_seq)        AS numerator,
           arg_max_null(d, ingest_seq)        AS denominator,
           count(*)                           AS n_versions,      -- distinct file versions of the cell
           arg_max(prov_row, ingest_seq)      AS prov_row,
           arg_max(is_ytd, ingest_seq)        AS is_ytd
    FROM per_version SEMI JOIN revised USING (community_key)
    GROUP BY community_key, ind_id, pid
    UNION ALL
    SELECT community_key, ind_id, pid, period_type, end_date, v, n, d, 1, prov_row, is_ytd
    FROM per_version ANTI JOIN revised USING (community_key)
),
pivoted AS (      -- quarter cells (year-to-date flows differenced); month cells rolled up to the quarter.
                  -- qual: how the provenance row's qualifier becomes the fact's (0 as is, 1 ytd differenced,
                  -- else the months rolled up)
    SELECT q.community_key, q.ind_id,
           CASE WHEN NOT diff THEN q.reported_value
                WHEN i.time_rollup = 'ratio_of_sums' THEN NULL      -- a rate of events: only its parts difference
                ELSE q.reported_value - y.v END                        AS reported_value,
           CASE WHEN diff THEN q.numerator - y.n ELSE q.numerator END     AS numerator,
           CASE WHEN diff THEN q.denominator - y.d ELSE q.denominator END AS denominator,
           q.n_versions,
           q.prov_row,
           NULL::BIGINT                                                AS months,
           diff
    FROM (SELECT * FROM latest WHERE period_type = 'quarter') q
    JOIN ind i USING (ind_id)
    LEFT JOIN prev_ytd y ON y.community_key = q.community_key AND y.indicator_code = i.indicator_code
    CROSS JOIN this_q t
    CROSS JOIN LATERAL (SELECT q.is_ytd AND i.time_rollup <> 'last' AND t.quarter > 1 AS diff)
    UNION ALL
    SELECT m.community_key, m.ind_id,
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
           arg_max(m.prov_row, m.end_date),
           count(*),
           FALSE
    FROM latest m
    JOIN ind i USING (ind_id)
    WHERE m.period_type = 'month'
    GROUP BY m.community_key, m.ind_id, i.time_rollup
    -- only a complete quarter: all three months for sums, the quarter's last month for end-of-period values;
    -- anything less stays out (the fact suite's warning lists it) rather than looking like a full quarter
    HAVING CASE i.time_rollup
                WHEN 'last' THEN max(m.end_date) = (SELECT max(end_date) FROM periods)
                ELSE count(*) = 3 END
),
from_files AS (   -- one row per community x indicator as the files say, its provenance fetched by staged row
    SELECT p.community_key,
           p.ind_id,
           CASE WHEN i.aggregation = 'ratio' AND p.numerator IS NOT NULL AND p.denominator > 0
                THEN p.numerator / p.denominator * coalesce(i.ratio_scale, 1)
                ELSE p.reported_value END                    AS value,
           p.reported_value,
           p.numerator,
           p.denominator,
           CASE WHEN p.months IS NOT NULL THEN 'months:' || p.months || '/3' || coalesce(',' || s.qualifier, '')
                WHEN p.diff THEN replace(s.qualifier, 'ytd', 'ytd_differenced')
                ELSE s.qualifier END                         AS qualifier,
           s.source_sheet,
           s.source_row,
           s.source_column,
           s.source_cell,
           r.file_k,
           p.n_versions
    FROM pivoted p
    JOIN ind i USING (ind_id)
    JOIN stg_value s ON s.rowid = p.prov_row
    JOIN files r USING (file_id)
    WHERE (CASE WHEN i.aggregation = 'ratio' AND p.numerator IS NOT NULL AND p.denominator > 0
                THEN p.numerator / p.denominator * coalesce(i.ratio_scale, 1)
                ELSE p.reported_value END) IS NOT NULL
),
corr AS (         -- active manual corrections of the quarter (shequ correct), the latest per cell, on the
                  -- community version valid on the quarter's last day
    SELECT m.correction_id, i.ind_id, m.value, d.community_key, d.community_code
    FROM manual_correction m
    JOIN ind i USING (indicator_code)
    JOIN dim_community d ON d.community_code = m.community_code
    JOIN dim_period q ON q.period_key = m.period_key
    WHERE m.period_key = $period_key AND m.active
      AND d.valid_from <= q.end_date AND (d.valid_to IS NULL OR d.valid_to > q.end_date)
    QUALIFY row_number() OVER (PARTITION BY m.community_code, m.indicator_code ORDER BY m.correction_id DESC) = 1
),
coded AS (
    SELECT f.*, d.community_code FROM from_files f JOIN dim_community d USING (community_key)
),
-- A correction wins over the files' value: the value is the corrected one, reported_value keeps what the file
-- stated, numerator/denominator are dropped (they no longer make the value), qualifier says corrected and
-- correction_id points at the audit row. The file's provenance stays when a file reported the cell; a value
-- only a correction gives names the correction as its source.
corrected AS (
    SELECT coalesce(f.community_key, c.community_key)                         AS community_key,
           coalesce(f.ind_id, c.ind_id)                                       AS ind_id,
           coalesce(c.value, f.value)                                         AS value,
           f.reported_value,
           CASE WHEN c.correction_id IS NULL THEN f.numerator END             AS numerator,
           CASE WHEN c.correction_id IS NULL THEN f.denominator END           AS denominator,
           CASE WHEN c.correction_id IS NULL THEN f.qualifier ELSE 'corrected' END AS qualifier,
           f.source_sheet,
           f.source_row,
           f.source_column,
           f.source_cell,
           f.file_k,
           coalesce(f.n_versions, 0)                                          AS n_versions,
           c.correction_id
    FROM coded f
    FULL JOIN corr c ON c.community_code = f.community_code AND c.ind_id = f.ind_id
),
ordered AS (      -- the write order (warehouse.FACT_ORDER; one period), sorted on the narrow rows
    SELECT * FROM corrected ORDER BY ind_id, community_key
),
-- the strings looked up by position after the sort (a join there could reorder the sorted rows): the indicator's
-- code and unit by ind_id, the file's id and name by file_k
codes AS (SELECT list(indicator_code ORDER BY ind_id) AS code, list(unit ORDER BY ind_id) AS unit FROM ind),
file_list AS (SELECT list(file_id ORDER BY file_k) AS file_id, list(source_file ORDER BY file_k) AS source_file
              FROM files)
SELECT o.community_key,
       c.code[o.ind_id]                                                   AS indicator_code,
       $period_key                                                        AS period_key,
       o.value,
       o.reported_value,
       o.numerator,
       o.denominator,
       c.unit[o.ind_id]                                                   AS unit,
       o.qualifier,
       coalesce(f.source_file[o.file_k], '人工更正 #' || o.correction_id) AS source_file,
       o.source_sheet,
       o.source_row,
       o.source_column,
       o.source_cell,
       coalesce(f.file_id[o.file_k], 'correction:' || o.correction_id) AS file_id,
       o.n_versions,
       current_timestamp::TIMESTAMP                                       AS loaded_at,
       o.correction_id
FROM ordered o
CROSS JOIN codes c
CROSS JOIN file_list f
