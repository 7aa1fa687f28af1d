-- The tables of results/biobench.duckdb. The aggregate step creates them from this file; the report and the
-- `biobench` command read them. Models and tasks are referred to by their config names.

-- One row per (model, task): what produced the predictions (provenance).
CREATE TABLE runs (
    model VARCHAR NOT NULL,            -- display name from config.yaml
    model_key VARCHAR NOT NULL,        -- content-addressed key of the model spec
    org VARCHAR,
    checkpoint VARCHAR,
    model_spec JSON,
    task VARCHAR NOT NULL,
    dataset_key VARCHAR NOT NULL,
    classifier_key VARCHAR NOT NULL,
    classifier JSON,                   -- protocol, grid, chosen hyperparameters
    metric VARCHAR NOT NULL,
    benchmark BOOLEAN NOT NULL,        -- counts in the overall biology score
    n_train BIGINT,
    n_test BIGINT,
    manifest_sha256 VARCHAR,
    embed_device VARCHAR,
    embed_images_per_s DOUBLE,
    embed_seconds DOUBLE,
    fit_seconds DOUBLE,
    git_commit VARCHAR,
    host VARCHAR,
    packages JSON,
    created_at TIMESTAMP,
    predictions_path VARCHAR,
    PRIMARY KEY (model, task)
);

-- Per-example predictions, the source of truth for every number, are stored normalised (strings once per example
-- or label, not once per model) and read through the `predictions` view below.

-- One row per (task, example) of the evaluated split of the task's manifest.
CREATE TABLE examples (
    task VARCHAR NOT NULL,
    example_index INTEGER NOT NULL,    -- 0-based position of example_id in ascending order within the task
    example_id VARCHAR NOT NULL,
    path VARCHAR,                      -- image path (first frame for video clips)
    grp VARCHAR,                       -- sub-task (e.g. NeWT's binary tasks), NULL otherwise
    PRIMARY KEY (task, example_index)
);

-- Class names of each task, in index order (y = 0, 1, ...).
CREATE TABLE labels (
    task VARCHAR NOT NULL,
    y BIGINT NOT NULL,
    label VARCHAR NOT NULL,
    PRIMARY KEY (task, y)
);

-- One row per (model, task, test example).
CREATE TABLE prediction_rows (
    model VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    example_index INTEGER NOT NULL,    -- -> examples
    y_true BIGINT NOT NULL,
    y_pred BIGINT NOT NULL,
    score DOUBLE NOT NULL,             -- 1.0 if y_pred = y_true else 0.0
    prob DOUBLE                        -- classifier's probability of y_pred
);

CREATE VIEW predictions AS
SELECT r.model, r.task, e.example_id, r.y_true, r.y_pred, lt.label AS label_true, lp.label AS label_pred,
       r.score, r.prob, e.grp, e.path
FROM prediction_rows r
JOIN examples e ON e.task = r.task AND e.example_index = r.example_index
LEFT JOIN labels lt ON lt.task = r.task AND lt.y = r.y_true
LEFT JOIN labels lp ON lp.task = r.task AND lp.y = r.y_pred;

-- Per (model, task): point estimate and paired-bootstrap percentile interval.
CREATE TABLE task_scores (
    model VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    ci_low DOUBLE NOT NULL,
    ci_high DOUBLE NOT NULL,
    n BIGINT NOT NULL,
    rank INTEGER NOT NULL,             -- 1 = best point estimate
    tied_with_best BOOLEAN NOT NULL,   -- not significantly worse than the best (Holm-corrected)
    PRIMARY KEY (model, task)
);

-- Per model: unweighted mean over the benchmark tasks. NULL value when a benchmark task is missing.
CREATE TABLE overall_scores (
    model VARCHAR PRIMARY KEY,
    value DOUBLE,
    ci_low DOUBLE,
    ci_high DOUBLE,
    n_tasks INTEGER NOT NULL,
    missing_tasks VARCHAR[],
    rank INTEGER,
    tied_with_best BOOLEAN,
    note VARCHAR                       -- why there is no overall score, when there is none
);

-- Every ordered pair (model_a, model_b), per task and overall (task = '__overall__'): a - b.
CREATE TABLE pairwise (
    task VARCHAR NOT NULL,
    model_a VARCHAR NOT NULL,
    model_b VARCHAR NOT NULL,
    diff DOUBLE NOT NULL,
    ci_low DOUBLE NOT NULL,
    ci_high DOUBLE NOT NULL,
    p_value DOUBLE NOT NULL,           -- two-sided paired bootstrap p-value
    PRIMARY KEY (task, model_a, model_b)
);

-- Settings the numbers depend on (n_resamples, confidence, seed, biobench version, created_at).
CREATE TABLE settings (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
