-- Indicator scores 0-100 per community for one period ($period_key), under the scheme loaded into
-- _scheme_indicator (indicator, category, direction). Relative indicators are min-max normalised within the
-- community's city and quarter; flags score 0/100; a target band scores 100 inside and falls off outside.
-- A relative indicator on which every community of the city has the same value says nothing about rank: it
-- is left out for that city and quarter (weights re-normalise), rather than giving everyone 100.
WITH base AS (
    SELECT f.community_key, c.city_code, f.indicator_code, f.value, s.direction, s.category,
           i.valid_min, i.valid_max
    FROM fact_indicator_value f
    JOIN dim_community c USING (community_key)
    JOIN _scheme_indicator s USING (indicator_code)
    JOIN dim_indicator i USING (indicator_code)
    WHERE f.period_key = $period_key
),
bounded AS (
    SELECT *, min(value) OVER w AS lo, max(value) OVER w AS hi
    FROM base
    WINDOW w AS (PARTITION BY city_code, indicator_code)
)
SELECT community_key,
       indicator_code,
       category,
       -- clamped: 100 * (v - lo) / (hi - lo) can land one ulp above 100
       least(100.0, greatest(0.0, CASE
           WHEN direction = 'flag_true_good'  THEN 100 * value
           WHEN direction = 'flag_false_good' THEN 100 * (1 - value)
           WHEN direction = 'target_band' THEN
                CASE WHEN value BETWEEN valid_min AND valid_max THEN 100
                     ELSE greatest(0, 100 - 100 * least(abs(value - valid_min), abs(value - valid_max))
                                            / nullif(valid_max - valid_min, 0)) END
           WHEN hi = lo THEN 100
           WHEN direction = 'lower_better' THEN 100 * (hi - value) / (hi - lo)
           ELSE 100 * (value - lo) / (hi - lo)
       END)) AS score
FROM bounded
WHERE NOT (hi = lo AND direction NOT IN ('flag_true_good', 'flag_false_good', 'target_band'))
