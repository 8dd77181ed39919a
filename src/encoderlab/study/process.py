"""Process control for a study: one arm runs as its own `python -m encoderlab ...` process,
its output to a log and the terminal, its run directory noticed as soon as it appears; a
Ctrl-C (or SIGTERM / SIGHUP) stops it with one SIGTERM, which the arm's command reads as a
Ctrl-C, so it saves a checkpoint first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from encoderlab.jobs import last_line
from encoderlab.runs import find_run

STOP_TIMEOUT_S = 60  # an interrupted arm gets this long to save its checkpoint


def launch(
    cmd: list[str],
    log_path: Path,
    runs_dir: Path,
    name: str,
    before: set[str],
    on_run_dir: Callable[[Path], None],
    say: Callable[[str], None],
) -> tuple[int, str]:
    """Run one arm's process: output to the log (and `say`, indented); the run directory is
    reported as soon as it appears. Returns (exit code, last output line)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            # its own session: a Ctrl-C in the terminal reaches only the study, which passes on
            # exactly one signal (a second one would cut the child's checkpoint short), and a
            # `kill -INT` of the study alone stops the arm too
            start_new_session=os.name == "posix",
        )

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail.append(line)
                del tail[:-50]
                say(f"    {line.rstrip()}")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        seen: Path | None = None
        try:
            while proc.poll() is None:
                if seen is None:
                    seen = find_run(runs_dir, name, before)
                    if seen is not None:
                        on_run_dir(seen)
                time.sleep(0.5)
        except KeyboardInterrupt:
            stop_child(proc, say)
            raise
        finally:
            reader.join(timeout=5)
            if seen is None:
                seen = find_run(runs_dir, name, before)
                if seen is not None:
                    on_run_dir(seen)
    return proc.returncode, last_line("".join(tail))


def stop_child(proc: subprocess.Popen, say: Callable[[str], None]) -> None:
    """Pass one SIGTERM to the arm's process (its command reads it as a Ctrl-C) and wait for
    it to save its checkpoint and exit; a second Ctrl-C (or a minute without exiting) kills it,
    keeping its last saved checkpoint. Not SIGINT: a study started in the background by a
    script hands its arms SIGINT ignored, and the arm trained on until it was killed."""
    if proc.poll() is not None:
        return
    say("    interrupted: stopping the arm (it saves a checkpoint; Ctrl-C again to kill it)")
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT_S)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
