"""The deploy fingerprint covers the dbt project, not what dbt writes into it: a build
that leaves .user.yml, logs or a target behind must not make the next one redeploy."""

from __future__ import annotations

import shutil

from clever import dbt_runner


def test_what_dbt_writes_does_not_change_the_fingerprint_and_a_model_edit_does(tmp_path, monkeypatch):
    project = tmp_path / "dbt_project"
    shutil.copytree(dbt_runner.DBT_PROJECT_DIR, project,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"))
    monkeypatch.setattr(dbt_runner, "DBT_PROJECT_DIR", project)
    before = dbt_runner.project_fingerprint()

    (project / ".user.yml").write_text("id: 5d1a0c6e-0000-4000-8000-000000000000\n")
    (project / "logs").mkdir()
    (project / "logs" / "dbt.log").write_text("a build ran\n")
    (project / "target").mkdir()
    (project / "target" / "manifest.json").write_text("{}")
    assert dbt_runner.project_fingerprint() == before

    model = project / "models" / "marts" / "roster" / "dim_users.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    assert dbt_runner.project_fingerprint() != before
