"""Running rules: expected values from replica frames in one aggregation per table, observed from SQL."""
from decimal import Decimal

from shopflow.quality import (QualityGateError, Source, expected_values, not_null, run_checks, sources,
                              total_equals)


class FakeCursor:
    def __init__(self, answers):
        self.answers, self.statements = list(answers), []

    def execute(self, statement, params=None):
        self.statements.append(statement)

    def fetchone(self):
        return (self.answers.pop(0),)


def test_expected_values_evaluate_each_source_on_its_table(spark):
    frames = {"orders": spark.createDataFrame([(1, Decimal("1.10")), (2, Decimal("2.20"))],
                                              "order_id long, total_amount decimal(12,2)"),
              "users": spark.createDataFrame([], "user_id long")}
    wanted = [Source("orders", "SUM(total_amount)"), Source("orders", "COUNT(*)"), Source("users", "COUNT(*) > 0"),
              Source("users", "SUM(user_id)")]
    assert expected_values(frames, wanted) == {wanted[0]: Decimal("3.30"), wanted[1]: 2, wanted[2]: False,
                                               wanted[3]: None}


def test_run_checks_compares_each_observed_value_and_reports_failures():
    checks = [not_null("user_id"), total_equals("total_spent", Source("orders", "SUM(total_amount)"))]
    [source] = sources(checks)
    cursor = FakeCursor([0, Decimal("3.29")])
    results = run_checks(cursor, "mart_user_activity", "mart_user_activity__staging", checks,
                         {source: Decimal("3.30")})
    assert cursor.statements[0] == "SELECT COUNT(*) FROM `mart_user_activity__staging` WHERE `user_id` IS NULL"
    assert [(r.check, r.passed, r.observed, r.expected) for r in results] == [
        ("not_null(user_id)", True, 0, 0),
        ("COALESCE(SUM(`total_spent`), 0) = orders: COALESCE(SUM(total_amount), 0)", False, Decimal("3.29"),
         Decimal("3.30"))]
    error = QualityGateError([r for r in results if not r.passed])
    assert "1 quality check(s) failed, no mart published" in str(error)
    assert "observed 3.29, expected 3.30" in str(error)
