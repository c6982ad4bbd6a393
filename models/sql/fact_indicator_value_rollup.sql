-- Community values for half-years and years (created as a view), rolled up from the quarterly facts by each
-- indicator's time rule (dim_indicator.time_rollup):
--   last           the latest quarter's value and parts: stocks, flags, surveys and end-of-period rates
--   sum            the quarters added: flows (placements, cases, activities)
--   ratio_of_sums  summed numerators over summed denominators: rates of events (attendance, mediation),
--                  never an average of the quarters' rates; NULL unless every quarter sent both parts
-- n_periods quarters contributed out of n_expected; a partial year is visible, not hidden.
-- 'last' takes value and parts from the same quarter (one struct), since arg_max skips NULLs field by field.
WITH src AS (
    SELECT f.community_key, f.indicator_code, f.period_key, f.value, f.numerator, f.denominator,
           p.end_date, p.half_key, p.year_key, i.time_rollup, coalesce(i.ratio_scale, 1) AS ratio_scale
    FROM fact_indicator_value f
    JOIN dim_period p USING (period_key)
    JOIN dim_indicator i USING (indicator_code)
    WHERE p.period_type = 'quarter'
),
targets AS (
    SELECT *, half_key AS target_key, 2 AS n_expected FROM src
    UNION ALL
    SELECT *, year_key, 4 FROM src
)
SELECT community_key,
       indicator_code,
       target_key AS period_key,
       CASE time_rollup
            WHEN 'sum' THEN sum(value::DECIMAL(38, 10))::DOUBLE
            WHEN 'ratio_of_sums' THEN
                 CASE WHEN count(numerator) = count(*) AND count(denominator) = count(*) AND sum(denominator) > 0
                      THEN (sum(numerator::DECIMAL(38, 10)) / sum(denominator::DECIMAL(38, 10)))::DOUBLE
                           * any_value(ratio_scale) END
            ELSE arg_max({'v': value, 'n': numerator, 'd': denominator}, end_date).v
       END AS value,
       CASE time_rollup WHEN 'last' THEN arg_max({'v': value, 'n': numerator, 'd': denominator}, end_date).n
                        ELSE sum(numerator::DECIMAL(38, 10))::DOUBLE END AS numerator,
       CASE time_rollup WHEN 'last' THEN arg_max({'v': value, 'n': numerator, 'd': denominator}, end_date).d
                        ELSE sum(denominator::DECIMAL(38, 10))::DOUBLE END AS denominator,
       count(*)                    AS n_periods,
       any_value(n_expected)       AS n_expected,
       arg_max(period_key, end_date) AS last_period,
       time_rollup                 AS method
FROM targets
GROUP BY community_key, indicator_code, target_key, time_rollup
