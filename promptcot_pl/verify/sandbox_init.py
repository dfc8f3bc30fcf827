"""The inside of the code sandbox. Standard library only: it runs as `python -I -S sandbox_init.py` with a JSON
spec on stdin and prints one JSON result on stdout. `code.py` (the host side) starts it and judges its output;
the expected outputs never enter this process.

Steps (as root, the normal case on our machines and CI):
1. `unshare` new mount, PID, network, IPC and UTS namespaces, then fork: the child is PID 1 of the new PID
   namespace ("init"), so when it exits the kernel kills every process left in the namespace — daemonised
   grandchildren included.
2. init builds a minimal root on an empty tmpfs and `pivot_root`s into it (`_minimal_root`): /usr and the
   /bin, /lib… links, the interpreter and its standard library, all read-only; five devices; a /proc that shows
   only the namespace. The old root is detached: the run directory, the checkout, caches and homes do not exist
   for the program. Each test gets a fresh size-capped /tmp (its working directory /tmp/work) and /dev/shm.
3. For each test, init forks a runner: own session, rlimits (CPU, address space, file size, processes, open
   files), no supplementary groups, setgid/setuid to an unprivileged uid chosen for this sandbox, scrubbed
   environment, stdin from the test input file, stdout/stderr to pipes; then it execs `python -I -S` on the
   program. init reads the pipes with a wall-clock deadline and an output cap, then SIGKILLs everything else in
   the namespace (`kill(-1)` from PID 1) before the next test.
Without root, it tries an unprivileged user namespace for the same isolation (the caller maps to uid 1000 inside,
not 0, so the program holds no capability there and cannot remount the read-only binds); where namespaces are
refused it
runs with rlimits and process-group kills only, and says so in `isolation`.
"""

import ctypes
import json
import os
import resource
import select
import signal
import sys
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_NOATIME, MS_NODIRATIME = 1, 2, 4, 8, 32, 1024, 2048
MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 4096, 16384, 1 << 18, 1 << 21
ST_RELATIME = 4096  # statvfs's flag (MS_RELATIME's value differs)
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}.get(os.uname().machine, 155)
PR_SET_NO_NEW_PRIVS = 38
SANDBOX_UID = 1000  # the caller's uid inside a user namespace: not 0, so exec drops every capability
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
            _write("/proc/self/uid_map", f"{SANDBOX_UID} {uid} 1")
            _write("/proc/self/gid_map", f"{SANDBOX_UID} {gid} 1")
            isolation += ["namespaces:user,mount,pid,net,ipc,uts"]
            return True
    if _unshare(CLONE_NEWNET):
        isolation += ["namespaces:net"]
    return False


def _bind_read_only(source, target):
    """Bind `source` (a file or directory) at `target` in the new root, read-only and nosuid. Inside a user
    namespace the flags the host mount already has (nodev, noexec, atime) are locked: keep them on the remount."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        open(target, "w").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    kept = os.statvfs(source).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (kept & (MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME))
    if kept & ST_RELATIME:
        flags |= MS_RELATIME
    _mount(None, target, None, flags)


def _minimal_root(spec, isolation):
    """Build the program's whole filesystem on an empty tmpfs and `pivot_root` into it: the system runtime
    (/usr and the /bin, /lib… it links to, read-only), the interpreter and its standard library (read-only,
    site-packages covered), /dev/null-style devices, a /proc of the namespace, and mount points for the
    per-test /tmp and /dev/shm. Nothing else of the host exists there: no run directories, no checkout, no
    caches, no home, no /etc; the old root is detached, so no path leads back to it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    new = "/tmp"  # a fresh tmpfs over the host's /tmp (hidden in this namespace) becomes the new root
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for name in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), new + host)
        elif os.path.isdir(host):
            _bind_read_only(host, new + host)
    for path in spec["runtime"]:  # the interpreter outside /usr (pyenv, conda, a venv with --copies)
        if not any(path == top or path.startswith(top + "/") for top in ("/usr", "/bin", "/lib", "/lib64")):
            _bind_read_only(path, new + path)
    for path in spec["runtime_hidden"]:  # installed packages beside the standard library
        if os.path.isdir(new + path):
            _mount("tmpfs", new + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=555")
    os.makedirs(new + "/dev")
    for device in ("null", "zero", "full", "random", "urandom"):
        open(new + "/dev/" + device, "w").close()
        _mount("/dev/" + device, new + "/dev/" + device, None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, new + "/dev/" + name)
    for path in ("/proc", "/tmp", "/dev/shm", "/etc"):
        os.makedirs(new + path, exist_ok=True)
    _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(new)
    if LIBC.syscall(SYS_PIVOT_ROOT, b".", b".") != 0:  # the old root ends up stacked on the new one …
        raise OSError(ctypes.get_errno(), "pivot_root")
    if LIBC.umount2(b".", MNT_DETACH) != 0:  # … and is detached: nothing of the host is reachable any more
        raise OSError(ctypes.get_errno(), "detach the old root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    isolation += ["minimal read-only root", "private /proc"]


def _fresh_tmp(spec, first):
    """A new, empty, size-capped /tmp and /dev/shm for each test: nothing one test leaves is seen by the next."""
    for path in ("/tmp", "/dev/shm"):
        if not first:
            LIBC.umount2(path.encode(), MNT_DETACH)
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec['tmpfs_mb']}m,mode=1777")


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
            LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # no setuid binary or file capability gives rights back
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
    drop_to = spec["uid"] if was_root else None  # inside a user namespace the caller is already SANDBOX_UID
    if drop_to is not None:
        isolation.append(f"uid {drop_to}")
    if in_pid_ns:
        _minimal_root(spec, isolation)
        isolation.append("fresh /tmp and /dev/shm per test")
    results = []
    for i, stdin_text in enumerate(spec["inputs"]):
        if in_pid_ns:
            _fresh_tmp(spec, first=i == 0)
            workdir = "/tmp/work"
            os.makedirs(workdir)
        else:
            import tempfile

            workdir = tempfile.mkdtemp(prefix="promptcot-sandbox-")
        if drop_to is not None:
            os.chown(workdir, drop_to, drop_to)
        os.chmod(workdir, 0o700)
        _write(os.path.join(workdir, "prog.py"), spec["code"])
        stdin_path = os.path.join(workdir, ".stdin")
        _write(stdin_path, stdin_text)
        results.append(_run_one(spec, stdin_path, workdir, in_pid_ns, drop_to))
        if not in_pid_ns:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    return results


def main():
    spec = json.loads(sys.stdin.read())
    isolation: list[str] = []
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
