"""The registry on real files and real (tiny) LightGBM bundles: releases, rollbacks and their
history; version ids; checksums; crashes, refused writes and races; the flat registry of
before model names, read and migrated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlsys.errors import ConcurrentChangeError, ExitCode, IntegrityError, StorageError, UsageError
from mlsys.model import bundle_version, load_model
from mlsys.model.integrity import write_checksums
from mlsys.release import registry as registry_module
from mlsys.release.registry import HISTORY, Registry, RegistryError, RevokedError
from tests.bundles import BUNDLE_FILES, corrupt, corrupt_leaf_values, make_bundle

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_registry"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> list[tuple[str, Path]]:
    """Four distinct real bundles: (version, folder)."""
    root = tmp_path_factory.mktemp("bundles")
    return [(make_bundle(root / str(i), trees=2 + i, seed=i), root / str(i)) for i in range(4)]


def _registry_with(tmp_path: Path, bundles, n: int) -> tuple[Registry, list[str]]:
    reg = Registry(tmp_path / "registry", "flights")
    versions = []
    for version, folder in bundles[:n]:
        reg.add(folder, version, {"blessing.json": "{}"})
        reg.release(version, expected_live=reg.live())
        versions.append(version)
    return reg, versions


def test_registry_release_rollback_and_history(tmp_path, monkeypatch, bundles):
    monkeypatch.setenv("MLSYS_USER", "alice")
    reg, (v1, v2, v3) = _registry_with(tmp_path, bundles, 3)
    assert reg.live() == v3 and reg.versions() == [v1, v2, v3]
    assert (tmp_path / "registry/flights/versions" / v1).is_dir()  # one folder per model name
    assert reg.rollback(reason="bad v3", check=None)["to"] == v2
    assert reg.live() == v2 and set(reg.revoked()) == {v3}
    assert reg.rollback(check=None)["to"] == v1
    with pytest.raises(RegistryError, match="only version ever live") as err:
        reg.rollback(check=None)
    assert err.value.code == ExitCode.MISSING_INPUT
    assert reg.rollback(to=v3, check=None)["to"] == v3  # chosen by a person: live, no longer revoked
    assert v3 not in reg.revoked()
    history = reg.history()
    assert [e["action"] for e in history] == ["release"] * 3 + ["rollback"] * 3
    assert all(e["by"] == "alice" and e["at"] for e in history)
    assert history[3] == {**history[3], "from": v3, "to": v2, "reason": "bad v3"}
    pointer = json.loads((reg.dir / "released.json").read_text())
    assert pointer["format"] == 2 and pointer["model"] == "flights"
    assert {"candidate", "shadow", "canary"} <= set(pointer)  # room for the rollout states


def test_a_canary_candidate_is_not_live_until_promoted_and_a_dropped_one_is_revoked(tmp_path, bundles):
    reg, (v1,) = _registry_with(tmp_path, bundles, 1)
    (v2, f2), (v3, f3) = bundles[1], bundles[2]
    reg.add(f2, v2, {})
    reg.propose(v2, "canary", expected_live=v1)
    assert reg.live() == v1 and reg.candidate() == v2
    assert reg.propose(v2, expected_live=v1)["noop"]  # the release stage rerun: nothing new
    reg.promote("canary good")
    assert reg.live() == v2 and reg.candidate() is None and reg.pointer()["stack"] == [v1, v2]
    assert reg.timeline(v2)["released_at"]  # promoting makes it live
    reg.add(f3, v3, {})
    reg.propose(v3, expected_live=v2)
    event = reg.drop("canary worse")
    assert event["dropped"] == v3 and reg.candidate() is None and reg.live() == v2 and v3 in reg.revoked()
    with pytest.raises(RevokedError):
        reg.propose(v3, expected_live=v2)
    with pytest.raises(RegistryError, match="no candidate"):
        reg.promote()
    assert [e["action"] for e in reg.history()][1:] == ["candidate", "promote", "candidate", "drop"]
    fresh = Registry(tmp_path / "fresh", "flights")
    fresh.add(f2, v2, {})
    assert fresh.propose(v2, expected_live=None)["action"] == "release" and fresh.live() == v2  # nothing to canary


def test_rollback_to_the_live_version_changes_nothing(tmp_path, bundles):
    reg, (v1, v2) = _registry_with(tmp_path, bundles, 2)
    assert reg.rollback(to=v2)["noop"]
    assert reg.pointer()["stack"] == [v1, v2] and len(reg.history()) == 2


@pytest.mark.parametrize("bad", ["", ".", "..", "../flights", "0e243f3e505", "0E243F3E5051", "versions"])
def test_a_version_id_is_checked_wherever_it_enters(tmp_path, bundles, bad):
    reg, (v1, v2) = _registry_with(tmp_path, bundles, 2)
    for attempt in (lambda: reg.rollback(to=bad), lambda: reg.path(bad), lambda: reg.release(bad, expected_live=v2)):
        with pytest.raises(UsageError, match="is not a model version") as err:
            attempt()
        assert err.value.code == ExitCode.USAGE
    assert reg.live() == v2 and set(reg.revoked()) == set() and reg.versions() == [v1, v2]
    (reg.dir / "released.json").write_text(json.dumps({"live": bad, "stack": [bad]}))  # a pointer edited by hand
    with pytest.raises(IntegrityError, match="live"):
        reg.live()


def test_a_rolled_back_version_is_not_released_again_automatically(tmp_path, bundles):
    reg, (v1, v2) = _registry_with(tmp_path, bundles, 2)
    reg.rollback(check=None)
    with pytest.raises(RevokedError, match=f"rollback --to {v2}") as err:
        reg.release(v2, expected_live=v1)
    assert err.value.code == ExitCode.GATE and reg.live() == v1


def test_release_refuses_when_live_changed_while_gating(tmp_path, bundles):
    reg, (v1, v2) = _registry_with(tmp_path, bundles, 2)
    v3, folder = bundles[2]
    reg.add(folder, v3, {})
    reg.rollback(check=None)  # someone rolls back while v3 was being gated against v2
    with pytest.raises(ConcurrentChangeError, match=f"live version changed from {v2} to {v1}") as err:
        reg.release(v3, expected_live=v2)
    assert err.value.code == ExitCode.CONCURRENT == 9 and reg.live() == v1


def test_a_held_lock_is_a_concurrent_change_not_a_hang(tmp_path, bundles, monkeypatch):
    reg, (_, v2) = _registry_with(tmp_path, bundles, 2)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1]); "
         "l.acquire(); print('held', flush=True); time.sleep(60)", str(reg.dir / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(registry_module, "LOCK_SECONDS", 0.5)
        with pytest.raises(ConcurrentChangeError, match="lock is held") as err:
            reg.rollback(check=None)
        assert err.value.code == ExitCode.CONCURRENT
    finally:
        holder.kill()
        holder.wait()
    assert reg.live() == v2


def test_crash_in_add_or_before_history_loses_nothing(tmp_path, monkeypatch, bundles):
    reg, (v1,) = _registry_with(tmp_path, bundles, 1)
    v2, folder = bundles[1]

    def broken_copy(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mlsys.release.registry.shutil.copytree", broken_copy)
    with pytest.raises(StorageError, match="No space left on device") as err:
        reg.add(folder, v2, {})
    assert err.value.code == ExitCode.MISSING_INPUT
    monkeypatch.undo()
    assert reg.versions() == [v1] and reg.live() == v1  # no half version, old pointer
    assert [p.name for p in reg.versions_dir.iterdir()] == [v1]  # and no temporary folder left
    reg.add(folder, v2, {})
    reg.release(v2, expected_live=v1)
    history = reg.dir / "history.jsonl"
    history.write_text(history.read_text().splitlines()[0] + "\n")
    assert [e["to"] for e in reg.history()] == [v1, v2]  # the pointer carries its own event


def test_a_read_only_registry_is_a_named_error_with_nothing_left_behind(tmp_path, bundles, monkeypatch):
    """Root ignores permissions, so the refusal is the one a read-only mount gives (EROFS),
    raised where the first file is created."""
    reg, (v1,) = _registry_with(tmp_path, bundles, 1)
    v2, folder = bundles[1]

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("mlsys.release.registry.tempfile.mkdtemp", read_only)
    with pytest.raises(StorageError, match=r"cannot add version .*Read-only file system \(EROFS\)"):
        reg.add(folder, v2, {})
    monkeypatch.undo()
    assert sorted(p.name for p in reg.versions_dir.iterdir()) == [v1] and reg.live() == v1


def test_crash_mid_release_leaves_the_old_pointer(tmp_path, monkeypatch, bundles):
    import mlsys.io

    reg, (v1,) = _registry_with(tmp_path, bundles, 1)
    v2, folder = bundles[1]
    reg.add(folder, v2, {})
    real_replace = mlsys.io.os.replace

    def crash(src, dst):
        if str(dst).endswith("released.json"):
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(mlsys.io.os, "replace", crash)
    with pytest.raises(StorageError, match="Input/output error"):
        reg.release(v2, expected_live=v1)
    monkeypatch.setattr(mlsys.io.os, "replace", real_replace)
    assert reg.live() == v1
    assert json.loads((reg.dir / "released.json").read_text())["stack"] == [v1]
    assert not list(reg.dir.glob(".released.json*"))  # no half-written pointer left behind


def test_every_version_carries_checksums_of_every_file(tmp_path, bundles):
    reg, (v1,) = _registry_with(tmp_path, bundles, 1)
    listed = json.loads((reg.path(v1) / "checksums.json").read_text())
    assert listed["format"] == 2 and set(listed["files"]) == {*BUNDLE_FILES, "blessing.json", "added.json"}
    reg.verified(v1)
    (reg.path(v1) / "blessing.json").write_text('{"edited": true}')
    with pytest.raises(IntegrityError, match=r"blessing\.json: sha256"):
        reg.verified(v1)


@pytest.mark.parametrize("name", ["model.txt", "feature_state.json", "card.json"])
@pytest.mark.parametrize("how", ["truncate", "flip", "delete"])
def test_rollback_refuses_a_corrupt_target_and_keeps_the_pointer(tmp_path, bundles, name, how):
    reg, (v1, v2) = _registry_with(tmp_path, bundles, 2)
    corrupt(reg.path(v1) / name, how)
    before = (reg.dir / "released.json").read_bytes()
    with pytest.raises(IntegrityError, match=f"rollback refused, {v2} stays live: .*{name}") as err:
        reg.rollback(to=v1)
    assert err.value.code == ExitCode.MISSING_INPUT
    assert (reg.dir / "released.json").read_bytes() == before and reg.revoked() == {}


def test_rollback_loads_the_target_in_a_child_first(tmp_path, bundles):
    """A version whose files match their checksums and id but abort LightGBM's loader
    (corrupted before they were checksummed): the child process dies, this one refuses,
    within the incident tool's 5 s, and lives on."""
    reg, (v1, v2) = _registry_with(tmp_path, bundles, 2)
    bad = tmp_path / "bad"
    shutil.copytree(bundles[2][1], bad)
    corrupt_leaf_values(bad / "model.txt")
    version = bundle_version(bad)
    write_checksums(bad, BUNDLE_FILES)
    reg.add(bad, version, {})
    start = time.perf_counter()
    with pytest.raises(IntegrityError, match=f"rollback refused, {v2} stays live: .*SIGABRT.*Model format error"):
        reg.rollback(to=version)
    assert time.perf_counter() - start < 5
    assert reg.live() == v2 and reg.revoked() == {}
    start = time.perf_counter()
    reg.rollback(to=v1)  # a sound target: loaded in a child, then made live
    assert reg.live() == v1 and time.perf_counter() - start < 5


def test_a_flat_registry_is_read_then_migrated_on_first_write(tmp_path, bundles):
    """A registry written by mlsys before model names (committed fixture): its model loads
    and scores as it did then; the first write moves it into its model's folder."""
    shutil.copytree(FIXTURE / "registry", tmp_path / "registry")
    expected = json.loads((FIXTURE / "expected.json").read_text())
    reg = Registry(tmp_path / "registry", "legacy")
    old = expected["version"]
    assert reg.live() == old and reg.versions() == [old] and reg.history()[0]["to"] == old
    model = load_model(reg.path(old), version=old)  # no checksums.json: verified by its content hash
    rows = np.array(expected["rows"], dtype=float)
    assert np.allclose(model.booster.predict(rows), expected["scores"], rtol=0, atol=1e-12)
    edited = tmp_path / "edited"
    shutil.copytree(reg.path(old), edited)
    corrupt(edited / "model.txt", "flip")
    with pytest.raises(IntegrityError, match="hash to"):
        load_model(edited, version=old)
    new, folder = bundles[0]
    reg.add(folder, new, {})  # the first write: migrate, then add
    assert not (tmp_path / "registry/released.json").exists() and not (tmp_path / "registry/versions").exists()
    assert sorted(p.name for p in (tmp_path / "registry/legacy/versions").iterdir()) == sorted([old, new])
    assert (reg.path(old) / "checksums.json").exists() and reg.live() == old
    reg.release(new, expected_live=old)
    assert [e["to"] for e in reg.history()] == [old, new]
    assert load_model(reg.verified(old), version=old).version == old


def test_concurrent_rollback_and_release_from_two_processes_keep_one_consistent_pointer(tmp_path, bundles):
    """Two processes switch the pointer 20 times each through the lock: every switch is in the
    history, and the pointer is one of the versions, never a torn file."""
    reg, (v1, v2) = _registry_with(tmp_path, bundles, 2)
    script = (
        "import sys; from mlsys.release.registry import Registry\n"
        "r = Registry(sys.argv[1], 'flights')\n"
        "for _ in range(20): r.rollback(to=sys.argv[2], check=None)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "registry"), v], env=os.environ)
        for v in (v1, v2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    events = reg.history()
    assert len(events) == 2 + sum(1 for e in events if e["action"] == "rollback")
    assert reg.live() in (v1, v2) and reg.pointer()["stack"][-1] == reg.live()


def test_a_cut_history_line_leaves_the_registry_readable(tmp_path, bundles):
    (v1, f1), (v2, f2) = bundles[0], bundles[1]
    reg = Registry(tmp_path / "registry", "flights")
    reg.add(f1, v1, {})
    reg.release(v1, "first")
    with (reg.dir / HISTORY).open("a") as fh:
        fh.write('{"action": "rel')
    reg.add(f2, v2, {})
    reg.release(v2, "second", expected_live=v1)
    assert [e["to"] for e in reg.history()] == [v1, v2] and reg.timeline(v2)["released_at"]
