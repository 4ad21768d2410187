"""Settings that are safe by default: DEBUG off, the production profile, login throttling."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "USUFRUCT_"))}
    base.update(USUFRUCT_VAR_DIR=str(tmp_path / "var"), **env)
    cmd = [sys.executable, "manage.py", *args]
    return subprocess.run(cmd, cwd=ROOT, env=base, capture_output=True, text=True, timeout=120)


def _printed(run: subprocess.CompletedProcess[str]) -> list[str]:
    """The last line of ``manage.py shell -c``, after the shell's own notice."""
    return run.stdout.strip().splitlines()[-1].split()


def _production(**env: str) -> dict[str, str]:
    return {"USUFRUCT_PROFILE": "production", "DJANGO_ALLOWED_HOSTS": "usufruct.example", **env}


def test_the_production_profile_passes_the_deployment_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = secrets.token_urlsafe(50)
    run = _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **_production(DJANGO_SECRET_KEY=key))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "System check identified no issues" in run.stdout
    assert "WARNING" not in run.stdout + run.stderr


def test_the_embedded_default_fails_them_so_the_test_above_can(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert run.returncode != 0
    assert "security.W008" in run.stdout + run.stderr  # SECURE_SSL_REDIRECT is off for http://127.0.0.1


def test_production_refuses_to_start_without_a_secret_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = _manage(tmp_path, "check", **_production())
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        "manage.py: USUFRUCT_PROFILE=production requires DJANGO_SECRET_KEY (50+ random characters)"
    ]


def test_debug_is_off_unless_asked_for_and_the_embedded_key_is_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    show = "from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)"
    debug, key = _printed(_manage(tmp_path, "shell", "-c", show))
    assert debug == "False"
    assert key == (tmp_path / "var" / "secret_key").read_text().strip() and len(key) >= 50
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0
    debug, again = _printed(_manage(tmp_path, "shell", "-c", show, DJANGO_DEBUG="1"))
    assert (debug, again) == ("True", key)


def test_a_404_page_lists_no_urls(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = False
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "Not found" in body and 'href="/"' in body
    assert "api/datasets/" not in body and "URLconf" not in body


def test_static_files_are_served_with_debug_off(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = False
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)  # type: ignore[attr-defined]


@pytest.fixture
def alice(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("alice", password="right-password")


def _login(client, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post("/login/", {"username": username, "password": password})


def test_login_is_throttled_after_five_failures(client, alice, django_user_model) -> None:  # type: ignore[no-untyped-def]
    for _ in range(4):
        assert _login(client, "alice", "wrong").status_code == 200  # the form again, with its error
    assert _login(client, "alice", "wrong").status_code == 429  # the fifth failure locks
    locked = _login(client, "alice", "right-password")
    assert locked.status_code == 429
    assert "Too many attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # The lock is on the username from this address: another user here still gets in.
    django_user_model.objects.create_user("bob", password="bobs-password")
    assert _login(client, "bob", "bobs-password").status_code == 302


def test_four_failures_do_not_lock_and_a_success_starts_the_count_again(client, alice) -> None:  # type: ignore[no-untyped-def]
    for _ in range(4):
        _login(client, "alice", "wrong")
    assert _login(client, "alice", "right-password").status_code == 302
    client.logout()
    for _ in range(4):
        _login(client, "alice", "wrong")
    assert _login(client, "alice", "right-password").status_code == 302


def test_the_node_and_the_hub_keep_kombus_control_folder_under_the_broker_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from compute.node.config import broker_settings

    options = broker_settings("filesystem://", str(tmp_path / "broker"))["broker_transport_options"]
    assert options["control_folder"] == str(tmp_path / "broker" / "control")
    show = "from django.conf import settings; print(settings.CELERY_BROKER_TRANSPORT_OPTIONS['control_folder'])"
    run = _manage(tmp_path, "shell", "-c", show, CELERY_BROKER_URL="filesystem://")
    assert _printed(run) == [str(tmp_path / "var" / "broker" / "control")]
