-- fact_explanation rows for one quarter ($period_key) under $scheme_id: per community, the two categories
-- furthest above and below the median of its district (strength, weakness), the change of its final score and
-- district rank since $prev_key (movement), and the three indicators whose contribution (score x effective
-- weight, in points of the index) changed most (driver). Only the final review stage carries indicator rows.
-- veto: one plain-Chinese sentence per 一票否决 rule a community hit (read from `veto_hit`, the rows
-- shequ.appraisal.engine.veto_hits registers: rule, indicator, the value the rule read, effect, grade before and
-- after): which item hit with its value, what it did (grade dropped / no title / score capped), and why the
-- community keeps its rank (ranks are taken on the score; a veto acts on the grade and titles, not the score).
WITH d AS (
    SELECT entity_code, scope_code AS district_code, score, score_rounded, rank
    FROM fact_ranking
    WHERE period_key = $period_key AND scheme_id = $scheme_id AND entity_level = 'community'
      AND scope_level = 'district' AND eligibility_reason IS NULL
),
fin AS (
    SELECT period_key, any_value(stage) AS stage FROM fact_score
    WHERE period_key IN ($period_key, $prev_key) AND scheme_id = $scheme_id AND node_level = 'indicator'
    GROUP BY period_key
),
cat AS (
    SELECT s.entity_code, s.node_code, s.score, d.district_code,
           s.score - median(s.score) OVER (PARTITION BY d.district_code, s.node_code) AS gap
    FROM fact_score s
    JOIN fin USING (period_key, stage)
    JOIN d USING (entity_code)
    WHERE s.period_key = $period_key AND s.scheme_id = $scheme_id AND s.entity_level = 'community'
      AND s.node_level = 'category'
),
strengths AS (
    SELECT entity_code, 'strength' AS kind,
           row_number() OVER (PARTITION BY entity_code ORDER BY gap DESC, node_code) AS position,
           node_code, gap AS value,
           printf('%s得分 %.1f，高于区内中位数 %.1f 分', node_code, score, gap) AS detail
    FROM cat WHERE gap > 0
    QUALIFY position <= 2
),
weaknesses AS (
    SELECT entity_code, 'weakness' AS kind,
           row_number() OVER (PARTITION BY entity_code ORDER BY gap, node_code) AS position,
           node_code, gap AS value,
           printf('%s得分 %.1f，低于区内中位数 %.1f 分', node_code, score, -gap) AS detail
    FROM cat WHERE gap < 0
    QUALIFY position <= 2
),
prev AS (
    SELECT entity_code, score, score_rounded, rank FROM fact_ranking
    WHERE period_key = $prev_key AND scheme_id = $scheme_id AND entity_level = 'community'
      AND scope_level = 'district' AND score IS NOT NULL
),
movement AS (
    SELECT d.entity_code, 'movement' AS kind, 1 AS position, $root AS node_code, d.score - p.score AS value,
           printf('综合得分由 %.2f 变为 %.2f（%+.2f 分），区内排名由%s变为%s', p.score_rounded, d.score_rounded,
                  d.score_rounded - p.score_rounded,
                  coalesce('第 ' || p.rank || ' 名', '未排名'), coalesce('第 ' || d.rank || ' 名', '未排名')) AS detail
    FROM d JOIN prev p USING (entity_code)
),
contrib AS (
    SELECT s.period_key, s.entity_code, s.node_code, s.score * s.weight AS pts
    FROM fact_score s JOIN fin USING (period_key, stage)
    WHERE s.scheme_id = $scheme_id AND s.entity_level = 'community' AND s.node_level = 'indicator'
      AND s.entity_code IN (SELECT entity_code FROM movement)
),
delta AS (
    SELECT coalesce(c.entity_code, p.entity_code) AS entity_code, coalesce(c.node_code, p.node_code) AS node_code,
           coalesce(c.pts, 0) - coalesce(p.pts, 0) AS value
    FROM (SELECT * FROM contrib WHERE period_key = $period_key) c
    FULL JOIN (SELECT * FROM contrib WHERE period_key = $prev_key) p USING (entity_code, node_code)
),
drivers AS (
    SELECT x.entity_code, 'driver' AS kind,
           row_number() OVER (PARTITION BY x.entity_code ORDER BY abs(x.value) DESC, x.node_code) AS position,
           x.node_code, x.value,
           printf('%s：贡献%s %.2f 分', coalesce(i.name_zh, x.node_code),
                  CASE WHEN x.value > 0 THEN '增加' ELSE '减少' END, abs(x.value)) AS detail
    FROM delta x LEFT JOIN dim_indicator i ON i.indicator_code = x.node_code
    WHERE abs(x.value) >= 0.005
    QUALIFY position <= 3
),
vetoes AS (
    SELECT h.entity_code, 'veto' AS kind, h.position, h.indicator_code AS node_code, h.value,
           '一票否决“' || h.veto_name || '”：' || coalesce(i.name_zh, h.indicator_code) || '本季度为 '
           || CASE WHEN i.unit = '%' THEN printf('%.1f%%', h.value * 100)
                   WHEN h.value = trunc(h.value) THEN printf('%d', h.value::BIGINT) || coalesce(' ' || i.unit, '')
                   ELSE printf('%.2f', h.value) || coalesce(' ' || i.unit, '') END
           || '（' || CASE h.op WHEN '>' THEN '大于' WHEN '>=' THEN '大于或等于' WHEN '<' THEN '小于'
                                WHEN '<=' THEN '小于或等于' WHEN '!=' THEN '不等于' ELSE '等于' END
           || ' ' || CASE WHEN i.unit = '%' THEN printf('%.1f%%', h.threshold * 100)
                          WHEN h.threshold = trunc(h.threshold) THEN printf('%d', h.threshold::BIGINT)
                          ELSE printf('%.2f', h.threshold) END || ' 即否决）。'
           || CASE h.effect
                WHEN 'drop_grade' THEN
                    CASE WHEN h.grade_before IS NULL THEN '后果：等次降一档（本季度未参评，没有等次）。'
                         WHEN h.grade_before = h.grade_after
                         THEN '后果：等次降一档，但“' || h.grade_before || '”已是最低一档。'
                         ELSE '后果：等次由“' || h.grade_before || '”降一档为“' || h.grade_after || '”。' END
                WHEN 'exclude_titles' THEN '后果：本季度不得评任何称号（区级、市级、省级），得分进入名额也不授予。'
                ELSE '后果：综合得分封顶为 ' || printf('%.2f', h.cap) || ' 分。' END
           || CASE WHEN h.effect = 'cap_score'
                   THEN '排名按封顶后的得分排列' || coalesce('，本社区列区内第 ' || r.rank || ' 名（共 ' || r.n_ranked
                                                          || ' 个社区参评）', '') || '。'
                   ELSE '一票否决不扣分，也不改变名次：排名只按综合得分高低排列，这一项否决只'
                        || CASE h.effect WHEN 'drop_grade' THEN '降低等次' ELSE '取消评优资格' END
                        || coalesce('，所以本社区仍列区内第 ' || r.rank || ' 名（共 ' || r.n_ranked
                                    || ' 个社区参评）', '') || '。' END AS detail
    FROM veto_hit h
    LEFT JOIN dim_indicator i ON i.indicator_code = h.indicator_code
    LEFT JOIN fact_ranking r ON r.entity_code = h.entity_code AND r.period_key = $period_key
         AND r.scheme_id = $scheme_id AND r.entity_level = 'community' AND r.scope_level = 'district'
)
SELECT $period_key AS period_key, $scheme_id AS scheme_id, entity_code, kind, position, node_code, value, detail
FROM (SELECT * FROM strengths UNION ALL SELECT * FROM weaknesses UNION ALL SELECT * FROM movement
      UNION ALL SELECT * FROM drivers UNION ALL SELECT * FROM vetoes)
