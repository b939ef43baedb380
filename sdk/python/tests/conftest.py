"""A real `pmdaemond` for each test, on its own temporary PMDAEMON_HOME.

The binaries come from `PMDAEMON_TEST_PMDAEMOND` / `PMDAEMON_TEST_PMD`
(the e2e test `sdk_python` sets them), else from this repository's
`target/*/debug/`. Each daemon is stopped by its pid at the end of its test,
failed or not (SIGTERM, then SIGKILL), and then every process that carries
its home in its environment (its apps) is SIGKILLed, as the Rust harness
does. `PMDAEMON_TEST_TIMEOUT_SCALE` multiplies every deadline.
"""

import glob
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import pmdaemon

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCALE = float(os.environ.get("PMDAEMON_TEST_TIMEOUT_SCALE") or 1)
WAIT = 30.0 * SCALE


def _binary(env, name):
    path = os.environ.get(env)
    if not path:
        found = sorted(glob.glob(os.path.join(REPO, "target", "*", "debug", name)))
        found += [os.path.join(REPO, "target", "debug", name)]
        path = next((p for p in found if os.path.isfile(p)), found[0])
    if not os.path.isfile(path):
        pytest.exit(f"{path} is missing: run `cargo build --workspace` first (or set {env})", returncode=2)
    return path


PMDAEMOND = _binary("PMDAEMON_TEST_PMDAEMOND", "pmdaemond")
PMD = _binary("PMDAEMON_TEST_PMD", "pmd")


# A block of ports the e2e test reserved for this run (below the kernel's
# ephemeral range, away from other tests' blocks); else any free port.
_PORTS = iter(range(int(os.environ.get("PMDAEMON_TEST_PORT_BASE") or 0),
                    int(os.environ.get("PMDAEMON_TEST_PORT_BASE") or 0) + int(os.environ.get("PMDAEMON_TEST_PORT_COUNT") or 0)))


def free_port():
    for port in _PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout=WAIT, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    def __init__(self, root, listen_port=None, args=()):
        self.home = os.path.join(root, "home")
        self.work = os.path.join(root, "work")
        os.makedirs(self.work)
        self.port = listen_port
        self.stderr_path = os.path.join(root, "pmdaemond.stderr")
        args_extra, args = args, [PMDAEMOND]
        if listen_port is not None:
            args += ["--listen", f"127.0.0.1:{listen_port}"]
        args += list(args_extra)
        env = dict(os.environ, PMDAEMON_HOME=self.home, NO_COLOR="1")
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                args, env=env, cwd=self.work, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
        try:
            wait_for("the daemon to answer Ping on its socket", self._answers)
        except BaseException:
            self.stop()
            raise

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"pmdaemond exited with {self.process.returncode}:\n{self.stderr()}")
        if not os.path.exists(os.path.join(self.home, "pmd.sock")):
            return False
        try:
            with pmdaemon.connect(home=self.home) as client:
                client.ping()
            if self.port is not None:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            return True
        except (pmdaemon.PmdaemonError, OSError):
            return False

    def stderr(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    @property
    def admin_token(self):
        with open(os.path.join(self.home, "token"), encoding="utf-8") as f:
            return f.read().strip()

    def pmd(self, *args):
        """Runs the real `pmd` on this home; its stdout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PMD_")}
        env.update(PMDAEMON_HOME=self.home, NO_COLOR="1")
        out = subprocess.run([PMD, *args], env=env, cwd=self.work, capture_output=True, text=True, timeout=WAIT)
        assert out.returncode == 0, f"pmd {' '.join(args)}: {out.returncode}\n{out.stdout}{out.stderr}"
        return out.stdout

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Whatever the daemon left behind: every process with this home.
        marker = f"PMDAEMON_HOME={self.home}".encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(str(tmp_path), listen_port=free_port())
    yield d
    d.stop()


@pytest.fixture(params=["unix", "tcp"])
def client(request, daemon):
    """An admin client of `daemon`, over its socket or over TCP (h2c) with
    the admin token."""
    if request.param == "unix":
        c = pmdaemon.connect(home=daemon.home)
    else:
        c = pmdaemon.connect(host=f"http://127.0.0.1:{daemon.port}", token=daemon.admin_token)
    with c:
        yield c


def pytest_report_header(config):
    return [f"pmdaemond: {PMDAEMOND}", f"python: {sys.version.split()[0]}"]
