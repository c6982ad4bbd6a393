-- agg_indicator_value for one period ($period_key): community values rolled up to street, district and city
-- by each indicator's rule (dim_indicator.aggregation):
--   sum    counts, amounts, areas
--   ratio  sum(numerator) / sum(denominator) x ratio_scale; NULL unless every reporting member sent both
--          (an average of rates is never taken)
--   share  flags: share of reporting communities with the flag set
--   mean   levels that do not add up (average wage, average age, inspection score, ordinal grade)
-- Communities are placed by the registry version the value was reported against (boundaries as they were).
-- Sums are taken in DECIMAL(38,10), which is associative, so reruns give bit-identical results whatever
-- order DuckDB's threads add in (each value is rounded to 1e-10 first).
WITH p AS (
    SELECT start_date, end_date FROM dim_period WHERE period_key = $period_key
),
expected AS (   -- communities that should report in the period (valid on its last day)
    SELECT c.* FROM dim_community c, p
    WHERE c.valid_from <= p.end_date AND (c.valid_to IS NULL OR c.valid_to > p.end_date)
),
vals AS (
    SELECT f.community_key, f.indicator_code, f.value, f.numerator, f.denominator,
           c.street_code, c.street, c.district_code, c.district, c.city_code, c.city
    FROM fact_indicator_value f
    JOIN dim_community c USING (community_key)
    WHERE f.period_key = $period_key
),
units AS (      -- one row per (level, entity) with its expected member count
    SELECT 'street' AS entity_level, street_code AS entity_code, any_value(street) AS entity_name,
           any_value(district_code) AS parent_code, count(*) AS n_expected
    FROM expected GROUP BY street_code
    UNION ALL
    SELECT 'district', district_code, any_value(district), any_value(city_code), count(*)
    FROM expected GROUP BY district_code
    UNION ALL
    SELECT 'city', city_code, any_value(city), NULL, count(*)
    FROM expected GROUP BY city_code
),
long AS (
    SELECT 'street' AS entity_level, street_code AS entity_code, community_key, indicator_code, value, numerator, denominator FROM vals
    UNION ALL
    SELECT 'district', district_code, community_key, indicator_code, value, numerator, denominator FROM vals
    UNION ALL
    SELECT 'city', city_code, community_key, indicator_code, value, numerator, denominator FROM vals
),
rolled AS (
    SELECT l.entity_level, l.entity_code, l.indicator_code, i.aggregation,
           count(*)                                                   AS n_reporting,
           count(*) FILTER (WHERE l.numerator IS NOT NULL AND l.denominator IS NOT NULL) AS n_with_ratio_parts,
           sum(l.value::DECIMAL(38, 10))::DOUBLE         AS v_sum,
           (sum(l.value::DECIMAL(38, 10)) / count(l.value))::DOUBLE AS v_mean,
           sum(l.numerator::DECIMAL(38, 10))::DOUBLE     AS num_sum,
           sum(l.denominator::DECIMAL(38, 10))::DOUBLE   AS den_sum,
           any_value(coalesce(i.ratio_scale, 1))                      AS ratio_scale
    FROM long l
    JOIN dim_indicator i USING (indicator_code)
    GROUP BY ALL
)
SELECT r.entity_level,
       r.entity_code,
       u.entity_name,
       u.parent_code,
       r.indicator_code,
       $period_key AS period_key,
       CASE r.aggregation
            WHEN 'sum'   THEN r.v_sum
            WHEN 'share' THEN r.v_mean
            WHEN 'mean'  THEN r.v_mean
            WHEN 'ratio' THEN CASE WHEN r.n_with_ratio_parts = r.n_reporting AND r.den_sum > 0
                                   THEN r.num_sum / r.den_sum * r.ratio_scale END
       END AS value,
       CASE WHEN r.aggregation = 'ratio' AND r.n_with_ratio_parts = r.n_reporting THEN r.num_sum END AS numerator,
       CASE WHEN r.aggregation = 'ratio' AND r.n_with_ratio_parts = r.n_reporting THEN r.den_sum END AS denominator,
       r.n_reporting,
       u.n_expected,
       CASE r.aggregation
            WHEN 'ratio' THEN CASE WHEN r.n_with_ratio_parts = r.n_reporting AND r.den_sum > 0 THEN 'ratio_of_sums'
                                   ELSE 'ratio_missing_parts' END
            WHEN 'share' THEN 'share_of_communities'
            ELSE r.aggregation
       END AS method
FROM rolled r
JOIN units u USING (entity_level, entity_code)
