"""The `videopoll` command leaves without tearing the interpreter down (issue 14: start-up and
the N=10 pass are measured spawn to exit), yet everything an exit owes still happens: atexit
handlers run, the output is whole, the exit code is the command's, and a thread still at
work is waited for."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ENV = {"PATH": "/usr/bin:/bin", "VIDEOPOLL_STORE": "local", "VIDEOPOLL_ENV_FILE": "/dev/null",
       "OPENHANDS_API_KEY": "k", "GITHUB_TOKEN": "t", "VIDEOPOLL_GITHUB_REPO": "o/r"}


def videopoll(tmp_path: Path, prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`main()` as the console script calls it, after `prelude` (Python) has run."""
    code = textwrap.dedent(prelude) + "\nfrom videopoll.cli import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60,
                          env={**ENV, "VIDEOPOLL_HOME": str(tmp_path / "home")})


def test_atexit_handlers_run_and_the_output_is_whole(tmp_path: Path) -> None:
    done = videopoll(tmp_path, """
        import atexit, sys
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
    """, "poll", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checked"] == 0
    assert done.stderr.strip().endswith("atexit ran")


def test_the_exit_code_is_the_command_s(tmp_path: Path) -> None:
    done = videopoll(tmp_path, "", "poll", "--no-such-flag")
    assert done.returncode == 2
    assert "No such option" in done.stderr


def test_a_thread_still_at_work_is_waited_for(tmp_path: Path) -> None:
    mark = tmp_path / "thread-finished"
    done = videopoll(tmp_path, f"""
        import threading, time
        def late():
            time.sleep(0.5)
            open({str(mark)!r}, "w").close()
        threading.Thread(target=late).start()
    """, "poll", "--json")
    assert done.returncode == 0, done.stderr
    assert mark.exists()


def test_output_that_cannot_be_flushed_is_exit_120_not_a_traceback(tmp_path: Path) -> None:
    """stdout a pipe nobody reads any more (`| head` gone), with output still buffered when
    the command ends: exit 120, as Python's own exit says it, and no traceback."""
    code = ("import os, sys\nr, w = os.pipe(); os.close(r); sys.stdout = os.fdopen(w, 'w')\n"
            "print('buffered, never flushed')\nfrom videopoll.cli import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", code, "poll", "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**ENV, "VIDEOPOLL_HOME": str(tmp_path / "home")})
    assert done.returncode == 120, done.stderr
    assert "Traceback" not in done.stderr


def test_the_command_never_loads_h2(tmp_path: Path) -> None:
    """Every client speaks HTTP/1.1, so the command keeps h2 (which httpcore imports wherever
    it is installed) out of its start-up, and the HTTP stack works without it. (An older
    httpx imports httpcore, and so h2, when it is imported itself: then there is nothing
    left to keep out.)"""
    done = videopoll(tmp_path, """
        import atexit, sys
        import httpx
        theirs = "h2" in sys.modules
        atexit.register(lambda: print("httpcore" in sys.modules,
                                      theirs or sys.modules.get("h2") is None,
                                      file=sys.stderr))
    """, "poll", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checked"] == 0
    assert done.stderr.strip().splitlines()[-1] == "True True"
