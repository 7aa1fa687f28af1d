-- The tables of results/biobench.duckdb. The aggregate step creates them from this file; the report and the
-- `biobench` command read them. Models and tasks are referred to by their config names.

-- One row per (model, task, training size): what produced the predictions (provenance).
CREATE TABLE runs (
    model VARCHAR NOT NULL,            -- display name from config.yaml
    train_size INTEGER NOT NULL DEFAULT 0,  -- the task's n_train setting of this fit (0 = every training row)
    headline BOOLEAN NOT NULL DEFAULT true, -- the task's largest training size: its scores are in task_scores
    model_key VARCHAR NOT NULL,        -- content-addressed key of the model spec
    org VARCHAR,
    checkpoint VARCHAR,
    model_spec JSON,
    task VARCHAR NOT NULL,
    dataset_key VARCHAR NOT NULL,
    classifier_key VARCHAR NOT NULL,
    classifier JSON,                   -- protocol, grid, chosen hyperparameters
    metric VARCHAR NOT NULL,
    benchmark BOOLEAN NOT NULL,        -- one of BioBench's benchmark tasks: counts in the overall biology score
    n_train BIGINT,                    -- training rows the fit used
    n_test BIGINT,
    manifest_sha256 VARCHAR,
    embed_device VARCHAR,
    embed_dtype VARCHAR,               -- precision the embedding's forward pass ran at (biobench/precision.py)
    embed_dtype_requested VARCHAR,     -- the model's dtype in config.yaml
    embed_dtype_reason VARCHAR,        -- why that precision ran (e.g. the device has no fast bfloat16)
    embed_images_per_s DOUBLE,
    embed_seconds DOUBLE,
    fit_seconds DOUBLE,
    git_commit VARCHAR,
    host VARCHAR,
    packages JSON,
    created_at TIMESTAMP,
    predictions_path VARCHAR,
    PRIMARY KEY (model, task, train_size)
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

-- One row per (model, task, training size, test example).
CREATE TABLE prediction_rows (
    model VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    train_size INTEGER NOT NULL DEFAULT 0, -- the n_train setting of the fit (0 = every training row)
    example_index INTEGER NOT NULL,    -- -> examples
    y_true BIGINT NOT NULL,
    y_pred BIGINT NOT NULL,
    score DOUBLE NOT NULL,             -- 1.0 if y_pred = y_true else 0.0
    prob DOUBLE                        -- classifier's probability of y_pred
);

-- The predictions behind task_scores: each task's headline training size.
CREATE VIEW predictions AS
SELECT r.model, r.task, e.example_id, r.y_true, r.y_pred, lt.label AS label_true, lp.label AS label_pred,
       r.score, r.prob, e.grp, e.path
FROM prediction_rows r
JOIN runs u ON u.model = r.model AND u.task = r.task AND u.train_size = r.train_size AND u.headline
JOIN examples e ON e.task = r.task AND e.example_index = r.example_index
LEFT JOIN labels lt ON lt.task = r.task AND lt.y = r.y_true
LEFT JOIN labels lp ON lp.task = r.task AND lp.y = r.y_pred;

-- Per (model, task, training size): every n_train setting's score, with its paired-bootstrap centred percentile interval
-- (the same resamples for every size of a task). The headline rows repeat task_scores.
CREATE TABLE train_size_scores (
    model VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    train_size INTEGER NOT NULL,       -- the n_train setting (0 = every training row)
    n_train BIGINT,                    -- training rows the fit used
    headline BOOLEAN NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    ci_low DOUBLE NOT NULL,
    ci_high DOUBLE NOT NULL,
    n BIGINT NOT NULL,                 -- evaluation examples
    PRIMARY KEY (model, task, train_size)
);

-- Per (model, task): point estimate and paired-bootstrap centred percentile interval, at the task's headline training size.
CREATE TABLE task_scores (
    model VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    ci_low DOUBLE NOT NULL,
    ci_high DOUBLE NOT NULL,
    n BIGINT NOT NULL,
    rank INTEGER NOT NULL,             -- 1 = best point estimate
    tied_with_best BOOLEAN NOT NULL,   -- not rejected as a best model (step-down max test)
    PRIMARY KEY (model, task)
);

-- Per model: unweighted mean over the run's benchmark tasks (BioBench's ten; prior-work tasks are not averaged).
-- NULL value when the model lacks a benchmark task of the run; `partial` when the run lacks some of the ten.
CREATE TABLE overall_scores (
    model VARCHAR PRIMARY KEY,
    value DOUBLE,
    ci_low DOUBLE,
    ci_high DOUBLE,
    n_tasks INTEGER NOT NULL,          -- benchmark tasks averaged
    tasks VARCHAR[],                   -- which
    missing_tasks VARCHAR[],           -- BioBench's benchmark tasks not in the mean
    partial BOOLEAN NOT NULL DEFAULT false,
    rank INTEGER,
    tied_with_best BOOLEAN,
    note VARCHAR                       -- why there is no overall score, or what a partial mean leaves out
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

-- Settings the numbers depend on (n_resamples, confidence, seed, biobench version, created_at), and schema_version:
-- the version of this file (biobench.aggregate.SCHEMA_VERSION), which readers check.
CREATE TABLE settings (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- Problems in the inputs that did not stop aggregation, one row per prediction file concerned (also logged, and
-- summarised in the `warnings` setting): a task with fewer than 30 evaluation examples (biobench.aggregate
-- MIN_EXAMPLES) is scored, but its pairwise p-values are set to 1 and every model is tied with the best.
CREATE TABLE warnings (
    task VARCHAR NOT NULL,
    model VARCHAR,
    train_size INTEGER,
    predictions_path VARCHAR,
    message VARCHAR NOT NULL           -- names the task, the model, the file, the problem and the fix
);
