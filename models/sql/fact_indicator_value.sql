-- fact_indicator_value for one period ($period_key).
-- Per community x indicator x period x role the latest loaded file version wins (raw_file.ingest_seq);
-- earlier versions stay in stg_value. Roles (value / numerator / denominator) are pivoted into one row;
-- a rate is recomputed from its numerator and denominator when both came, the stated value kept beside it.
WITH versions AS (
    SELECT s.*, f.source_file, f.ingest_seq,
           row_number() OVER w_desc AS rn,
           count(*) OVER w_all AS n_versions
    FROM stg_value s
    JOIN raw_file f USING (file_id)
    WHERE s.period_key = $period_key AND f.status = 'loaded'
    WINDOW w_desc AS (PARTITION BY s.community_key, s.indicator_code, s.period_key, s.role ORDER BY f.ingest_seq DESC),
           w_all AS (PARTITION BY s.community_key, s.indicator_code, s.period_key, s.role)
),
pivoted AS (
    SELECT community_key, indicator_code, period_key,
           max(value) FILTER (WHERE role = 'value')       AS reported_value,
           max(value) FILTER (WHERE role = 'numerator')   AS numerator,
           max(value) FILTER (WHERE role = 'denominator') AS denominator,
           max(n_versions)                                AS n_versions,
           arg_min({'unit': unit, 'qualifier': qualifier, 'source_file': source_file, 'sheet': source_sheet,
                    'row': source_row, 'col': source_column, 'cell': source_cell, 'file_id': file_id},
                   CASE role WHEN 'value' THEN 0 WHEN 'numerator' THEN 1 ELSE 2 END) AS prov
    FROM versions
    WHERE rn = 1
    GROUP BY ALL
)
SELECT p.community_key,
       p.indicator_code,
       p.period_key,
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
