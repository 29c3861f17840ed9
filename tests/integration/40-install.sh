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
	usr/share/doc/blinkhook/haproxy.cfg usr/share/doc/blinkhook/apache-blinkhook.conf; do
	check "installed $f" test -e "$ROOT/$f"
done
# The man pages: installed, rendered without a message by mandoc and by
# man(1) (groff), and found by name under this PREFIX.
MANROOT=$ROOT/usr/share/man
for p in man1/blinkhookctl.1 man5/blinkhook-spool.5 man5/blinkhookd.conf.5 man8/blinkhookd.8; do
	check "installed usr/share/man/$p" test -f "$MANROOT/$p"
	if command -v mandoc >/dev/null; then
		check "mandoc -Tlint finds nothing in the installed $p" \
			sh -c 'out=$(mandoc -Tlint -W warning "$1" 2>&1) && [ -z "$out" ]' sh "$MANROOT/$p"
		check "mandoc renders the installed $p with its NAME section" \
			sh -c 'mandoc -Tutf8 "$1" | sed "s/.\x08//g" | grep -q "^NAME"' sh "$MANROOT/$p"
	else
		diag "mandoc is missing (make deps): the installed $p is not linted"
	fi
	if command -v man >/dev/null; then
		check "man -l renders the installed $p, without a message on stderr" \
			sh -c 'out=$(MANWIDTH=80 man -l "$1" 2>"$2") && [ ! -s "$2" ] && printf "%s\n" "$out" | grep -q "^NAME"' \
			sh "$MANROOT/$p" "$T/man.err"
	fi
done
if command -v man >/dev/null; then
	for page in "8 blinkhookd" "5 blinkhookd.conf" "1 blinkhookctl" "5 blinkhook-spool"; do
		set -- $page
		check "man -w $1 $2 finds the installed page under PREFIX (MANPATH)" \
			test "$(MANPATH=$MANROOT man -w "$1" "$2" 2>/dev/null)" = "$MANROOT/man$1/$2.$1"
	done
	check "man blinkhookd shows blinkhookd(8) from PREFIX" \
		sh -c 'MANPATH="$1" MANWIDTH=80 man blinkhookd 2>/dev/null | grep -q "^BLINKHOOKD(8)"' sh "$MANROOT"
else
	diag "man-db is missing: man(1) look-ups are not checked"
fi
check "the units point Documentation= at the man pages" \
	grep -q '^Documentation=man:blinkhookd(8) man:blinkhookd.conf(5)$' "$ROOT/usr/lib/systemd/system/blinkhookd.service"

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

make -s -C "$TOP" uninstall DESTDIR="$ROOT" PREFIX=/usr B="$B" >>"$T/install.log" 2>&1
check "make uninstall succeeds" test $? = 0
check "make uninstall removes the man pages" \
	sh -c '! ls "$1"/man1/blinkhookctl.1 "$1"/man5/blinkhook-spool.5 "$1"/man5/blinkhookd.conf.5 "$1"/man8/blinkhookd.8 2>/dev/null | grep -q .' sh "$MANROOT"
