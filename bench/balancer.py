#!/usr/bin/env python3
"""The load balancer (`pmd start APP -i N --port P --balance`) under HTTP
load, with wrk at a fixed concurrency on loopback against bench/hello.js (a
minimal Node HTTP server on $PORT). See bench/README.md, "Load balancer".

Steady load (wrk -t2 -c16 --latency, keep-alive), each scenario once per
round, the rounds interleaved so that the machine's drift spreads evenly:

  direct     one instance started by pmd without --balance, wrk on its port
  bal1       through the balancer to one instance
  bal2       through the balancer to two instances
  pm2        (--pm2) PM2's cluster mode, two workers on one port
  haproxy    (--haproxy) haproxy in TCP mode in front of one instance: what
             any user-space TCP relay costs on this machine

and direct, bal2 and pm2 again with `Connection: close` (a connection per
request: the front handles every connection, not 16).

Then, per round, failed requests while the 2-instance app is reloaded (and
restarted) three times under load: `pmd reload`, `pmd restart`, and
`pmd reload` with `Connection: close`; the same with `pm2` when --pm2.

The daemon's (and PM2's, haproxy's) CPU time per request comes from
/proc/PID/stat (utime + stime) and the threads' schedstat before and after
each steady run, divided by the requests wrk completed.

It reuses run.py's helpers (build, daemon spawn and cleanup) and never
fails a build: it prints what it measured and whether the targets were met.
"""

import argparse
import http.client
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py)

BENCH = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(BENCH, "hello.js")
PM2_DIR = os.path.join(BENCH, "pm2")
PM2 = os.path.join(PM2_DIR, "node_modules", ".bin", "pm2")

# The load: two wrk threads, 16 connections, on the same 2 cores as
# everything else (the figures it quotes for PM2 were taken that way).
THREADS = 2
CONNECTIONS = 16
# Seconds of load before the first reload, and after each one: the first
# lets wrk's connections settle, the rest let a slow drain or a late failure
# land inside the measured run.
LOAD_BEFORE_S = 2.0
LOAD_AFTER_S = 2.0
OPS = 3  # reloads (or restarts) per run, as in the PM2 figures

# Targets from the issue.
MIN_SHARE_OF_DIRECT = 0.85
MAX_ADDED_P50_MS = 0.2
# PM2's cluster mode, 2 workers, wrk -t2 -c16 on 2 cores, from the issue:
# used for the 2-instance target when PM2 is not measured here (--pm2).
PM2_REFERENCE_RPS = 19_700


# --------------------------------------------------------------------------
# wrk


def wrk_argv(url, duration_s, close):
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--latency", url]
    if close:
        # Each request on a new connection: the case where the front (the
        # balancer, PM2's master) handles every connection, not 16.
        argv[1:1] = ["-H", "Connection: close"]
    return argv


def to_ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]


def parse_wrk(out):
    """wrk's summary as a dict: rps, p50 and p99 (ms), requests, the socket
    errors by kind and non-2xx/3xx answers (absent lines are zeros)."""
    def latency(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        return to_ms(*m.groups()) if m else None

    errors = dict(connect=0, read=0, write=0, timeout=0)
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors = dict(zip(errors, map(int, m.groups())))
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1)),
        "p50": latency(50),
        "p99": latency(99),
        "status": int(status.group(1)) if status else 0,
        **errors,
    }
    # A failed request: the connection broke under it (wrk reconnects and
    # goes on) or the answer was not 2xx/3xx. wrk's `timeout` (no answer
    # within 2 s; counted again at each check while it waits) is slowness,
    # reported on its own.
    result["failed"] = result["connect"] + result["read"] + result["write"] + result["status"]
    return result


def run_wrk(url, duration_s, close=False):
    out = subprocess.run(wrk_argv(url, duration_s, close), check=True,
                         capture_output=True, text=True).stdout
    return parse_wrk(out)


def children_cpu_s():
    """CPU time of this script's waited-for children: wrk's share."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------
# processes


def proc_cpu_ns(pids):
    """utime + stime of `pids` (ticks, in ns) and their live threads'
    schedstat (ns): the second is finer, the first also counts threads that
    exited. A pid that is gone counts 0."""
    ticks = sched = 0
    for pid in pids:
        try:
            ticks += int(run.cpu_time_ms(pid) * 1e6)
            sched += run.threads_cpu_ns(pid)
        except OSError:
            pass
    return ticks, sched


def free_ports(count):
    """`count` consecutive free ports below 20000: the balancer's default
    private range, auto:20000-29999, may not hold a public port. The start
    depends on our pid, so that concurrent runs rarely meet."""
    low, span = 10_000, (20_000 - 10_000) // 32
    for step in range(span):
        base = low + ((os.getpid() * 7919 + step) % span) * 32
        if all(run.port_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports between 10000 and 20000")


def http_ok(port):
    """A GET on 127.0.0.1:port answered 200."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


class Pmd:
    """A pmdaemond on its own home, with the bench's apps on it."""

    def __init__(self, b, home):
        self.b, self.home = b, home
        self.daemon = b.spawn_daemon(home)
        b.wait_ping(home, self.daemon)

    def __call__(self, *args, **kw):
        try:
            return self.b.pmd(self.home, *args, **kw)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"pmd {' '.join(args)}: {e.stderr.decode(errors='replace').strip()}") from None

    def apps(self, name):
        return [a for a in self.b.list_json(self.home) if a["name"] == name]

    def pids(self, name):
        return [a["pid"] for a in self.apps(name) if a.get("pid")]

    def ready(self, name, instances, port, balanced):
        """Every instance online (and, balanced, in its pool) and the port
        answering."""
        apps = self.apps(name)
        if len(apps) != instances or any(a["status"] != "online" for a in apps):
            return False
        if balanced and not all((a.get("balancer") or {}).get("in_pool") for a in apps):
            return False
        return http_ok(port)

    def start(self, name, port, instances, balanced):
        args = ["start", APP, "--name", name, "--port", str(port)]
        if balanced:
            args += ["-i", str(instances), "--balance"]
        self(*args)
        run.wait_until(f"{name} to answer on :{port}",
                       lambda: self.ready(name, instances, port, balanced), pause=0.05)

    def kill(self):
        """`pmd kill` (stops the apps and the daemon); run.Bench.cleanup
        then makes sure, by pid."""
        self(*["kill"], check=False)
        try:
            self.daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass


class Pm2:
    """PM2 from bench/pm2 (npm ci) on its own PM2_HOME, `hello.js` in
    cluster mode. Its daemon and workers carry a PMDAEMON_HOME under the
    bench's root in their environment, only so that run.Bench.cleanup finds
    them by pid if `pm2 kill` leaves any."""

    def __init__(self, root, port):
        self.home = os.path.join(root, "pm2-home")
        self.env = dict(os.environ, PM2_HOME=self.home, PORT=str(port),
                        PMDAEMON_HOME=os.path.join(root, "pm2-marker"))
        self.port = port

    def __call__(self, *args, stdout=subprocess.DEVNULL):
        return subprocess.run([PM2, *args], env=self.env, cwd=BENCH, check=True,
                              stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE)

    def start(self, instances):
        self("start", APP, "--name", "web", "-i", str(instances))
        run.wait_until("the PM2 cluster to answer",
                       lambda: len(self.pids()) == instances and http_ok(self.port), pause=0.05)

    def pids(self):
        out = self("jlist", stdout=subprocess.PIPE).stdout
        return [p["pid"] for p in json.loads(out)
                if p["name"] == "web" and p["pm2_env"]["status"] == "online" and p["pid"]]

    def daemon_pid(self):
        """PM2's daemon, which in cluster mode is also Node's cluster
        master: it accepts the connections and hands them to the workers."""
        with open(os.path.join(self.home, "pm2.pid")) as f:
            return int(f.read())

    def kill(self):
        subprocess.run([PM2, "kill"], env=self.env, cwd=BENCH, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def npm_ci():
    """Installs bench/pm2's locked PM2 unless that lock is installed already
    (npm ci starts from an empty node_modules every time)."""
    marker = os.path.join(PM2_DIR, "node_modules", ".package-lock.json")
    lock = os.path.join(PM2_DIR, "package-lock.json")
    if os.path.exists(marker) and os.path.getmtime(marker) >= os.path.getmtime(lock) and os.path.exists(PM2):
        return
    run.log("npm ci in bench/pm2")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PM2_DIR, check=True)


class Haproxy:
    """haproxy in TCP mode, one thread, forwarding `port` to `backend`."""

    def __init__(self, b, root, port, backend):
        cfg = os.path.join(root, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(
                "global\n  nbthread 1\n\n"
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\n"
                f"listen front\n  bind 127.0.0.1:{port}\n  server one 127.0.0.1:{backend}\n")
        env = dict(os.environ, PMDAEMON_HOME=os.path.join(root, "haproxy-marker"))
        self.proc = subprocess.Popen(["haproxy", "-f", cfg], env=env, stdin=subprocess.DEVNULL)
        # run.Bench.cleanup stops it with the daemons.
        b.daemons.append(self.proc)
        run.wait_until("haproxy to answer", lambda: http_ok(port), pause=0.05)


# --------------------------------------------------------------------------
# measurements


def steady(url, duration_s, close, front_pids, app_pids):
    """One wrk run with the CPU time of the front (balancer, PM2's master,
    haproxy: none for direct), of the app instances and of wrk itself."""
    front0, apps0, wrk0 = proc_cpu_ns(front_pids), proc_cpu_ns(app_pids), children_cpu_s()
    r = run_wrk(url, duration_s, close)
    front1, apps1, wrk1 = proc_cpu_ns(front_pids), proc_cpu_ns(app_pids), children_cpu_s()
    r["front_ticks"], r["front_sched"] = (front1[0] - front0[0], front1[1] - front0[1])
    r["apps_sched"] = apps1[1] - apps0[1]
    r["wrk_ns"] = (wrk1 - wrk0) * 1e9
    return r


def under_ops(url, close, op, pids):
    """wrk on `url` while `op()` runs OPS times, LOAD_AFTER_S apart: wrk gets a
    long duration and SIGINT once the last pause is over (it then prints
    its summary for the time it ran). Returns wrk's figures, each op's wall
    time, and whether every op replaced every instance."""
    proc = subprocess.Popen(wrk_argv(url, 600, close), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    walls, replaced = [], True
    try:
        time.sleep(LOAD_BEFORE_S)
        for _ in range(OPS):
            before = set(pids())
            t0 = time.perf_counter()
            op()
            walls.append(time.perf_counter() - t0)
            time.sleep(LOAD_AFTER_S)
            replaced &= not (before & set(pids()))
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {err}")
    return parse_wrk(out), walls, replaced


# --------------------------------------------------------------------------
# report


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, fmt):
    return f"{fmt(min(values))}-{fmt(max(values))}" if len(values) > 1 else fmt(values[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every scenario (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per steady wrk run (default 10)")
    parser.add_argument("--pm2", action="store_true",
                        help="also PM2's cluster mode (npm ci in bench/pm2; needs node and npm)")
    parser.add_argument("--haproxy", action="store_true",
                        help="also haproxy (TCP mode) in front of one instance: a relay baseline "
                             "(apt-get install haproxy)")
    parser.add_argument("--no-ops", action="store_true", help="steady load only: no reload or restart runs")
    parser.add_argument("--install-wrk", action="store_true", help="apt-get install -y wrk if it is missing")
    args = parser.parse_args()
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")

    if shutil.which("wrk") is None:
        if not args.install_wrk:
            sys.exit("needs wrk: apt-get install -y wrk (or --install-wrk)")
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
    if shutil.which("node") is None:
        sys.exit("needs node (the app is bench/hello.js)")
    if args.haproxy and shutil.which("haproxy") is None:
        sys.exit("--haproxy needs haproxy: apt-get install -y haproxy")
    if args.pm2:
        npm_ci()

    bins = run.build(args.no_build)
    root = tempfile.mkdtemp(prefix="pmd-balancer-")
    b = run.Bench(bins, root)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    pmd = pm2 = None
    steady_runs = {}  # scenario -> [wrk result per round]
    op_runs = {}  # (manager, op, close) -> [(wrk result, walls, replaced) per round]
    try:
        base = free_ports(5)
        port = dict(direct=base, bal1=base + 1, bal2=base + 2, pm2=base + 3, haproxy=base + 4)
        pmd = Pmd(b, os.path.join(root, "pmd"))
        run.log("starting the apps: direct, bal1, bal2")
        pmd.start("direct", port["direct"], 1, balanced=False)
        pmd.start("bal1", port["bal1"], 1, balanced=True)
        pmd.start("bal2", port["bal2"], 2, balanced=True)
        daemon = [pmd.daemon.pid]
        # Per scenario: its port, whether wrk closes each connection, and
        # who uses CPU for a request (front, instances).
        scenarios = {
            "direct": ("direct", False, lambda: ([], pmd.pids("direct"))),
            "bal1": ("bal1", False, lambda: (daemon, pmd.pids("bal1"))),
            "bal2": ("bal2", False, lambda: (daemon, pmd.pids("bal2"))),
        }
        if args.haproxy:
            # In front of bal1's instance, so it relays to the same kind of
            # process as bal1 does; bal1's own port is idle meanwhile.
            private = pmd.apps("bal1")[0]["port"]
            hap = Haproxy(b, root, port["haproxy"], private)
            scenarios["haproxy"] = ("haproxy", False, lambda: ([hap.proc.pid], pmd.pids("bal1")))
        if args.pm2:
            run.log("starting the PM2 cluster")
            pm2 = Pm2(root, port["pm2"])
            pm2.start(2)
            scenarios["pm2"] = ("pm2", False, lambda: ([pm2.daemon_pid()], pm2.pids()))

        for name in ("direct", "bal2", "pm2"):
            if name in scenarios:
                key, _, who = scenarios[name]
                scenarios[f"{name}-close"] = (key, True, who)

        # Node's JIT and the sockets' first allocations: not measured.
        for key, close, _ in scenarios.values():
            run_wrk(f"http://127.0.0.1:{port[key]}/", 2, close)

        for r in range(args.rounds):
            for name, (key, close, who) in scenarios.items():
                run.log(f"round {r + 1}/{args.rounds}: {name}, wrk -t{THREADS} -c{CONNECTIONS} "
                        f"-d{args.duration}s")
                front, apps = who()
                steady_runs.setdefault(name, []).append(
                    steady(f"http://127.0.0.1:{port[key]}/", args.duration, close, front, apps))

        if not args.no_ops:
            managers = [("pmd", port["bal2"], lambda op: pmd(op, "bal2"), lambda: pmd.pids("bal2"))]
            if pm2:
                managers.append(("pm2", port["pm2"], lambda op: pm2(op, "web"), pm2.pids))
            for r in range(args.rounds):
                for manager, p, command, pids in managers:
                    for op, close in (("reload", False), ("restart", False), ("reload", True)):
                        run.log(f"round {r + 1}/{args.rounds}: {manager} {op} x{OPS} under load"
                                + (", Connection: close" if close else ""))
                        result = under_ops(f"http://127.0.0.1:{p}/", close, lambda: command(op), pids)
                        op_runs.setdefault((manager, op, close), []).append(result)
    except KeyboardInterrupt as e:
        run.log(f"interrupted ({e}); cleaning up")
        sys.exit(130)
    finally:
        if pm2:
            try:
                pm2.kill()
            except Exception as e:  # keep cleaning
                run.log(f"pm2 kill: {e}")
        if pmd:
            pmd.kill()
        b.cleanup()

    report(args, steady_runs, op_runs)


def report(args, steady_runs, op_runs):
    labels = {
        "direct": "direct, 1 instance (no balancer)",
        "bal1": "balancer -> 1 instance",
        "bal2": "balancer -> 2 instances",
        "haproxy": "haproxy (tcp, 1 thread) -> 1 instance",
        "pm2": "PM2 cluster, 2 instances",
    }
    for name in list(labels):
        labels[f"{name}-close"] = f"{labels[name]}, Connection: close"
    stat = {name: {k: med([r[k] for r in runs]) for k in ("rps", "p50", "p99")}
            for name, runs in steady_runs.items()}
    print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{args.duration}s --latency (keep-alive unless said), "
          f"median of {args.rounds} round(s)")
    print()
    width = max(len(labels[n]) for n in steady_runs)
    print(f"{'scenario':<{width}}  {'req/s':>8}  {'p50 ms':>7}  {'p99 ms':>7}  {'failed':>6}  "
          f"{'front CPU/req':>13}  {'app CPU/req':>11}")
    for name, runs in steady_runs.items():
        s = stat[name]
        reqs = sum(r["requests"] for r in runs)
        front = sum(r["front_sched"] for r in runs) / reqs / 1e3 if not name.startswith("direct") else None
        apps = sum(r["apps_sched"] for r in runs) / reqs / 1e3
        print(f"{labels[name]:<{width}}  {s['rps']:>8,.0f}  {s['p50']:>7.3f}  {s['p99']:>7.3f}  "
              f"{sum(r['failed'] for r in runs):>6}  "
              f"{(f'{front:.1f} us' if front is not None else '-'):>13}  {apps:>8.1f} us")

    if op_runs:
        print()
        print(f"under load (wrk -t{THREADS} -c{CONNECTIONS}), {OPS} operations per run, "
              f"{LOAD_BEFORE_S:g} s of load before and {LOAD_AFTER_S:g} s after each, {args.rounds} run(s):")
        print()
        rows = []
        for (manager, op, close), runs in op_runs.items():
            label = f"{manager} {op} x{OPS}, " + ("Connection: close" if close else "keep-alive")
            failed = [r["failed"] for r, _, _ in runs]
            timeouts = sum(r["timeout"] for r, _, _ in runs)
            walls = [w for _, ws, _ in runs for w in ws]
            rows.append((label, ", ".join(map(str, failed)), timeouts,
                         med([r["rps"] for r, _, _ in runs]), med([r["p99"] for r, _, _ in runs]),
                         statistics.median(walls) * 1e3, max(walls) * 1e3, all(rep for _, _, rep in runs)))
        width = max(len(r[0]) for r in rows)
        print(f"{'scenario':<{width}}  {'failed per run':>14}  {'timeouts':>8}  {'req/s':>8}  "
              f"{'p99 ms':>7}  {'op ms, median (max)':>19}  replaced")
        for label, failed, timeouts, rps, p99, wall, wall_max, rep in rows:
            print(f"{label:<{width}}  {failed:>14}  {timeouts:>8}  {rps:>8,.0f}  {p99:>7.2f}  "
                  f"{f'{wall:.0f} ({wall_max:.0f})':>19}  {'yes' if rep else 'NO'}")

    # Targets.
    print()
    targets = []
    if "direct" in stat and "bal1" in stat:
        # Paired by round (bal1 runs right after direct): the machine's
        # drift between rounds cancels, which a ratio of medians would keep.
        pairs = list(zip(steady_runs["direct"], steady_runs["bal1"]))
        shares = [b["rps"] / d["rps"] for d, b in pairs]
        addeds = [b["p50"] - d["p50"] for d, b in pairs]
        share, added = med(shares), med(addeds)
        targets.append((f"balancer -> 1 instance, share of direct req/s", f"{share * 100:.1f} %",
                        f">= {MIN_SHARE_OF_DIRECT * 100:.0f} %", share >= MIN_SHARE_OF_DIRECT))
        targets.append(("balancer -> 1 instance, added p50", f"{added:+.3f} ms",
                        f"<= {MAX_ADDED_P50_MS} ms", added <= MAX_ADDED_P50_MS))
    if "bal2" in stat:
        if "pm2" in stat:
            ref, what = stat["pm2"]["rps"], "PM2 cluster here"
        else:
            ref, what = PM2_REFERENCE_RPS, "PM2 cluster, the issue's figure"
        targets.append((f"balancer -> 2 instances vs {what}",
                        f"{stat['bal2']['rps']:,.0f} req/s", f">= {ref:,.0f}", stat["bal2"]["rps"] >= ref))
    for (manager, op, close), runs in op_runs.items():
        if manager == "pmd":
            failed = sum(r["failed"] for r, _, _ in runs)
            label = f"failed requests, pmd {op}, " + ("Connection: close" if close else "keep-alive")
            targets.append((label, str(failed), "0", failed == 0))
    width = max(len(t[0]) for t in targets)
    print(f"{'target':<{width}}  {'measured':>14}  {'wanted':>10}  ok")
    for label, measured, wanted, ok in targets:
        print(f"{label:<{width}}  {measured:>14}  {wanted:>10}  {'yes' if ok else 'NO'}")

    # Notes: the spread behind the medians, and where the CPU goes.
    print()
    if "direct" in stat and "bal1" in stat:
        print("- balancer -> 1 instance against direct, round by round: "
              + ", ".join(f"{v * 100:.1f} %" for v in shares) + " of req/s; p50 "
              + ", ".join(f"{v:+.3f}" for v in addeds) + " ms")
    for name, runs in steady_runs.items():
        print(f"- {labels[name]}: req/s {spread([r['rps'] for r in runs], lambda v: f'{v:,.0f}')}, "
              f"p50 {spread([r['p50'] for r in runs], lambda v: f'{v:.3f}')} ms, "
              f"p99 {spread([r['p99'] for r in runs], lambda v: f'{v:.3f}')} ms over {len(runs)} run(s)")
    for name, runs in steady_runs.items():
        if name.startswith("direct"):
            continue
        reqs = sum(r["requests"] for r in runs)
        secs = len(runs) * args.duration
        print(f"- {labels[name]}: front CPU {sum(r['front_sched'] for r in runs) / reqs:,.0f} ns/request "
              f"(threads' schedstat; {sum(r['front_ticks'] for r in runs) / reqs:,.0f} ns from utime+stime "
              f"ticks), {sum(r['front_sched'] for r in runs) / 1e9 / secs * 100:.0f} % of a core")
    for name, runs in steady_runs.items():
        reqs = sum(r["requests"] for r in runs)
        secs = len(runs) * args.duration
        print(f"- {labels[name]}: instances {sum(r['apps_sched'] for r in runs) / reqs:,.0f} ns/request "
              f"({sum(r['apps_sched'] for r in runs) / 1e9 / secs * 100:.0f} % of a core), wrk "
              f"{sum(r['wrk_ns'] for r in runs) / reqs:,.0f} ns/request "
              f"({sum(r['wrk_ns'] for r in runs) / 1e9 / secs * 100:.0f} % of a core)")
    for (manager, op, close), runs in op_runs.items():
        kinds = {k: sum(r[k] for r, _, _ in runs) for k in ("connect", "read", "write", "status", "timeout")}
        if any(kinds.values()):
            print(f"- {manager} {op}, {'Connection: close' if close else 'keep-alive'}: "
                  + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    print(f"- machine: {os.cpu_count()} cores; wrk, the instances and the front share them")


if __name__ == "__main__":
    main()
