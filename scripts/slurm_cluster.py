"""A one-node SLURM cluster on this machine, for tests and for trying the SLURM launcher.

    python scripts/slurm_cluster.py up [--dir /tmp/litseg-slurm] [--install]
    export SLURM_CONF=/tmp/litseg-slurm/etc/slurm.conf     # printed by `up`
    sinfo; sbatch ...; python train.py -m hydra/launcher=submitit_slurm ...
    python scripts/slurm_cluster.py down [--dir /tmp/litseg-slurm]

Debian's packages (``slurmctld slurmd slurm-client munge``; ``--install`` runs ``apt-get
update`` and ``apt-get install`` for them) started with everything of theirs in one folder:
a fresh munge key and socket, ``etc/slurm.conf`` (localhost, this machine's CPUs and memory,
free ports, ``select/cons_tres``, ``proctrack/linuxproc`` and ``task/none`` so no cgroups are
needed, ``JobRequeue=1``, a 10 s credential lifetime so that a requeued job starts again
after 11 s instead of 2 minutes), state, spool, logs and pid files. Nothing under /etc or /run
is touched; client commands find the cluster through ``SLURM_CONF``. ``up`` returns once
``sinfo`` shows the node idle; ``down`` cancels the jobs, stops the daemons by their pid files
and removes the folder (``--keep`` keeps it, e.g. for the logs).

The daemons run as the user who starts them; slurmd runs jobs as their owner, so ``up`` needs
root (a CI runner's root, or a container's).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
COMMANDS = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "sbatch", "scontrol", "squeue")
PARTITION = "debug"
# job credential lifetime: also how long SLURM holds a requeued job before restarting it
CRED_EXPIRE_S = 10
DEFAULT_DIR = Path(tempfile.gettempdir()) / "litseg-slurm"


class ClusterError(RuntimeError):
    """The cluster cannot be set up here; the message says why in one line."""


def missing_commands() -> list[str]:
    """The SLURM and munge commands this machine lacks."""
    return [c for c in COMMANDS if shutil.which(c) is None and not Path("/usr/sbin", c).exists()]


def install_packages(
    packages: tuple[str, ...] = PACKAGES, timeout: float = 600, recommends: bool = False
) -> None:
    """``apt-get update`` and ``apt-get install`` Debian packages (SLURM's and munge by
    default), as root or through ``sudo -n``; a ClusterError says in one line why not."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise ClusterError(f"no apt-get: install {', '.join(packages)} yourself")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        raise ClusterError(f"installing {', '.join(packages)} needs root (apt-get) and no sudo")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    extra = [] if recommends else ["--no-install-recommends"]
    for cmd in (
        [*sudo, apt, "update", "-qq"],
        [*sudo, apt, "install", "-y", "-qq", *extra, *packages],
    ):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"{' '.join(cmd)} failed: {exc}") from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}): {tail[0]}")


def _sbin(name: str) -> str:
    """A daemon's path (/usr/sbin is not on every user's PATH)."""
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    """Total memory in MB as slurmd counts it (MemTotal), less 5 % so it never reports less."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.95)
    return 1024


def _node_hardware() -> dict[str, str]:
    """``slurmd -C``'s view of this node (CPUs, sockets, cores, threads), CPUs capped at the
    CPUs this process may use (a container may see more than it gets)."""
    fields: dict[str, str] = {}
    try:
        out = subprocess.run([_sbin("slurmd"), "-C"], capture_output=True, text=True, timeout=60)
        first = out.stdout.splitlines()[0] if out.stdout else ""
        fields = dict(f.split("=", 1) for f in first.split() if "=" in f)
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    usable = len(os.sched_getaffinity(0))
    cpus = min(int(fields.get("CPUs", usable)), usable)
    if fields and cpus == int(fields.get("CPUs", 0)):
        keys = ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        return {"CPUs": str(cpus), **{k: fields[k] for k in keys if k in fields}}
    return {"CPUs": str(cpus)}


class SlurmCluster:
    """A single-node SLURM cluster whose every file lies under ``root``.

    Args:
        root: the cluster's folder (created; removed by ``down`` unless ``keep``).
        node: the node's name (default: this host's short name, as slurmd reports it).
    """

    def __init__(self, root: Path | str = DEFAULT_DIR, node: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.node = node or socket.gethostname().split(".")[0]
        self.conf = self.root / "etc" / "slurm.conf"
        self.socket = self.root / "munge" / "munge.socket"
        self.logs = self.root / "log"
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (sbatch, sinfo, ...) and the jobs they start."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> str:
        """A client command against this cluster; its stdout."""
        proc = subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    # set-up ------------------------------------------------------------------------------

    def _write_files(self) -> None:
        if self.root.exists():
            raise ClusterError(f"{self.root} exists: run `down` first or choose another --dir")
        for sub, mode in (
            ("", 0o755),
            ("etc", 0o755),
            ("munge", 0o755),  # munged wants its socket folder open to all, not writable
            ("munge-key", 0o700),
            ("state", 0o755),
            ("spool", 0o755),
            ("log", 0o755),
            ("run", 0o755),
        ):
            path = self.root / sub
            path.mkdir(parents=True, exist_ok=sub != "")
            path.chmod(mode)
        key = self.root / "munge-key" / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(128))  # munge's own keys are 1024 bits
        user = _user()
        hardware = " ".join(f"{k}={v}" for k, v in _node_hardware().items())
        root = self.root
        conf = f"""\
# written by scripts/slurm_cluster.py: one node on 127.0.0.1, everything under {root}
ClusterName=litseg
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire + 1 s before it starts again (SLURM's default: 120 s)
AuthInfo=socket={self.socket},cred_expire={CRED_EXPIRE_S}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.daemon.pid
SlurmdPidFile={root}/run/slurmd.daemon.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={root}/etc/plugstack.conf
# no cgroups (containers rarely allow them), no accounting database
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=30
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={self.node} NodeAddr=127.0.0.1 {hardware} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        self.conf.write_text(conf)
        (self.root / "etc" / "plugstack.conf").write_text("")

    def _start(self, cmd: list[str], what: str, foreground: bool = True) -> None:
        """Start a daemon: in the foreground (``-D``) in its own session, so its pid is known at
        once and it outlives this process; munged forks and writes its pid file itself."""
        log = self.logs / f"{what}.start.log"
        with open(log, "w") as out:
            if foreground:
                proc = subprocess.Popen(
                    [*cmd, "-D"],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                self._procs[what] = proc
                (self.root / "run" / f"{what}.pid").write_text(f"{proc.pid}\n")
                return
            done = subprocess.run(
                cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=60
            )
        if done.returncode != 0:
            raise ClusterError(f"{what} did not start (exit {done.returncode}): {self._tail(what)}")

    def _tail(self, what: str) -> str:
        for name in (f"{what}.log", f"{what}.start.log"):
            path = self.logs / name
            if path.is_file():
                lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
                errors = [
                    x
                    for x in lines
                    if ("error" in x.lower() or "fatal" in x.lower()) and "pmix" not in x.lower()
                ]
                if errors or lines:
                    return (errors or lines)[-1]
        return "no log"

    def up(self, timeout: float = 90) -> SlurmCluster:
        """Write the files, start munged, slurmctld and slurmd, wait until the node is idle."""
        missing = missing_commands()
        if missing:
            raise ClusterError(
                f"missing {', '.join(missing)}: apt-get install {' '.join(PACKAGES)} "
                "(or pass --install)"
            )
        if os.geteuid() != 0:
            raise ClusterError("slurmd must run as root (it starts jobs as their owner)")
        self._write_files()
        try:
            self._start(
                [
                    _sbin("munged"),
                    f"--socket={self.socket}",
                    f"--key-file={self.root}/munge-key/munge.key",
                    f"--pid-file={self.root}/run/munged.pid",
                    f"--log-file={self.logs}/munged.log",
                    f"--seed-file={self.root}/munge-key/munged.seed",
                    "--force",
                ],
                "munged",
                foreground=False,
            )
            self._start([_sbin("slurmctld"), "-f", str(self.conf)], "slurmctld")
            self._start([_sbin("slurmd"), "-f", str(self.conf), "-N", self.node], "slurmd")
            self.wait_idle(timeout)
        except BaseException:
            self.down(keep=True)
            raise
        return self

    def node_state(self) -> str:
        """``sinfo``'s state of the node (``idle``, ``alloc``, ``down*``, ...), or ``""``."""
        try:
            return self.run("sinfo", "-h", "-N", "-o", "%T", timeout=10, check=False).strip()
        except subprocess.TimeoutExpired:
            return ""

    def wait_idle(self, timeout: float = 90) -> None:
        """Return once sinfo shows the node idle; raise with the daemons' last error otherwise."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state == "idle":
                return
            for what in ("slurmctld", "slurmd"):
                if not self._alive(what):
                    raise ClusterError(f"{what} exited: {self._tail(what)}")
            time.sleep(0.5)
        raise ClusterError(
            f"node {self.node} not idle after {timeout:.0f} s (sinfo: {state or 'no answer'}); "
            f"slurmd: {self._tail('slurmd')}"
        )

    # tear-down ---------------------------------------------------------------------------

    def _pid(self, what: str) -> int | None:
        path = self.root / "run" / f"{what}.pid"
        try:
            pid = int(path.read_text().split()[0])
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if what.encode() in command else None  # not a reused pid

    def _alive(self, what: str) -> bool:
        if what in self._procs:
            return self._procs[what].poll() is None
        pid = self._pid(what)
        if pid is None:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has exited

    def _stop(self, what: str, timeout: float = 20) -> None:
        pid = self._pid(what)
        if pid is None:
            return
        for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not self._alive(what):
                    return
                time.sleep(0.1)

    def _job_processes(self) -> list[int]:
        """Processes of this cluster's jobs and job steps: slurmstepd, or a process with a
        SLURM job id, whose environment names this cluster's slurm.conf."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            in_job = b"slurmstepd" in cmdline or any(
                v.startswith(b"SLURM_JOB_ID=") for v in environ
            )
            if marker in environ and in_job:
                found.append(int(entry.name))
        return found

    def down(self, keep: bool = False) -> None:
        """Cancel every job, stop slurmd, slurmctld and munged, remove the folder."""
        if not self.root.exists():
            return
        if self._alive("slurmctld"):
            try:
                jobs = self.run("squeue", "-h", "-o", "%A", timeout=10, check=False).split()
                if jobs:
                    self.run("scancel", *jobs, timeout=10, check=False)
                    deadline = time.monotonic() + 20
                    while (
                        time.monotonic() < deadline
                        and self.run("squeue", "-h", "-o", "%A", timeout=10, check=False).split()
                    ):
                        time.sleep(0.5)
            except subprocess.TimeoutExpired:
                pass
        for what in ("slurmd", "slurmctld"):
            self._stop(what)
        # job steps a dead slurmd left behind
        for pid in self._job_processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._stop("munged")
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    parser.add_argument("--install", action="store_true", help="apt-get install the packages")
    parser.add_argument("--keep", action="store_true", help="down: keep the folder (logs)")
    args = parser.parse_args(argv)
    cluster = SlurmCluster(args.dir)
    try:
        if args.action == "up":
            if args.install and missing_commands():
                install_packages()
            cluster.up()
            print(
                f"SLURM node {cluster.node} idle in partition {PARTITION}; logs in {cluster.logs}"
            )
            print(f"export SLURM_CONF={cluster.conf}")
        elif args.action == "down":
            if not cluster.root.exists():
                print(f"no cluster in {cluster.root}")
                return 0
            cluster.down(keep=args.keep)
            print(f"stopped the cluster in {cluster.root}")
        else:
            state = cluster.node_state() if cluster.conf.is_file() else ""
            print(f"{cluster.node}: {state or 'not running'}")
            return 0 if state else 1
    except ClusterError as exc:
        print(f"slurm_cluster: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
