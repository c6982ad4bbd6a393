-- What scoring may read: the quarter's fact values that no HIGH validation rule holds back (quality_hold).
-- Held values are listed, with the rule that caught them, in quality_hold (README "数据质量").
SELECT f.*
FROM fact_indicator_value f
WHERE f.period_key = $period_key
  AND NOT EXISTS (SELECT 1 FROM quality_hold h
                  WHERE h.period_key = f.period_key
                    AND h.community_key = f.community_key
                    AND h.indicator_code = f.indicator_code)
