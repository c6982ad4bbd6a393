-- fact_indicator_value on today's boundaries (created as a view).
-- A value reported by a community that has since merged (or been renamed) is moved to its successor through
-- community_lineage, then values landing on the same current community, indicator and period are combined
-- by the indicator's rule: sum, ratio of summed parts, share, or mean. Splits are not apportioned: a split
-- predecessor's values stay with the predecessor and are not shown here. Read the past "as it was" from
-- fact_indicator_value itself.
WITH mapped AS (
    SELECT f.community_key AS source_key, f.indicator_code, f.period_key, f.value, f.numerator, f.denominator,
           coalesce(l.successor_code, c.community_code) AS current_code
    FROM fact_indicator_value f
    JOIN dim_community c USING (community_key)
    LEFT JOIN community_lineage l
           ON l.predecessor_code = c.community_code AND l.event IN ('merge', 'rename')
)
SELECT cur.community_key,
       cur.community_code,
       cur.name,
       m.indicator_code,
       m.period_key,
       CASE i.aggregation
            WHEN 'sum' THEN sum(m.value ORDER BY m.source_key)
            WHEN 'ratio' THEN CASE WHEN count(*) = 1 THEN any_value(m.value)
                                   WHEN count(m.numerator) = count(*) AND count(m.denominator) = count(*)
                                        AND sum(m.denominator) > 0
                                   THEN sum(m.numerator ORDER BY m.source_key) / sum(m.denominator ORDER BY m.source_key)
                                        * coalesce(any_value(i.ratio_scale), 1)
                              END
            ELSE avg(m.value ORDER BY m.source_key)
       END AS value,
       sum(m.numerator ORDER BY m.source_key)   AS numerator,
       sum(m.denominator ORDER BY m.source_key) AS denominator,
       count(*)           AS n_sources
FROM mapped m
JOIN dim_community cur ON cur.community_code = m.current_code AND cur.is_current
JOIN dim_indicator i USING (indicator_code)
GROUP BY cur.community_key, cur.community_code, cur.name, m.indicator_code, m.period_key, i.aggregation
