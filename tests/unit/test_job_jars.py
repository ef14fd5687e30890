"""A JDBC jar setting that points nowhere is named as such (the DAG passes the settings' jars to spark-submit, which
only warns that a jar does not exist; the job then told the user to add the very `--jars` it was given)."""
from test_job_mains import _submit

from shopflow.jobs.session import NO_RETRY_EXIT


def test_a_jar_setting_pointing_nowhere_is_named_not_a_missing_jars_option(tmp_path):
    gone = str(tmp_path / "mariadb-java-client-3.4.jar")
    code, output = _submit("build_marts", "--jars", gone, MYSQL_JDBC_JAR=gone)
    lines = [line for line in output.splitlines() if " ERROR shopflow." in line]
    assert code == NO_RETRY_EXIT and len(lines) == 1, output[-3000:]
    assert (f"the JDBC driver jar(s) {gone} of the settings (POSTGRES_JDBC_JAR / MYSQL_JDBC_JAR) do not exist"
            in lines[0])
