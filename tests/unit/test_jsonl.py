"""Appended JSON-lines files (the monitor's alerts, the registry's history): a line cut by a
crash mid-append is skipped and counted by every reader, and the next append starts on a new
line, so no record after it is lost."""

from __future__ import annotations

from mlsys.io import append_jsonl, read_jsonl


def test_a_cut_line_is_skipped_and_the_next_append_is_kept(tmp_path):
    path = tmp_path / "logs" / "alerts.jsonl"
    assert read_jsonl(path) == ([], 0)  # none yet
    append_jsonl(path, [{"n": 1}, {"n": 2}])
    with path.open("a") as fh:
        fh.write('{"n": 3, "cut her')  # a crash mid-append
    append_jsonl(path, [{"n": 4}])
    records, unreadable = read_jsonl(path)
    assert records == [{"n": 1}, {"n": 2}, {"n": 4}] and unreadable == 1
