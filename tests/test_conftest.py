"""The test infrastructure's own choices: where temporary folders go (tests/conftest.py)."""
import os
import subprocess
import sys

from tests.conftest import memory_temp_root, session_running_in


def lock(root, pid):
    folder = root / "pytest-of-someone" / "pytest-3"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(str(pid))


def test_a_live_session_in_the_folder_is_seen_a_stale_lock_is_not(tmp_path):
    assert not session_running_in(tmp_path)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock(tmp_path, int(finished.stdout))  # a session that ended without removing its lock
    assert not session_running_in(tmp_path)
    lock(tmp_path, os.getpid())
    assert session_running_in(tmp_path)


def test_no_memory_folder_where_another_session_runs_or_there_is_no_room(tmp_path):
    lock(tmp_path, os.getpid())
    assert memory_temp_root(str(tmp_path)) is None
    assert memory_temp_root(str(tmp_path / "absent")) is None
