"""The vocabulary the fleet is drawn from: teams, what they own, column types, error messages.

Pure data. `fleet.py` decides how much of it to use and how it is wired together.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Layer(enum.Enum):
    """Where a pipeline sits in the warehouse's layered DAG; edges only ever point up the layers."""

    RAW = "raw"
    STAGING = "staging"
    MART = "mart"
    SERVING = "serving"


class Integration(enum.Enum):
    """What runs the pipeline; the value is OpenLineage's `jobType.integration`."""

    AIRFLOW = "AIRFLOW"
    DBT = "DBT"
    SPARK = "SPARK"
    CRON = "CRON"


@dataclass(frozen=True)
class Team:
    name: str
    domain: str
    entities: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]  # (namespace, name template with {e}) feeding its raw ingests
    cron_host: str
    dbt_project: str
    layer_share: tuple[float, float, float, float]  # its weight in RAW, STAGING, MART, SERVING
    tier_weights: tuple[float, float, float]


TEAMS: tuple[Team, ...] = (
    Team("platform", "core", ("events", "users", "orders", "audit_log", "sessions", "devices"),
         (("kafka://events.prod:9092", "platform.{e}"), ("postgres://core-db.prod:5432", "core.public.{e}")),
         "etl-01", "core", (40, 10, 0, 5), (0.4, 0.5, 0.1)),
    Team("payments", "billing", ("charges", "refunds", "payouts", "disputes", "invoices", "settlements"),
         (("postgres://payments-db.prod:5432", "payments.public.{e}"), ("https://api.stripe.com", "v1/{e}")),
         "billing-host", "payments", (15, 20, 20, 10), (0.5, 0.4, 0.1)),
    Team("marketing", "acquisition", ("campaigns", "ad_clicks", "impressions", "email_sends", "leads"),
         (("https://graph.facebook.com", "ads/{e}"), ("kafka://events.prod:9092", "marketing.{e}")),
         "mkt-box", "marketing", (15, 15, 15, 15), (0.15, 0.5, 0.35)),
    Team("analytics", "insights", ("pageviews", "funnels", "retention", "cohorts", "kpis"),
         (("kafka://events.prod:9092", "web.{e}"),),
         "reporting-host", "analytics", (0, 25, 30, 20), (0.15, 0.5, 0.35)),
    Team("ml", "models", ("churn", "fraud_scores", "recommendations", "ltv", "embeddings"),
         (("s3://acme-ml", "labels/{e}"),),
         "gpu-box-02", "ml_features", (5, 5, 5, 30), (0.2, 0.5, 0.3)),
    Team("finance", "accounting", ("revenue", "gl_entries", "fx_rates", "budgets", "tax_lines", "accruals"),
         (("sqlserver://erp.prod:1433", "erp.dbo.{e}"), ("sftp://bank-drop.acme.com", "statements/{e}")),
         "fin-batch-01", "finance", (10, 15, 20, 15), (0.5, 0.4, 0.1)),
    Team("growth", "product", ("signups", "referrals", "experiments", "activations", "trials"),
         (("mysql://growth-db.prod:3306", "growth.{e}"), ("https://api.segment.io", "v1/{e}")),
         "growth-jobs", "growth", (15, 10, 10, 5), (0.15, 0.5, 0.35)),
)

NAME_PATTERNS: dict[Layer, tuple[str, ...]] = {
    Layer.RAW: ("ingest_{e}", "extract_{e}", "sync_{e}", "cdc_{e}", "load_{e}"),
    Layer.STAGING: ("stg_{e}", "clean_{e}", "dedup_{e}"),
    Layer.MART: ("fct_{e}", "dim_{e}", "agg_{e}_daily", "mart_{e}"),
    Layer.SERVING: ("report_{e}_weekly", "export_{e}", "dashboard_{e}", "notify_{e}"),
}
ML_SERVING_PATTERNS = ("{e}_features", "score_{e}", "train_{e}_model")
NAME_VARIANTS = ("", "_eu", "_us", "_apac", "_v2", "_backfill", "_snapshot", "_hourly_rollup")

# Airflow task ids in DAG order; a DAG keeps 2-6 of them, always the extract and the load.
AIRFLOW_TASKS = ("check_source", "extract", "transform", "load", "validate", "publish")
DBT_MODEL_PATTERNS = ("stg_{e}", "int_{e}_joined", "fct_{e}", "dim_{e}", "{e}_snapshot")

KEY_FIELDS = (("id", "BIGINT"), ("created_at", "TIMESTAMP"), ("updated_at", "TIMESTAMP"))
OPTIONAL_FIELDS = (
    ("customer_id", "BIGINT"), ("amount", "DECIMAL(18,2)"), ("currency", "VARCHAR(3)"),
    ("status", "VARCHAR"), ("country", "VARCHAR(2)"), ("channel", "VARCHAR"), ("campaign_id", "BIGINT"),
    ("event_type", "VARCHAR"), ("session_id", "VARCHAR"), ("score", "DOUBLE"), ("quantity", "INTEGER"),
    ("is_test", "BOOLEAN"), ("source", "VARCHAR"), ("region", "VARCHAR"), ("ds", "DATE"),
)
ADDED_FIELDS = (("discount_code", "VARCHAR"), ("partner_id", "BIGINT"), ("consent_flags", "VARCHAR"),
                ("tax_amount", "DECIMAL(18,2)"), ("experiment_arm", "VARCHAR"))
RETYPED = {"BIGINT": "VARCHAR", "DECIMAL(18,2)": "DOUBLE", "INTEGER": "BIGINT", "TIMESTAMP": "VARCHAR",
           "VARCHAR": "VARCHAR(64)", "DATE": "TIMESTAMP", "DOUBLE": "VARCHAR", "BOOLEAN": "INTEGER"}


@dataclass(frozen=True)
class ErrorSpec:
    type: str
    message: str
    language: str  # OpenLineage errorMessage.programmingLanguage
    stack_trace: str | None = None


LANGUAGE = {Integration.AIRFLOW: "PYTHON", Integration.DBT: "SQL", Integration.SPARK: "JAVA",
            Integration.CRON: "PYTHON"}

# (type, message template); templates may use {task}, {source}, {output}, {host}.
FAILURES: dict[Integration, tuple[tuple[str, str], ...]] = {
    Integration.AIRFLOW: (
        ("psycopg2.OperationalError",
         ("could not connect to server: Connection timed out\n"
          '\tIs the server running on host "{host}" and accepting TCP/IP connections?')),
        ("KeyError", "'customer_id'"),
        ("requests.exceptions.HTTPError", "503 Server Error: Service Unavailable for url: {source}"),
        ("botocore.exceptions.ClientError",
         "An error occurred (AccessDenied) when calling the PutObject operation: Access Denied"),
        ("great_expectations.exceptions.ValidationError",
         "expect_column_values_to_not_be_null failed for {output}: 1843 unexpected null values"),
    ),
    Integration.DBT: (
        ("dbt.exceptions.DbtDatabaseError",
         ("Database Error in model {task}\n"
          "  000904 (42000): SQL compilation error: invalid identifier 'CUSTOMER_ID'")),
        ("dbt.exceptions.DbtRuntimeError",
         "Failure in test unique_{task}_id: got 3 results, configured to fail if != 0"),
        ("snowflake.connector.errors.ProgrammingError",
         "002003 (42S02): SQL compilation error: Object '{output}' does not exist or not authorized."),
    ),
    Integration.SPARK: (
        ("org.apache.spark.SparkException",
         ("Job aborted due to stage failure: Task 17 in stage 4.0 failed 4 times, most recent failure: "
          "java.lang.OutOfMemoryError: Java heap space")),
        ("org.apache.spark.sql.AnalysisException",
         "[TABLE_OR_VIEW_NOT_FOUND] The table or view `{source}` cannot be found."),
        ("java.io.FileNotFoundException",
         "No such file or directory: s3a://acme-lake/_tmp/part-00042.parquet"),
    ),
    Integration.CRON: (
        ("subprocess.CalledProcessError",
         "Command '['/opt/jobs/{task}.sh']' returned non-zero exit status 1."),
        ("ConnectionResetError", "[Errno 104] Connection reset by peer ({host})"),
        ("PermissionError", "[Errno 13] Permission denied: '/data/incoming/{task}.lock'"),
    ),
}

# A run killed for running too long; Airflow and dbt fail the task, a killed process just aborts.
TIMEOUTS: dict[Integration, tuple[str, str]] = {
    Integration.AIRFLOW: ("airflow.exceptions.AirflowTaskTimeout", "Timeout, PID: 31337"),
    Integration.DBT: ("dbt.exceptions.DbtRuntimeError", "Query cancelled: statement timeout exceeded"),
    Integration.SPARK: ("org.apache.spark.SparkException",
                        "Job 12 cancelled because SparkContext was shut down"),
    Integration.CRON: ("SIGKILL", "process killed after exceeding its runtime limit"),
}

# The shared resource behind a failure burst: every pipeline in one namespace loses it at once.
OUTAGES: dict[Integration, tuple[str, str, str]] = {  # (resource, error type, message)
    Integration.AIRFLOW: ("warehouse", "snowflake.connector.errors.OperationalError",
                          ("250003: Failed to execute request: HTTPSConnectionPool("
                           "host='acme-prod.snowflakecomputing.com', port=443): Max retries exceeded "
                           "(Caused by ConnectTimeoutError)")),
    Integration.DBT: ("warehouse", "dbt.exceptions.FailedToConnectError",
                      "Database Error: 250001: Could not connect to Snowflake backend after 3 attempt(s)."),
    Integration.SPARK: ("metastore", "org.apache.hadoop.hive.metastore.api.MetaException",
                        ("Could not connect to meta store using any of the URIs provided. "
                         "Most recent failure: thrift://metastore.prod:9083 Connection refused")),
    Integration.CRON: ("network", "socket.gaierror", "[Errno -3] Temporary failure in name resolution"),
}
