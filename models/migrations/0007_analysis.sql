-- 0007: robustness analysis tables (issue 16 item 2; shequ/appraisal/analysis.py).

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
