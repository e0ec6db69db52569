"""The dbt project's SQL passes sqlfluff (dbt_project/.sqlfluff: postgres dialect, jinja
templater with the project's macros), as `make lint` checks it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import DBT_PROJECT


def test_dbt_sql_passes_sqlfluff():
    run = subprocess.run([sys.executable, "-m", "sqlfluff", "lint", "--format", "json", "--processes", "2",
                          "--disable-progress-bar", "."],
                         check=False, cwd=DBT_PROJECT, capture_output=True, text=True, timeout=300)
    files = json.loads(run.stdout)
    assert files, run.stderr  # it linted something
    violations = [f"{f['filepath']}:{v['start_line_no']}: {v['code']} {v['description']}"
                  for f in files for v in f["violations"]]
    assert violations == [], "\n".join(violations)
    assert run.returncode == 0, run.stderr
