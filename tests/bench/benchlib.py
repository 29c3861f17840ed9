#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""benchlib — the benchmark's helpers, called by run-bench.sh (Python 3 stdlib only).

    prepare STATE N SECRETS GHOSTS   a state dir with secret.key and a jobs.log
                                     of N submitted jobs (queued + submitted
                                     records, ids bj00000000...); SECRETS gets
                                     each job's secret a line, GHOSTS 1000
                                     "id secret" lines of jobs that do not exist
    genlog STATE N KIND              jobs.log of N jobs: KIND "unfinished" (queued
                                     + submitted: 2N events) or "final" (one
                                     compaction record, "event":"job", of a
                                     complete job: N events)
    secret STATE ID                  the job's secret
    freeport                         a free loopback TCP port
    start DAEMON CONF URL LOG        starts blinkhookd with NOTIFY_SOCKET, waits
                                     for READY=1 and for /healthz 200; prints
                                     pid= ready_s= healthz_s= (it keeps running)
    rss PID                          rss_kib= hwm_kib=
    snap URL STATE DAEMONLOG         the daemon's counters now, and the records
                                     and compactions its log shows, as JSON
    record GROUP NAME CONNS WRKOUT [BEFORE AFTER] [key=value...]
                                     one result as a JSON line on stdout
    intake SPOOL STATE N [TIMEOUT]   N spool files renamed into new/ of a
                                     running daemon; seconds until all are
                                     `queued` in the log and gone from new/
    intake-start DAEMON CONF URL LOG SPOOL STATE N [TIMEOUT]
                                     the same with the files there before the
                                     daemon starts, timed from exec
    fsyncprobe DIR                   microseconds of an append + fdatasync
    merge RESULTS RAW                one record per load point from its slices
    amendkv RESULTS key=value...     adds to the last record
    table RESULTS MACHINE            the table and the targets
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

ID_FMT = "bj%08d"
LBI_BASE = 100000000
SERIAL = "Q2AA-BBBB-CCCC"


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def secret_of(key, job_id):
    mac = hmac.new(key, job_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def write_key(state):
    os.makedirs(state, mode=0o750, exist_ok=True)
    path = os.path.join(state, "secret.key")
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, key)
    os.close(fd)
    os.chmod(path, 0o600)
    return key


def cmd_prepare(state, n, secrets_path, ghosts_path):
    n = int(n)
    key = write_key(state)
    ts = rfc3339(time.time() - 60)
    with open(os.path.join(state, "jobs.log"), "w") as log, open(secrets_path, "w") as sec:
        for i in range(n):
            jid = ID_FMT % i
            log.write('{"v":1,"ts":"%s","id":"%s","event":"queued","serial":"%s","duration":30,"source":"queue"}\n'
                      % (ts, jid, SERIAL))
            log.write('{"v":1,"ts":"%s","id":"%s","event":"submitted","leds_blink_id":"%d",'
                      '"meraki_status":"new","attempts":1,"source":"api"}\n' % (ts, jid, LBI_BASE + i))
            sec.write(secret_of(key, jid) + "\n")
        log.flush()
        os.fsync(log.fileno())
    with open(ghosts_path, "w") as g:
        for i in range(1000):
            gid = "ghost%08d" % i
            g.write("%s %s\n" % (gid, secret_of(key, gid)))


def cmd_genlog(state, n, kind):
    n = int(n)
    write_key(state)
    now = time.time() - 60
    ts = rfc3339(now)
    with open(os.path.join(state, "jobs.log"), "w") as log:
        buf = []
        for i in range(n):
            jid = ID_FMT % i
            if kind == "unfinished":
                buf.append('{"v":1,"ts":"%s","id":"%s","event":"queued","serial":"%s","duration":30,'
                           '"source":"queue"}\n' % (ts, jid, SERIAL))
                buf.append('{"v":1,"ts":"%s","id":"%s","event":"submitted","leds_blink_id":"%d",'
                           '"meraki_status":"new","attempts":1,"source":"api"}\n' % (ts, jid, LBI_BASE + i))
            else:
                buf.append('{"v":1,"ts":"%s","id":"%s","event":"job","serial":"%s","duration":30,'
                           '"leds_blink_id":"%d","meraki_status":"complete","attempts":1,"source":"callback",'
                           '"state":"complete","created_at":"%s"}\n' % (ts, jid, SERIAL, LBI_BASE + i, ts))
            if len(buf) >= 10000:
                log.write("".join(buf))
                buf = []
        log.write("".join(buf))
        log.flush()
        os.fsync(log.fileno())


def cmd_secret(state, job_id):
    with open(os.path.join(state, "secret.key"), "rb") as f:
        print(secret_of(f.read(), job_id))


def cmd_freeport():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def http_status(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def cmd_start(daemon, conf, url, logpath, timeout="120"):
    """Exec to READY=1 (sd_notify) and to the first /healthz 200."""
    timeout = float(timeout)
    sock_path = os.path.abspath("%s.notify" % logpath)
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    env = dict(os.environ)
    env["NOTIFY_SOCKET"] = sock_path
    env.setdefault("MERAKI_DASHBOARD_API_KEY", "bench-key-0123456789abcdef")
    for k in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
        if k not in os.environ.get("BENCH_KEEP_ENV", ""):
            env.pop(k, None)
    log = open(logpath, "ab")
    t0 = time.monotonic()
    p = subprocess.Popen([daemon, "-c", conf], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    ready = healthz = None
    sock.settimeout(0.05)
    while time.monotonic() - t0 < timeout and ready is None:
        try:
            msg = sock.recv(4096).decode(errors="replace")
            if "READY=1" in msg.split("\n"):
                ready = time.monotonic() - t0
        except socket.timeout:
            pass
        if p.poll() is not None:
            break
    while ready is not None and time.monotonic() - t0 < timeout:
        if http_status(url + "/healthz") == 200:
            healthz = time.monotonic() - t0
            break
        time.sleep(0.002)
    sock.close()
    os.unlink(sock_path)
    if ready is None or healthz is None:
        print("pid=%d ready_s=nan healthz_s=nan failed=1" % p.pid)
        return 1
    print("pid=%d ready_s=%.3f healthz_s=%.3f" % (p.pid, ready, healthz))
    return 0


def proc_status(pid):
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def cmd_rss(pid):
    st = proc_status(pid)
    print("rss_kib=%s hwm_kib=%s" % (st["VmRSS"].split()[0], st["VmHWM"].split()[0]))


def metrics(url):
    m = {}
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return m
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, _, v = line.rpartition(" ")
        try:
            m[k] = float(v)
        except ValueError:
            pass
    return m


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return n
            n += b.count(b"\n")


def scan_log(daemonlog):
    """Counts, in the daemon's log, the statuses recorded from callbacks (a
    line each, written when the record is appended; its 200 waits for the
    sync) and the compactions.  Incremental: the counts so far and the offset
    are kept in DAEMONLOG.count."""
    cache = daemonlog + ".count"
    st = {"offset": 0, "records": 0, "compactions": 0}
    try:
        with open(cache) as f:
            st = json.load(f)
    except (OSError, ValueError):
        pass
    try:
        with open(daemonlog, "rb") as f:
            f.seek(st["offset"])
            data = f.read()
    except OSError:
        return st
    end = data.rfind(b"\n") + 1
    data = data[:end]
    st["offset"] += end
    st["records"] += data.count(b"(callback from ")
    st["compactions"] += data.count(b"compacted the job log")
    with open(cache, "w") as f:
        json.dump(st, f)
    return st


def cmd_snap(url, state, daemonlog):
    m = metrics(url)
    st = scan_log(daemonlog)
    snap = {
        "syncs": m.get("blinkhook_log_syncs_total", 0),
        "sync_s": m.get("blinkhook_log_sync_seconds_total", 0),
        "cb200": m.get('blinkhook_callbacks_total{code="200"}', 0),
        "cb401": m.get('blinkhook_callbacks_total{code="401"}', 0),
        "cb404": m.get('blinkhook_callbacks_total{code="404"}', 0),
        "cb503": m.get('blinkhook_callbacks_total{code="503"}', 0),
        "refused_conns": m.get("blinkhook_connections_refused_total", 0),
        "records": st["records"],
        "compactions": st["compactions"],
    }
    print(json.dumps(snap))


def parse_kv(text):
    out = {}
    for tok in text.split():
        k, eq, v = tok.partition("=")
        if eq:
            try:
                out[k] = float(v) if "." in v or v == "nan" else int(v)
            except ValueError:
                out[k] = v
    return out


def cmd_record(group, name, conns, wrkout, *rest):
    rec = {"group": group, "name": name, "conns": conns}
    try:
        with open(wrkout) as f:
            lines = [l for l in f.read().splitlines() if l.startswith("requests=")]
        rec.update(parse_kv(lines[-1]))
    except (OSError, IndexError):
        rec["failed"] = 1
    extra = list(rest)
    if len(extra) >= 2 and not "=" in extra[0]:
        with open(extra[0]) as f:
            before = json.load(f)
        with open(extra[1]) as f:
            after = json.load(f)
        for k in before:
            rec["d_" + k] = after.get(k, 0) - before.get(k, 0)
        extra = extra[2:]
    rec.update(parse_kv(" ".join(extra)))
    print(json.dumps(rec))


def cmd_intake(spool, state, n, timeout="120"):
    """N spool files renamed into new/ of a running daemon, as fast as
    possible: seconds until all are queued in the log and gone from new/."""
    n = int(n)
    tmp, new = os.path.join(spool, "tmp"), os.path.join(spool, "new")
    log = os.path.join(state, "jobs.log")

    def queued_lines():
        with open(log, "rb") as f:
            return f.read().count(b'"event":"queued"')

    before = queued_lines()
    names = write_spool_files(spool, n, "in")
    t0 = time.monotonic()
    for name in names:
        os.rename(os.path.join(tmp, name), os.path.join(new, name))
    t_renamed = time.monotonic() - t0
    done = first = None
    while time.monotonic() - t0 < float(timeout):
        q = queued_lines() - before
        if q and first is None:
            first = time.monotonic() - t0
        if q >= n and not os.listdir(new):
            done = time.monotonic() - t0
            break
        time.sleep(0.01)
    got = queued_lines() - before
    print("intake_s=%s renamed_s=%.3f queued=%d first_s=%s left=%d" % (
        "%.3f" % done if done is not None else "nan", t_renamed, got,
        "%.3f" % first if first is not None else "nan", len(os.listdir(new))))


def write_spool_files(spool, n, prefix):
    tmp = os.path.join(spool, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.makedirs(os.path.join(spool, "new"), exist_ok=True)
    names = []
    for i in range(n):
        name = "%s-%06d.json" % (prefix, i)
        with open(os.path.join(tmp, name), "w") as f:
            f.write('{"serial": "%s", "duration": 30, "id": "%s%08d"}' % (SERIAL, prefix, i))
        names.append(name)
    return names


def cmd_intake_start(daemon, conf, url, logpath, spool, state, n, timeout="120"):
    """N spool files in new/ before the daemon starts: seconds from exec until
    all are queued in the log and gone from new/.  The daemon keeps running."""
    n = int(n)
    new = os.path.join(spool, "new")
    for name in write_spool_files(spool, n, "st"):
        os.rename(os.path.join(spool, "tmp", name), os.path.join(new, name))
    log = os.path.join(state, "jobs.log")
    env = dict(os.environ)
    env.setdefault("MERAKI_DASHBOARD_API_KEY", "bench-key-0123456789abcdef")
    out = open(logpath, "ab")
    t0 = time.monotonic()
    p = subprocess.Popen([daemon, "-c", conf], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    done = None
    while time.monotonic() - t0 < float(timeout) and p.poll() is None:
        try:
            if not os.listdir(new):
                with open(log, "rb") as f:
                    if f.read().count(b'"event":"queued"') >= n:
                        done = time.monotonic() - t0
                        break
        except OSError:
            pass
        time.sleep(0.01)
    try:
        with open(log, "rb") as f:
            got = f.read().count(b'"event":"queued"')
    except OSError:
        got = 0
    print("pid=%d intake_s=%s queued=%d" % (p.pid, "%.3f" % done if done is not None else "nan", got))


def cmd_fsyncprobe(d):
    """Microseconds for one 160-byte append and fdatasync in directory d."""
    path = os.path.join(d, "fdatasync.probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < 1.0:
        os.write(fd, b"x" * 160 + b"\n")
        os.fdatasync(fd)
        n += 1
    os.close(fd)
    os.unlink(path)
    print("%.0f" % (1e6 * (time.monotonic() - t0) / n))


def read_results(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    return recs


def cmd_merge(results, raw_out):
    """Merges the slices of each load point (records with "slice"): the
    kinds of one point run in the order A B C ... then ... C B A, so that a
    drift of a shared machine during the point weighs alike on all of them.
    The raw slices go to raw_out."""
    recs = read_results(results)
    keep, groups, order = [], {}, []
    with open(raw_out, "a") as raw:
        for r in recs:
            if "slice" not in r:
                keep.append(r)
                continue
            raw.write(json.dumps(r) + "\n")
            k = (r["group"], str(r["conns"]))
            if k not in groups:
                groups[k] = []
                order.append(k)
            groups[k].append(r)
    for k in order:
        runs = [x for x in groups[k] if not x.get("failed")]
        first = groups[k][0]
        if not runs:
            keep.append({"group": k[0], "name": first["name"], "conns": k[1], "failed": 1})
            continue
        m = {"group": k[0], "name": first["name"], "conns": k[1]}
        m["requests"] = sum(x["requests"] for x in runs)
        m["duration_s"] = sum(x["duration_s"] for x in runs)
        m["rps"] = m["requests"] / m["duration_s"] if m["duration_s"] else 0
        for f in ("p50_us", "p90_us", "p99_us"):
            m[f] = sum(x[f] for x in runs) / len(runs)
        m["max_us"] = max(x["max_us"] for x in runs)
        for f in ("non2xx", "connect_err", "read_err", "write_err", "timeouts"):
            m[f] = sum(x.get(f, 0) for x in runs)
        for f in runs[0]:
            if f.startswith("d_"):
                m[f] = sum(x.get(f, 0) for x in runs)
        if len(runs) > 1:
            m["slices"] = " / ".join("%.0f" % x["rps"] for x in runs)
        keep.append(m)
    with open(results, "w") as f:
        for r in keep:
            f.write(json.dumps(r) + "\n")


def cmd_amendkv(results, *kvs):
    """Adds key=value words to the last record."""
    recs = read_results(results)
    recs[-1].update(parse_kv(" ".join(kvs)))
    with open(results, "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")


# ---- the table ----

def fmt_rps(x):
    return "%.0f" % x if x is not None else "-"


def fmt_lat(us):
    if us is None:
        return "-"
    if us >= 1000000:
        return "%.2f s" % (us / 1e6)
    if us >= 1000:
        return "%.2f ms" % (us / 1e3)
    return "%d us" % us


def cmd_table(results, machine):
    recs = read_results(results)
    by = {}
    for r in recs:
        by[(r["group"], str(r.get("conns", "")))] = r

    def rps(group, conns):
        r = by.get((group, str(conns)))
        return r.get("rps") if r and not r.get("failed") and not r.get("skipped") else None

    with open(machine) as f:
        print(f.read().rstrip())
    print()
    hdr = "%-44s %6s %9s %9s %9s %8s  %s" % ("load figure", "conns", "req/s", "p50", "p99", "ratio", "notes")
    print(hdr)
    print("-" * len(hdr))
    titles = {
        "baseline": "baseline: libmicrohttpd + json-c + CRYPTO_memcmp (the stack's limit)",
        "accepted": "accepted: valid secret, a new status durably recorded (ratio: to the baseline)",
        "repeat": "accepted repeat: a status already recorded, 200 without a write (ratio: to the baseline)",
        "wrong": "refused: wrong secret, 401 (ratio: to the baseline)",
        "unknown": "refused: unknown job, 404 (ratio: to the baseline)",
        "stall": "many connections, accepted (ratio: to the baseline at as many connections)",
        "nginx": "through nginx, TLS, shipped conf/nginx-upstream.conf + nginx-location.conf (ratio: to accepted direct)",
        "nginx-nk": "through nginx without upstream keepalive (a proxy_pass to the address; ratio: to accepted direct)",
        "postgresql": "accepted on the PostgreSQL store: each status committed to a local PostgreSQL (ratio: to accepted on the job log)",
        "webhook": "adnanh/webhook 2.8, hooks.json secret rule + recording script (ratio: blinkhookd/webhook)",
    }
    order = {"1": 0, "16": 1, "64": 2, "128": 3, "256": 4, "384": 5, "512": 6, "close": 7}
    rows = [r for r in recs if r["group"] in titles]
    rows.sort(key=lambda r: (list(titles).index(r["group"]), order.get(str(r.get("conns")), 9)))
    section = None
    for r in rows:
        g = r["group"]
        if g != section:
            section = g
            print()
            print(titles[g])
        conns = str(r.get("conns", ""))
        notes = []
        ratio = None
        if r.get("skipped"):
            print("  %-42s %6s %9s %9s %9s %8s  %s" % (r["name"], conns, "-", "-", "-", "-",
                                                   "skipped: " + str(r.get("why", ""))))
            continue
        if r.get("failed"):
            print("  %-42s %6s %9s %9s %9s %8s  %s" % (r["name"], conns, "-", "-", "-", "-", "FAILED (no wrk output)"))
            continue
        ref_conns = "close" if conns == "close" else conns
        if g in ("accepted", "repeat", "wrong", "unknown"):
            b = rps("baseline", ref_conns)
            ratio = r["rps"] / b if b else None
        elif g == "stall":
            b = rps("baseline", ref_conns)
            ratio = r["rps"] / b if b else None
        elif g in ("nginx", "nginx-nk"):
            a = rps("accepted", conns)
            ratio = r["rps"] / a if a else None
        elif g == "postgresql":
            a = rps("accepted", conns)
            ratio = r["rps"] / a if a else None
        elif g == "webhook":
            a = rps("accepted", conns)
            ratio = a / r["rps"] if a and r["rps"] else None
        if g in ("accepted", "stall", "nginx", "nginx-nk"):
            n200 = r.get("d_cb200")
            if n200:
                notes.append("syncs/req %.3f" % (r.get("d_syncs", 0) / n200))
                if r.get("d_records", 0) < n200:
                    notes.append("ONLY %d of %d 200s wrote a record" % (r.get("d_records", 0), n200))
            if r.get("d_sync_s") and r.get("duration_s"):
                notes.append("a sync in flight %.0f%% of the time" % (100 * r["d_sync_s"] / r["duration_s"]))
            if r.get("d_compactions"):
                notes.append("%d compaction(s)" % r["d_compactions"])
        if g == "repeat" and r.get("d_records"):
            notes.append("%d records written" % r["d_records"])
        if r.get("max_us", 0) >= 1000000:
            notes.append("max %.2f s" % (r["max_us"] / 1e6))
        if r.get("slices"):
            notes.append("slices " + r["slices"])
        if g == "webhook" and r.get("recorded") is not None:
            notes.append("%d recorded" % r["recorded"])
        expect_non2xx = g in ("wrong", "unknown")
        if not expect_non2xx and r.get("non2xx"):
            notes.append("%d non-2xx" % r["non2xx"])
        if expect_non2xx and r.get("non2xx", 0) < r.get("requests", 0):
            notes.append("%d answered 2xx!" % (r["requests"] - r.get("non2xx", 0)))
        errs = r.get("connect_err", 0) + r.get("read_err", 0) + r.get("write_err", 0)
        if errs:
            notes.append("socket errors %d" % errs)
        if r.get("timeouts"):
            notes.append("%d timeouts" % r["timeouts"])
        if conns == "close":
            notes.insert(0, "64 conns, Connection: close")
        if r.get("note"):
            notes.append(str(r["note"]).replace("_", " "))

        print("  %-42s %6s %9s %9s %9s %8s  %s" % (
            r["name"], conns, fmt_rps(r.get("rps")), fmt_lat(r.get("p50_us")), fmt_lat(r.get("p99_us")),
            "%.2f" % ratio if ratio is not None else "-", ", ".join(notes)))

    print()
    print("%-44s %s" % ("other figure", "value"))
    print("-" * len(hdr))
    for r in recs:
        if r["group"] == "figure":
            print("  %-42s %s" % (r["name"], r.get("value", "-")))

    # The targets.
    print()
    print("targets (issue 8)")
    print("-" * len(hdr))

    def target(desc, ok, got):
        state = "n/a " if ok is None else ("MET " if ok else "MISS")
        print("  [%s] %-52s %s" % (state, desc, got))

    a64, b64 = rps("accepted", 64), rps("baseline", 64)
    target("accepted >= 50% of baseline at 64 connections", (a64 / b64 >= 0.5) if a64 and b64 else None,
           "%.0f%%" % (100 * a64 / b64) if a64 and b64 else "-")
    worst = None
    for g in ("wrong", "unknown"):
        x = rps(g, 64)
        if x and b64:
            worst = min(worst, x / b64) if worst is not None else x / b64
    target("refused >= 80% of baseline (64 connections, worst kind)",
           (worst >= 0.8) if worst is not None else None, "%.0f%%" % (100 * worst) if worst is not None else "-")
    w64 = rps("webhook", 64)
    target(">= 20x the webhook alternative (64 connections)", (a64 / w64 >= 20) if a64 and w64 else None,
           "%.1fx" % (a64 / w64) if a64 and w64 else "-")
    rep = [r for r in recs if r["group"] == "figure" and r.get("key") == "replay_s"]
    if rep and rep[0].get("num") is not None:
        target("replay of 1,000,000 events < 2 s", rep[0]["num"] < 2.0, "%.2f s" % rep[0]["num"])
    else:
        target("replay of 1,000,000 events < 2 s", None, "-")
    cw = [r for r in recs if r["group"] == "figure" and r.get("key") == "compact_worst_ms"]
    if cw and cw[0].get("num") is not None:
        target("callbacks wait < 50 ms while the log is compacted", cw[0]["num"] < 50, "%.1f ms" % cw[0]["num"])
    else:
        target("callbacks wait < 50 ms while the log is compacted", None, "-")
    idle = [r for r in recs if r["group"] == "figure" and r.get("key") == "idle_wakeups"]
    if idle and idle[0].get("num") is not None:
        target("no idle wakeups beyond the watchdog's", idle[0]["num"] == 0,
               "%g wakeups/min without a watchdog" % idle[0]["num"])
    else:
        target("no idle wakeups beyond the watchdog's", None, "-")
    stall_rows = [r for r in recs if r["group"] in ("stall", "accepted") and r.get("conns") in
                  ("128", "256", "384", "512")]
    if stall_rows:
        bad = [r for r in stall_rows if r.get("failed") or not r.get("rps") or r.get("timeouts", 0) > 10
               or r.get("connect_err", 0) + r.get("read_err", 0) + r.get("write_err", 0) > 10]
        target("no stall or collapse at 128..512 connections", not bad,
               "min %.0f req/s, max %d timeouts" % (
                   min(r.get("rps", 0) or 0 for r in stall_rows),
                   max(r.get("timeouts", 0) for r in stall_rows)))


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    cmd, args = sys.argv[1], sys.argv[2:]
    f = globals().get("cmd_" + cmd.replace("-", "_"))
    if not f:
        sys.stderr.write(__doc__)
        return 2
    return f(*args) or 0


if __name__ == "__main__":
    sys.exit(main())
