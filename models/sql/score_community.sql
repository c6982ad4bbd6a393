-- Category and index scores per community from _score_indicator: a category is the mean of its indicator
-- scores; the index is the weighted mean of category scores with weights (_scheme_category) re-normalised
-- over the categories that have data. coverage = share of the total weight that had data.
-- Floating-point aggregates are ordered so that the same inputs give bit-identical scores on every run.
WITH cat AS (
    SELECT community_key, category, avg(score ORDER BY indicator_code) AS score, count(*) AS n_indicators
    FROM _score_indicator
    GROUP BY ALL
),
total AS (
    SELECT sum(weight) AS w FROM _scheme_category
)
SELECT c.community_key,
       sum(c.score * s.weight ORDER BY c.category) / sum(s.weight ORDER BY c.category) AS score,
       sum(s.weight ORDER BY c.category) / any_value(total.w) AS coverage,
       list({'category': c.category, 'score': c.score, 'weight': s.weight} ORDER BY c.category) AS categories
FROM cat c
JOIN _scheme_category s USING (category)
CROSS JOIN total
GROUP BY c.community_key
