-- What changed between two published versions of a quarter's appraisal ($previous_id -> $version_id):
-- ranks (every scope), grades and rounded scores (once per entity), titles added and removed, and the manual
-- inputs (published_manual_input) one version carries and the other does not: corrections (item = indicator,
-- reason and who; old -> new value) and bonus events (item = reason and document; points).
WITH n AS (SELECT * FROM published_ranking WHERE version_id = $version_id),
o AS (SELECT * FROM published_ranking WHERE version_id = $previous_id),
r AS (
    SELECT coalesce(n.entity_level, o.entity_level) AS entity_level,
           coalesce(n.entity_code, o.entity_code) AS entity_code,
           coalesce(n.entity_name, o.entity_name) AS entity_name,
           coalesce(n.scope_level, o.scope_level) AS scope_level,
           o.rank AS old_rank, n.rank AS new_rank, o.grade AS old_grade, n.grade AS new_grade,
           o.score_rounded AS old_score, n.score_rounded AS new_score
    FROM n FULL JOIN o USING (entity_level, entity_code, scope_level)
),
na AS (SELECT * FROM published_award WHERE version_id = $version_id),
oa AS (SELECT * FROM published_award WHERE version_id = $previous_id),
ni AS (SELECT * FROM published_manual_input WHERE version_id = $version_id),
oi AS (SELECT * FROM published_manual_input WHERE version_id = $previous_id),
inputs AS (       -- added: in the new version only; revoked: in the previous version only
    SELECT 'added' AS how, kind, input_id FROM ni ANTI JOIN oi USING (kind, input_id)
    UNION ALL
    SELECT 'revoked', kind, input_id FROM oi ANTI JOIN ni USING (kind, input_id)
),
names AS (SELECT community_code, arg_max(name, valid_from) AS name FROM dim_community GROUP BY 1)
SELECT $version_id, $previous_id, 'rank', entity_level, entity_code, entity_name, scope_level, NULL,
       old_rank::VARCHAR, new_rank::VARCHAR
FROM r WHERE old_rank IS DISTINCT FROM new_rank
UNION ALL
SELECT $version_id, $previous_id, 'grade', entity_level, entity_code, entity_name, NULL, NULL, old_grade, new_grade
FROM r WHERE old_grade IS DISTINCT FROM new_grade AND scope_level = (CASE entity_level WHEN 'community' THEN 'city'
                                                                    WHEN 'street' THEN 'district' ELSE 'city' END)
UNION ALL
SELECT $version_id, $previous_id, 'score', entity_level, entity_code, entity_name, NULL, NULL,
       old_score::VARCHAR, new_score::VARCHAR
FROM r WHERE old_score IS DISTINCT FROM new_score AND scope_level = (CASE entity_level WHEN 'community' THEN 'city'
                                                                    WHEN 'street' THEN 'district' ELSE 'city' END)
UNION ALL
SELECT $version_id, $previous_id, 'title_added', na.entity_level, na.entity_code, na.entity_name, na.scope_level,
       na.title, NULL, na.title
FROM na ANTI JOIN oa USING (campaign, tier, entity_code)
UNION ALL
SELECT $version_id, $previous_id, 'title_removed', oa.entity_level, oa.entity_code, oa.entity_name, oa.scope_level,
       oa.title, oa.title, NULL
FROM oa ANTI JOIN na USING (campaign, tier, entity_code)
UNION ALL
SELECT $version_id, $previous_id, 'correction_' || x.how, 'community', m.community_code, nm.name, NULL,
       i.name_zh || '（' || m.indicator_code || '）：' || m.reason || '（' || m.recorded_by || '）',
       CASE WHEN x.how = 'added' THEN m.previous_value ELSE m.value END::VARCHAR,
       CASE WHEN x.how = 'added' THEN m.value END::VARCHAR
FROM inputs x
JOIN manual_correction m ON x.kind = 'correction' AND m.correction_id = x.input_id
JOIN dim_indicator i ON i.indicator_code = m.indicator_code
LEFT JOIN names nm ON nm.community_code = m.community_code
UNION ALL
SELECT $version_id, $previous_id, 'bonus_' || x.how, 'community', b.community_code, nm.name, NULL,
       b.reason || coalesce('（' || b.document || '）', ''),
       CASE WHEN x.how = 'revoked' THEN b.points END::VARCHAR,
       CASE WHEN x.how = 'added' THEN b.points END::VARCHAR
FROM inputs x
JOIN manual_bonus b ON x.kind = 'bonus' AND b.bonus_id = x.input_id
LEFT JOIN names nm ON nm.community_code = b.community_code
