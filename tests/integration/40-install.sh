#!/usr/bin/env bash
# asan: skip (it installs and runs the normal build)
# What a user does: make install into a staging root, a config pointing at
# the (simulated) Meraki API, the key in the environment, one blink.
. "$(dirname "$0")/../lib.sh"

ROOT=$T/root
make -s -C "$TOP" install DESTDIR="$ROOT" PREFIX=/usr B="$B" >"$T/install.log" 2>&1
check "make install DESTDIR=... PREFIX=/usr succeeds" test $? = 0
for f in usr/sbin/blinkhookd usr/bin/blinkhookctl usr/lib/systemd/system/blinkhookd.service \
	usr/lib/systemd/system/blinkhookd.socket usr/lib/systemd/system/blinkhookd@.service \
	usr/lib/sysusers.d/blinkhook.conf usr/lib/tmpfiles.d/blinkhook.conf etc/blinkhook/blinkhookd.conf \
	usr/share/doc/blinkhook/README.md usr/share/doc/blinkhook/blinkhookd.conf \
	usr/share/doc/blinkhook/nginx-upstream.conf usr/share/doc/blinkhook/nginx-location.conf usr/share/doc/blinkhook/nginx-site.conf usr/share/doc/blinkhook/Caddyfile \
	usr/share/doc/blinkhook/haproxy.cfg usr/share/doc/blinkhook/apache-blinkhook.conf \
	usr/share/doc/blinkhook/CHANGELOG.md usr/share/doc/blinkhook/LICENSE; do
	check "installed $f" test -e "$ROOT/$f"
done
# The README's relative links (docs/, the changelog, the licence) resolve in
# the installed copy as in the tree.
readme_links=$(grep -o '](\([^):#]*\)' "$TOP/README.md" | sed 's/^](//' | sort -u)
missing=
for l in $readme_links; do [ -e "$ROOT/usr/share/doc/blinkhook/$l" ] || missing="$missing $l"; done
check "every file the README links is installed beside it ($(echo $readme_links | wc -w) files;${missing:- none} missing)" \
	test -n "$readme_links" -a -z "$missing"
check "the unit runs the installed path" grep -q '^ExecStart=/usr/sbin/blinkhookd ' "$ROOT/usr/lib/systemd/system/blinkhookd.service"
check "the installed example config passes --check-config" \
	env MERAKI_DASHBOARD_API_KEY=$API_KEY "$ROOT/usr/sbin/blinkhookd" -c "$ROOT/etc/blinkhook/blinkhookd.conf" --check-config

start_sim --min-interval 1 --blink-time 0.3
write_config
BLINKHOOKD=$ROOT/usr/sbin/blinkhookd
BLINKHOOKCTL=$ROOT/usr/bin/blinkhookctl
export MERAKI_DASHBOARD_API_KEY=$API_KEY
start_daemon
id=$(ctl blink Q2AA-BBBB-CCCC --duration 7)
check "blinkhookctl blink prints a job id" test -n "$id"
check "the job reaches complete" wait_state 15 "$id" complete
check "status --json shows it complete" sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' status '$id' --json | grep -q '\"state\":\"complete\"'"
check "the simulator saw a well-formed request whose callback.url starts with public_url" python3 -c '
import json, sys, urllib.request
reqs = json.load(urllib.request.urlopen(sys.argv[1] + "/_sim/requests"))
post = [r for r in reqs if r["method"] == "POST"]
assert len(post) == 1, post
b = post[0]["body"]
assert post[0]["path"] == "/api/v1/devices/Q2AA-BBBB-CCCC/liveTools/leds/blink"
assert b["duration"] == 7 and type(b["duration"]) is int
assert b["callback"]["url"] == sys.argv[2] + "/callbacks/leds-blink/" + sys.argv[3]
assert b["callback"]["url"].startswith(sys.argv[2])
assert post[0]["api_key"] == sys.argv[4]
' "$SIM_URL" "$D_URL" "$id" "$API_KEY"
stop_daemon
check "the installed daemon stops cleanly" test "$D_STATUS" = 0
