"""Processes for the peer benchmark: start servers pinned to a core, stop them (with everything
they started), and account for CPU — per process tree, per core, and the rest of the machine.

Every server is started in its own session (setsid), so its PID is also its session id: its tree
is its descendants plus whatever stayed in that session after re-parenting. Only processes this
harness started are ever signalled.
"""
import os
import signal
import socket
import subprocess
import time

HZ = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    """(ppid, session, cpu ticks incl. reaped children) of a live, non-zombie pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] state, [1] ppid, [3] session, [11..14] utime stime cutime cstime
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[3]), sum(int(x) for x in fields[11:15])


def _all_stats():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st:
                out[int(name)] = st
    return out


def tree(leader, stats=None, descendants=True):
    """PIDs of leader, its descendants and the other members of its session. Without
    `descendants` only the session's members: once the leader has been reaped its PID may belong
    to another process, whose children are not ours."""
    stats = stats if stats is not None else _all_stats()
    if not descendants:
        return {pid for pid, (_, sid, _) in stats.items() if sid == leader}
    children = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [leader]
    while todo:
        pid = todo.pop()
        if pid in found or pid not in stats:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    found.update(pid for pid, (_, sid, _) in stats.items() if sid == leader)
    return found


def tree_ticks(leader):
    """CPU ticks used so far by leader's tree (reaped children included via cutime/cstime)."""
    stats = _all_stats()
    return sum(stats[p][2] for p in tree(leader, stats))


class Server:
    """A server started by the harness: `Server(name, argv, core, log)`; `stop()` ends its tree."""

    def __init__(self, name, argv, core, log_path, env=None):
        self.name = name
        self.log_path = log_path
        log = open(log_path, "ab")
        self.proc = subprocess.Popen(["taskset", "-c", str(core), *argv], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        log.close()
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, grace=5.0):
        """SIGTERM to the whole tree; SIGKILL to what is left of it after `grace` seconds."""
        pids = tree(self.pid, descendants=self.proc.poll() is None)
        _signal(pids, signal.SIGTERM)
        if not self._gone(pids, grace):
            _signal(pids, signal.SIGKILL)
            self._gone(pids, grace)
        self.proc.wait()

    def _gone(self, pids, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.proc.poll()  # reaps the leader, so it does not linger as a zombie
            if not any(_stat(p) for p in pids):
                return True
            time.sleep(0.05)
        return False


def _signal(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def cpu_times():
    """{cpuN: (busy, total)} jiffies from /proc/stat (guest time is inside user already)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                v = [int(x) for x in values[:8]]
                out[name] = (sum(v) - v[3] - v[4], sum(v))
    return out


def busy_percent(before, after):
    return {c: 100.0 * (after[c][0] - before[c][0]) / max(1, after[c][1] - before[c][1]) for c in before}


def wait_quiet(limit, max_wait):
    """Wait until the whole machine is less than `limit` % busy over one second, at most
    `max_wait` seconds; returns (seconds waited, last busy %)."""
    start = time.monotonic()
    while True:
        a = cpu_times()
        time.sleep(1.0)
        busy = busy_percent(a, cpu_times())
        total = sum(busy.values()) / len(busy)
        waited = time.monotonic() - start
        if total < limit or waited >= max_wait:
            return waited, total


def run_accounted(argv, out_path, trees, env=None):
    """Runs argv (the load generator) to completion, its output into out_path, and returns what
    each process tree in `trees` ({name: leader pid}) used meanwhile, in % of one core, with
    the per-core busy %, the load generator's own %, and `foreign`: the CPU of everything else."""
    t0_ticks = {name: tree_ticks(pid) for name, pid in trees.items()}
    c0 = cpu_times()
    w0 = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Interrupted (SIGTERM, SIGHUP turned into an exception): the load generator must not
            # run on without us.
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - w0
    cores = busy_percent(c0, cpu_times())
    ours = {name: 100.0 * (tree_ticks(pid) - t0_ticks[name]) / HZ / wall for name, pid in trees.items()}
    load = 100.0 * (usage.ru_utime + usage.ru_stime) / wall
    foreign = max(0.0, sum(cores.values()) - sum(ours.values()) - load)
    return {"cores": cores, "trees": ours, "load": load, "foreign": foreign, "rc": proc.returncode, "wall": wall}
