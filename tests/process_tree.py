"""What /proc says about a `batchin serve` process tree (Linux): its child processes, which of them
listen on the served port, and which hold a connection to it."""

from __future__ import annotations

import os
from pathlib import Path


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # The command name (field 2) may hold spaces: the parent pid is the second field after it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _tcp_inodes(port: int, *, listening: bool) -> set[str]:
    """Inodes of the sockets on local `port`: listening ones, or established connections."""
    wanted_state = "0A" if listening else "01"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == wanted_state:
                inodes.add(fields[9])
    return inodes


def listeners(supervisor: int, port: int) -> list[int]:
    """The supervisor's children that listen on `port`: its API processes."""
    listening = _tcp_inodes(port, listening=True)
    return [pid for pid in children(supervisor) if _socket_inodes(pid) & listening]


def connections_held(pid: int, port: int) -> int:
    """Established connections to `port` that process `pid` has accepted."""
    return len(_socket_inodes(pid) & _tcp_inodes(port, listening=False))


def is_spawned_python(pid: int) -> bool:
    """A multiprocessing child (an engine worker or an API process), not its resource tracker."""
    try:
        return "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False
