-- 0005 corrections: manual corrections and bonus events with their audit trail (issue 14, item 6).
-- New tables (also in models/schema.sql for new warehouses) and the fact table's correction_id column.
ALTER TABLE fact_indicator_value ADD COLUMN IF NOT EXISTS correction_id INTEGER;

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
