-- fact_indicator_value for one period ($period_key).
-- Per community x indicator x period, the latest loaded file version that reported the cell wins, for all of
-- its roles together (value, numerator, denominator): a corrected file's rate is never recomputed from an
-- older file's numerator and denominator. Earlier versions stay in stg_value. A rate is recomputed from its
-- numerator and denominator when both came, the stated value kept beside it.
WITH versions AS (
    SELECT s.*, f.source_file, f.ingest_seq,
           max(f.ingest_seq) OVER w_cell AS latest_seq,
           count(DISTINCT s.file_id) OVER w_cell AS n_versions
    FROM stg_value s
    JOIN raw_file f USING (file_id)
    WHERE s.period_key = $period_key AND f.status = 'loaded'
    WINDOW w_cell AS (PARTITION BY s.community_key, s.indicator_code, s.period_key)
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
    WHERE ingest_seq = latest_seq
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
