"""The snapshot template's side of a `snapshot=True` function (proto/snap.h and
docs/ARCHITECTURE.md "Snapshots" describe the protocol).

After the init (module import and @gust.enter(snap=True) hooks) the runner checks
that nothing in its state cannot survive a fork (sockets, CUDA), says READY, and then
only forks: per FRAME_FORK it makes a new PID namespace, spawns the new container's
PID 1 (gust-init snap_child) there and forks itself as PID 2. serve() returns only in
such a child, once it joined the namespaces PID 1 made, dropped the template's extra
privileges and installed the container's seccomp program: from there on it is an
ordinary runner with its own channel."""
import ctypes
import os
import platform
import random
import select
import socket
import struct
import sys

from .proto import (CAPS_CONTAINER, EXIT_BODY, FRAME_CHILD_EXIT, FRAME_CHILD_FD, FRAME_EXIT_EXITED,
                    FRAME_EXIT_SIGNALED, FRAME_F_MORE, FRAME_FORK, FRAME_MAX_BODY, FRAME_RESUME, FRAME_SHUTDOWN, HEADER,
                    SNAP_EXIT_FORK_FAILED, SNAP_MSG_RUNNER, SNAP_STDERR_FD, SNAP_STDOUT_FD, SNAP_SYNC_FD, send_frame)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
# System call numbers without a libc wrapper: capset and seccomp.
_SYSCALLS = {"x86_64": (126, 317), "aarch64": (91, 277)}

_libc = ctypes.CDLL(None, use_errno=True)


def _fail(msg):
    sys.stderr.write(f"gust: snapshot refused: {msg}\n")
    sys.stderr.flush()
    os._exit(3)


def check(runner_fd):
    """Refuses, with a message naming what to change, state a fork cannot carry:
    open sockets (a connection would be shared by every container) and CUDA (its
    state does not survive fork; a template has no GPUs anyway)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            cuda_on = torch.cuda.is_initialized()
        except Exception:
            cuda_on = False
        if cuda_on:
            _fail("CUDA was initialised during the init phase (import or @gust.enter(snap=True)); "
                  "CUDA state does not survive a snapshot: move GPU work to @gust.enter(snap=False)")
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd == runner_fd:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            _fail(f"the init phase (import or @gust.enter(snap=True)) left a socket open (fd {fd}, {target}); "
                  "a connection cannot be shared by the containers forked from a snapshot: "
                  "open it in @gust.enter(snap=False) or per call")
        if target.startswith("/dev/nvidia"):
            _fail(f"the init phase opened {target}; GPUs are not available before the snapshot: "
                  "move GPU work to @gust.enter(snap=False)")


MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE = 2 << 20


def compact():
    """Backs the init's large anonymous regions (model weights, the malloc heap) with
    huge pages where the kernel can: a fork then copies one page-table entry per 2 MiB
    instead of 512, which is most of a fork's cost for a large process. A write in a
    forked container still copies only the 4 KiB page it touches. Best effort: kernels
    or regions that refuse keep their pages as they are."""
    _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    try:
        with open("/proc/self/maps") as f:
            lines = f.readlines()
    except OSError:
        return
    for line in lines:
        parts = line.split()
        if len(parts) < 5 or parts[1] != "rw-p" or (len(parts) > 5 and parts[5] not in ("[heap]",)):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        lo, hi = (lo + HUGE - 1) & ~(HUGE - 1), hi & ~(HUGE - 1)
        if hi - lo < HUGE:
            continue
        _libc.madvise(lo, hi - lo, MADV_HUGEPAGE)
        _libc.madvise(lo, hi - lo, MADV_COLLAPSE)


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _recv_frame(sock):
    """One whole frame (type, id, body), reassembling FRAME_F_MORE pieces."""
    parts = []
    while True:
        data = sock.recv(HEADER.size + FRAME_MAX_BODY)
        if not data:
            raise EOFError("the worker closed the channel")
        ftype, flags, _, blen, fid = HEADER.unpack_from(data)
        parts.append(data[HEADER.size:HEADER.size + blen])
        if not flags & FRAME_F_MORE:
            return ftype, fid, b"".join(parts)


def _high_cloexec(fd):
    """A copy of fd at 10 or above, close-on-exec (fds from SCM_RIGHTS are neither)."""
    import fcntl
    n = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return n


def _drop_privileges(filt):
    capset, seccomp = _SYSCALLS.get(platform.machine(), (None, None))
    if capset is None:
        raise OSError(f"snapshots are not supported on {platform.machine()}")
    for cap in range(64):
        if CAPS_CONTAINER & (1 << cap):
            continue
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the kernel's last capability
                break
            _check(-1, f"drop capability {cap}")
    hdr = struct.pack("<Ii", 0x20080522, 0)
    data = struct.pack("<6I", CAPS_CONTAINER, CAPS_CONTAINER, 0, 0, 0, 0)
    _check(_libc.syscall(capset, ctypes.c_char_p(hdr), ctypes.c_char_p(data)), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if filt:
        n = len(filt) // 8
        buf = ctypes.create_string_buffer(filt, len(filt))

        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        prog = Prog(n, ctypes.cast(buf, ctypes.c_void_p))
        _check(_libc.syscall(seccomp, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(prog)), "seccomp")


def _reseed():
    """Each container its own random streams: the fork copied the template's."""
    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed()
        except Exception:
            pass


def _become_container(fds, pid1_fd, out_w, err_w, cwd):
    chan_fd, sync_fd = fds
    sync = socket.socket(fileno=sync_fd)
    sync.send(SNAP_MSG_RUNNER)  # the worker moves us into the container's cgroups, by our pid
    sync.close()
    chan = socket.socket(fileno=chan_fd)
    ftype, _, body = _recv_frame(chan)
    if ftype != FRAME_RESUME:
        os._exit(126)
    (nfilt,) = struct.unpack_from("<I", body)
    filt = body[4:4 + 8 * nfilt]
    env = [e for e in body[4 + 8 * nfilt:].split(b"\0") if e]
    _check(_libc.setns(pid1_fd, CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP),
           "join the container's namespaces")
    os.close(pid1_fd)
    os.chdir(cwd)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    for e in env:
        k, _, v = e.decode("utf-8", "replace").partition("=")
        os.environ[k] = v
    os.environ["GUST_SNAPSHOT"] = "restored"
    _drop_privileges(filt)
    _reseed()
    return chan


def serve(tsock):
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    cwd = os.getcwd()
    poller = select.poll()
    poller.register(tsock.fileno(), select.POLLIN)
    runners = {}   # pidfd -> (fork id, pid): forked runners, whose status we report
    inits = {}     # pidfd -> pid: their PID 1s, which we only reap

    def report(fid, kind, code, text=b""):
        send_frame(tsock, FRAME_CHILD_EXIT, fid, EXIT_BODY.pack(kind, code) + text)

    while True:
        for fd, _ in poller.poll():
            if fd in runners:
                fid, pid = runners.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                if os.WIFSIGNALED(status):
                    report(fid, FRAME_EXIT_SIGNALED, os.WTERMSIG(status))
                else:
                    report(fid, FRAME_EXIT_EXITED, os.waitstatus_to_exitcode(status))
                continue
            if fd in inits:
                pid = inits.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                os.waitpid(pid, 0)
                continue
            try:
                msg, fds, _, _ = socket.recv_fds(tsock, HEADER.size + FRAME_MAX_BODY, 4)
            except InterruptedError:
                continue
            if not msg:
                os._exit(0)
            ftype, _, _, _, fid = HEADER.unpack_from(msg)
            fds = [_high_cloexec(f) for f in fds]
            if ftype == FRAME_SHUTDOWN:
                os._exit(0)
            if ftype != FRAME_FORK or len(fds) != 3:
                for f in fds:
                    os.close(f)
                continue
            chan_fd, sync_fd, init_fd = fds
            for stream in (sys.stdout, sys.stderr):  # nothing of ours left to be written twice
                stream.flush()
            pipes = os.pipe() + os.pipe()  # out_r, out_w, err_r, err_w
            child = None
            try:
                _check(_libc.unshare(CLONE_NEWPID), "new PID namespace")
                try:
                    pid1 = os.posix_spawn(f"/proc/self/fd/{init_fd}", ["gust-init", "--mode", "snap_child"],
                                          {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                                          file_actions=[(os.POSIX_SPAWN_DUP2, chan_fd, FRAME_CHILD_FD),
                                                        (os.POSIX_SPAWN_DUP2, sync_fd, SNAP_SYNC_FD),
                                                        (os.POSIX_SPAWN_DUP2, pipes[0], SNAP_STDOUT_FD),
                                                        (os.POSIX_SPAWN_DUP2, pipes[2], SNAP_STDERR_FD)])
                    pid1_fd = os.pidfd_open(pid1)
                    pid = os.fork()
                    if pid == 0:
                        child = True
                    else:
                        runners[os.pidfd_open(pid)] = (fid, pid)
                        inits[pid1_fd] = pid1
                finally:
                    if not child:
                        # Back to our own namespace for the next fork; without it every
                        # later fork would fail, so a failure here ends the template.
                        if _libc.setns(own_pidns, CLONE_NEWPID) != 0:
                            os._exit(4)
            except OSError as e:
                report(fid, SNAP_EXIT_FORK_FAILED, e.errno or 5, str(e).encode())
            if child:
                os.close(own_pidns)
                for f in (init_fd, pipes[0], pipes[2], tsock.detach()):
                    os.close(f)
                for p in list(runners) + list(inits):
                    os.close(p)
                try:
                    return _become_container((chan_fd, sync_fd), pid1_fd, pipes[1], pipes[3], cwd)
                except BaseException as e:  # the container cannot start: say why, on its own stderr
                    sys.stderr.write(f"gust: forked container setup failed: {e}\n")
                    sys.stderr.flush()
                    os._exit(126)
            for f in (chan_fd, sync_fd, init_fd) + pipes:
                os.close(f)
            for p in list(runners) + list(inits):
                poller.register(p, select.POLLIN)
