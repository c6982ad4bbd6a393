-- fact_ranking rows for streets (ranked within their district) and districts (ranked within their city):
-- an area's score is the mean of its ranked member communities' scores (scheme: area_score = member_mean),
-- averaged in code order so reruns give bit-identical scores. coverage = ranked members / members expected;
-- an area below the scheme's minimum coverage gets no rank (it cannot climb by not reporting weak members).
WITH members AS (
    SELECT r.entity_code, r.score, c.street_code, c.street, c.district_code, c.district, c.city_code, c.city
    FROM fact_ranking r
    JOIN dim_community c USING (community_key)
    WHERE r.entity_level = 'community' AND r.scope_level = 'city' AND r.period_key = $period_key
      AND r.scheme_id = $scheme_id AND r.eligibility_reason IS NULL
),
expected AS (
    SELECT c.street_code, c.district_code FROM dim_community c, dim_period p
    WHERE p.period_key = $period_key AND c.valid_from <= p.end_date
      AND (c.valid_to IS NULL OR c.valid_to > p.end_date)
),
areas AS (
    SELECT 'street' AS entity_level, street_code AS entity_code, any_value(street) AS entity_name,
           'district' AS scope_level, any_value(district_code) AS scope_code, any_value(district) AS scope_name,
           avg(score ORDER BY entity_code) AS score, count(*) AS n_members,
           count(*) / any_value((SELECT count(*) FROM expected e WHERE e.street_code = m.street_code)) AS coverage
    FROM members m GROUP BY street_code
    UNION ALL
    SELECT 'district', district_code, any_value(district), 'city', any_value(city_code), any_value(city),
           avg(score ORDER BY entity_code), count(*),
           count(*) / any_value((SELECT count(*) FROM expected e WHERE e.district_code = m.district_code))
    FROM members m GROUP BY district_code
)
SELECT entity_level,
       entity_code,
       entity_name,
       NULL::INTEGER   AS community_key,
       scope_level,
       scope_code,
       scope_name,
       $period_key     AS period_key,
       $scheme_id      AS scheme_id,
       $scheme_version AS scheme_version,
       score,
       CASE WHEN eligible THEN rank() OVER (PARTITION BY entity_level, scope_code, eligible
                                            ORDER BY round(score, $rank_round) DESC) END        AS rank,
       count(*) FILTER (WHERE eligible) OVER (PARTITION BY entity_level, scope_code)             AS n_ranked,
       NULL::INTEGER   AS rank_low,
       NULL::INTEGER   AS rank_high,
       CASE WHEN eligible THEN (SELECT g.grade FROM _scheme_grade g WHERE round(score, $rank_round) >= g.min_score
                                ORDER BY g.min_score DESC LIMIT 1) END                          AS grade,
       coverage,
       CASE WHEN NOT eligible THEN 'coverage_below_min' END                                     AS eligibility_reason
FROM (SELECT *, coverage >= $min_coverage AS eligible FROM areas) a
