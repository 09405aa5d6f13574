"""Helpers for the Gust integration tests: a real gustd per test, HTTP and CLI runners,
and the leftover / sanitizer checks done when a test's daemons stop."""
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, os.environ.get("GUST_BUILD", "build-asan"))

SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "ERROR: UndefinedBehaviorSanitizer")

# Inputs the echo runner example (examples/echo/echo.c) understands besides echoing.
ECHO_CRASH = b"crash"


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    for k in ("GUST_ADDR", "GUST_TOKEN", "GUST_CA_FILE"):
        env.pop(k, None)
    return env


class TlsFiles:
    """A throwaway CA and a server certificate it signed (for 127.0.0.1, ::1 and
    localhost), made with the openssl CLI: paths ca, cert, key."""

    def __init__(self, tmpdir, hosts=("127.0.0.1", "::1", "localhost")):
        d = os.path.join(str(tmpdir), "tls")
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.ca, self.ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
        self.cert, self.key = os.path.join(d, "server.pem"), os.path.join(d, "server.key")
        csr, ext = os.path.join(d, "server.csr"), os.path.join(d, "ext.cnf")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
        run("req", "-x509", *ec, "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
            "-subj", "/CN=gust test CA")
        run("req", *ec, "-keyout", self.key, "-out", csr, "-subj", "/CN=gust test server")
        sans = ",".join(("IP:" if h[0].isdigit() or ":" in h else "DNS:") + h for h in hosts)
        with open(ext, "w") as f:
            f.write(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
            "-out", self.cert, "-days", "2", "-extfile", ext)

    def context(self):
        import ssl
        return ssl.create_default_context(cafile=self.ca)


def body_type(method, path):
    """The media type gustd takes for a body on this route (src/api/routes.c)."""
    p = path.split("?")[0].rstrip("/")
    if p.endswith(("/call", "/spawn", "/generate")) or (method == "PUT" and p.startswith("/v1/blobs/")):
        return "application/octet-stream"
    if p.endswith("/map"):
        return "application/x-ndjson"
    return "application/json"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


SDK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python")


def sdk_module(tmp_path, name, text):
    """Writes text as module name under tmp_path and imports it, the SDK on the path."""
    import importlib.util
    if SDK_DIR not in sys.path:
        sys.path.insert(0, SDK_DIR)
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def wait_until(pred, timeout, interval=0.05, msg="condition"):
    """Polls pred() until it returns a truthy value (returned) or the deadline passes
    (AssertionError naming msg and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {msg}; last value: {last!r}")
        time.sleep(interval)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"response {self.status} is not JSON: {self.body[:300]!r}") from e

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def error(self):
        """The error object of an error response; asserts the documented shape."""
        j = self.json()
        assert isinstance(j, dict) and isinstance(j.get("error"), dict), f"no error object: {j}"
        e = j["error"]
        assert isinstance(e.get("code"), str) and e["code"], f"error without code: {j}"
        assert isinstance(e.get("message"), str) and e["message"], f"error without message: {j}"
        return e

    def __repr__(self):
        return f"<Resp {self.status} {self.body[:200]!r}>"


class CliResult:
    def __init__(self, args, rc, stdout, stderr):
        self.args, self.rc, self.stdout, self.stderr = args, rc, stdout, stderr

    @property
    def out(self):
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def err(self):
        return self.stderr.decode("utf-8", errors="replace")

    def json(self):
        try:
            return json.loads(self.stdout)
        except ValueError as e:
            raise AssertionError(f"`gust {' '.join(self.args)}` --json output is not JSON: {self.out[:300]!r}") from e

    def __repr__(self):
        return f"<gust {' '.join(self.args)} rc={self.rc} out={self.out[:200]!r} err={self.err[:300]!r}>"


def cgroup_mounts():
    """Mount points of every cgroup (v1 controllers and the v2/unified hierarchy)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            if parts[sep + 1] in ("cgroup", "cgroup2"):
                out.append(parts[4])
    return out


def egress_tag(cgroup_parent):
    """The 4 hex digits gustd derives from its --cgroup-parent (tag_of in
    src/worker/egress.c): its egress nftables table is "inet gust_<tag>" and the host ends
    of its containers' veth pairs are "gv<tag>-<n>". Other daemons on the host (another
    cgroup parent) have other tags, so tests look only at their own daemon's."""
    h = 2166136261
    for b in cgroup_parent.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return "%04x" % ((h ^ (h >> 16)) & 0xFFFF)


def nft_tables():
    """The host's nftables tables as "family name" ("inet gust_0fd2"); [] without nft."""
    try:
        out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [line.split(None, 1)[1].strip() for line in out.splitlines() if line.startswith("table ")]


def gust_tables():
    """Names of the host's gust_<tag> tables: every gustd's with egress up, not only ours."""
    return [t.split()[-1] for t in nft_tables() if t.split()[-1].startswith("gust_")]


# Where gustd keeps IPv4 forwarding's value from before the first egress daemon
# (FORWARD_RECORD in src/worker/egress.c); shared by every gustd on the host.
FORWARD_RECORD = "/run/gust-egress-ip-forward"


def forwarding_state():
    """(net.ipv4.ip_forward, content of FORWARD_RECORD or None): host-wide, shared with
    any other gustd."""
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        fwd = f.read().strip()
    try:
        with open(FORWARD_RECORD) as f:
            rec = f.read().strip()
    except FileNotFoundError:
        rec = None
    return fwd, rec


def assert_forwarding_restored(before):
    """For after a daemon dropped its egress table; before: forwarding_state() from before
    the test. While another gustd's gust_* table is left forwarding stays on; once none
    is, it is back to its value from before the first gustd turned it on, unrecorded."""
    now = forwarding_state()
    others = gust_tables()
    if others:
        assert now[0] == "1", f"IPv4 forwarding off while {others} need it: {before} -> {now}"
    else:
        original = before[1] if before[1] is not None else before[0]
        assert now == (original, None), f"IPv4 forwarding not restored: {before} -> {now}"


_tags_used = {egress_tag("gust")}   # the default --cgroup-parent's, and this session's


def new_cgparent():
    """A --cgroup-parent no cgroup on the host has, with an egress tag no nftables table
    on the host, no default-flags gustd and no other daemon of this session has: two
    daemons with one tag would take each other's table and links."""
    while True:
        name = "gust-it-%08x" % random.getrandbits(32)
        tag = egress_tag(name)
        busy = _tags_used | {t[len("gust_"):] for t in gust_tables()}
        if tag not in busy and not any(os.path.exists(os.path.join(m, name)) for m in cgroup_mounts()):
            _tags_used.add(tag)
            return name


class Gust:
    """One gustd data dir + cgroup parent; the daemon can be started, stopped, killed
    and restarted on the same data dir. Every run's stderr is kept for the checks.
    Everything it makes on the host carries its own names (cgroup parent, data dir, egress
    tag), so tests and checks look only at those: another gustd may run on the host."""

    def __init__(self, tmpdir, extra_args=(), name="gust", tls=None, listen_host="127.0.0.1"):
        """tls: a TlsFiles; gustd then serves HTTPS with its certificate, and http(),
        cli() and addr (for the SDK) speak HTTPS trusting its CA. listen_host: what
        gustd listens on (clients use 127.0.0.1 whatever it is)."""
        self.tmpdir = str(tmpdir)
        self.data_dir = os.path.join(self.tmpdir, f"{name}-data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.cgparent = new_cgparent()
        self.extra_args = list(extra_args)
        self.port = free_port()
        # The web listener's port: a free one unless the test names its own (the
        # default, 8480, may be another gustd's).
        self.web_port = free_port()
        self.proc = None
        self.runs = []          # (stderr path, how it ended)
        self.problems = []      # found by CLI runs etc., reported at teardown
        self.name = name
        self._images = set()
        self.tls = tls
        self.listen_host = listen_host

    # ------------------------------------------------------------ daemon
    @property
    def listen_addr(self):
        return f"{self.listen_host}:{self.port}"

    @property
    def addr(self):
        """What clients are given: HOST:PORT, or https://HOST:PORT in TLS mode."""
        return f"https://127.0.0.1:{self.port}" if self.tls else f"127.0.0.1:{self.port}"

    @property
    def base_url(self):
        return self.addr if self.tls else f"http://{self.addr}"

    def client_env(self):
        """Environment for clients of this daemon (CLI, SDK subprocesses)."""
        e = {"GUST_ADDR": self.addr}
        if self.admin_token:
            e["GUST_TOKEN"] = self.admin_token
        if self.tls:
            e["GUST_CA_FILE"] = self.tls.ca
        return e

    @property
    def egress_table(self):
        """This daemon's egress nftables table, as nft_tables() lists it."""
        return f"inet gust_{egress_tag(self.cgparent)}"

    @property
    def veth_prefix(self):
        """Prefix of the host ends of this daemon's egress veth pairs."""
        return f"gv{egress_tag(self.cgparent)}-"

    @property
    def admin_token(self):
        """The admin token gustd wrote on its first start (None before that)."""
        try:
            with open(os.path.join(self.data_dir, "admin.token")) as f:
                return f.readline().strip() or None
        except FileNotFoundError:
            return None

    def token_for(self, workspace, role, **kw):
        """A new token of role in workspace (created if missing), made with the admin token."""
        r = self.http("POST", "/v1/workspaces", json.dumps({"name": workspace}),
                      {"Content-Type": "application/json"})
        assert r.status in (201, 409), f"create workspace {workspace}: {r}"
        body = dict(workspace=workspace, role=role, **kw)
        r = self.http("POST", "/v1/tokens", json.dumps(body), {"Content-Type": "application/json"})
        assert r.status == 201, f"create token: {r}"
        return r.json()["token"]

    def host_veths(self):
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(self.veth_prefix))

    def start(self, timeout=30):
        exe = os.path.join(BUILD, "gustd")
        assert os.access(exe, os.X_OK), f"{exe} is not built"
        errpath = os.path.join(self.tmpdir, f"{self.name}-gustd-{len(self.runs)}.stderr")
        errf = open(errpath, "wb")
        args = [exe, "--data-dir", self.data_dir, "--listen", self.listen_addr,
                "--cgroup-parent", self.cgparent, "--log-level", "debug"] + self.extra_args
        if not any(a.startswith("--web-listen") for a in self.extra_args):
            args += ["--web-listen", f"127.0.0.1:{self.web_port}"]
        if self.tls:
            args += ["--tls-cert", self.tls.cert, "--tls-key", self.tls.key]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                     env=sanitizer_env())
        errf.close()
        self.runs.append({"stderr": errpath, "end": None, "rc": None})
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.runs[-1].update(end="exited", rc=rc)
                raise AssertionError(f"gustd exited with {rc} during start:\n{self.stderr_tail()}")
            try:
                r = self.http("GET", "/v1/health", timeout=2)
                if r.status == 200 and r.json().get("ok") is True:
                    # SDK calls made in this process use the last started daemon's token.
                    os.environ["GUST_TOKEN"] = self.admin_token
                    return self
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"gustd not healthy within {timeout} s:\n{self.stderr_tail()}")
            time.sleep(0.05)

    def use_for_sdk(self):
        """Points SDK calls made in this process at this daemon's token ($GUST_TOKEN).
        Module-scoped fixtures need it: they are set up before the function-scoped
        conftest fixture that does this for each test, while $GUST_TOKEN may still hold
        the token of a daemon an earlier test module started."""
        os.environ["GUST_TOKEN"] = self.admin_token
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=40):
        """SIGTERM, wait; returns the exit status. A daemon that does not stop is
        SIGKILLed and the failure recorded."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.problems.append(f"gustd did not exit within {timeout} s of SIGTERM (SIGKILLed)")
                self.runs[-1].update(end="hung", rc=self.proc.returncode)
                return self.proc.returncode
            self.runs[-1].update(end="sigterm", rc=self.proc.returncode)
        elif self.runs[-1]["end"] is None:
            self.runs[-1].update(end="exited", rc=self.proc.returncode)
        return self.proc.returncode

    def kill9(self):
        assert self.alive(), "gustd is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.runs[-1].update(end="sigkill", rc=self.proc.returncode)

    def restart(self):
        if self.alive():
            self.stop()
        return self.start()

    def stderr_text(self, run=-1):
        with open(self.runs[run]["stderr"], "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def stderr_tail(self, n=40):
        return "\n".join(self.stderr_text().splitlines()[-n:])

    # ------------------------------------------------------------ HTTP
    def http(self, method, path, body=None, headers=None, timeout=60, auto_type=True, token=None):
        """One request on a fresh connection. A body without a Content-Type gets the
        one its route takes (body_type), as gustd's clients send; auto_type=False
        sends exactly the headers given. token: None sends the admin token, "" none,
        else that token."""
        if isinstance(body, str):
            body = body.encode()
        headers = dict(headers or {})
        if auto_type and body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = body_type(method, path)
        tok = self.admin_token if token is None else token
        if tok:
            headers.setdefault("Authorization", f"Bearer {tok}")
        if self.tls:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls.context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def get_json(self, path, expect=200):
        r = self.http("GET", path)
        assert r.status == expect, f"GET {path}: {r}"
        return r.json()

    def post_json(self, path, obj, expect=200):
        r = self.http("POST", path, json.dumps(obj), {"Content-Type": "application/json"})
        assert r.status == expect, f"POST {path}: {r}"
        return r.json()

    def deploy(self, spec, expect=200):
        """spec: a dict (sent as JSON) or a str (sent as TOML)."""
        if isinstance(spec, str):
            r = self.http("POST", "/v1/deploy", spec, {"Content-Type": "application/toml"})
        else:
            r = self.http("POST", "/v1/deploy", json.dumps(spec), {"Content-Type": "application/json"})
        assert r.status == expect, f"deploy: {r}"
        return r.json() if expect == 200 else r

    def call(self, app, fn, data=b"", timeout=120, query=""):
        return self.http("POST", f"/v1/functions/{app}/{fn}/call{query}", data,
                         {"Content-Type": "application/octet-stream"}, timeout=timeout)

    def call_ok(self, app, fn, data=b"", timeout=120):
        r = self.call(app, fn, data, timeout)
        assert r.status == 200, f"call {app}.{fn}: {r}"
        return r.body

    def spawn(self, app, fn, data=b""):
        r = self.http("POST", f"/v1/functions/{app}/{fn}/spawn", data, {"Content-Type": "application/octet-stream"})
        assert r.status == 202, f"spawn {app}.{fn}: {r}"
        j = r.json()
        assert j["call_id"].startswith("fc-") and j["status"] == "pending", j
        return j["call_id"]

    def result(self, call_id, wait=0, timeout=None):
        return self.http("GET", f"/v1/calls/{call_id}?wait={wait}", timeout=timeout or wait + 60)

    def status(self, call_id):
        return self.get_json(f"/v1/calls/{call_id}/status")

    def wait_status(self, call_id, statuses, timeout=30):
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        return wait_until(lambda: (lambda s: s if s["status"] in statuses else None)(self.status(call_id)),
                          timeout, msg=f"call {call_id} status in {statuses}")

    def functions(self):
        return self.get_json("/v1/functions")["functions"]

    def function(self, app, fn):
        return self.get_json(f"/v1/functions/{app}/{fn}")

    def containers(self, app=None, fn=None):
        cs = self.get_json("/v1/containers")["containers"]
        return [c for c in cs if (app is None or c["app"] == app) and (fn is None or c["function"] == fn)]

    def wait_idle(self, app, fn, n, timeout=30):
        return wait_until(lambda: len([c for c in self.containers(app, fn) if c["state"] == "idle"]) >= n,
                          timeout, msg=f"{n} idle containers of {app}.{fn}")

    # ------------------------------------------------------------ CLI
    def cli(self, *args, input=None, timeout=60, addr=None, env=None):
        exe = os.path.join(BUILD, "gust")
        assert os.access(exe, os.X_OK), f"{exe} is not built"
        a = ["--addr", addr or self.addr] + [str(x) for x in args]
        e = sanitizer_env()
        e.update(self.client_env())
        e["GUST_ADDR"] = addr or self.addr
        if env:
            e.update(env)
        if isinstance(input, str):
            input = input.encode()
        p = subprocess.run([exe] + a, input=input if input is not None else b"", capture_output=True,
                           timeout=timeout, env=e)
        res = CliResult(a, p.returncode, p.stdout, p.stderr)
        for pat in SANITIZER_PATTERNS:
            if pat in res.err:
                self.problems.append(f"sanitizer report from `gust {' '.join(a)}`:\n{res.err[-3000:]}")
                break
        return res

    def cli_popen(self, *args, env=None):
        exe = os.path.join(BUILD, "gust")
        e = sanitizer_env()
        e.update(self.client_env())
        e.update(env or {})
        return subprocess.Popen([exe, "--addr", self.addr] + [str(x) for x in args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=e)

    def add_image(self, name, rootfs):
        if name in self._images:
            return
        r = self.cli("image", "add", name, rootfs)
        assert r.rc == 0, f"gust image add failed: {r}"
        imgs = self.get_json("/v1/images")["images"]
        assert any(i["name"] == name for i in imgs), imgs
        self._images.add(name)

    def upload_tree(self, path):
        """A local directory, or a file (a tree holding it alone), uploaded the way
        the clients do (POST /v1/blobs/missing, PUT /v1/blobs, POST /v1/mounts, through
        the SDK); its tree id. gustd never opens a host path a client names."""
        if SDK_DIR not in sys.path:
            sys.path.insert(0, SDK_DIR)
        from gust import _mount
        items = [("", path)] if os.path.isdir(path) else [(os.path.basename(path), path)]
        return _mount.upload(self.addr, items, exact=True)

    # ------------------------------------------------------------ leftovers
    def leftovers(self):
        """What this daemon's containers left on the host: cgroups below the parent,
        processes in them or rooted in the data dir, mounts of the data dir, its egress
        nftables table and veth host ends."""
        found = []
        for m in cgroup_mounts():
            top = os.path.join(m, self.cgparent)
            if not os.path.isdir(top):
                continue
            for root, dirs, _files in os.walk(top):
                for d in dirs:
                    found.append(f"cgroup {os.path.join(root, d)}")
                try:
                    with open(os.path.join(root, "cgroup.procs")) as f:
                        pids = f.read().split()
                    if pids:
                        found.append(f"processes {pids} in cgroup {root}")
                except OSError:
                    pass
        me = os.getpid()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == me:
                continue
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    cg = f.read()
                inside = any(line.split(":", 2)[2].startswith(f"/{self.cgparent}/") or
                             line.split(":", 2)[2] == f"/{self.cgparent}" for line in cg.splitlines())
                rootl = os.readlink(f"/proc/{pid}/root")
                if inside or rootl.startswith(self.data_dir):
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"process {pid} ({cmd.strip()}) root={rootl}")
            except (OSError, IndexError):
                continue
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if self.data_dir in line:
                    found.append(f"mount {line.strip()}")
        if self.egress_table in nft_tables():
            found.append(f"nftables table {self.egress_table}")
        found += [f"interface {n}" for n in self.host_veths()]
        return found

    def cleanup_host(self):
        """Best effort: remove what leftovers() found so later tests start clean."""
        with open("/proc/self/mountinfo") as f:
            mps = [line.split()[4] for line in f if self.data_dir in line]
        for mp in sorted(mps, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for m in cgroup_mounts():
            top = os.path.join(m, self.cgparent)
            if not os.path.isdir(top):
                continue
            for root, _dirs, _files in os.walk(top, topdown=False):
                try:
                    with open(os.path.join(root, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            try:
                                os.kill(int(pid), signal.SIGKILL)
                            except OSError:
                                pass
                except OSError:
                    pass
            for root, _dirs, _files in os.walk(top, topdown=False):
                for _ in range(20):
                    try:
                        os.rmdir(root)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)
        if self.egress_table in nft_tables():
            subprocess.run(["nft", "delete", "table", *self.egress_table.split()], capture_output=True)
        for n in self.host_veths():
            subprocess.run(["ip", "link", "del", n], capture_output=True)

    def check_after_stop(self):
        """Stops the daemon if it runs and returns a list of problems (empty = clean)."""
        problems = list(self.problems)
        if self.alive():
            rc = self.stop()
            if rc != 0 and self.runs[-1]["end"] == "sigterm":
                problems.append(f"gustd exited with status {rc} after SIGTERM:\n{self.stderr_tail()}")
        for i, run in enumerate(self.runs):
            text = self.stderr_text(i)
            for pat in SANITIZER_PATTERNS:
                if pat in text:
                    idx = text.index(pat)
                    problems.append(f"gustd run {i} ({run['end']}): sanitizer report '{pat}' in "
                                    f"{run['stderr']}:\n{text[max(0, idx - 500):idx + 4000]}")
                    break
        if self.runs:
            left = []
            deadline = time.monotonic() + 3
            while True:
                left = self.leftovers()
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if left:
                problems.append("left behind after gustd stopped:\n  " + "\n  ".join(left))
        self.cleanup_host()
        return problems


def make_rootfs(dest, extra_files=None):
    """A busybox rootfs: /bin/busybox plus one symlink per applet, and the usual dirs."""
    bb = "/bin/busybox"
    assert os.path.exists(bb), "busybox-static is not installed (/bin/busybox)"
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "usr/local/bin", "root"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(bb, os.path.join(dest, "bin/busybox"))
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    assert "sh" in applets and "cat" in applets
    for a in applets:
        p = os.path.join(dest, "bin", a)
        if a != "busybox" and not os.path.lexists(p):
            os.symlink("busybox", p)
    with open(os.path.join(dest, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    for src, rel in (extra_files or {}).items():
        shutil.copy2(src, os.path.join(dest, rel.lstrip("/")))
    return dest


def fn_spec(app, name, command, **kw):
    """A one-function app spec. kw: any function field (mode, image, timeout, resources,
    scaling, retries, env...)."""
    f = {"name": name, "kind": "exec", "command": command}
    f.update(kw)
    return {"app": app, "functions": [f]}


def echo_fn(app="ech", name="echo", **kw):
    """Spec of a runner-mode function running the echo example (image "echo")."""
    kw.setdefault("scaling", {"scaledown_window": 60})
    command = kw.pop("command", ["/usr/local/bin/gust-echo"])
    return fn_spec(app, name, command, mode="runner", image="echo", **kw)


def map_lines(body):
    """Parses an NDJSON map response into (result lines, done line)."""
    lines = [json.loads(x) for x in body.splitlines() if x.strip()]
    assert lines and lines[-1].get("done") is True, f"map stream without a final done line: {lines[-3:]}"
    return lines[:-1], lines[-1]


class Bg(threading.Thread):
    """Runs fn in a thread; .get() re-raises its exception or returns its value."""

    def __init__(self, fn, *args, **kw):
        super().__init__(daemon=True)
        self.fn, self.args, self.kw = fn, args, kw
        self.value = self.exc = None
        self.start()

    def run(self):
        try:
            self.value = self.fn(*self.args, **self.kw)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.exc = e

    def get(self, timeout=120):
        self.join(timeout)
        assert not self.is_alive(), f"background task still running after {timeout} s"
        if self.exc:
            raise self.exc
        return self.value


def raw_exchange(port, data, read_timeout=2, close_after_send=False):
    """Sends raw bytes on a new TCP connection; returns what came back: one complete
    response (headers + Content-Length body), or whatever arrived before the server
    closed the connection or read_timeout passed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may answer and close before reading everything
        if close_after_send:
            return b""
        out = b""
        while True:
            head, sep, rest = out.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def status_of_raw(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else None


def read_until(p, needle, timeout):
    """Reads p's stdout until needle shows (or it ends, or timeout); returns what came."""
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        rl, _, _ = select.select([p.stdout], [], [], 0.2)
        if rl:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
    return buf
