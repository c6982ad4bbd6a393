-- shequ warehouse contract (DuckDB). Applied idempotently by shequ.warehouse.ensure_schema().
-- Table and column names here are the public contract documented in README.md ("仓库表").
-- Every table an analyst reads is listed there; change both together.

CREATE TABLE IF NOT EXISTS meta_schema (
    version     INTEGER   NOT NULL PRIMARY KEY,
    applied_at  TIMESTAMP NOT NULL
);

-- ---------------------------------------------------------------- dimensions
CREATE TABLE IF NOT EXISTS dim_period (
    period_key   VARCHAR  NOT NULL PRIMARY KEY,   -- 2024Q3 | 2024-09 | 2024H1 | 2024
    period_type  VARCHAR  NOT NULL CHECK (period_type IN ('month', 'quarter', 'half', 'year')),
    label        VARCHAR  NOT NULL,               -- 2024年第三季度 | 2024年9月 | 2024年上半年 | 2024年
    year         INTEGER  NOT NULL,
    half         INTEGER  CHECK (half BETWEEN 1 AND 2),
    quarter      INTEGER  CHECK (quarter BETWEEN 1 AND 4),
    month        INTEGER  CHECK (month BETWEEN 1 AND 12),
    start_date   DATE     NOT NULL,
    end_date     DATE     NOT NULL,               -- inclusive last day
    quarter_key  VARCHAR,                         -- rollup: month -> quarter
    half_key     VARCHAR,                         -- rollup: month/quarter -> half
    year_key     VARCHAR  NOT NULL,               -- rollup: any -> year
    CHECK (end_date >= start_date)
);

CREATE TABLE IF NOT EXISTS dim_indicator (
    indicator_code    VARCHAR NOT NULL PRIMARY KEY,
    name_zh           VARCHAR NOT NULL,
    unit              VARCHAR NOT NULL,           -- canonical unit; ratios stored as fractions 0-1
    category          VARCHAR NOT NULL,
    direction         VARCHAR NOT NULL,
    valid_min         DOUBLE,
    valid_max         DOUBLE,
    target            VARCHAR,
    value_kind        VARCHAR NOT NULL,
    numerator         VARCHAR,
    denominator       VARCHAR,
    frequency         VARCHAR NOT NULL,
    period_semantics  VARCHAR NOT NULL CHECK (period_semantics IN ('stock', 'flow', 'rate', 'survey', 'flag')),
    aggregation       VARCHAR NOT NULL CHECK (aggregation IN ('sum', 'ratio', 'share', 'mean')),
    ratio_scale       DOUBLE,
    time_rollup       VARCHAR NOT NULL CHECK (time_rollup IN ('last', 'sum', 'ratio_of_sums')),
    level             VARCHAR NOT NULL,
    not_applicable_to VARCHAR,                    -- community types the indicator does not apply to (村代居|城市村)
    is_veto           BOOLEAN NOT NULL,
    veto_note         VARCHAR,
    source_kind       VARCHAR,
    source            VARCHAR
);

-- Slowly changing dimension: one row per version of a community. [valid_from, valid_to), valid_to NULL = open.
CREATE TABLE IF NOT EXISTS dim_community (
    community_key   INTEGER NOT NULL PRIMARY KEY,
    community_code  VARCHAR NOT NULL,             -- stable 12-digit code
    name            VARCHAR NOT NULL,
    street_code     VARCHAR NOT NULL,
    street          VARCHAR NOT NULL,
    district_code   VARCHAR NOT NULL,
    district        VARCHAR NOT NULL,
    city_code       VARCHAR NOT NULL,
    city            VARCHAR NOT NULL,
    province_code   VARCHAR NOT NULL,
    province        VARCHAR NOT NULL,
    community_type  VARCHAR NOT NULL,             -- 居委会 | 村代居 | 城市村
    households      INTEGER,
    population      INTEGER,
    valid_from      DATE    NOT NULL,
    valid_to        DATE,
    is_current      BOOLEAN NOT NULL,
    UNIQUE (community_code, valid_from),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);

CREATE TABLE IF NOT EXISTS community_lineage (
    predecessor_code  VARCHAR NOT NULL,
    successor_code    VARCHAR NOT NULL,
    event             VARCHAR NOT NULL CHECK (event IN ('merge', 'split', 'rename')),
    effective_date    DATE    NOT NULL,
    note              VARCHAR,
    PRIMARY KEY (predecessor_code, successor_code, effective_date)
);

CREATE TABLE IF NOT EXISTS community_alias (
    alias           VARCHAR NOT NULL,
    community_code  VARCHAR NOT NULL,
    valid_from      DATE,
    valid_to        DATE,
    note            VARCHAR
);

-- ---------------------------------------------------------------- raw and staged
-- One row per distinct file content (sha256) ever seen. Never updated (but for the object_* columns when the
-- same object key uploads the same bytes again); a new version is a new row.
CREATE TABLE IF NOT EXISTS raw_file (
    file_id        VARCHAR   NOT NULL PRIMARY KEY,  -- sha256 of the bytes ('object:' + sha256 of source_uri and
                                                    -- version for an object rejected before download)
    ingest_seq     BIGINT    NOT NULL UNIQUE,       -- order of ingestion; later supersedes earlier
    source_file    VARCHAR   NOT NULL,              -- path relative to the inbox
    size_bytes     BIGINT    NOT NULL,
    modified_at    TIMESTAMP,
    file_format    VARCHAR   NOT NULL,
    encoding       VARCHAR,
    period_keys    VARCHAR[],                       -- quarters the file holds values for
    status         VARCHAR   NOT NULL CHECK (status IN ('loaded', 'rejected')),
    reason_code    VARCHAR,
    message        VARCHAR,
    n_cells        INTEGER   NOT NULL,
    n_loaded       INTEGER   NOT NULL,
    n_quarantined  INTEGER   NOT NULL,
    ingested_at    TIMESTAMP NOT NULL,
    notes          VARCHAR[],                       -- footers, hidden columns, transposed sheets, 小计 check
    -- an inbox in object storage (migration 0008; NULL for a local inbox folder): where the bytes came from
    source_uri     VARCHAR,                         -- s3://bucket/key
    object_key     VARCHAR,                         -- key inside the bucket
    object_version VARCHAR,                         -- VersionId (NULL when the bucket keeps no versions)
    object_etag    VARCHAR                          -- ETag without quotes
);

-- Long values exactly as read from each file version (all versions kept: the revision history).
-- An append-only staging log: it carries no PK/FK index because DuckDB's constraint maintenance made loading
-- 11x slower (5.6 s vs 0.5 s per 1.16M rows, README "基准"); its uniqueness and references are asserted by
-- the critical suite expectations/stg_value.json after every load instead (the facts too, since issue 11).
CREATE TABLE IF NOT EXISTS stg_value (
    file_id         VARCHAR NOT NULL,               -- raw_file.file_id
    community_key   INTEGER NOT NULL,               -- dim_community.community_key
    indicator_code  VARCHAR NOT NULL,               -- dim_indicator.indicator_code
    period_key      VARCHAR NOT NULL,               -- dim_period.period_key
    role            VARCHAR NOT NULL CHECK (role IN ('value', 'numerator', 'denominator')),
    value           DOUBLE  NOT NULL,
    unit            VARCHAR NOT NULL,
    qualifier       VARCHAR,                       -- approx | ge | le | range:lo-hi | percent_inferred ...
    raw_text        VARCHAR NOT NULL,
    source_sheet    VARCHAR,
    source_row      INTEGER,
    source_column   VARCHAR,
    source_cell     VARCHAR
);

-- Every cell that did not land, with the reason. File-level rejections have NULL cell fields.
CREATE TABLE IF NOT EXISTS quarantine (
    file_id         VARCHAR   NOT NULL,
    source_file     VARCHAR   NOT NULL,
    source_sheet    VARCHAR,
    source_row      INTEGER,
    source_column   VARCHAR,
    source_cell     VARCHAR,
    community_raw   VARCHAR,
    header_raw      VARCHAR,
    period_key      VARCHAR,
    raw_text        VARCHAR,
    reason_code     VARCHAR   NOT NULL,
    message         VARCHAR   NOT NULL,
    quarantined_at  TIMESTAMP NOT NULL
);

-- ---------------------------------------------------------------- facts
-- Grain: community version x indicator x period. The latest file version wins; earlier ones stay in stg_value.
-- No PK/FK index (issue 11: the ART index was ~80% of the file, 83 B/row vs ~17, and made the build 10x
-- slower): the key's uniqueness and the references to dim_community / dim_indicator / dim_period are asserted
-- by the critical suite expectations/fact_indicator_value.json in the same refresh. Rows are written in
-- (period_key, indicator_code, community_key) order so DuckDB's zone maps prune a quarter's rows.
CREATE TABLE IF NOT EXISTS fact_indicator_value (
    community_key   INTEGER   NOT NULL,                  -- dim_community.community_key
    indicator_code  VARCHAR   NOT NULL,                  -- dim_indicator.indicator_code
    period_key      VARCHAR   NOT NULL,                  -- dim_period.period_key
    value           DOUBLE    NOT NULL,        -- rates: recomputed from numerator/denominator when both came
    reported_value  DOUBLE,                    -- the value as the file stated it (kept to check against)
    numerator       DOUBLE,
    denominator     DOUBLE,
    unit            VARCHAR   NOT NULL,
    qualifier       VARCHAR,
    source_file     VARCHAR   NOT NULL,
    source_sheet    VARCHAR,
    source_row      INTEGER,
    source_column   VARCHAR,
    source_cell     VARCHAR,
    file_id         VARCHAR   NOT NULL,        -- raw_file.file_id of the winning version (provenance)
    n_versions      INTEGER   NOT NULL,            -- how many file versions reported this cell
    loaded_at       TIMESTAMP NOT NULL,
    correction_id   INTEGER                    -- manual_correction.correction_id when a correction won (else NULL)
    -- key (suite): unique (community_key, indicator_code, period_key)
);

-- Indicator values aggregated to street / district / city by each indicator's rule. No PK/FK index, as the
-- facts: expectations/agg_indicator_value.json asserts the key and the references.
CREATE TABLE IF NOT EXISTS agg_indicator_value (
    entity_level    VARCHAR NOT NULL CHECK (entity_level IN ('street', 'district', 'city')),
    entity_code     VARCHAR NOT NULL,
    entity_name     VARCHAR NOT NULL,
    parent_code     VARCHAR,
    indicator_code  VARCHAR NOT NULL,              -- dim_indicator.indicator_code
    period_key      VARCHAR NOT NULL,              -- dim_period.period_key
    value           DOUBLE,                        -- NULL when the rule cannot be applied (see method)
    numerator       DOUBLE,
    denominator     DOUBLE,
    n_reporting     INTEGER NOT NULL,
    n_expected      INTEGER NOT NULL,
    method          VARCHAR NOT NULL
    -- key (suite): unique (entity_level, entity_code, indicator_code, period_key)
);

-- ---------------------------------------------------------------- scores, rankings, titles (三级评比)
-- All derived by the appraisal engine (shequ/appraisal) from fact_indicator_value and a scheme file
-- (models/schemes/*.yaml); one period x scheme is replaced in one transaction. No PK/FK indexes on the derived
-- tables (a 6-column index made a rerun 20x slower); the suites in expectations/ assert their keys and references.

-- Per node of the scheme tree (indicator, category, index) per entity and review stage.
-- weight = the node's effective share of the index for this entity (weights re-normalised over the children
-- with data), so score * weight is the node's contribution in points and sums to the index.
CREATE TABLE IF NOT EXISTS fact_score (
    entity_level    VARCHAR NOT NULL,              -- community | street | district
    entity_code     VARCHAR NOT NULL,
    period_key      VARCHAR NOT NULL,
    scheme_id       VARCHAR NOT NULL,
    scheme_version  VARCHAR NOT NULL,
    stage           VARCHAR NOT NULL,              -- review stage: 自评 | 街道初评 | 区复评 (final rows: every node)
    node_level      VARCHAR NOT NULL,              -- the scheme's level names: indicator | category | index
    node_code       VARCHAR NOT NULL,
    value           DOUBLE,                        -- indicators: the value scored (after imputation/treatment)
    score           DOUBLE  NOT NULL,
    weight          DOUBLE,
    flag            VARCHAR                        -- imputed | winsorised_high | winsorised_low | log
);

CREATE TABLE IF NOT EXISTS fact_ranking (
    entity_level        VARCHAR NOT NULL CHECK (entity_level IN ('community', 'street', 'district')),
    entity_code         VARCHAR NOT NULL,
    entity_name         VARCHAR NOT NULL,
    community_key       INTEGER,                   -- dim_community.community_key (communities only)
    scope_level         VARCHAR NOT NULL CHECK (scope_level IN ('street', 'district', 'city')),
    scope_code          VARCHAR NOT NULL,
    scope_name          VARCHAR NOT NULL,
    period_key          VARCHAR NOT NULL,          -- dim_period.period_key
    scheme_id           VARCHAR NOT NULL,
    scheme_version      VARCHAR NOT NULL,
    stage               VARCHAR,                   -- review stage whose score is ranked
    score               DOUBLE,                    -- final score (index + bonus, capped)
    score_rounded       DOUBLE,                    -- the score ranks and grades are taken on (scheme rounding)
    rank                INTEGER,
    n_ranked            INTEGER NOT NULL,
    rank_median         DOUBLE,                    -- Monte Carlo: median rank over the draws
    rank_low            DOUBLE,                    -- Monte Carlo: 5th percentile rank (best plausible)
    rank_high           DOUBLE,                    -- Monte Carlo: 95th percentile rank (worst plausible)
    grade               VARCHAR,
    bonus               DOUBLE,
    vetoes              VARCHAR,                   -- 一票否决 items hit, '；'-separated
    self_score          DOUBLE,                    -- 自评 score; self_gap = self_score - score
    self_gap            DOUBLE,
    coverage            DOUBLE  NOT NULL,          -- communities: share of weight with data; areas: share ranked
    eligibility_reason  VARCHAR                    -- NULL = ranked; no_data | coverage_below_min
    -- key (suite): unique (entity_level, entity_code, scope_level, period_key, scheme_id)
);

-- Titles awarded tier by tier (区级 within district -> 市级 within city -> 省级 within province).
CREATE TABLE IF NOT EXISTS fact_award (
    period_key      VARCHAR NOT NULL,
    scheme_id       VARCHAR NOT NULL,
    scheme_version  VARCHAR NOT NULL,
    campaign        VARCHAR NOT NULL,              -- 示范社区 | 平安社区 | 民主法治社区 (scheme: awards.campaigns)
    tier            VARCHAR NOT NULL,              -- 区级 | 市级 | 省级
    title           VARCHAR NOT NULL,              -- e.g. 区级示范社区
    entity_level    VARCHAR NOT NULL,
    entity_code     VARCHAR NOT NULL,
    entity_name     VARCHAR NOT NULL,
    scope_level     VARCHAR NOT NULL,
    scope_code      VARCHAR NOT NULL,
    scope_name      VARCHAR NOT NULL,
    node_code       VARCHAR NOT NULL,              -- the score the campaign ranks on
    score           DOUBLE  NOT NULL,
    grade           VARCHAR,
    quota           INTEGER NOT NULL,              -- titles available in this scope
    quota_position  INTEGER NOT NULL,              -- position among the eligible candidates of the scope
    n_candidates    INTEGER NOT NULL,
    tied_at_quota   BOOLEAN NOT NULL,              -- admitted because tied with the last place inside the quota
    rank_low        DOUBLE,                        -- Monte Carlo rank interval in the scope
    rank_high       DOUBLE,
    tie_flag        BOOLEAN                        -- interval crosses the quota line: statistically tied
    -- key (suite): unique (period_key, scheme_id, campaign, tier, entity_code)
);

-- Why a community scored what it did: strengths and weaknesses against its district's peers (category score
-- minus the district median) and movement since the previous quarter with the indicators that drove it.
CREATE TABLE IF NOT EXISTS fact_explanation (
    period_key      VARCHAR NOT NULL,
    scheme_id       VARCHAR NOT NULL,
    entity_code     VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,              -- strength | weakness | movement | driver | veto (一票否决)
    position        INTEGER NOT NULL,              -- 1 = the largest
    node_code       VARCHAR NOT NULL,
    value           DOUBLE,                        -- gap to district median (points) | change in points
    detail          VARCHAR NOT NULL               -- one Chinese sentence
);

-- Reviewed values per stage (街道初评, 区复评): they override the community's own (自评) values.
CREATE TABLE IF NOT EXISTS review_adjustment (
    period_key      VARCHAR NOT NULL,
    community_code  VARCHAR NOT NULL,
    stage           VARCHAR NOT NULL,
    indicator_code  VARCHAR NOT NULL REFERENCES dim_indicator (indicator_code),
    value           DOUBLE  NOT NULL,
    reviewer        VARCHAR,
    note            VARCHAR,
    source_file     VARCHAR NOT NULL,
    PRIMARY KEY (period_key, community_code, stage, indicator_code)
);

-- Published (公示) appraisals: frozen copies under a version id. A correction publishes a new version with a
-- diff against the previous one; published rows are never updated.
CREATE TABLE IF NOT EXISTS appraisal_publication (
    version_id      VARCHAR   NOT NULL PRIMARY KEY,  -- 2024Q3-default-v2
    period_key      VARCHAR   NOT NULL,
    scheme_id       VARCHAR   NOT NULL,
    scheme_version  VARCHAR   NOT NULL,
    scheme_digest   VARCHAR   NOT NULL,
    seq             INTEGER   NOT NULL,
    supersedes      VARCHAR,
    published_at    TIMESTAMP NOT NULL,
    published_by    VARCHAR,
    note            VARCHAR,
    n_rankings      INTEGER   NOT NULL,
    n_awards        INTEGER   NOT NULL,
    content_hash    VARCHAR   NOT NULL
);

CREATE TABLE IF NOT EXISTS published_ranking AS SELECT NULL::VARCHAR AS version_id, * FROM fact_ranking WITH NO DATA;
CREATE TABLE IF NOT EXISTS published_award AS SELECT NULL::VARCHAR AS version_id, * FROM fact_award WITH NO DATA;

CREATE TABLE IF NOT EXISTS publication_diff (
    version_id      VARCHAR NOT NULL,
    previous_id     VARCHAR NOT NULL,
    change          VARCHAR NOT NULL,              -- rank | grade | title_added | title_removed | score
    entity_level    VARCHAR NOT NULL,
    entity_code     VARCHAR NOT NULL,
    entity_name     VARCHAR,
    scope_level     VARCHAR,
    item            VARCHAR,                       -- title (campaign + tier) for title changes
    old_value       VARCHAR,
    new_value       VARCHAR
);

-- Results of every data-quality check run, per quarter: what a ranking passed.
CREATE TABLE IF NOT EXISTS check_result (
    period_key      VARCHAR   NOT NULL,
    suite           VARCHAR   NOT NULL,
    expectation     VARCHAR   NOT NULL,
    severity        VARCHAR   NOT NULL,
    success         BOOLEAN   NOT NULL,
    unexpected      BIGINT    NOT NULL,
    checked         BIGINT    NOT NULL,
    detail          VARCHAR,
    checked_at      TIMESTAMP NOT NULL,
    partial_unexpected VARCHAR,            -- JSON: up to 20 unexpected values or rows (GX partial_unexpected_list)
    PRIMARY KEY (period_key, suite, expectation)
);

-- ---------------------------------------------------------------- data quality (DHIS2-grade, issue #4)
-- Rule catalogue as loaded from models/quality/validation_rules.csv (replaced on every quality run).
CREATE TABLE IF NOT EXISTS validation_rule (
    rule_id                 VARCHAR NOT NULL PRIMARY KEY,
    name_zh                 VARCHAR NOT NULL,
    left_expr               VARCHAR NOT NULL,     -- expression over indicator codes (code, code.numerator, ...)
    operator                VARCHAR NOT NULL,     -- == != < <= > >= compulsory_pair exclusive_pair
    right_expr              VARCHAR NOT NULL,
    tolerance               DOUBLE,               -- absolute tolerance for == and !=
    importance              VARCHAR NOT NULL CHECK (importance IN ('HIGH', 'MEDIUM', 'LOW')),
    levels                  VARCHAR NOT NULL,     -- community|street|district
    missing_value_strategy  VARCHAR NOT NULL CHECK (missing_value_strategy IN
                                ('SKIP_IF_ANY_VALUE_MISSING', 'SKIP_IF_ALL_VALUES_MISSING', 'NEVER_SKIP')),
    instruction             VARCHAR
);

-- Error events: one row per rule x entity x quarter where the rule does not hold.
CREATE TABLE IF NOT EXISTS validation_violation (
    period_key      VARCHAR   NOT NULL,
    rule_id         VARCHAR   NOT NULL,
    importance      VARCHAR   NOT NULL,
    entity_level    VARCHAR   NOT NULL,          -- community | street | district
    entity_code     VARCHAR   NOT NULL,          -- community_code, street_code or district_code
    entity_name     VARCHAR,
    community_key   INTEGER,                     -- community level only
    left_value      DOUBLE,
    operator        VARCHAR   NOT NULL,
    right_value     DOUBLE,
    detected_at     TIMESTAMP NOT NULL
);

-- Values held back from scoring: one row per fact value and HIGH rule that caught it in that quarter.
-- Scoring reads models/sql/scoring_input.sql (facts anti-joined with this table).
CREATE TABLE IF NOT EXISTS quality_hold (
    period_key      VARCHAR   NOT NULL,
    community_key   INTEGER   NOT NULL,
    indicator_code  VARCHAR   NOT NULL,
    rule_id         VARCHAR   NOT NULL,
    importance      VARCHAR   NOT NULL,
    reason          VARCHAR   NOT NULL,
    detected_at     TIMESTAMP NOT NULL
);

-- Outliers per community x indicator over its quarterly history: a follow-up flag, never a deletion or hold.
CREATE TABLE IF NOT EXISTS outlier_flag (
    period_key       VARCHAR   NOT NULL,
    community_key    INTEGER   NOT NULL,
    indicator_code   VARCHAR   NOT NULL,
    method           VARCHAR   NOT NULL,         -- zscore | modified_zscore | minmax
    value            DOUBLE    NOT NULL,
    statistic        DOUBLE,                     -- z, modified z, or the bound crossed
    threshold        DOUBLE,
    center           DOUBLE,                     -- mean, median, or valid_min
    spread           DOUBLE,                     -- sd, MAD, or valid_max
    n_history        INTEGER   NOT NULL,
    followup_status  VARCHAR   NOT NULL,         -- open | confirmed | corrected | dismissed
    detected_at      TIMESTAMP NOT NULL
);

-- Completeness and timeliness per quarter and area (DHIS2 reporting rate / reporting rate on time).
CREATE TABLE IF NOT EXISTS completeness_report (
    period_key       VARCHAR NOT NULL,
    level            VARCHAR NOT NULL,           -- street | district | city
    area_code        VARCHAR NOT NULL,
    area_name        VARCHAR NOT NULL,
    expected         INTEGER NOT NULL,           -- communities expected to report
    received         INTEGER NOT NULL,           -- of those, communities with at least one value
    reporting_rate   DOUBLE,
    on_time          INTEGER NOT NULL,           -- of those, reports received by due_date
    on_time_rate     DOUBLE,                     -- on_time / expected
    expected_values  INTEGER NOT NULL,           -- community x applicable indicator
    received_values  INTEGER NOT NULL,
    value_rate       DOUBLE,
    due_date         DATE    NOT NULL,
    PRIMARY KEY (period_key, level, area_code)
);

-- What a quarter's ranking passed: the check results in force when fact_ranking was produced.
CREATE TABLE IF NOT EXISTS ranking_release (
    period_key   VARCHAR   NOT NULL,
    scheme_id    VARCHAR   NOT NULL,
    suite        VARCHAR   NOT NULL,
    expectation  VARCHAR   NOT NULL,
    severity     VARCHAR   NOT NULL,
    success      BOOLEAN   NOT NULL,
    unexpected   BIGINT,
    checked_at   TIMESTAMP NOT NULL,
    released_at  TIMESTAMP NOT NULL
);

-- ---------------------------------------------------------------- manual inputs with an audit trail (issue 14)
-- `shequ correct`: a value that wins over the files' value for one community x indicator x quarter when the
-- facts are built (models/sql/fact_indicator_value.sql). Rows are never deleted: a revoked or superseded
-- correction stays with who, when and why. Times are Asia/Shanghai wall-clock times.
CREATE TABLE IF NOT EXISTS manual_correction (
    correction_id    INTEGER   NOT NULL PRIMARY KEY,
    period_key       VARCHAR   NOT NULL,            -- quarter, 2024Q3
    community_code   VARCHAR   NOT NULL,            -- registry code (stable across versions)
    indicator_code   VARCHAR   NOT NULL,
    value            DOUBLE    NOT NULL,            -- in the catalogue unit (ratios as fractions 0-1)
    raw_text         VARCHAR   NOT NULL,            -- the value as typed (85%, 1.2万元)
    previous_value   DOUBLE,                        -- the fact value when recorded (NULL: none reported)
    previous_source  VARCHAR,                       -- where that value came from (file and cell, or correction #n)
    reason           VARCHAR   NOT NULL,
    recorded_by      VARCHAR   NOT NULL,
    recorded_at      TIMESTAMP NOT NULL,            -- Asia/Shanghai
    active           BOOLEAN   NOT NULL,
    superseded_by    INTEGER,                       -- a later correction of the same cell
    revoked_by       VARCHAR,
    revoked_at       TIMESTAMP,                     -- Asia/Shanghai
    revoke_reason    VARCHAR
);

-- `shequ bonus add`: manual bonus events (区级现场会 +2), read by the scheme's bonus rule (adjust.bonus) beside
-- its indicator items and capped with them (adjust.bonus.cap, max_score).
CREATE TABLE IF NOT EXISTS manual_bonus (
    bonus_id         INTEGER   NOT NULL PRIMARY KEY,
    period_key       VARCHAR   NOT NULL,
    community_code   VARCHAR   NOT NULL,
    points           DOUBLE    NOT NULL,
    reason           VARCHAR   NOT NULL,
    document         VARCHAR,                       -- 文号 of the decision
    recorded_by      VARCHAR   NOT NULL,
    recorded_at      TIMESTAMP NOT NULL,            -- Asia/Shanghai
    active           BOOLEAN   NOT NULL,
    revoked_by       VARCHAR,
    revoked_at       TIMESTAMP,
    revoke_reason    VARCHAR
);

-- Which manual inputs a published version carried (publication_diff lists those added or revoked since the
-- previous version).
CREATE TABLE IF NOT EXISTS published_manual_input (
    version_id  VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL CHECK (kind IN ('correction', 'bonus')),
    input_id    INTEGER NOT NULL,
    PRIMARY KEY (version_id, kind, input_id)
);

-- Robustness analysis of each quarter's appraisal (shequ/appraisal/analysis.py; docs/robustness.md).
-- Correlations on the scored values (normalised indicators, aggregate scores) of the ranked communities:
-- kind = parent (node_a against its parent node_b) | within (two siblings under parent_code).
-- flag: collinear (r > 0.9) | negative (r < -0.4), COINr's get_corr_flags thresholds.
CREATE TABLE IF NOT EXISTS analysis_correlation (
    period_key      VARCHAR NOT NULL,
    scheme_id       VARCHAR NOT NULL,
    scheme_version  VARCHAR NOT NULL,
    method          VARCHAR NOT NULL,              -- pearson | spearman
    kind            VARCHAR NOT NULL,              -- parent | within
    node_a          VARCHAR NOT NULL,
    node_b          VARCHAR NOT NULL,
    parent_code     VARCHAR NOT NULL,
    level           INTEGER NOT NULL,              -- level of node_a
    r               DOUBLE,                        -- NULL: a constant side or fewer than 3 units
    n_units         INTEGER NOT NULL,
    flag            VARCHAR
);

-- Per aggregate: Cronbach's alpha of its children and the first principal component's share of the variance
-- of the standardised children (complete rows of ranked communities).
CREATE TABLE IF NOT EXISTS analysis_reliability (
    period_key      VARCHAR NOT NULL,
    scheme_id       VARCHAR NOT NULL,
    scheme_version  VARCHAR NOT NULL,
    node_code       VARCHAR NOT NULL,
    level           INTEGER NOT NULL,
    n_children      INTEGER NOT NULL,
    n_units         INTEGER NOT NULL,
    cronbach_alpha  DOUBLE,
    pc1_share       DOUBLE,
    PRIMARY KEY (period_key, scheme_id, node_code)
);

-- Sobol sensitivity of ranks to the scheme's uncertain assumptions (uncertainty section): first-order (si) and
-- total (sti) indices with 5-95 % bootstrap intervals. target = rank_shift: the mean absolute rank shift of all
-- ranked communities (COINr's output; entity_code NULL); target = rank: one community's rank.
CREATE TABLE IF NOT EXISTS analysis_sensitivity (
    period_key      VARCHAR NOT NULL,
    scheme_id       VARCHAR NOT NULL,
    scheme_version  VARCHAR NOT NULL,
    target          VARCHAR NOT NULL,              -- rank_shift | rank
    entity_code     VARCHAR,
    factor          VARCHAR NOT NULL,              -- Winmax | Normalisation | Weights | Aggregation
    factor_label    VARCHAR NOT NULL,              -- Chinese name of the assumption
    si              DOUBLE,                        -- NULL: the rank never moved (no variance)
    sti             DOUBLE,
    si_low          DOUBLE,
    si_high         DOUBLE,
    sti_low         DOUBLE,
    sti_high        DOUBLE,
    sti_half        DOUBLE,                        -- rank_shift: sti on the first half of the sample (convergence)
    nominal_rank    INTEGER,
    rank_group      VARCHAR,                       -- ranked within this grouping column (NULL = all)
    n_base          INTEGER NOT NULL,              -- N: rows of matrices A and B
    n_runs          INTEGER NOT NULL,              -- N (d + 2) appraisals run
    n_boot          INTEGER NOT NULL,
    seed            BIGINT  NOT NULL
);
