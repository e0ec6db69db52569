"""What a district build keeps of dbt's parse for the builds after it."""

from __future__ import annotations

from clever import dbt_runner


def test_a_build_that_parsed_again_leaves_its_parse_for_the_next_builds(tmp_path, monkeypatch):
    monkeypatch.setattr(dbt_runner, "ARTIFACTS_DIR", tmp_path)
    seed = dbt_runner.target_path() / "partial_parse.msgpack"

    def build(writes: bytes | None) -> bytes | None:
        """One district build's target; dbt writes ``writes`` as its parse (None: nothing
        to parse again, it keeps the seed). Returns the parse the build started from."""
        with dbt_runner._build_target(True, tmp_path / "results") as (work, _):
            parse = work / "partial_parse.msgpack"
            started_from = parse.read_bytes() if parse.exists() else None
            if writes is not None:
                parse.write_bytes(writes)
        return started_from

    assert build(b"first full parse") is None  # no deploy in this artifacts directory yet
    assert seed.read_bytes() == b"first full parse"
    assert build(None) == b"first full parse"
    assert seed.read_bytes() == b"first full parse"
    assert build(b"parse for another warehouse") == b"first full parse"
    assert build(None) == b"parse for another warehouse"
    assert sorted(p.name for p in dbt_runner.target_path().iterdir()) == ["partial_parse.msgpack"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("dbt_build_")] == []

