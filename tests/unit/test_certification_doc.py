"""docs/CERTIFICATION.md quotes every question of Clever's certification texts verbatim
(copies in tests/data/clever-certification/), not reworded or extended."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clever.paths import REPO_ROOT

TEXTS = REPO_ROOT / "tests" / "data" / "clever-certification"
DOC = (REPO_ROOT / "docs" / "CERTIFICATION.md").read_text(encoding="utf-8")
BULLET = re.compile(r"^\s*\u2022\s+(.*\S)\s*$")


def questions(path: Path) -> list[str]:
    """The bullets between 'Important questions to answer' and 'Sample Edge Case Data'."""
    found, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() == "Important questions to answer":
            inside = True
        elif line.strip() == "Sample Edge Case Data":
            inside = False
        elif inside and (bullet := BULLET.match(line)):
            found.append(bullet.group(1))
    return found


ALL = [(path.name, q) for path in sorted(TEXTS.glob("*.txt")) for q in questions(path)]


def test_both_texts_have_their_questions():
    assert {name for name, _ in ALL} == {"secure-sync-certification.txt", "district-certification-requirements.txt"}
    assert len(ALL) == 89


@pytest.mark.parametrize(("text", "question"), ALL, ids=[f"{n}:{i}" for i, (n, _) in enumerate(ALL)])
def test_each_question_is_quoted_verbatim(text, question):
    for match in re.finditer(re.escape(question), DOC):
        before = DOC[match.start() - 1] if match.start() else " "
        after = DOC[match.end()] if match.end() < len(DOC) else " "
        if not before.isalnum() and not (after.isalnum() or after in "?:.,;!'"):
            return
    pytest.fail(f"not quoted verbatim in docs/CERTIFICATION.md ({text}): {question}")
