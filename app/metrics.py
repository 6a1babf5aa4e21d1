"""Every Prometheus metric modelserve exports, in one place.

With ``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported, prometheus_client keeps
values in per-process files and /metrics sums them across workers; gauges declare how they
combine (``multiprocess_mode``). Label sets are bounded: model and version come from the
registry, ``class`` from the model's classes, ``reason`` from ``app.errors.ErrorReason``.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

# The unlabelled worker gauges (end of file) open this process's file as they are defined: the
# directory must exist by then (the image's /tmp/metrics is on an empty tmpfs; `modelserve
# serve` empties it afterwards, this import included).
if _multiproc_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_multiproc_dir, exist_ok=True)

# 50 µs .. 5 s, roughly x2.5 per step: resolves a logistic model and a large forest alike.
INFERENCE_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _latest_gauge(name: str, documentation: str, labels: list[str]) -> Gauge:
    """A gauge every worker sets to the same value; /metrics shows it once (live workers)."""
    return Gauge(name, documentation, labels, multiprocess_mode="livemax")


INFERENCE_DURATION = Histogram(
    "modelserve_inference_duration_seconds",
    "Time spent in the model call alone (one call may score a whole batch).",
    ["model", "version"],
    buckets=INFERENCE_BUCKETS,
)
PREDICTIONS = Counter(
    "modelserve_predictions",
    "Instances predicted, by predicted class (classifiers).",
    ["model", "version", "class"],
)
PREDICTION_VALUE = Histogram(
    "modelserve_prediction_value",
    "Predicted values (regressors).",
    ["model", "version"],
    buckets=(-1000, -100, -10, -1, 0, 1, 10, 100, 1000, 10000),
)
PREDICTION_ERRORS = Counter(
    "modelserve_prediction_errors",
    "Prediction requests refused or failed, by reason.",
    ["model", "reason"],
)
BATCH_SIZE = Histogram(
    "modelserve_batch_size",
    "Instances per model call.",
    ["model"],
    buckets=BATCH_BUCKETS,
)
MODEL_INFO = _latest_gauge(
    "modelserve_model_info",
    "1 for the version each model is serving now, 0 for versions it served before.",
    ["model", "version", "sha256"],
)
MODEL_LOADED_TIMESTAMP = _latest_gauge(
    "modelserve_model_loaded_timestamp_seconds",
    "Unix time the version was loaded and warmed.",
    ["model", "version"],
)
MODEL_RELOAD_FAILURES = Counter(
    "modelserve_model_reload_failures",
    "Loads or reloads of a model version that failed (old version kept serving).",
    ["model"],
)
MODEL_FALLBACK = _latest_gauge(
    "modelserve_model_fallback",
    "1 while the model serves an earlier version of its alias history because the version its "
    "alias points at (the version label) cannot be loaded; 0 once it can.",
    ["model", "version"],
)
QUEUE_DEPTH = Gauge(
    "modelserve_queue_depth",
    "Requests waiting for a model call.",
    ["model"],
    multiprocess_mode="livesum",
)
REQUESTS_REJECTED = Counter(
    "modelserve_requests_rejected",
    "Requests refused with 503 because the model's queue was full.",
    ["model"],
)


# ---- monitoring: ground truth, drift, prediction log ----------------------------------------
# Quality travels as counters; Prometheus recording rules turn them into accuracy and PSI, which
# is what keeps them right across workers and replicas.

FEEDBACK = Counter(
    "modelserve_feedback",
    "Ground-truth labels received for logged predictions (classifiers).",
    ["model", "version", "outcome"],  # outcome: correct | incorrect
)
FEEDBACK_ERROR = Histogram(
    "modelserve_feedback_error",
    "Absolute error of regression predictions once their ground truth arrived.",
    ["model", "version"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100),
)
FEATURE_BIN = Counter(
    "modelserve_feature_bin",
    "Scored input values per feature, by reference quantile bin (index into the version's bins).",
    ["model", "version", "feature", "bin"],
)
FEATURE_REFERENCE_RATIO = _latest_gauge(
    "modelserve_feature_reference_ratio",
    "Share of the training data in each reference bin of each feature (from metadata).",
    ["model", "version", "feature", "bin"],
)
UNKNOWN_CATEGORIES = Counter(
    "modelserve_unknown_categories",
    "Scored values of a string feature that training never saw (not in the feature's "
    "categories in metadata; missing values are not counted).",
    ["model", "feature"],  # feature: from the version's metadata, never from a request
)
CLASS_REFERENCE_RATIO = _latest_gauge(
    "modelserve_class_reference_ratio",
    "Share of each class in the training target (from metadata).",
    ["model", "version", "class"],
)
LOG_WRITE_FAILURES = Counter(
    "modelserve_log_write_failures",
    "Prediction-log or feedback writes that failed (predictions are still answered).",
    ["operation"],
)
# Values of its ``operation`` label.
OP_PREDICTIONS = "predictions"  # prediction (or shadow) rows that failed to commit, per row
OP_BUFFER_FULL = "buffer_full"  # rows dropped because the writer fell behind (per row)
OP_FEEDBACK = "feedback"  # a feedback request could not be stored (per request)
OP_RETENTION = "retention"  # a retention purge failed


# ---- deployment: canary and shadow versions side by side ------------------------------------
# Every request routed to a version counts once by outcome; rows scored off the request path by
# a second version (a shadow behind production, or production behind a canary) count agreement.

VERSION_REQUESTS = Counter(
    "modelserve_version_requests",
    "Prediction requests answered by each version, by outcome (ok, or the error reason).",
    ["model", "version", "outcome"],  # outcome: ok | an app.errors.ErrorReason value
)
VERSION_ROLE = _latest_gauge(
    "modelserve_version_role",
    "1 while the version holds the role (production, canary, shadow), else 0.",
    ["model", "version", "role"],
)
CANARY_WEIGHT = _latest_gauge(
    "modelserve_canary_weight_ratio",
    "Share of the production alias's requests sent to the canary version (0 without one).",
    ["model"],
)
AGREEMENT = Counter(
    "modelserve_agreement",
    "Rows scored by both this version and production (classifiers), by whether they agree.",
    ["model", "version", "outcome"],  # outcome: agree | disagree
)
AGREEMENT_DIFFERENCE = Histogram(
    "modelserve_agreement_abs_difference",
    "Absolute difference between this version's and production's prediction (regressors).",
    ["model", "version"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 100),
)
SHADOW_DROPPED = Counter(
    "modelserve_shadow_dropped",
    "Requests not scored off the request path because the shadow queue was full.",
    ["model"],
)
SHADOW_FAILURES = Counter(
    "modelserve_shadow_failures",
    "Off-path scorings that raised (production's answers are unaffected).",
    ["model", "version"],
)
SHADOW_FEEDBACK = Counter(
    "modelserve_shadow_feedback",
    "Ground-truth labels judged against a shadow version's answer for the same row.",
    ["model", "version", "outcome"],  # outcome: correct | incorrect
)


# ---- estimated accuracy: confidence before labels arrive ------------------------------------
# The mean calibrated top-class probability of the predictions is their expected accuracy
# (_sum / _count, summed over workers and replicas by a recording rule).

PREDICTION_CONFIDENCE = Histogram(
    "modelserve_prediction_confidence",
    "Calibrated top-class probability of each prediction (classifiers with predict_proba; "
    "the version's isotonic map from metadata applied). _sum / _count is the expected accuracy.",
    ["model", "version"],
    buckets=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0),
)
HELDOUT_ACCURACY = _latest_gauge(
    "modelserve_heldout_accuracy_ratio",
    "Accuracy of the version on its held-out rows at training or registration (from metadata).",
    ["model", "version"],
)


# ---- :explain (app.serving.explain): off the predict path, in its own thread ----------------

EXPLAIN_DURATION = Histogram(
    "modelserve_explain_duration_seconds",
    "Time spent explaining one request's rows in the explain thread: the contributions, the "
    "model's own output and the sum check (a version's explainer is built before, not counted).",
    ["model", "version"],
    buckets=(*INFERENCE_BUCKETS, 10.0),
)
EXPLAIN_REQUESTS = Counter(
    "modelserve_explain_requests",
    "Explain requests answered by each version, by outcome (ok, or the error reason).",
    ["model", "version", "outcome"],  # outcome: ok | an app.errors.ErrorReason value
)
# Attribution monitoring (app.serving.attribution): a sampled share of answered rows explained
# off the request path; live share of a feature = its _abs_sum increase / the version's total.
ATTRIBUTION_ABS_SUM = Counter(
    "modelserve_attribution_abs_sum",
    "Sum over sampled rows of the absolute contribution of each feature (summed over the "
    "model's outputs), in the version's explanation space (the first 100 features).",
    ["model", "version", "feature"],  # feature: from the version's metadata
)
ATTRIBUTION_ROWS = Counter(
    "modelserve_attribution_rows",
    "Sampled rows explained into modelserve_attribution_abs_sum_total.",
    ["model", "version"],
)
ATTRIBUTION_DROPPED = Counter(
    "modelserve_attribution_dropped_rows",
    "Sampled rows not explained: the attribution queue was full, or explaining them failed.",
    ["model", "reason"],  # reason: queue_full | failed
)
ATTRIBUTION_REFERENCE_SHARE = _latest_gauge(
    "modelserve_attribution_reference_share",
    "Each feature's share of the mean absolute contribution on the version's background rows "
    "at training or registration (from metadata).",
    ["model", "version", "feature"],
)

# ---- the OIP gRPC service (app.api.grpc): what HTTP's instrumentator counts for HTTP ----------

GRPC_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
GRPC_REQUESTS = Counter(
    "modelserve_grpc_requests",
    "gRPC calls answered, by method and status code (OK or the error's code).",
    ["method", "code"],  # method: one of the service's RPCs; code: a grpc.StatusCode name
)
GRPC_REQUEST_DURATION = Histogram(
    "modelserve_grpc_request_duration_seconds",
    "Time from a gRPC call's arrival to its answer, by method.",
    ["method"],
    buckets=GRPC_LATENCY_BUCKETS,
)


# ---- each worker process (multiprocess mode adds a pid label; a dead worker's series go) -----
# prometheus_client's process_* collector cannot run under PROMETHEUS_MULTIPROC_DIR; these take
# its place there, each worker setting its own values every few seconds.

WORKER_RESIDENT_MEMORY = Gauge(
    "modelserve_worker_resident_memory_bytes",
    "Resident memory of this server worker process.",
    multiprocess_mode="liveall",
)
WORKER_CPU = Gauge(
    "modelserve_worker_cpu_seconds",
    "CPU time (user + system) this server worker process has used since it started.",
    multiprocess_mode="liveall",
)
WORKER_OPEN_FDS = Gauge(
    "modelserve_worker_open_fds",
    "Open file descriptors of this server worker process.",
    multiprocess_mode="liveall",
)
WORKER_START_TIME = Gauge(
    "modelserve_worker_start_time_seconds",
    "Unix time this server worker process started.",
    multiprocess_mode="liveall",
)
