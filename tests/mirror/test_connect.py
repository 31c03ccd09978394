"""The mirror's DSN: libpq's own syntax, with the read-write target, keepalives and a connect
timeout filled in unless the DSN says otherwise; a password file's first line."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from terminald.mirror import MirrorError
from terminald.mirror.connect import conninfo, read_password


def test_defaults_fill_what_the_dsn_leaves_unset() -> None:
    params = conninfo_to_dict(conninfo("postgresql://t0001@pg1,pg2/terminald?sslmode=verify-full",
                                       password="s3cret", application_name="terminald-mirror T0001"))
    assert params["host"] == "pg1,pg2" and params["user"] == "t0001" and params["sslmode"] == "verify-full"
    assert params["target_session_attrs"] == "read-write" and params["keepalives"] == "1"
    assert params["password"] == "s3cret" and params["application_name"] == "terminald-mirror T0001"

    own = conninfo_to_dict(conninfo("host=pg1 target_session_attrs=any connect_timeout=2 password=x",
                                    password="other"))
    assert own["target_session_attrs"] == "any" and own["connect_timeout"] == "2" and own["password"] == "x"


def test_a_malformed_dsn_and_a_password_file(tmp_path: Path) -> None:
    with pytest.raises(MirrorError, match="not a valid libpq connection string"):
        conninfo("host=pg1 port")
    secret = tmp_path / "pw"
    secret.write_text("s3cret \nignored\n", encoding="utf-8")
    assert read_password(secret) == "s3cret"
    with pytest.raises(MirrorError, match="password_file"):
        read_password(tmp_path / "missing")
