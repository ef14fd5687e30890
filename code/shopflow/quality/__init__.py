"""Quality gates of the marts: rules (pure), their evaluation and the `quality_results` table."""
from .gate import CheckResult, QualityGateError, expected_values, run_checks, sources
from .results import QUALITY_RESULTS_DDL, record_results
from .rules import (Check, Source, accepted_values, in_range, not_empty_when, not_null, passes, reconciles,
                    row_count_equals, rows_where, total_equals, unique)

__all__ = ["CheckResult", "QualityGateError", "expected_values", "run_checks", "sources", "QUALITY_RESULTS_DDL",
           "record_results", "Check", "Source", "accepted_values", "in_range", "not_empty_when", "not_null",
           "passes", "reconciles", "row_count_equals", "rows_where", "total_equals", "unique"]
