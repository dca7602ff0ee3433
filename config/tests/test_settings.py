"""Production settings, checked in a fresh interpreter (settings are read once per process)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "DEBUG": "False",
    "SECRET_KEY": "prod-" + "k3y-material-" * 5,
    "FIELD_ENCRYPTION_KEY": "prod-field-" + "encryption-" * 3,
    "ALLOWED_HOSTS": "bnpl.example.com",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEY")}
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments  # nosec B603
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", DEBUG="False", ALLOWED_HOSTS="bnpl.example.com")

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_to_start_without_a_field_encryption_key():
    result = manage("check", DEBUG="False", SECRET_KEY=PROD_ENV["SECRET_KEY"], ALLOWED_HOSTS="x.example.com")

    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY" in result.stderr


def test_production_settings_pass_check_deploy():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PROD_ENV)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_demo_data_is_refused_in_production():
    result = manage("populate_mock_data", **PROD_ENV)

    assert result.returncode == 1
    assert "refused when DEBUG=False" in result.stderr


def test_a_database_that_never_answers_fails_the_connection_in_bounded_time():
    from config.settings import _database

    assert _database("postgres://u@db:5432/bnpl")["OPTIONS"]["connect_timeout"] == 5
    assert _database("postgres://u@db:5432/bnpl?connect_timeout=9")["OPTIONS"]["connect_timeout"] == 9


def database_options(**env: str) -> str:
    """The default database's OPTIONS as a fresh process reads them from ``env`` (a
    PostgreSQL URL that is never connected to)."""
    shown = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(sorted(settings.DATABASES['default']['OPTIONS'].items()))",
        DATABASE_URL="postgres://u@db:5432/bnpl",
        **env,
    )
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.strip().splitlines()[-1]  # after the shell's own line on its imports


def test_statements_are_bound_by_the_server_and_prepared_except_behind_a_transaction_pooler():
    assert database_options() == "[('connect_timeout', 5), ('prepare_threshold', 2), ('server_side_binding', True)]"
    assert (
        database_options(DATABASE_TRANSACTION_POOLER="True")
        == "[('connect_timeout', 5), ('server_side_binding', True)]"
    )
    assert database_options(DATABASE_SERVER_SIDE_BINDING="False") == "[('connect_timeout', 5)]"

    refused = manage("check", DATABASE_TRANSACTION_POOLER="True", DATABASE_PREPARE_THRESHOLD="2")
    assert refused.returncode != 0
    assert "DATABASE_PREPARE_THRESHOLD needs" in refused.stderr


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_statement_run_again_after_two_runs_on_a_connection_is_prepared_by_the_server():
    from django.db import connection

    statement = "SELECT count(*) FROM accounts_user WHERE id > %s"
    with connection.cursor() as cursor:
        for bound in (0, 1, 2):
            cursor.execute(statement, [bound])
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert "SELECT count(*) FROM accounts_user WHERE id > $1" in prepared


def test_a_lost_worker_hands_its_task_back_and_a_hung_broker_times_out(settings):
    assert settings.CELERY_TASK_ACKS_LATE
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["socket_timeout"] > 0
