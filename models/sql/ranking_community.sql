-- fact_ranking rows for communities in one period: every community valid on the period's last day is listed
-- once per scope (its street, its district, its city). Ranks use competition ranking ("min": ties share the
-- best rank) on the score rounded to $rank_round decimals; a community below the scheme's minimum coverage or
-- without data gets no rank and an eligibility reason.
WITH p AS (
    SELECT end_date FROM dim_period WHERE period_key = $period_key
),
expected AS (
    SELECT c.* FROM dim_community c, p
    WHERE c.valid_from <= p.end_date AND (c.valid_to IS NULL OR c.valid_to > p.end_date)
),
scored AS (
    SELECT e.*, s.score, coalesce(s.coverage, 0) AS coverage,
           CASE WHEN s.score IS NULL THEN 'no_data'
                WHEN s.coverage < $min_coverage THEN 'coverage_below_min' END AS eligibility_reason
    FROM expected e
    LEFT JOIN _score_community s USING (community_key)
),
scoped AS (
    SELECT *, 'street' AS scope_level, street_code AS scope_code, street AS scope_name FROM scored
    UNION ALL
    SELECT *, 'district', district_code, district FROM scored
    UNION ALL
    SELECT *, 'city', city_code, city FROM scored
)
SELECT 'community'          AS entity_level,
       community_code       AS entity_code,
       name                 AS entity_name,
       community_key,
       scope_level,
       scope_code,
       scope_name,
       $period_key          AS period_key,
       $scheme_id           AS scheme_id,
       $scheme_version      AS scheme_version,
       score,
       CASE WHEN eligibility_reason IS NULL THEN
            rank() OVER (PARTITION BY scope_level, scope_code, eligibility_reason IS NULL
                         ORDER BY round(score, $rank_round) DESC) END                    AS rank,
       count(*) FILTER (WHERE eligibility_reason IS NULL)
            OVER (PARTITION BY scope_level, scope_code)                                  AS n_ranked,
       NULL::INTEGER        AS rank_low,
       NULL::INTEGER        AS rank_high,
       CASE WHEN eligibility_reason IS NULL THEN
            (SELECT g.grade FROM _scheme_grade g WHERE round(score, $rank_round) >= g.min_score
             ORDER BY g.min_score DESC LIMIT 1) END                                      AS grade,
       coverage,
       eligibility_reason
FROM scoped
