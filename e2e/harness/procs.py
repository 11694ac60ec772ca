"""Processes the suite starts: spawned, recorded, and stopped by pid.

Every process (etcd, kube-apiserver, kube-controller-manager, the operator, the node
agent and the brokers it runs) is recorded in its run's pid file, whose first line names
the run's owner (the pytest process). A run that was killed (SIGKILL, a closed terminal)
leaves its pid file behind; the next run kills every process listed there whose owner is
gone. A pid is only trusted together with the start time it had when recorded
(/proc/<pid>/stat field 22), so a recycled pid is never signalled, and a leftover is never
mistaken for this run's process: this run always starts its own.

Children also get PR_SET_PDEATHSIG=SIGKILL: when the process that started them dies, the
kernel kills them, even when nothing gets to run a cleanup.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def start_time(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]  # field 22 overall


def alive(pid: int, started: str) -> bool:
    """Whether `pid` still is the process that started at `started` (and not a zombie)."""
    if start_time(pid) != started:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def signal_and_wait(pid: int, started: str, grace_s: float) -> None:
    """SIGTERM, then SIGKILL after `grace_s`, of the process `pid` started at `started`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if not alive(pid, started):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not alive(pid, started):
                return
            time.sleep(0.05)


class PidFile:
    """Append-only record `pid start-time name` of the processes of one run."""

    def __init__(self, path: Path):
        self.path = path

    def create(self, owner: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"owner {owner} {start_time(owner)}\n")

    def record(self, pid: int, name: str) -> None:
        started = start_time(pid)
        if started is None:
            return
        # One short O_APPEND write per line: the node agent appends to the same file.
        with open(self.path, "a") as f:
            f.write(f"{pid} {started} {name}\n")

    def entries(self) -> tuple[tuple[int, str] | None, list[tuple[int, str, str]]]:
        owner, entries = None, []
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return None, []
        for line in lines:
            parts = line.split(maxsplit=3)
            if parts and parts[0] == "owner" and len(parts) == 3:
                owner = (int(parts[1]), parts[2])
            elif len(parts) >= 2 and parts[0].isdigit():
                entries.append((int(parts[0]), parts[1], parts[2] if len(parts) > 2 else "?"))
        return owner, entries


def kill_leftovers(runs_dir: Path) -> list[str]:
    """Kills the processes of earlier runs whose owner is gone and removes their run
    directories (their logs stay); returns what it killed.

    A pid file whose owner still runs belongs to a concurrent run and is left alone.
    """
    killed = []
    for pid_path in sorted(runs_dir.glob("*/pids")):
        pids = PidFile(pid_path)
        owner, entries = pids.entries()
        if owner is not None and alive(*owner):
            continue
        for pid, started, name in reversed(entries):
            if alive(pid, started):
                signal_and_wait(pid, started, grace_s=5.0)
                killed.append(f"{name} (pid {pid}, from {pid_path.parent.name})")
        shutil.rmtree(pid_path.parent, ignore_errors=True)
    return killed


@dataclass
class Proc:
    """One started process, its log, and how to stop it."""

    name: str
    popen: subprocess.Popen
    log: Path
    started: str
    grace_s: float | None = None  # how long stop_all waits after SIGTERM; its default if None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Sends `sig`, waits `grace_s`, then SIGKILL; returns the exit status."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Processes:
    """Starts processes for one run, records them, and stops them all, newest first."""

    def __init__(self, pid_file: PidFile, log_dir: Path):
        self.pid_file = pid_file
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log_name: str | None = None,
        grace_s: float | None = None,
    ) -> Proc:
        log = self.log_dir / (log_name or f"{name}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        self.pid_file.record(popen.pid, name)
        proc = Proc(name, popen, log, start_time(popen.pid) or "", grace_s)
        self.procs.append(proc)
        return proc

    def stop_all(self, grace_s: float = 10.0) -> None:
        """Stops every process, newest first; how each went is noted in stop.log."""
        if not self.procs:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "stop.log", "a") as note:
            for proc in reversed(self.procs):
                started = time.monotonic()
                code = proc.stop(grace_s if proc.grace_s is None else proc.grace_s)
                note.write(f"{proc.name} (pid {proc.pid}) exited with {code} after "
                           f"{time.monotonic() - started:.1f}s\n")
        self.procs.clear()
