#!/usr/bin/env python3
"""Remote-access benchmarks of pmdaemond (see bench/README.md, "Remote"):

  rest     `GET /v1/processes` with 50 apps over loopback, through the TCP
           listener (`--listen`), with wrk at a fixed concurrency: requests
           per second and p99 latency (and `GET /healthz`, no token, no RPC,
           as the floor of the HTTP stack). Needs wrk (apt-get install wrk).
  grpc     ListProcesses with 50 apps, over TCP (h2c, bearer token) vs over
           the Unix socket: median and p99 of N sequential calls from one
           grpcio channel each. Needs grpcio and grpcio-tools
           (pip install grpcio grpcio-tools).
  rss      the daemon's idle VmRSS and RssAnon (no app, 1 s after it
           answers) with the listener off and on, each on a fresh daemon;
           and the RSS of the 50-app daemon after the REST load.
  latency  write-to-receipt latency of a log line: `helper stamped` writes
           lines carrying their CLOCK_REALTIME write time (steady, one every
           5 ms for 10 s, then a burst back to back); a follower of
           StreamLogs subtracts it from its own clock at receipt, over a
           WebSocket, over NDJSON, and over gRPC on TCP (grpcio); median,
           p99 and max per phase. Needs rustc (bench/helper.rs); the gRPC
           client needs grpcio and grpcio-tools.

  sdk      the Python client (sdk/python, `pmdaemon.connect()`): its
           `list()` (ListProcesses) round trip with 50 apps over the Unix
           socket and over TCP with a token (median and p99 of N calls),
           and the lines per second its `logs(follow=True)` iterator
           receives from an app that floods its stdout, with the lines the
           daemon reports it missed. Needs the client and its dependencies
           importable (run with target/sdk-venv/bin/python, made by the
           test suite, or `pip install ./sdk/python`) and rustc.

It reuses run.py's helpers (build, daemon spawn and cleanup) and never
fails a build: it prints what it measured.
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py)


def token_of(home):
    with open(os.path.join(home, "token")) as f:
        return f.read().strip()


def start_apps(b, home, count):
    for i in range(count):
        b.pmd(home, "start", "sleep", "--name", f"s{i:02}", "--", "100000")
    online = sum(1 for a in b.list_json(home) if a["status"] == "online")
    if online != count:
        raise RuntimeError(f"only {online} of {count} apps online")


def wrk(url, token, concurrency, duration):
    """Requests/s and p99 (ms) of `wrk --latency` on `url`; one thread (two
    cores here: the daemon needs the other)."""
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", url]
    if token:
        argv[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk got {errors.group(1)} error answers from {url}:\n{out}")
    return rps, float(p99.group(1)) * scale


def rest(b, home, port, concurrency, duration):
    if shutil.which("wrk") is None:
        return {"skipped": "needs wrk (apt-get install wrk)"}
    token = token_of(home)
    base = f"http://127.0.0.1:{port}"
    wrk(f"{base}/v1/processes", token, concurrency, 1)  # warm up
    rps, p99 = wrk(f"{base}/v1/processes", token, concurrency, duration)
    floor_rps, floor_p99 = wrk(f"{base}/healthz", None, concurrency, duration)
    body = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {token}", f"{base}/v1/processes"],
                          check=True, capture_output=True).stdout
    return {
        f"GET /v1/processes, 50 apps ({len(body)} bytes), {concurrency} connections, {duration} s":
            f"{rps:,.0f} req/s, p99 {p99:.2f} ms",
        "GET /healthz (floor: no token, no RPC)": f"{floor_rps:,.0f} req/s, p99 {floor_p99:.2f} ms",
    }


def grpc_stubs(root):
    try:
        import grpc  # noqa: F401
        from grpc_tools import protoc
    except ImportError:
        return None
    stubs = os.path.join(root, "stubs")
    os.makedirs(stubs, exist_ok=True)
    proto = os.path.join(run.REPO, "proto")
    rc = protoc.main(["protoc", f"-I{proto}", f"-I{os.path.dirname(protoc.__file__)}/_proto",
                      f"--python_out={stubs}", f"--grpc_python_out={stubs}",
                      "pmdaemon/v1/process_manager.proto", "pmdaemon/v1/access.proto",
                      "google/api/annotations.proto", "google/api/http.proto"])
    if rc != 0:
        raise RuntimeError("protoc failed on proto/")
    # A regular package, so that it wins over the Python client (also
    # `pmdaemon`) when that is installed.
    for package in ("pmdaemon", os.path.join("pmdaemon", "v1")):
        open(os.path.join(stubs, package, "__init__.py"), "a").close()
    sys.path.insert(0, stubs)
    return stubs


def grpc_list(b, root, home, port, calls):
    if grpc_stubs(root) is None:
        return {"skipped": "needs grpcio and grpcio-tools: pip install grpcio grpcio-tools"}
    import grpc
    from pmdaemon.v1 import process_manager_pb2 as pb
    from pmdaemon.v1 import process_manager_pb2_grpc as rpc

    def timed(target, metadata):
        channel = grpc.insecure_channel(target, options=[("grpc.default_authority", "localhost")])
        stub = rpc.ProcessManagerStub(channel)
        for _ in range(20):  # connect, warm up
            stub.ListProcesses(pb.ListProcessesRequest(), metadata=metadata)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            reply = stub.ListProcesses(pb.ListProcessesRequest(), metadata=metadata)
            times.append(time.perf_counter_ns() - t0)
        channel.close()
        assert len(reply.processes) == 50, len(reply.processes)
        times.sort()
        return statistics.median(times) / 1e3, times[int(len(times) * 0.99)] / 1e3

    unix = timed("unix://" + os.path.join(home, "pmd.sock"), ())
    tcp = timed(f"127.0.0.1:{port}", (("authorization", f"Bearer {token_of(home)}"),))
    return {
        f"ListProcesses, 50 apps, Unix socket (median / p99 of {calls})":
            f"{unix[0]:.0f} / {unix[1]:.0f} µs",
        f"ListProcesses, 50 apps, TCP h2c + token (median / p99 of {calls})":
            f"{tcp[0]:.0f} / {tcp[1]:.0f} µs",
    }


def rss_anon_kib(pid):
    """RssAnon: the daemon's own memory, without the pages of its binary
    (RssFile, shared with the page cache, grows with the binary's size)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError(f"no RssAnon for {pid}")


def idle_rss(b, root, port):
    """(VmRSS, RssAnon) in KiB of a fresh daemon 1 s after it answers,
    listener off and on; medians of 3 daemons."""
    out = {}
    for label, args in (("off", ()), ("on", ("--listen", f"127.0.0.1:{port}"))):
        samples = []
        for i in range(3):
            home = os.path.join(root, f"rss-{label}-{i}")
            daemon = b.spawn_daemon(home, *args)
            b.wait_ping(home, daemon)
            time.sleep(1.0)
            samples.append((run.vm_rss_kib(daemon.pid), rss_anon_kib(daemon.pid)))
            b.stop_daemon(daemon)
        out[label] = (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))
    return out


def compile_helper(root):
    helper = os.path.join(root, "helper")
    if not os.path.exists(helper):
        subprocess.run(["rustc", "-O", "--edition", "2021", os.path.join(run.REPO, "bench", "helper.rs"),
                        "-o", helper], check=True)
    return helper


def sdk_import():
    """The Python client from this checkout, or None when its dependencies
    are missing."""
    # The grpc part's raw stubs are a `pmdaemon` namespace package too:
    # forget them, and put the client first on the path.
    for name in [m for m in sys.modules if m == "pmdaemon" or m.startswith("pmdaemon.")]:
        del sys.modules[name]
    sys.path.insert(0, os.path.join(run.REPO, "sdk", "python", "src"))
    try:
        import pmdaemon  # noqa: F401
    except ImportError:
        return None
    return pmdaemon


def sdk_list(pmdaemon, home, port, calls):
    """Median and p99 (µs) of `Client.list()` with the 50 apps, over the
    socket and over TCP (h2c + token): the client's whole call, protobuf
    decoding of 50 ProcessInfo included."""
    def timed(client):
        with client:
            for _ in range(20):  # connect, warm up
                client.list()
            times = []
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                apps = client.list()
                times.append(time.perf_counter_ns() - t0)
        assert len(apps) == 50, len(apps)
        times.sort()
        return statistics.median(times) / 1e3, times[int(len(times) * 0.99)] / 1e3

    unix = timed(pmdaemon.connect(home=home))
    tcp = timed(pmdaemon.connect(f"http://127.0.0.1:{port}", token=token_of(home)))
    return {
        f"Python client list(), 50 apps, Unix socket (median / p99 of {calls})":
            f"{unix[0]:.0f} / {unix[1]:.0f} µs",
        f"Python client list(), 50 apps, TCP h2c + token (median / p99 of {calls})":
            f"{tcp[0]:.0f} / {tcp[1]:.0f} µs",
    }


def sdk_flood(pmdaemon, b, home, helper, window):
    """Lines per second the client's log iterator receives while an app
    writes as fast as it can (`helper stamped` with no period: one write(2)
    per line, far above what a Python reader decodes), over the socket,
    counted for `window` seconds from the first line; plus what the daemon
    said this reader missed meanwhile (the 1024-line broadcast overflows:
    the app and the daemon never wait for the reader)."""
    go = os.path.join(home, "sdk-flood-go")
    b.pmd(home, "start", helper, "--name", "sdk-flood", "--log-max-size", "64M", "--no-autorestart",
          "--", "stamped", "100000000", "0", "0", go)
    with pmdaemon.connect(home=home) as client:
        stream = client.logs("sdk-flood", follow=True, lines=1)
        try:
            for line in stream:  # subscribed once READY (or a later line) arrives
                if line.data.startswith(b"READY"):
                    break
            open(go, "w").close()
            received, first, missed_before = 0, None, 0
            for line in stream:
                if first is None:
                    first, missed_before = time.perf_counter(), stream.missed
                received += 1
                if received % 1024 == 0 and time.perf_counter() - first >= window:
                    break
            elapsed = time.perf_counter() - first
            missed = stream.missed - missed_before
        finally:
            stream.cancel()
    b.pmd(home, "delete", "sdk-flood")
    return {
        f"Python client logs(follow=True), a flooding app, socket ({elapsed:.1f} s)":
            f"{received / elapsed:,.0f} lines/s received, {missed / elapsed:,.0f} lines/s missed",
    }


def ws_open(port, path, token):
    """A WebSocket client over a plain socket (the standard library has
    none): the handshake, offering the token as a subprotocol; returns the
    socket and the bytes read past the handshake's answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Protocol: pmdaemon.v1, bearer.{token}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        if not data:
            raise RuntimeError("WebSocket handshake: connection closed")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"WebSocket handshake refused: {head.decode(errors='replace')}")
    return sock, rest


def ws_messages(sock, buf):
    """(receipt ns, payload) of each text message the server sends
    (unmasked, unfragmented: what the daemon sends), until a close frame.
    The receipt time is taken when the recv() that completed the frame
    returned."""
    stamp = time.time_ns()
    while True:
        while True:
            if len(buf) < 2:
                break
            opcode, length, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    break
                length, at = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + length:
                break
            payload, buf = buf[at:at + length], buf[at + length:]
            if opcode == 0x8:
                return
            if opcode == 0x1:
                yield stamp, payload
        data = sock.recv(1 << 16)
        stamp = time.time_ns()
        if not data:
            return
        buf += data


def log_texts(response):
    """The text of each line of a StreamLogsResponse in proto3 JSON."""
    return [base64.b64decode(line["data"]).decode(errors="replace").rstrip("\n")
            for line in response.get("lines", [])]


class Collector:
    """Receipt minus write time of each `T` line, from READY (which starts
    the app's lines) to END."""

    def __init__(self, go):
        self.go = go
        self.ready = False
        self.samples = {"steady": [], "burst": []}
        self.missed = 0

    def take(self, recv_ns, texts, missed=0):
        """False once END came."""
        self.missed += int(missed or 0)
        for text in texts:
            if text == "READY" and not self.ready:
                self.ready = True
                open(self.go, "w").close()  # the app starts writing now
            elif text.startswith("T "):
                _, _, write_ns, phase = text.split()
                self.samples[phase].append((recv_ns - int(write_ns)) / 1e3)
            elif text == "END":
                return False
        return True


def follow_ws(port, token, target, collector):
    sock, rest = ws_open(port, f"/v1/logs?target={target}&follow=true&lines=1", token)
    try:
        for recv_ns, payload in ws_messages(sock, rest):
            message = json.loads(payload)
            if "error" in message:
                raise RuntimeError(f"WebSocket: {message}")
            if not collector.take(recv_ns, log_texts(message), message.get("missedLines")):
                return
    finally:
        sock.close()


def follow_ndjson(port, token, target, collector):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", f"/v1/logs?target={target}&follow=true&lines=1",
                 headers={"Authorization": f"Bearer {token}"})
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"NDJSON: HTTP {response.status}: {response.read()!r}")
    try:
        while True:
            line = response.readline()
            recv_ns = time.time_ns()
            if not line:
                return
            message = json.loads(line)
            if "error" in message:
                raise RuntimeError(f"NDJSON: {message}")
            result = message["result"]
            if not collector.take(recv_ns, log_texts(result), result.get("missedLines")):
                return
    finally:
        conn.close()


def follow_grpc(port, token, target, collector):
    import grpc
    from pmdaemon.v1 import process_manager_pb2 as pb
    from pmdaemon.v1 import process_manager_pb2_grpc as rpc
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = rpc.ProcessManagerStub(channel)
    stream = stub.StreamLogs(pb.StreamLogsRequest(target=target, follow=True, lines=1),
                             metadata=(("authorization", f"Bearer {token}"),))
    try:
        for response in stream:
            recv_ns = time.time_ns()
            texts = [line.data.decode(errors="replace").rstrip("\n") for line in response.lines]
            if not collector.take(recv_ns, texts, response.missed_lines):
                return
    finally:
        stream.cancel()
        channel.close()


def latency(b, root, home, port, helper, count, period_ms, burst):
    """Write-to-receipt latency of log lines over each transport, one after
    the other, each with a fresh run of `helper stamped`."""
    token = token_of(home)
    clients = [("WebSocket", follow_ws), ("NDJSON", follow_ndjson)]
    if grpc_stubs(root) is not None:
        clients.append(("gRPC StreamLogs, TCP", follow_grpc))
    results = {}
    for label, follow in clients:
        go = os.path.join(root, f"go-{len(results)}")
        target = f"lat{len(results)}"
        b.pmd(home, "start", helper, "--name", target, "--no-autorestart", "--",
              "stamped", str(count), str(int(period_ms * 1000)), str(burst), go)
        collector = Collector(go)
        follow(port, token, target, collector)
        b.pmd(home, "delete", target)
        for phase, samples in collector.samples.items():
            expected = count if phase == "steady" else burst
            samples.sort()
            if not samples:
                results[f"{label}, {phase}"] = "no line received"
                continue
            got = (f"median {statistics.median(samples):,.0f} µs, p99 {samples[int(len(samples) * 0.99)]:,.0f} µs, "
                   f"max {samples[-1]:,.0f} µs")
            if len(samples) != expected or collector.missed:
                got += f" ({len(samples)} of {expected} lines; missed {collector.missed})"
            results[f"{label}, {phase}"] = got
    heading = (f"write-to-receipt latency, {count} lines every {period_ms:g} ms (steady) "
               f"then {burst} back to back (burst)")
    return {heading: ""} | {f"  {k}": v for k, v in results.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--calls", type=int, default=2000, help="ListProcesses calls per transport")
    parser.add_argument("--only", default="rss,rest,grpc,latency,sdk",
                        help="comma-separated parts to run (default: rss,rest,grpc,latency,sdk)")
    parser.add_argument("--window", type=float, default=5.0,
                        help="sdk: seconds the flooded log stream is counted (default 5)")
    parser.add_argument("--lines", type=int, default=2000, help="latency: steady lines (default 2000)")
    parser.add_argument("--period-ms", type=float, default=5.0, help="latency: ms between steady lines (default 5)")
    parser.add_argument("--burst", type=int, default=1000,
                        help="latency: lines of the burst (default 1000, within the daemon's 1024-line log broadcast)")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    unknown = parts - {"rss", "rest", "grpc", "latency", "sdk"}
    if unknown:
        parser.error(f"--only: unknown parts {sorted(unknown)}")

    bins = run.build(args.no_build)
    root = tempfile.mkdtemp(prefix="pmd-remote-")
    b = run.Bench(bins, root)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results = {}
    try:
        port = run.free_port_block(1)
        if "rss" in parts:
            run.log("idle RSS, listener off and on")
            rss = idle_rss(b, root, port)
        if "latency" in parts:
            helper = compile_helper(root)
            home = os.path.join(root, "latency")
            daemon = b.spawn_daemon(home, "--listen", f"127.0.0.1:{port}")
            b.wait_ping(home, daemon)
            run.log("log line latency: WebSocket, NDJSON, gRPC")
            results.update(latency(b, root, home, port, helper, args.lines, args.period_ms, args.burst))
            b.stop_daemon(daemon)
        if parts & {"rest", "grpc", "rss", "sdk"}:
            home = os.path.join(root, "main")
            daemon = b.spawn_daemon(home, "--listen", f"127.0.0.1:{port}")
            b.wait_ping(home, daemon)
            run.log("50 apps")
            start_apps(b, home, 50)
        if "rest" in parts:
            run.log(f"wrk, {args.concurrency} connections")
            results.update(rest(b, home, port, args.concurrency, args.duration))
            time.sleep(6.0)  # the daemon trims its allocator every 5 s
            results["daemon RSS, 50 apps, listener on, 6 s after the REST load"] = \
                f"{run.vm_rss_kib(daemon.pid) / 1024:.2f} MiB"
        if "grpc" in parts:
            run.log(f"ListProcesses x{args.calls}, socket and TCP")
            results.update(grpc_list(b, root, home, port, args.calls))
        if "sdk" in parts:
            pmdaemon = sdk_import()
            if pmdaemon is None:
                results["Python client"] = ("skipped: needs the client's dependencies (run with "
                                            "target/sdk-venv/bin/python or pip install ./sdk/python)")
            else:
                run.log(f"Python client: list() x{args.calls}, socket and TCP; a flooded log stream")
                results.update(sdk_list(pmdaemon, home, port, args.calls))
                results.update(sdk_flood(pmdaemon, b, home, compile_helper(root), args.window))
        if "rss" in parts:
            results["daemon idle VmRSS, listener off / on (median of 3 fresh daemons)"] = \
                f"{rss['off'][0] / 1024:.2f} / {rss['on'][0] / 1024:.2f} MiB"
            results["of which RssAnon (the rest is the binary's pages), off / on"] = \
                f"{rss['off'][1] / 1024:.2f} / {rss['on'][1] / 1024:.2f} MiB"
    except KeyboardInterrupt as e:
        run.log(f"interrupted ({e}); cleaning up")
        sys.exit(130)
    finally:
        b.cleanup()
    print("## remote")
    for key, value in results.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
