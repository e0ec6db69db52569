"""Clever Library teachers' connection changes are alerted to the district's on-call, saying
what happens to the teacher's students and sections under the district's policy."""

from __future__ import annotations

from clever import alerts, library
from clever.config import AlertSettings, DistrictConfig


def sent(monkeypatch, district: DistrictConfig, changes: list[library.TeacherChange]) -> list[alerts.Alert]:
    outbox: list[alerts.Alert] = []
    monkeypatch.setattr(alerts, "send", lambda settings, alert: outbox.append(alert) or [])
    library.alert_teacher_changes(district, changes)
    return outbox


def test_a_disconnect_alert_names_the_teacher_and_the_policy(monkeypatch):
    on_call = AlertSettings(email=("oncall@example.org",))
    keep = DistrictConfig(slug="lib", integration="library", alerts=on_call)
    (alert,) = sent(monkeypatch, keep, [library.TeacherChange("t1", "disconnected", "Clever refused the token")])
    assert alert.subject == "[clever-warehouse] lib: Library teacher t1 disconnected"
    assert "Clever refused the token" in alert.body and "nothing is archived by the disconnect" in alert.body
    after_days = DistrictConfig(slug="lib", integration="library", alerts=on_call,
                                library_teacher_archive_after_days=14)
    (alert,) = sent(monkeypatch, after_days, [library.TeacherChange("t1", "disconnected", "no token stored")])
    assert "kept for 14 day(s), then what only they saw is archived" in alert.body
    assert [a.subject.rsplit(" ", 1)[-1] for a in sent(monkeypatch, keep, [
        library.TeacherChange("t1", "reconnected"), library.TeacherChange("t2", "archived", "policy")])] \
        == ["reconnected", "archived"]


def test_no_alert_without_alert_settings(monkeypatch):
    assert sent(monkeypatch, DistrictConfig(slug="lib", integration="library"),
                [library.TeacherChange("t1", "disconnected", "x")]) == []
