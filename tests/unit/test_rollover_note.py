"""The rollover report explains in place why its school rows can add up to more than the
whole-district row: a student enrolled at two schools counts at each."""

from __future__ import annotations

import pandas as pd

from clever.rollover_report import _double_count_note


def test_the_note_gives_the_numbers_when_the_schools_add_up_to_more():
    schools = pd.DataFrame({"from_students": [60, 50], "to_students": [40, 45]})
    total = pd.Series({"from_students": 100, "to_students": 85})
    note = _double_count_note(schools, total)
    assert "counts at each of them" in note
    assert "in the earlier period the schools&#x27; students add up to 110, the district&#x27;s are 100" in note
    assert "later period" not in note  # 85 = 85: nothing to explain there


def test_the_note_stays_general_when_they_do_not():
    note = _double_count_note(pd.DataFrame({"from_students": [3], "to_students": [3]}),
                              pd.Series({"from_students": 3, "to_students": 3}))
    assert note.endswith("which counts every student once.</p>")
