"""The Airflow UI in headless Chromium (Debian's, driven by playwright-core):
log in, open user_automation, trigger it through the form with a count, and
see the run succeed. The screenshot is kept in .stack/artifacts/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, STACK, login, unpause

MODULES = STACK / "ui/node_modules"


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is installed by scripts/test.sh")
def test_trigger_from_the_ui_form_and_see_success(airflow_server):
    assert (MODULES / "playwright-core").is_dir(), "playwright-core is installed by scripts/test.sh"
    unpause(login())
    artifacts = STACK / "artifacts"
    artifacts.mkdir(exist_ok=True)
    screenshot = artifacts / "airflow-ui-run.png"
    screenshot.unlink(missing_ok=True)
    password = json.loads((STACK / "airflow/home/simple_auth_manager_passwords.json.generated").read_text())["admin"]
    env = {
        **os.environ,
        "AIRFLOW_URL": "http://127.0.0.1:8080",
        "AIRFLOW_USER": "admin",
        "AIRFLOW_PASSWORD": password,
        "UI_MODULES": str(MODULES),
        "COUNT": "250",
        "SCREENSHOT": str(screenshot),
    }
    result = subprocess.run(
        ["node", str(ROOT / "tests/ui/trigger.mjs")], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["state"] == "success", outcome
    assert "/dags/user_automation/runs/" in outcome["run"]
    assert screenshot.stat().st_size > 10_000
