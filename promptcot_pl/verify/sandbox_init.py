"""The inside of the code sandbox. Standard library only: it runs as `python -I -S sandbox_init.py` with a JSON
spec on stdin and prints one JSON result on stdout. `code.py` (the host side) starts it and judges its output;
the expected outputs never enter this process.

Steps (as root, the normal case on our machines and CI):
1. `unshare` new mount, PID, network, IPC and UTS namespaces, then fork: the child is PID 1 of the new PID
   namespace ("init"), so when it exits the kernel kills every process left in the namespace — daemonised
   grandchildren included.
2. init makes mounts private, puts fresh size-capped tmpfs on /tmp, /var/tmp and /dev/shm (the program's working
   directory is /tmp/work; all of it vanishes with the namespace), mounts a /proc that shows only the namespace,
   and covers home directories that are closed to others (e.g. /root) with an empty tmpfs, binding the Python
   installation back in place when it lives there.
3. For each test, init forks a runner: own session, rlimits (CPU, address space, file size, processes, open
   files), no supplementary groups, setgid/setuid to an unprivileged uid chosen for this sandbox, scrubbed
   environment, stdin from the test input file, stdout/stderr to pipes; then it execs `python -I -S` on the
   program. init reads the pipes with a wall-clock deadline and an output cap, then SIGKILLs everything else in
   the namespace (`kill(-1)` from PID 1) before the next test.
Without root, it tries an unprivileged user namespace for the same isolation; where namespaces are refused it
runs with rlimits and process-group kills only, and says so in `isolation`.
"""

import ctypes
import json
import os
import resource
import select
import signal
import stat
import sys
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
LIBC = ctypes.CDLL(None, use_errno=True)
BOOT = ("import builtins, sys\nbuiltins.exit = builtins.quit = sys.exit\nsys.argv = ['prog.py']\n"
        "src = open('prog.py', encoding='utf-8').read()\n"
        "exec(compile(src, 'prog.py', 'exec'), {'__name__': '__main__', '__builtins__': builtins})\n")


def _mount(source, target, fstype, flags, data=None):
    args = [None if v is None else v.encode() for v in (source, target, fstype)]
    if LIBC.mount(args[0], args[1], args[2], flags, None if data is None else data.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def _unshare(flags):
    return LIBC.unshare(flags) == 0


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _enter_namespaces(isolation):
    """Returns True when this process now creates children in a fresh PID namespace."""
    base = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if os.geteuid() == 0 and _unshare(base):
        isolation += ["namespaces:mount,pid,net,ipc,uts"]
        return True
    if os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        if _unshare(base | CLONE_NEWUSER):
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1")
            _write("/proc/self/gid_map", f"0 {gid} 1")
            isolation += ["namespaces:user,mount,pid,net,ipc,uts"]
            return True
    if _unshare(CLONE_NEWNET):
        isolation += ["namespaces:net"]
    return False


def _hide_closed_homes(python_prefix):
    """Cover directories closed to others (e.g. /root) with an empty tmpfs; bind the interpreter back."""
    parts = python_prefix.strip("/").split("/")
    for depth in range(1, len(parts)):
        closed = "/" + "/".join(parts[:depth])
        if not os.stat(closed).st_mode & stat.S_IXOTH:
            stage = "/tmp/.python-stage"
            os.makedirs(stage)
            _mount(python_prefix, stage, None, MS_BIND | MS_REC)
            _mount("tmpfs", closed, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
            os.makedirs(python_prefix, exist_ok=True)
            _mount(stage, python_prefix, None, MS_BIND | MS_REC)
            _mount(None, python_prefix, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            LIBC.umount2(stage.encode(), MNT_DETACH)
            os.rmdir(stage)
            return
    for home in ("/root", "/home"):
        if os.path.isdir(home) and not os.stat(home).st_mode & stat.S_IXOTH:
            _mount("tmpfs", home, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")


def _prepare_filesystem(spec, isolation):
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for path in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec['tmpfs_mb']}m,mode=1777")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
    _hide_closed_homes(spec["python_prefix"])
    isolation += ["private /tmp /var/tmp /dev/shm", "private /proc"]


def _drain(open_fds, spec):
    """Read what is already buffered in the pipes, without waiting for writers that are still alive."""
    for fd, buffer in open_fds.items():
        while len(buffer) <= spec["output_limit"] and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            buffer.extend(chunk)


def _run_one(spec, stdin_path, workdir, in_pid_ns, drop_to):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # runner
        try:
            os.setsid()
            limit = spec["memory_mb"] * 2**20
            cpu = int(spec["timeout_s"]) + 1
            for res, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, limit),
                               (resource.RLIMIT_FSIZE, spec["file_mb"] * 2**20), (resource.RLIMIT_NPROC, 64),
                               (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0)):
                resource.setrlimit(res, (value, value))
            if drop_to is not None:
                os.setgroups([])
                os.setgid(drop_to)
                os.setuid(drop_to)
            os.chdir(workdir)
            stdin_fd = os.open(stdin_path, os.O_RDONLY)
            os.dup2(stdin_fd, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.closerange(3, 65536)
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "PYTHONDONTWRITEBYTECODE": "1",
                   "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}
            os.execve(spec["python"], [spec["python"], "-I", "-S", "-c", BOOT], env)
        finally:
            os._exit(127)
    os.close(out_w)
    os.close(err_w)
    start = time.monotonic()
    deadline = start + spec["timeout_s"]
    out, err = bytearray(), bytearray()
    open_fds = {out_r: out, err_r: err}
    timed_out = output_limit = False
    status = None
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(list(open_fds), [], [], min(left, 0.05))
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                del open_fds[fd]
                continue
            open_fds[fd].extend(chunk)
            if len(out) > spec["output_limit"]:
                output_limit = True
            del err[: max(0, len(err) - spec["stderr_tail"])]
        if output_limit:
            break
        if not ready and status is None:
            # The program is done when its main process exits, even if a child it left behind holds the pipes.
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
                _drain(open_fds, spec)
                break
    # Everything the program started dies now, whether or not it finished (daemons included).
    if in_pid_ns:
        os.kill(-1, signal.SIGKILL)  # PID 1 of our own namespace: "all" means all of the namespace only
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if drop_to is not None:
            _kill_uid(drop_to)
    if status is None:
        _, status = os.waitpid(pid, 0)
    seconds = time.monotonic() - start
    for fd in (out_r, err_r):
        os.close(fd)
    while True:  # reap orphans re-parented to us
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break
    return {
        "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "timed_out": timed_out, "output_limit": output_limit, "seconds": round(seconds, 4),
        "stdout": bytes(out[: spec["output_limit"]]).decode("utf-8", "replace"),
        "stderr_tail": bytes(err).decode("utf-8", "replace"),
    }


def _kill_uid(uid):
    """Without a PID namespace: SIGKILL every process owned by the sandbox's own uid (escaped sessions too)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    os.kill(int(entry), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass


def _init(spec, isolation, in_pid_ns, was_root):
    if in_pid_ns:
        _prepare_filesystem(spec, isolation)
        workdir = "/tmp/work"
    else:
        import tempfile

        workdir = tempfile.mkdtemp(prefix="promptcot-sandbox-")
    os.makedirs(workdir, exist_ok=True)
    drop_to = spec["uid"] if was_root else None  # inside a user namespace there is no uid to drop to
    if drop_to is not None:
        isolation.append(f"uid {drop_to}")
        os.chown(workdir, drop_to, drop_to)
    os.chmod(workdir, 0o700)
    _write(os.path.join(workdir, "prog.py"), spec["code"])
    results = []
    for i, stdin_text in enumerate(spec["inputs"]):
        stdin_path = os.path.join(workdir, f".stdin{i}")
        _write(stdin_path, stdin_text)
        results.append(_run_one(spec, stdin_path, workdir, in_pid_ns, drop_to))
        os.unlink(stdin_path)
    if not in_pid_ns:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main():
    spec = json.loads(sys.stdin.read())
    isolation = []
    was_root = os.geteuid() == 0
    in_pid_ns = _enter_namespaces(isolation)
    if not in_pid_ns:
        results = _init(spec, isolation, in_pid_ns=False, was_root=was_root)
        sys.stdout.write(json.dumps({"isolation": isolation, "results": results}))
        return
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            payload = {"isolation": isolation, "results": _init(spec, isolation, in_pid_ns=True, was_root=was_root)}
        except BaseException as err:  # report, never hang the host
            payload = {"isolation": isolation, "error": f"{type(err).__name__}: {err}"}
        with os.fdopen(write_fd, "w") as handle:
            handle.write(json.dumps(payload))
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    sys.stdout.write(data or json.dumps({"isolation": isolation, "error": "sandbox init died"}))


if __name__ == "__main__":
    main()
