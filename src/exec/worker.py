# rstar executor worker: a warm Python process that runs each snippet in a fresh forked child.
#
# Where the time goes: a snippet's cost is dominated by the kernel, not by Python. Every page of
# the shared warm heap that a child (or the forking process, after a fork) writes costs a
# copy-on-write fault, ~5 us here (a VM), and a typical sympy step touches ~1000 pages; fork
# copies and exit tears down one page-table entry per 4 KiB page of the warm heap. So:
#  - two processes: the supervisor (this process: protocol, pipes, timeouts, clean-up) stays
#    small, imports none of the heavy modules, and forks a zygote once; the zygote imports math,
#    sympy, numpy and scipy, warms them up, and then only forks snippet children and reaps them,
#    so the process that forks writes a few dozen pages per snippet, not hundreds. The warm heap
#    belongs to the zygote alone, which is what lets it be collapsed into huge pages (below);
#  - the warm-up runs what typical steps reach (sympy's printers, subs/evalf, polys, solvers,
#    matrices, calculus), so that each child does not build that lazily initialised state again
#    in pages of its own; then gc.freeze(), and pymalloc's free blocks in partly used pools are
#    taken, so that a child's new objects go to fresh pools instead of into hundreds of shared
#    pages;
#  - the zygote forks with libc's fork(), skipping os.fork()'s Python at-fork hooks, and prepares
#    once what every child would otherwise build (seccomp program, Landlock attrs, scrubbed
#    environment, stdout/stderr text files); a child gets its job from a pipe in a plain
#    "cpu mem nproc / tmp / code" form rather than JSON;
#  - the warm heap is collapsed into transparent huge pages where the kernel allows
#    (MADV_COLLAPSE; only memory no other process maps can be collapsed, hence the zygote does it
#    before its first fork), so copying page tables at fork and tearing them down at exit is
#    cheaper. Writes still copy only 4 KiB (the kernel splits a shared huge page on write);
#  - an empty, untouched snippet directory is handed to the next snippet (on ext4 rmdir waits);
#  - the zygote joins the worker's pids cgroup once, so children are born in it (moving each
#    child in cost ~4 ms of waiting per snippet: 24 -> 19 ms wall for one worker).
# Measured (2-core VM, loaded, `rstar bench exec`'s five step programs): CPU per snippet
# 20.3 -> 18.2 ms (supervisor 1.3 -> 1.1, zygote 3.2 -> 2.9, child 15.8 -> 14.2; page faults in
# the child 1080 -> 970). What is left is mostly the kernel: ~5 us per copy-on-write fault, and
# fork and exit copy and free page tables for the ~56 MB warm heap.
# Protocol (owned by src/exec/mod.rs): one JSON object per line on stdin (a job), one JSON object
# per line on stdout (a reply). The first line written is a hello line describing the interpreter
# and the sandbox: {"mode": "strict"|"weak", "layers": {layer: {"active", "required", "detail"}},
# "refused": null or why} (a strict worker with a required layer missing is refused by the host).
# Job:   {"id", "code", "timeout", "cpu", "mem", "out_cap", "nproc", "net_ns"}
# Reply: {"id", "ok", "stdout", "stderr", "error", "exit", "signal", "timed_out", "truncated",
#         "elapsed_ms", "sandbox", "failed_layers"}
#
# Sandbox (layers reported in hello["sandbox"]; RSTAR_SANDBOX=weak runs without missing ones):
#  - not root: a user namespace (uid/gid mapped to themselves) gives the worker the capabilities
#    the namespaces below need; root instead drops the snippet to an unprivileged uid per worker
#    slot where that uid can read the interpreter, else keeps uid 0 without any capability;
#  - the zygote is pid 1 of the worker's own PID namespace, in a mount namespace of its own with
#    a private /proc (shows the zygote and the snippet only); each snippet is pid 1 of a fresh
#    nested PID namespace (when it ends the kernel kills everything it started), optionally in a
#    new network namespace; made once per worker, since a mount namespace per snippet would cost
#    ~5 ms at each exit;
#  - new session/process group, PR_SET_PDEATHSIG so it dies with the worker;
#  - stdin /dev/null, stdout/stderr pipes, every other inherited descriptor closed;
#  - environment scrubbed, private temporary cwd (also HOME and TMPDIR);
#  - RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_CORE=0, RLIMIT_NPROC; a pids cgroup per worker
#    where one can be made (root, or a delegated subtree), at most RSTAR_WORKER_NPROC processes;
#  - no_new_privs, an empty capability bounding set (zygote) and no capabilities (child);
#  - Landlock, two layers: reads and execution only beneath the interpreter's files (sys.path,
#    the venv, the directories of its loaded shared objects), the worker's temp dir, a few
#    devices and the private /proc, no TCP, scoped signals and abstract sockets (ruleset made once
#    in the zygote); writes only beneath the snippet's temp dir and /dev/null (per child);
#  - seccomp: a syscall allow-list (no socket() or socketpair() of any family, no ptrace, mount,
#    namespaces, io_uring, bpf, keyrings), no kill()/tgkill() aimed at 0 or -1.
# A child that cannot enter one of its layers refuses to run the snippet in strict mode
# ("SandboxError: ..."); a probe child at start-up reports the same checks in the hello.
import _signal
import ast
import ctypes
import errno
import fcntl
import gc
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import time

PROTO_OUT = os.dup(1)
os.dup2(2, 1)  # anything printed by the worker itself goes to stderr, never into the protocol
sys.stdout = sys.stderr

SLOT = int(os.environ.get("RSTAR_WORKER_SLOT", "0"))
NPROC_DEFAULT = int(os.environ.get("RSTAR_WORKER_NPROC", "32"))
HOST_PID = os.getppid()
WORKER_PID = os.getpid()
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

MODULES = {}  # filled in by the zygote, which alone imports the heavy modules


def _import_modules():
    for name in ("math", "sympy", "numpy", "scipy"):
        try:
            __import__(name)
            MODULES[name] = True
        except Exception:
            MODULES[name] = False


def _warm_up():
    # Build the lazily initialised state that typical steps reach (sympy's printers, evalf, the
    # polys and solvers, matrices, calculus; numpy's printing), so that each child does not
    # build it again in its own copy-on-write pages. Deliberately not the benchmark's snippets:
    # other numbers and other expressions, so sympy's cache cannot answer a benchmark step.
    import io

    sink = io.StringIO()
    if MODULES.get("sympy"):
        try:
            import sympy
            from sympy import Eq, Matrix, N, Rational, factorint, simplify, solve, sqrt, symbols

            x, y = symbols("x y")
            r = Rational(7, 9) + Rational(5, 6) * Rational(2, 11)
            e = sympy.expand((x + sqrt(5) * r) ** 3 - x**3)
            print(e, e.subs(x, 3), r, sqrt(12), sympy.pi / 7, file=sink)
            print(str(e), repr(r), sympy.sstr(e), sympy.latex(e / (x + 1)), file=sink)
            print(N(sqrt(7), 12), e.subs(x, Rational(1, 3)).evalf(), float(r), int(r * 9), file=sink)
            print(solve(Eq(x**2 - 7 * x + 10, 0), x), solve([x + 2 * y - 5, 3 * x - y - 1], [x, y]), file=sink)
            print(simplify((x**2 - 9) / (x - 3) + sqrt(18) / 3), sympy.factor(x**3 - 6 * x**2 + 11 * x - 6), file=sink)
            print(factorint(5040), sympy.expand((2 * x - 1) ** 4), sympy.nsimplify(0.25), file=sink)
            m = Matrix([[2, 1], [5, 3]])
            print(m.det(), m.inv(), m * m, file=sink)
            print(sympy.diff(x**3 * sympy.sin(x), x), sympy.integrate(x**2 + 3 * x, (x, 0, 2)), file=sink)
            print(sympy.integrate(sympy.exp(2 * x), x), sympy.limit(sympy.sin(x) / x, x, 0), file=sink)
            print(sympy.binomial(9, 4), sympy.gcd(84, 36), sympy.isprime(97), sympy.Sum(1 / x**2, (x, 1, 5)).doit(), file=sink)
        except Exception:
            pass
    if MODULES.get("numpy"):
        try:
            import numpy

            a = numpy.arange(4.0).reshape(2, 2) + 1
            print(numpy.linalg.det(a), a, a.sum(), numpy.sqrt(a), file=sink)
        except Exception:
            pass


CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_CAP_AMBIENT = 47
SECCOMP_MODE_FILTER = 2
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18

MACHINE = platform.machine()
# syscall numbers: (socket, kill, tgkill, io_uring_setup, landlock_create_ruleset, add_rule, restrict_self)
SYSCALLS = {
    "x86_64": (41, 62, 234, 425, 444, 445, 446),
    "aarch64": (198, 129, 131, 425, 444, 445, 446),
}.get(MACHINE)
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(MACHINE)
IS_ROOT = os.geteuid() == 0
# Fail closed: "strict" (the default) refuses to run code when a required layer is missing;
# "weak" runs anyway and says so in every reply.
MODE = "weak" if os.environ.get("RSTAR_SANDBOX") == "weak" else "strict"
LAYERS = {}  # layer -> {"active", "required", "detail"}; the child's own checks are added later


def _layer(name, active, detail, required=True):
    LAYERS[name] = {"active": bool(active), "required": required, "detail": detail}


def _errno_text(what):
    e = ctypes.get_errno()
    return "%s failed: %s" % (what, os.strerror(e) if e else "unknown error")


def _write_file(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _enter_userns():
    # Not root: a user namespace (this uid and gid mapped to themselves) gives the worker the
    # capabilities in it that the PID and mount namespaces and the private /proc need. Root
    # needs none (it has them), and keeps its uid drop instead.
    if IS_ROOT:
        _layer("user_namespace", False, "not needed: the worker runs as root", required=False)
        return
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        _layer("user_namespace", False, _errno_text("unshare(CLONE_NEWUSER)") + " (see /proc/sys/user/max_user_namespaces)")
        return
    try:
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", "%d %d 1" % (uid, uid))
        _write_file("/proc/self/gid_map", "%d %d 1" % (gid, gid))
    except OSError as e:
        _layer("user_namespace", False, "writing the uid/gid maps failed: %s" % e)
        return
    _layer("user_namespace", True, "uid %d and gid %d mapped to themselves" % (uid, gid))


_enter_userns()
HOST_PIDNS_FD = None
try:
    HOST_PIDNS_FD = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
except OSError:
    pass


def _zygote_pidns():
    # Called by the supervisor before it forks a zygote: the zygote becomes pid 1 of a PID
    # namespace of its own (a zygote restart needs a fresh one: back to ours first, root only).
    if HOST_PIDNS_FD is not None:
        libc.setns(HOST_PIDNS_FD, CLONE_NEWPID)
    if libc.unshare(CLONE_NEWPID) != 0:
        return _errno_text("unshare(CLONE_NEWPID)")
    return None


ZYGOTE_PID = None
PIDNS_FD = None  # the zygote's own PID namespace, to return to after each snippet's fork


def _private_proc():
    # In the zygote (pid 1 of its PID namespace): a mount namespace of its own with a /proc that
    # shows only this namespace (the zygote and the running snippet), never the host's
    # processes. Made once per worker: a mount namespace per snippet costs ~5 ms at its exit.
    global PIDNS_FD
    if os.getpid() != 1:
        _layer("pid_namespace", False, "the zygote is not pid 1 of a PID namespace of its own")
        _layer("mount_namespace", False, "no PID namespace to show in a private /proc")
        return None
    if libc.unshare(CLONE_NEWNS) != 0:
        _layer("mount_namespace", False, _errno_text("unshare(CLONE_NEWNS)"))
    elif libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        _layer("mount_namespace", False, _errno_text("making / private"))
    elif libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        _layer("mount_namespace", False, _errno_text("mounting a private /proc"))
    else:
        _layer("mount_namespace", True, "private mount namespace, /proc shows this worker's PID namespace only")
    try:
        PIDNS_FD = os.open("/proc/self/ns/pid", os.O_RDONLY)
    except OSError as e:
        _layer("pid_namespace", False, "cannot open the zygote's PID namespace: %s" % e)
        return None
    if libc.unshare(CLONE_NEWPID) != 0:
        _layer("pid_namespace", False, _errno_text("unshare(CLONE_NEWPID) in the zygote"))
        PIDNS_FD = None
    elif libc.setns(PIDNS_FD, CLONE_NEWPID) != 0:
        _layer("pid_namespace", False, _errno_text("setns back to the zygote's PID namespace"))
        PIDNS_FD = None
    else:
        _layer("pid_namespace", True, "the worker's zygote and each snippet in PID namespaces of their own")
    try:
        return os.open("/proc", os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None


def _probe_uid_drop(uid):
    # Dropping root is only useful if the unprivileged uid can still read the interpreter's files.
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            import importlib.util

            for mod in ("colorsys", "socket"):  # stdlib modules the warm heap has not imported
                spec = importlib.util.find_spec(mod)
                if spec is None or not spec.origin:
                    os._exit(1)
                with open(spec.origin, "rb"):
                    pass
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    return st == 0


SANDBOX_UID = 61000 + SLOT if IS_ROOT and _probe_uid_drop(61000 + SLOT) else None
if not IS_ROOT:
    _layer("uid_drop", False, "not needed: the worker is not root", required=False)
elif SANDBOX_UID is None:
    _layer("uid_drop", False, "uid %d cannot read the interpreter's files (%s): the snippet stays uid 0 "
           "without capabilities" % (61000 + SLOT, sys.prefix), required=False)
else:
    _layer("uid_drop", True, "the snippet runs as uid %d" % SANDBOX_UID, required=False)


def _pids_cgroup():
    # A pids-limited cgroup per worker (cgroup v1 pids hierarchy or v2), where this user may make
    # one (root, or a delegated subtree); else (None, why).
    try:
        rel = None
        v1 = False
        for line in open("/proc/self/cgroup"):
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if "pids" in ctrls.split(","):
                rel, v1 = path, True
            elif ctrls == "" and rel is None:
                rel = path
        root = "/sys/fs/cgroup/pids" if v1 else "/sys/fs/cgroup"
        d = os.path.join(root + rel, "rstar-exec-%d" % os.getpid())
        os.mkdir(d)
        if not os.path.exists(os.path.join(d, "pids.max")):
            os.rmdir(d)
            return None, "no pids controller in %s" % d
        return d, None
    except (OSError, ValueError) as e:
        return None, "cannot make a pids cgroup (not delegated to this user?): %s" % e


PIDS_CGROUP, _why = _pids_cgroup()
_layer("pids_cgroup", PIDS_CGROUP is not None, _why or "at most RSTAR_WORKER_NPROC processes in %s" % PIDS_CGROUP, required=False)
PIDS_CGROUP_PROCS = None if PIDS_CGROUP is None else os.path.join(PIDS_CGROUP, "cgroup.procs")


def _landlock_abi():
    if SYSCALLS is None:
        return 0
    r = libc.syscall(SYSCALLS[4], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return r if r > 0 else 0


LANDLOCK_ABI = _landlock_abi()


# ---- seccomp -------------------------------------------------------------------------------
# An allow-list: what CPython, numpy, scipy and sympy call while a snippet runs. Everything else
# (every socket family, socketpair, ptrace, mount, namespaces, keyrings, bpf, io_uring...) fails
# with EPERM; clone with a namespace flag and signals aimed at 0/-1 or the worker too; clone3
# says ENOSYS (glibc falls back to clone, whose flags a filter can read). Foreign-ABI calls
# (i386 int 0x80, x32) kill the process. x86_64 only (elsewhere the layer is reported missing).
SECCOMP_ALLOW_X86_64 = (
    0, 1, 3, 9, 11, 10, 12, 202, 5, 262, 257, 8, 13, 14, 15, 16, 17, 18, 19, 20, 2, 4, 6, 7, 21,
    22, 23, 24, 25, 26, 27, 28, 32, 33, 34, 35, 36, 37, 38, 39, 40, 57, 58, 59, 60, 61, 63, 72,
    73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 95, 96, 97, 98,
    99, 100, 102, 104, 107, 108, 109, 110, 111, 112, 115, 118, 120, 121, 124, 125, 127, 128, 130,
    131, 132, 137, 138, 140, 141, 143, 145, 146, 147, 149, 150, 157, 158, 160, 186, 201, 203, 204,
    213, 217, 218, 221, 222, 223, 224, 225, 226, 228, 229, 230, 231, 232, 233, 235, 247, 258,
    261, 263, 264, 265, 266, 267, 268, 269, 270, 271, 273, 274, 275, 276, 277, 280, 281, 282,
    283, 284, 285, 286, 287, 289, 290, 291, 292, 293, 295, 296, 309, 315, 316, 318, 319, 322,
    324, 326, 327, 328, 332, 334, 436, 437, 439, 441, 449,
)
# What the zygote calls besides (it installs the allow-list once, with these, so that the
# compiled filter is shared by every child: compiling it per child cost ~300 us; each child then
# adds a short filter refusing these): sendto, recvfrom, sendmsg, recvmsg, setuid, setgid,
# setgroups, capset, unshare, setns, pidfd_open, landlock_*.
ZYGOTE_ONLY_X86_64 = (44, 45, 46, 47, 105, 106, 116, 126, 272, 308, 434, 444, 445, 446)
NR_X86_64 = {"clone": 56, "clone3": 435, "kill": 62, "tkill": 200, "tgkill": 234, "prlimit64": 302}
CLONE_NS_FLAGS = 0x7E020080  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME


def _bpf(prog):
    # prog: list of (code, jt, jf, k) where jt/jf may be label names; ("label", name) marks one.
    pos, out = {}, []
    for ins in prog:
        if ins[0] == "label":
            pos[ins[1]] = len(out)
        else:
            out.append(ins)
    raw = []
    for i, (code, jt, jf, k) in enumerate(out):
        rel = lambda t: pos[t] - i - 1 if isinstance(t, str) else t  # noqa: E731
        assert 0 <= rel(jt) < 256 and 0 <= rel(jf) < 256, "a BPF jump out of reach"
        raw.append(struct.pack("HBBI", code, rel(jt), rel(jf), k))
    return b"".join(raw), len(out)


def _seccomp_program(protected, allowed):
    ALLOW, KILL = 0x7FFF0000, 0x80000000
    EPERM, ENOSYS = 0x00050000 | 1, 0x00050000 | 38
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    nr = NR_X86_64
    forbidden_pids = sorted({0, 0xFFFFFFFF} | {p & 0xFFFFFFFF for p in protected})
    prog = [
        (LD, 0, 0, 4),  # arch
        (JEQ, 1, 0, AUDIT_ARCH),
        (RET, 0, 0, KILL),
        (LD, 0, 0, 0),  # nr
        (JGE, "deny", 0, 0x40000000),  # x32
        (JEQ, "enosys", 0, nr["clone3"]),
        (JEQ, "clone", 0, nr["clone"]),
        (JEQ, "pid", 0, nr["kill"]),
        (JEQ, "pid", 0, nr["tkill"]),
        (JEQ, "pid", 0, nr["tgkill"]),
        (JEQ, "self", 0, nr["prlimit64"]),
    ]
    prog += [(JEQ, "allow", 0, n) for n in allowed]
    prog += [("label", "deny"), (RET, 0, 0, EPERM), ("label", "enosys"), (RET, 0, 0, ENOSYS)]
    prog += [("label", "clone"), (LD, 0, 0, 16), (JSET, 0, "allow", CLONE_NS_FLAGS), (RET, 0, 0, EPERM)]
    prog += [("label", "self"), (LD, 0, 0, 16), (JEQ, "allow", 0, 0), (RET, 0, 0, EPERM)]
    prog += [("label", "pid"), (LD, 0, 0, 16)]
    prog += [(JEQ, "pid_deny", 0, pid) for pid in forbidden_pids]
    prog += [("label", "allow"), (RET, 0, 0, ALLOW), ("label", "pid_deny"), (RET, 0, 0, EPERM)]
    return _bpf(prog)


def _child_seccomp_program():
    # The child's own filter, on top of the zygote's: none of the zygote-only calls.
    LD, JEQ, RET = 0x20, 0x15, 0x06
    prog = [(LD, 0, 0, 4), (JEQ, 1, 0, AUDIT_ARCH), (RET, 0, 0, 0x80000000), (LD, 0, 0, 0)]
    prog += [(JEQ, "deny", 0, n) for n in ZYGOTE_ONLY_X86_64]
    prog += [(RET, 0, 0, 0x7FFF0000), ("label", "deny"), (RET, 0, 0, 0x00050000 | 1)]
    return _bpf(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


SECCOMP_PROG = None  # the child's filter: (buffer, struct sock_fprog), built in the zygote


def _fprog(raw_n):
    raw, n = raw_n
    buf = ctypes.create_string_buffer(raw, len(raw))
    return buf, _SockFprog(n, ctypes.addressof(buf))


def _install(prog):
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog[1]), 0, 0) == 0


def _zygote_seccomp(protected):
    # Installs the allow-list (plus the zygote-only calls) in the zygote, once; children inherit
    # it with fork and add the short filter that refuses the zygote-only calls.
    global SECCOMP_PROG
    if MACHINE != "x86_64":
        _layer("seccomp", False, "no syscall allow-list for %s" % MACHINE)
        return
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # the zygote never execs
    if not _install(_fprog(_seccomp_program(protected, ZYGOTE_ONLY_X86_64 + SECCOMP_ALLOW_X86_64))):
        _layer("seccomp", False, _errno_text("installing the seccomp filter in the zygote"))
        return
    SECCOMP_PROG = _fprog(_child_seccomp_program())
    _layer("seccomp", True, "syscall allow-list (%d calls; no sockets of any family, no ptrace, "
           "mount or namespaces)" % len(SECCOMP_ALLOW_X86_64))


def _install_seccomp():
    return SECCOMP_PROG is not None and _install(SECCOMP_PROG)


# ---- landlock ------------------------------------------------------------------------------
# Two layers. The worker's (made once in the zygote, entered by each child): reads and execution
# only beneath the interpreter's files (sys.path, the venv, the directories of the shared
# libraries it has loaded), the worker's temp dir, a few devices and files, and the private
# /proc; no TCP bind/connect (ABI 4); signals and abstract Unix sockets scoped to the snippet
# (ABI 6). The snippet's own (per child): writes only beneath its temp dir and /dev/null.
LL_EXEC, LL_WRITE, LL_READ_FILE, LL_READ_DIR = 1, 2, 4, 8
LL_READ = LL_EXEC | LL_READ_FILE | LL_READ_DIR


def _ll_write_rights():
    # write-type rights: write_file, remove_*, make_*; refer (abi 2), truncate (abi 3)
    rights = LL_WRITE | (1 << 4) | (1 << 5) | sum(1 << b for b in range(6, 13))
    if LANDLOCK_ABI >= 2:
        rights |= 1 << 13
    if LANDLOCK_ABI >= 3:
        rights |= 1 << 14
    return rights


def _ll_ruleset(handled, rules, scoped=False):
    # A ruleset fd with `rules` [(path, rights)] (missing paths skipped), or (None, why).
    attr = struct.pack("Q", handled)
    if LANDLOCK_ABI >= 6 and scoped:
        attr = struct.pack("QQQ", handled, 3, 1 | 2)  # no TCP bind/connect; scoped signals, sockets
    elif LANDLOCK_ABI >= 4 and scoped:
        attr = struct.pack("QQ", handled, 3)
    fd = libc.syscall(SYSCALLS[4], attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if fd < 0:
        return None, _errno_text("landlock_create_ruleset")
    for target, rights in rules:
        try:
            pfd = target if isinstance(target, int) else os.open(target, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        if not isinstance(target, int) and not stat.S_ISDIR(os.fstat(pfd).st_mode):
            rights &= LL_EXEC | LL_WRITE | LL_READ_FILE | (1 << 14)  # what a file rule may hold
        beneath = struct.pack("=Qi", rights & handled, pfd)  # landlock_path_beneath_attr is packed
        r = libc.syscall(SYSCALLS[5], fd, 1, beneath, 0)
        if not isinstance(target, int):
            os.close(pfd)
        if r != 0:
            why = _errno_text("landlock_add_rule(%s)" % (target,))
            os.close(fd)
            return None, why
    return fd, None


def _read_roots():
    # What the interpreter may read: sys.path, the venv, the directories of the loaded shared
    # objects (where lazily loaded ones live too), and the files the C library reads.
    roots = set()
    for p in sys.path + [sys.prefix, sys.exec_prefix] * (sys.prefix != sys.base_prefix):
        if p and os.path.isdir(p):
            roots.add(os.path.realpath(p))
    try:
        for line in open("/proc/self/maps"):
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                roots.add(os.path.dirname(os.path.realpath(parts[5].rstrip("\n"))))
    except OSError:
        pass
    files = ["/etc/ld.so.cache", "/etc/localtime", "/dev/urandom", "/dev/random", "/dev/zero"]
    return sorted(roots), files


LL_WORKER_FD = None  # the worker's ruleset (fd), made in the zygote


def _prepare_landlock(base, proc_fd):
    global LL_WORKER_FD
    if LANDLOCK_ABI <= 0:
        _layer("landlock", False, "Landlock is not available (landlock_create_ruleset ABI query failed)")
        return
    write = _ll_write_rights()
    handled = LL_READ | write | ((1 << 15) if LANDLOCK_ABI >= 5 else 0)
    dirs, files = _read_roots()
    rules = [(d, LL_READ) for d in dirs] + [(f, LL_READ_FILE) for f in files]
    rules += [(base, LL_READ | write), ("/dev/null", LL_READ_FILE | LL_WRITE | (1 << 14))]
    if proc_fd is not None:
        rules.append((proc_fd, LL_READ_FILE | LL_READ_DIR))
    LL_WORKER_FD, why = _ll_ruleset(handled, rules, scoped=True)
    if LL_WORKER_FD is None:
        _layer("landlock", False, why)
        return
    os.dup2(LL_WORKER_FD, 1000)  # a fixed number the child keeps while it closes the others
    os.close(LL_WORKER_FD)
    LL_WORKER_FD = 1000
    _layer("landlock", True, "ABI %d: reads beneath %d interpreter directories and the worker's "
           "temp dir, writes beneath the snippet's temp dir only%s" % (
               LANDLOCK_ABI, len(dirs), ", no TCP, scoped signals and abstract sockets" if LANDLOCK_ABI >= 6 else ""))


def _install_landlock(path):
    if LL_WORKER_FD is None or libc.syscall(SYSCALLS[6], LL_WORKER_FD, 0) != 0:
        return False
    write = _ll_write_rights()
    fd, _ = _ll_ruleset(write, [(path, write), ("/dev/null", LL_WRITE | (1 << 14))])
    if fd is None:
        return False
    ok = libc.syscall(SYSCALLS[6], fd, 0) == 0
    os.close(fd)
    return ok

def _fill_pools():
    # Take every free block of pymalloc's partly used pools (the warm heap's holes), so that a
    # child's new objects land in fresh pools rather than in hundreds of shared pages.
    fd = os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR, 0o600)
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.lseek(fd, 0, 0)
    text = _read_all(fd).decode("ascii", "replace")
    os.close(fd)
    malloc = ctypes.pythonapi.PyObject_Malloc
    malloc.restype = ctypes.c_void_p
    malloc.argtypes = [ctypes.c_size_t]
    taken = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and all(p.isdigit() for p in parts):
            size, avail = int(parts[1]), int(parts[4])
            for _ in range(avail):
                malloc(size)
            taken += avail
    return taken


MADV_COLLAPSE = 25
HUGE = 2 << 20


def _collapse_heap():
    # Back the warm heap's anonymous memory with transparent huge pages (Linux 6.1+): fork then
    # copies one entry per 2 MiB instead of 512, and a child's exit tears down as few. Writes
    # still copy only 4 KiB (the kernel splits a shared huge page on write). Best effort.
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = 0
    try:
        maps = open("/proc/self/maps").read().splitlines()
    except OSError:
        return 0
    for line in maps:
        parts = line.split()
        if len(parts) < 5 or parts[1][:2] != "rw" or parts[1][3] != "p":
            continue
        if len(parts) > 5 and parts[5] != "[heap]":
            continue  # file-backed data and [stack] stay as they are
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        lo, hi = (lo + HUGE - 1) & ~(HUGE - 1), hi & ~(HUGE - 1)
        if hi > lo and libc.madvise(lo, hi - lo, MADV_COLLAPSE) == 0:
            done += hi - lo
    return done


def _emit(obj):
    data = (json.dumps(obj) + "\n").encode()
    while data:
        n = os.write(PROTO_OUT, data)
        data = data[n:]


# ---- the snippet child -----------------------------------------------------------------------
CHILD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}  # plus HOME and TMPDIR
CHILD_SIGNALS = (
    (int(signal.SIGPIPE), int(signal.SIG_DFL)),
    (int(signal.SIGXFSZ), int(signal.SIG_IGN)),
    (int(signal.SIGINT), int(signal.SIG_DFL)),
    (int(signal.SIGTERM), int(signal.SIG_DFL)),
)
CHILD_STDIO = None  # (stdout, stderr) text files on descriptors 1 and 2, made by the zygote


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _set_limits(cpu, mem, nproc):
    # The snippet's rlimits; returns the (layer, why) that failed.
    cpu = max(1, cpu)
    limits = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_FSIZE, (64 << 20, 64 << 20)),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if mem > 0:
        limits.append((resource.RLIMIT_AS, (mem, mem)))
    if nproc > 0:
        limits.append((resource.RLIMIT_NPROC, (nproc, nproc)))
    failed = []
    for which, lim in limits:
        try:
            resource.setrlimit(which, lim)
        except (ValueError, OSError) as e:
            failed.append(("rlimits", "setrlimit(%d): %s" % (which, e)))
    if os.getpid() != 1:
        failed.append(("pid_namespace", "the snippet did not get a PID namespace of its own"))
    return failed


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


CAP_HEADER = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
CAP_DATA = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable}: all zero


def _drop_caps():
    # Without a uid drop (a non-root worker holds every capability in its user namespace; root
    # whose interpreter the sandbox uid cannot read stays uid 0): no capabilities at all. The
    # bounding set went in the zygote; no_new_privs keeps execve from giving any back.
    libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    return libc.capset(ctypes.byref(CAP_HEADER), CAP_DATA) == 0


def _drop_bounding_set():
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break


def _child(job_r, out_w, err_w, st_w):
    try:
        os.setsid()
    except OSError:
        pass
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getpid() != 1 and os.getppid() != ZYGOTE_PID:
        os._exit(111)  # the zygote is gone already
    try:  # "cpu mem nproc probe\n" tmp "\n" code: cheaper to take apart than JSON
        head, tmp, code = _read_all(job_r).split(b"\n", 2)
        cpu, mem, nproc, probe = (int(x) for x in head.split())
        tmp = tmp.decode()
        code = code.decode("utf-8", "surrogatepass")
    except (OSError, ValueError):
        os._exit(114)
    failed = []  # (layer, why) of the layers this child could not set up
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        failed.append(("no_new_privs", _errno_text("prctl(PR_SET_NO_NEW_PRIVS)")))
    if LL_WORKER_FD is not None and not _install_landlock(tmp):
        failed.append(("landlock", _errno_text("entering the Landlock rulesets")))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(st_w, 3)
    os.closerange(4, 65536)
    for sig, how in CHILD_SIGNALS:  # the C function: signal.signal's enum wrapping costs pages
        _signal.signal(sig, how)
    os.environ["HOME"] = tmp  # the rest of the environment was scrubbed in the zygote
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = tmp
    os.chdir(tmp)
    failed += _set_limits(cpu, mem, nproc)
    if SANDBOX_UID is not None:
        try:
            os.setgroups([])
            os.setgid(SANDBOX_UID)
            os.setuid(SANDBOX_UID)
        except OSError:
            os._exit(112)
    elif not _drop_caps():
        failed.append(("capabilities", _errno_text("capset")))
    if SECCOMP_PROG is not None and not _install_seccomp():
        failed.append(("seccomp", _errno_text("prctl(PR_SET_SECCOMP)")))
    refuse = failed if MODE == "strict" else []  # every layer a child sets up is required
    if probe or refuse:
        msg = {"error": None, "failed": dict(failed)}
        if refuse:
            msg["error"] = "SandboxError: layer %s could not be set up: %s" % refuse[0]
        os.write(3, json.dumps(msg).encode())
        os._exit(115 if refuse else 0)
    sys.stdout, sys.stderr = CHILD_STDIO
    sys.argv = ["<unknown>"]
    sys.dont_write_bytecode = True
    status = {"error": None}
    me = os.getpid()
    g = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        tree = ast.parse(code, "<unknown>")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            call = tree.body[-1].value
            is_print = isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print"
            if not is_print:
                last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<unknown>", "exec"), g)
        if last is not None:
            value = eval(compile(last, "<unknown>", "eval"), g)
            if value is not None:
                print(value)
    except SystemExit as e:
        if e.code not in (None, 0):
            status["error"] = "SystemExit: %s" % (e.code,)
    except BaseException as e:  # the snippet's failure is data, not a worker failure
        status["error"] = "%s: %s" % (type(e).__name__, e)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    if os.getpid() != me:  # a process the snippet forked fell through: it reports nothing
        os._exit(0 if status["error"] is None else 1)
    try:
        os.write(3, b'{"error": null}' if status["error"] is None else json.dumps(status).encode())
    except BaseException:
        pass
    os._exit(0 if status["error"] is None else 1)


SIGNAMES = {s.value: s.name for s in signal.Signals}


# ---- the zygote ----------------------------------------------------------------------------
# The zygote forks with libc's fork() (holding the GIL: PyDLL) rather than os.fork(): os.fork()
# also runs the at-fork hooks of threading, logging and random, and that Python code alone
# dirties ~200 pages of the shared heap in every child. The zygote is single-threaded (it is
# itself a fork of the supervisor's one thread) and holds no lock while it forks, which is all
# CPython's own after-fork bookkeeping is for; the one hook with a visible effect is random's
# reseeding, which the child does itself.
_raw_fork = ctypes.PyDLL(None, use_errno=True).fork
_raw_fork.restype = ctypes.c_int
_raw_fork.argtypes = []


def _after_raw_fork():
    rnd = sys.modules.get("random")
    if rnd is not None:
        rnd.seed()


def _zygote_main(sock):
    # Forks snippet children and reaps them; nothing else, so that it writes few pages per fork.
    # Requests (SOCK_SEQPACKET): b"F"/b"N" (fork; N adds a network namespace) carrying the
    # child's descriptors [job_r, out_w, err_w, st_w]; b"W" + pid (wait). Reply: an 8-byte
    # signed integer: the pid, the wait status, or -errno.
    # Before serving it imports and warms up the modules and reports them (one JSON message).
    global CHILD_STDIO, ZYGOTE_PID
    ZYGOTE_PID = os.getpid()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getpid() != 1 and os.getppid() != WORKER_PID:  # pid 1 of its namespace: ppid reads 0
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)  # the protocol pipes belong to the supervisor alone
    os.close(null)
    os.close(PROTO_OUT)
    if PIDS_CGROUP_PROCS is not None:
        # The zygote joins the worker's pids cgroup once, so every snippet child is born in it:
        # moving each child in would cost a cgroup migration (~4 ms of waiting) per snippet.
        try:
            fd = os.open(PIDS_CGROUP_PROCS, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # "0" means the writing process
            finally:
                os.close(fd)
        except OSError:
            pass
    proc_fd = _private_proc()
    _drop_bounding_set()
    _import_modules()
    _warm_up()
    _prepare_landlock(BASE, proc_fd)
    os.environ.clear()
    os.environ.update(CHILD_ENV)
    # Made once here, used by every child once its descriptors 1 and 2 are the snippet's pipes.
    CHILD_STDIO = (
        os.fdopen(1, "w", buffering=1 << 16, encoding="utf-8", closefd=False),
        os.fdopen(2, "w", buffering=1, encoding="utf-8", closefd=False),
    )
    gc.collect()
    gc.freeze()  # children do not copy-on-write the warm heap when they collect
    _fill_pools()
    huge = _collapse_heap()  # the heap is ours alone (nobody forked it yet): it can collapse
    _zygote_seccomp((WORKER_PID, HOST_PID))
    sock.send(json.dumps({"modules": MODULES, "heap_huge_mb": huge >> 20, "layers": LAYERS}).encode())
    recv_fds = socket.recv_fds
    send = sock.send
    while True:
        try:
            msg, fds, _, _ = recv_fds(sock, 16, 4)
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)
        if msg[:1] == b"W":
            pid = int.from_bytes(msg[1:9], "little")
            for kill in (os.killpg, os.kill):  # its PID namespace (or process group), then it
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                _, st = os.waitpid(pid, 0)
            except OSError as e:
                st = -(e.errno or 1)
            send(st.to_bytes(8, "little", signed=True))
            continue
        in_ns = False
        if PIDNS_FD is not None:
            in_ns = libc.unshare(CLONE_NEWPID | (CLONE_NEWNET if msg[:1] == b"N" else 0)) == 0
        pid = _raw_fork()
        give_up = time.monotonic() + 2.0
        while pid < 0 and ctypes.get_errno() == errno.EAGAIN and time.monotonic() < give_up:
            # The pids cgroup is full of a killed snippet's processes the kernel is still
            # tearing down (they are counted until reaped): wait for them.
            time.sleep(0.005)
            pid = _raw_fork()
        if pid < 0:
            pid = -(ctypes.get_errno() or 1)
        if pid == 0:
            try:
                sock.close()
                _after_raw_fork()
                _child(*fds)
            finally:
                os._exit(113)
        if in_ns:  # later children start in our own PID namespace again
            libc.setns(PIDNS_FD, CLONE_NEWPID)
        for fd in fds:
            os.close(fd)
        # The supervisor cannot name our children (their pids are this namespace's): it gets a
        # pidfd to watch for the child's exit; killing and reaping are asked of us ("W").
        pidfd = -1
        if pid > 0:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                pass
        socket.send_fds(sock, [pid.to_bytes(8, "little", signed=True)], [pidfd] if pidfd >= 0 else [])
        if pidfd >= 0:
            os.close(pidfd)


class _Zygote:
    """The supervisor's handle on its zygote; restarts it if it is gone."""

    def __init__(self):
        self.pid = None
        self.sock = None
        self.info = {}
        self._start()

    def _start(self):
        why = _zygote_pidns()
        if why is not None and self.pid is not None:
            os._exit(75)  # a restart without a fresh PID namespace: let the host replace us
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                a.close()
                _zygote_main(b)
            finally:
                os._exit(0)
        b.close()
        self.sock, self.pid = a, pid
        ready = a.recv(1 << 16)  # after its imports and warm-up: {"modules", "heap_huge_mb"}
        try:
            self.info = json.loads(ready)
        except ValueError:
            raise OSError("the zygote did not start")

    def _restart(self):
        try:
            self.sock.close()
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        self._start()

    def _call(self, msg, fds=()):
        # -> (the 8-byte answer as an integer, a pidfd or None)
        socket.send_fds(self.sock, [msg], list(fds))
        reply, got, _, _ = socket.recv_fds(self.sock, 16, 1)
        if len(reply) != 8:
            for fd in got:
                os.close(fd)
            raise OSError("the zygote stopped answering")
        return int.from_bytes(reply, "little", signed=True), (got[0] if got else None)

    def fork(self, kind, fds):
        # -> (pid in the zygote's namespace: a name for reap() only, pidfd or None)
        try:
            pid, pidfd = self._call(kind, fds)
        except OSError:
            self._restart()
            pid, pidfd = self._call(kind, fds)
        if pid <= 0:
            raise OSError(-pid, "fork failed: %s" % os.strerror(-pid))
        return pid, pidfd

    def reap(self, pid):
        # Kills the child (and with it its PID namespace) and waits for it: its status.
        st, _ = self._call(b"W" + pid.to_bytes(8, "little"))
        return st if st >= 0 else (signal.SIGKILL & 0x7F)  # unknown: report as killed


ZYGOTE = None
SPARE_DIR = None  # the last snippet's directory, left empty and unchanged: the next one's


def _snippet_dir(base, seq):
    # Creating and removing a directory costs ~1 ms of waiting on ext4, per snippet; so an empty
    # directory that the snippet left as it was given is handed to the next snippet instead.
    global SPARE_DIR
    tmp, SPARE_DIR = SPARE_DIR, None
    if tmp is None:
        tmp = os.path.join(base, "s%d" % seq)
        os.mkdir(tmp, 0o700)
        if SANDBOX_UID is not None:
            os.chown(tmp, SANDBOX_UID, SANDBOX_UID)
    return tmp


def _xattrs(path):
    try:
        return os.listxattr(path, follow_symlinks=False)
    except (AttributeError, OSError) as e:  # none where the filesystem has none
        return [] if getattr(e, "errno", None) in (errno.ENOTSUP, errno.EOPNOTSUPP) else ["?"]


def _release_dir(tmp):
    # Keep the directory for the next snippet only if it is still a plain empty 0700 directory of
    # the sandbox uid (the snippet and everything it started are gone by now); else remove it.
    global SPARE_DIR
    try:
        st = os.lstat(tmp)
        owner = os.getuid() if SANDBOX_UID is None else SANDBOX_UID
        if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == owner:
            if not os.listdir(tmp) and not _xattrs(tmp):
                SPARE_DIR = tmp
                return
    except OSError:
        pass
    try:
        if os.path.islink(tmp) or not os.path.isdir(tmp):
            os.unlink(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass


def _run(job, base, seq):
    t0 = time.monotonic()
    timeout = float(job.get("timeout", 10.0))
    out_cap = int(job.get("out_cap", 1 << 20))
    tmp = _snippet_dir(base, seq)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    job_r, job_w = os.pipe()
    try:
        limits = (int(job.get("cpu", 11)), int(job.get("mem", 2 << 30)), int(job.get("nproc", 0)))
        head = "%d %d %d %d\n%s\n" % (limits + (int(bool(job.get("probe"))), tmp))
        data = head.encode() + str(job.get("code", "")).encode("utf-8", "surrogatepass")
        os.set_blocking(job_w, False)  # the job must fit the pipe: nobody reads it until the fork
        if len(data) > 65536:
            fcntl.fcntl(job_w, fcntl.F_SETPIPE_SZ, min(1 << 20, len(data)))
        while data:
            data = data[os.write(job_w, data) :]
    except OSError as e:
        for fd in (out_r, out_w, err_r, err_w, st_r, st_w, job_r, job_w):
            os.close(fd)
        _release_dir(tmp)
        raise ValueError("the snippet is too large to hand to the child (%s)" % e)
    os.close(job_w)
    try:
        pid, pidfd = ZYGOTE.fork(b"N" if job.get("net_ns") else b"F", [job_r, out_w, err_w, st_w])
    except OSError:
        for fd in (out_r, err_r, st_r):
            os.close(fd)
        _release_dir(tmp)
        raise
    finally:
        for fd in (job_r, out_w, err_w, st_w):
            os.close(fd)
    bufs = {out_r: bytearray(), err_r: bytearray(), st_r: bytearray()}
    caps = {out_r: out_cap, err_r: 1 << 16, st_r: 1 << 20}
    open_fds = set(bufs)
    deadline = time.monotonic() + timeout  # from the fork: a zygote restart does not count
    timed_out = truncated = False
    while True:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        watch = list(open_fds) + ([pidfd] if pidfd is not None else [])
        ready, _, _ = select.select(watch, [], [], min(deadline - now, 0.05 if pidfd is None else 3600))
        for fd in ready:
            if fd == pidfd:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.discard(fd)
                continue
            room = caps[fd] - len(bufs[fd])
            bufs[fd] += chunk[: max(room, 0)]
            if len(chunk) > room and fd == out_r:
                truncated = True
        if truncated:
            break
        if pidfd in ready if pidfd is not None else not open_fds:
            break  # the child is gone: what it wrote is in the pipes, drained below
    status = ZYGOTE.reap(pid)
    for fd in list(open_fds):  # drain what is left without waiting on strays that hold the pipe
        os.set_blocking(fd, False)
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                room = caps[fd] - len(bufs[fd])
                bufs[fd] += chunk[: max(room, 0)]
        except (BlockingIOError, OSError):
            pass
    for fd in bufs:
        os.close(fd)
    if pidfd is not None:
        os.close(pidfd)
    _release_dir(tmp)
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    error, failed = None, None
    try:
        st = json.loads(bufs[st_r].decode("utf-8", "replace") or "{}")
        error, failed = st.get("error"), st.get("failed")
    except (ValueError, AttributeError):
        pass
    if timed_out:
        error = "TimeoutError: Execution of the code snippet has timed out for exceeding %g seconds." % timeout
    elif truncated:
        error = "OutputLimitError: the snippet printed more than %d bytes" % out_cap
    elif sig is not None:
        name = SIGNAMES.get(sig, str(sig))
        if sig == signal.SIGXCPU:
            error = "TimeoutError: CPU time limit exceeded (%s)" % name
        else:
            error = error or "Killed: the snippet was terminated by signal %s" % name
    elif exit_code != 0 and not error:
        error = "SystemExit: the snippet exited with status %d" % exit_code
    return {
        "id": job.get("id"),
        "ok": error is None and exit_code == 0,
        "stdout": bufs[out_r].decode("utf-8", "replace"),
        "stderr": bufs[err_r].decode("utf-8", "replace"),
        "error": error,
        "exit": exit_code,
        "signal": sig,
        "timed_out": timed_out,
        "truncated": truncated,
        "elapsed_ms": (time.monotonic() - t0) * 1000.0,
        "sandbox": MODE,
        "failed_layers": failed,
    }


def _sweep_stale():
    # A worker killed with its host (PR_SET_PDEATHSIG, e.g. after a SIGKILL of the host) cannot
    # clean up: remove what dead workers left. A temp dir is stale when nobody holds the flock on
    # its .lock (held by its worker for life; works across PID namespaces sharing /tmp); a cgroup
    # "rstar-exec-PID" beside ours is stale when PID is gone (rmdir also refuses a busy cgroup).
    tmp = tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        names = []
    for name in names:
        if not name.startswith("rstar-exec-"):
            continue
        path = os.path.join(tmp, name)
        try:
            fd = os.open(os.path.join(path, ".lock"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # not ours, or not made by a worker of this version
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass  # alive
        finally:
            os.close(fd)
    if PIDS_CGROUP is not None:
        parent = os.path.dirname(PIDS_CGROUP)
        try:
            names = os.listdir(parent)
        except OSError:
            names = []
        for name in names:
            pid = name[len("rstar-exec-") :]
            if not name.startswith("rstar-exec-") or not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
                continue
            except ProcessLookupError:
                pass
            except OSError:
                continue
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass


BASE = None  # the worker's temp dir; every snippet's temp dir is beneath it


def _sandbox_report(base):
    # Which layers are active: what the supervisor and the zygote set up, then what a probe
    # snippet child managed (the layers only a child can enter). The first required layer that
    # is missing is the reason a strict worker refuses every snippet.
    layers = dict(LAYERS)
    layers.update(ZYGOTE.info.get("layers", {}))
    child = {
        "no_new_privs": "no_new_privs set: execve cannot gain privileges",
        "rlimits": "RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_CORE=0, RLIMIT_NPROC",
        "capabilities": "the snippet holds no capabilities (empty bounding, permitted and effective sets)",
    }
    for name, detail in child.items():
        layers[name] = {"active": True, "required": True, "detail": detail}
    try:
        probe = _run({"id": 0, "code": "", "probe": 1, "nproc": NPROC_DEFAULT}, base, 0)
        failed = probe.get("failed_layers")
        if failed is None:
            failed = {"worker": "the probe snippet did not report (%s)" % probe.get("error")}
    except Exception as e:
        failed = {"worker": "the probe snippet did not run: %s: %s" % (type(e).__name__, e)}
    for name, why in failed.items():
        layers[name] = {"active": False, "required": True, "detail": why}
    nproc_uid = SANDBOX_UID if SANDBOX_UID is not None else os.getuid()
    if layers.get("pids_cgroup", {}).get("active"):
        limit = (True, "pids cgroup")
    elif nproc_uid != 0 and layers["rlimits"]["active"]:
        limit = (True, "RLIMIT_NPROC for uid %d (no delegated pids cgroup)" % nproc_uid)
    else:
        limit = (False, "no pids cgroup, and RLIMIT_NPROC does not bind uid 0")
    layers["process_limit"] = {"active": limit[0], "required": True, "detail": limit[1]}
    missing = [(k, v["detail"]) for k, v in sorted(layers.items()) if v["required"] and not v["active"]]
    refused = None
    if missing and MODE == "strict":
        refused = "layer %s is not active: %s" % missing[0]
    return {"mode": MODE, "layers": layers, "refused": refused}


def main():
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _sweep_stale()
    base = tempfile.mkdtemp(prefix="rstar-exec-%d-" % os.getpid())
    lock = os.open(os.path.join(base, ".lock"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held until this process ends, however it ends
    if PIDS_CGROUP is not None:
        try:
            with open(os.path.join(PIDS_CGROUP, "pids.max"), "w") as f:
                f.write(str(NPROC_DEFAULT + 1))  # the snippet's processes and the zygote
        except OSError:
            pass
    os.chmod(base, 0o711)
    global ZYGOTE, BASE
    BASE = base
    ZYGOTE = _Zygote()
    _emit(
        {
            "hello": True,
            "python": sys.version.split()[0],
            "modules": ZYGOTE.info.get("modules", {}),
            "sandbox": _sandbox_report(base),
            "fork": {"zygote": ZYGOTE.pid, "heap_huge_mb": ZYGOTE.info.get("heap_huge_mb", 0)},
        }
    )
    stdin = sys.stdin.buffer
    seq = 0
    try:
        for line in stdin:
            if not line.strip():
                continue
            seq += 1
            try:
                job = json.loads(line)
                reply = _run(job, base, seq)
            except Exception as e:  # a worker-side failure: report it, keep serving
                reply = {"id": None, "ok": False, "error": "WorkerError: %s: %s" % (type(e).__name__, e)}
                try:
                    reply["id"] = json.loads(line).get("id")
                except Exception:
                    pass
            _emit(reply)
    finally:
        try:
            os.kill(ZYGOTE.pid, signal.SIGKILL)
            os.waitpid(ZYGOTE.pid, 0)
        except OSError:
            pass
        shutil.rmtree(base, ignore_errors=True)
        if PIDS_CGROUP is not None:
            try:
                os.rmdir(PIDS_CGROUP)
            except OSError:
                pass


if __name__ == "__main__":
    main()
