"""The test JVMs' class archive (tests/jvm.py): a recording is moved into place only once the JVM has
finished writing it, an unfinished one holds off a second recording, and an abandoned one is removed."""

import os
import time

import jvm


def _use_dir(monkeypatch, tmp_path):
    archive = tmp_path / "spark-key.jsa"
    monkeypatch.setattr(jvm, "ARCHIVE_DIR", tmp_path)
    monkeypatch.setattr(jvm, "_archive", lambda: archive)
    return archive


def test_a_finished_recording_is_moved_into_place_and_mapped(monkeypatch, tmp_path):
    archive = _use_dir(monkeypatch, tmp_path)
    recorded = tmp_path / ".spark-key.jsa.123"
    recorded.write_bytes(jvm.DYNAMIC_ARCHIVE_MAGIC + b"classes")
    options = jvm.java_options()
    assert archive.read_bytes() == jvm.DYNAMIC_ARCHIVE_MAGIC + b"classes" and not recorded.exists()
    assert f"-XX:SharedArchiveFile={archive}" in options
    assert jvm.recording_archive() is None  # made: nothing to record


def test_an_unfinished_recording_is_neither_mapped_nor_recorded_twice(monkeypatch, tmp_path):
    archive = _use_dir(monkeypatch, tmp_path)
    writing = tmp_path / ".spark-key.jsa.123"
    writing.write_bytes(b"\0" * 64)  # the JVM writes the header, and with it the magic, last
    assert "SharedArchiveFile" not in jvm.java_options()
    assert jvm.recording_archive() is None
    assert writing.exists() and not archive.exists()


def test_an_abandoned_recording_is_removed_and_a_new_one_starts(monkeypatch, tmp_path):
    archive = _use_dir(monkeypatch, tmp_path)
    killed = tmp_path / ".spark-key.jsa.123"
    killed.write_bytes(b"\0" * 64)
    old = time.time() - jvm.ABANDONED - 60
    os.utime(killed, (old, old))
    record = jvm.recording_archive()
    assert not killed.exists() and not archive.exists()
    assert record == tmp_path / f".spark-key.jsa.{os.getpid()}"
    assert f"-XX:ArchiveClassesAtExit={record}" in jvm.java_options(record)
