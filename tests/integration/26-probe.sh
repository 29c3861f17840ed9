#!/usr/bin/env bash
# The selftest probe is a challenge and response that anyone may send but
# only this daemon can answer: POST only, a nonce in, a salted MAC under the
# state directory's probe key out, nothing that names the instance. A flood
# of probes (good and bad, GET and POST) is counted in /metrics and logged
# only under the refusal limiter. `blinkhookctl selftest` says OK for its own
# daemon and FAILED for another one on the same URL.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
write_config
start_daemon

mode() { stat -c %a "$1"; }
check "the daemon made state/probe.key, 0640 (the group reads it), and kept secret.key 0600" \
	test "$(mode "$T/state/probe.key") $(mode "$T/state/secret.key")" = "640 600"
check "no instance-id file any more" test ! -e "$T/state/instance-id"

said() { [ "$rc" = "$1" ] && grep -q -- "$2" <<<"$out"; } # said RC PATTERN: about the last selftest
out=$(ctl selftest 2>&1)
rc=$?
check "selftest reaches this daemon ($out)" said 0 "^OK: $D_URL/callbacks/probe reached this blinkhookd"
check "and its answer was verified: the daemon answered one probe" \
	sh -c "curl -sS '$D_URL/metrics' | grep -qx 'blinkhook_probes_total{result=\"answered\"} 1'"

# flood.py URL KEY OUT: 2,000 probes over 4 kept-alive connections, 500 of
# each: a good POST, GET, POST with a body that is not JSON, POST with a nonce
# too short. Checks every answer and writes a summary as JSON.
cat >"$T/flood.py" <<'PY'
import base64, hashlib, hmac, http.client, json, os, sys, threading
url, keyfile, out = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = url.split("//")[1].split(":")
key = open(keyfile, "rb").read() if os.path.exists(keyfile) else b""
b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
res = {"codes": {}, "bad": [], "macs_ok": 0, "salts": set(), "answers_same_nonce": set()}
lock = threading.Lock()
def work(kind, n):
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    for i in range(n):
        nonce = "fixed-nonce-for-all-of-them-0123" if i % 2 else b64(os.urandom(24))
        hdr = {"Content-Type": "application/json"}
        if kind == "good":
            c.request("POST", "/callbacks/probe", body=json.dumps({"nonce": nonce}), headers=hdr)
        elif kind == "get":
            c.request("GET", "/callbacks/probe")
        elif kind == "notjson":
            c.request("POST", "/callbacks/probe", body="nonce=" + nonce, headers=hdr)
        else:
            c.request("POST", "/callbacks/probe", body=json.dumps({"nonce": "short"}), headers=hdr)
        r = c.getresponse()
        body = r.read()
        with lock:
            res["codes"].setdefault(kind, {}).setdefault(str(r.status), 0)
            res["codes"][kind][str(r.status)] += 1
            names = [h.lower() for h, _ in r.getheaders()]
            if any("instance" in h for h in names) or b"instance" in body.lower():
                res["bad"].append(["names an instance", kind, r.getheaders(), body.decode()])
            if kind == "good":
                try:
                    a = json.loads(body)
                except ValueError:
                    a = {}
                if not isinstance(a, dict) or set(a) != {"salt", "mac"}:
                    res["bad"].append(["members", sorted(a)])
                    continue
                msg = b"blinkhook selftest probe v1\0" + nonce.encode() + b"\0" + a["salt"].encode()
                if hmac.compare_digest(b64(hmac.new(key, msg, hashlib.sha256).digest()), a["mac"]):
                    res["macs_ok"] += 1
                res["salts"].add(a["salt"])
                if i % 2:
                    res["answers_same_nonce"].add(a["mac"])
            elif kind == "get" and r.getheader("Allow") != "POST":
                res["bad"].append(["Allow", r.getheader("Allow")])
    c.close()
ts = [threading.Thread(target=work, args=(k, 500)) for k in ("good", "get", "notjson", "short")]
for t in ts: t.start()
for t in ts: t.join()
res["bad"] = [len(res["bad"])] + res["bad"][:3]  # a count and a few examples
res["salts"] = len(res["salts"])
res["answers_same_nonce"] = len(res["answers_same_nonce"])
json.dump(res, open(out, "w"))
PY
python3 "$T/flood.py" "$D_URL" "$T/state/probe.key" "$T/flood.json"
diag "flood: $(cat "$T/flood.json")"
f() { json "$1" <"$T/flood.json"; }
check "every good probe was answered 200 with a MAC that verifies under probe.key" \
	test "$(f 'j["codes"]["good"].get("200")') $(f 'j["macs_ok"]')" = "500 500"
check "GET is refused 405 with Allow: POST" test "$(f 'j["codes"]["get"].get("405")')" = 500
check "a body that is not JSON is refused 400" test "$(f 'j["codes"]["notjson"].get("400")')" = 500
check "a nonce too short is refused 400" test "$(f 'j["codes"]["short"].get("400")')" = 500
check "no answer names an instance (header or body)" test "$(f 'j["bad"][0]')" = 0
check "every answer has a salt of its own: one nonce sent 250 times got 250 different MACs" \
	test "$(f 'j["salts"]') $(f 'j["answers_same_nonce"]')" = "500 250"
curl -sS "$D_URL/metrics" >"$T/metrics"
check "/metrics counts 501 answered probes (with the selftest's) and 1500 refused" \
	sh -c "grep -qx 'blinkhook_probes_total{result=\"answered\"} 501' '$T/metrics' &&
		grep -qx 'blinkhook_probes_total{result=\"refused\"} 1500' '$T/metrics'"

# Log lines: at most the limiter's 20 in 10 s, plus a count of the rest.
stop_daemon
check "SIGTERM after the flood: exit 0" test "$D_STATUS" = 0
lines=$(grep -c 'selftest probe' "$T/daemon.log")
# logged one by one + the counts the summary lines give == every probe.
sum=$(python3 -c '
import re, sys
one = more = 0
for l in open(sys.argv[1]):
    m = re.search(r"(\d+) more selftest probes in the last", l)
    if m: more += int(m.group(1))
    elif "selftest probe from" in l: one += 1
print(one, more, one + more)' "$T/daemon.log")
diag "probe log lines: $lines (one by one, summarised, total: $sum)"
check "2,001 probes wrote at most 45 log lines ($lines)" test "$lines" -le 45
check "the lines logged one by one and the summary's count add up to all 2,001 probes ($sum)" \
	test "${sum##* }" = 2001

# Another daemon (its own state directory, so its own probe key) on the same
# URL: this config's selftest must not take it for its own.
mkdir -p "$T/other"
sed -e "s|^dir = $T/spool|dir = $T/other/spool|" -e "s|^dir = $T/state|dir = $T/other/state|" "$T/bh.conf" >"$T/other.conf"
cp "$T/bh.conf" "$T/bh.conf.mine"
cp "$T/other.conf" "$T/bh.conf"
start_daemon
cp "$T/bh.conf.mine" "$T/bh.conf"
check "the other daemon made a probe key of its own" \
	sh -c "! cmp -s '$T/state/probe.key' '$T/other/state/probe.key'"
out=$(ctl selftest 2>&1)
rc=$?
check "selftest says FAILED: another blinkhookd answers on this URL ($out)" said 1 'reached a blinkhookd, but another one'
out=$("$BLINKHOOKCTL" -c "$T/other.conf" selftest 2>&1)
rc=$?
check "the other daemon's own config says OK ($out)" said 0 '^OK: '
chmod 0644 "$T/state/probe.key"
out=$(ctl selftest 2>&1)
check "blinkhookctl refuses a probe key others may read ($out)" grep -q 'probe.key' <<<"$out"
chmod 0640 "$T/state/probe.key"
sed "s|^dir = $T/state|dir = $T/never-started|" "$T/bh.conf" >"$T/never.conf"
out=$("$BLINKHOOKCTL" -c "$T/never.conf" selftest 2>&1)
rc=$?
check "selftest for a state directory no daemon has used says so ($out)" said 1 'has blinkhookd 0.3.0 or later run'
stop_daemon
check "the other daemon stops cleanly" test "$D_STATUS" = 0
check "no sanitizer report in the daemon's log" sh -c "! grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' '$T/daemon.log'"
