"""`flask users`, the demo users and their password file, and the instance's secret key."""

import os
import stat

from feed import runtime
from identity.demo import DEMO_USERS, PASSWORD_FILE
from identity.instance_files import secret_key
from models.seed import seed, seed_demo_users

from .test_auth_login import login


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_users_create_set_password_and_list(app):
    runner = app.test_cli_runner()
    created = runner.invoke(
        args=["users", "create", "bea", "--role", "staff", "--store", "2"], input="first pass\n"
    )
    assert created.exit_code == 0, created.output
    assert "first pass" not in created.output
    assert login(app.test_client(), "bea", "first pass").get_json()["user"]["store_id"] == 2
    changed = runner.invoke(args=["users", "set-password", "bea"], input="second pass\n")
    assert changed.exit_code == 0, changed.output
    assert login(app.test_client(), "bea", "first pass").status_code == 401
    assert login(app.test_client(), "bea", "second pass").status_code == 200
    listed = runner.invoke(args=["users", "list"])
    assert "\tbea\tstaff\tstore 2\tactive" in listed.output
    assert "pass" not in listed.output and "argon2" not in listed.output


def test_users_create_refuses_what_it_cannot_make(app):
    runner = app.test_cli_runner()
    for args, stdin in (
        (["users", "create", "x", "--role", "chef"], "pw\n"),
        (["users", "create", "x", "--role", "staff", "--store", "99"], "pw\n"),
        (["users", "create", "admin", "--role", "staff"], "pw\n"),
        (["users", "create", "y", "--role", "staff"], "\n"),
        (["users", "set-password", "ghost"], "pw\n"),
    ):
        runner.invoke(args=["users", "create", "admin", "--role", "admin"], input="pw\n")
        result = runner.invoke(args=args, input=stdin)
        assert result.exit_code != 0, (args, result.output)


def test_demo_users_get_a_generated_password_in_a_private_file(app, tmp_path):
    with app.app_context():
        seed()
        told = seed_demo_users(str(tmp_path), None)
        again = seed_demo_users(str(tmp_path), None)
    path = tmp_path / PASSWORD_FILE
    assert mode(path) == 0o600
    password = path.read_text().split("password: ")[1].strip()
    assert password in told and str(path) in told
    assert password not in again and str(path) in again
    client = app.test_client()
    for name, role, store in DEMO_USERS:
        user = login(client, name, password).get_json()["user"]
        assert user["role"] == role
        assert user["store_id"] == (None if store is None else store + 1)


def test_demo_password_setting_is_used_as_given(app, tmp_path):
    with app.app_context():
        told = seed_demo_users(str(tmp_path), "bakery-demo")
    assert "bakery-demo" not in told and "DEMO_PASSWORD" in told
    assert not (tmp_path / PASSWORD_FILE).exists()
    assert login(app.test_client(), "staff2", "bakery-demo").get_json()["user"]["store_id"] == 2


def test_seed_gives_both_stores_a_day_of_their_own(app):
    with app.app_context():
        seed()
        with runtime().read() as conn:
            counts = dict(
                conn.exec_driver_sql(
                    "SELECT store_id, count(*) FROM sales_logs GROUP BY store_id"
                ).all()
            )
            feedback = dict(
                conn.exec_driver_sql(
                    "SELECT store_id, count(*) FROM shift_feedback GROUP BY store_id"
                ).all()
            )
    assert set(counts) == {1, 2} and min(counts.values()) >= 12
    assert set(feedback) == {1, 2}


def test_secret_key_is_generated_once_with_mode_0600(tmp_path):
    first = secret_key(str(tmp_path))
    assert len(first) >= 48 and first == secret_key(str(tmp_path))
    assert mode(tmp_path / "secret_key") == 0o600
    assert os.listdir(tmp_path) == ["secret_key"]
