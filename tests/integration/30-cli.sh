#!/usr/bin/env bash
# blinkhookctl and blinkhookd as users meet them: input validation, exit codes,
# the config check, work done while the daemon is down, restarts.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
write_config

# ---- blinkhookctl blink: bad input is refused with exit 2 and queues nothing ----
refuse() { # refuse DESCRIPTION ARGS...
	local desc=$1; shift
	ctl blink "$@" >/dev/null 2>"$T/err"
	local rc=$?
	if [ "$rc" = 2 ] && [ -s "$T/err" ] && [ -z "$(ls -A "$T/spool/new" 2>/dev/null)" ]; then
		ok "blink $desc: exit 2, a message, nothing queued"
	else
		notok "blink $desc: exit $rc, stderr '$(cat "$T/err")'"
	fi
}
refuse "with a lowercase-free bad serial" Q2AA-BBBB
refuse "with a five-character group" Q2AA-BBBBB-CCCC
refuse "with a non-alphanumeric serial" 'Q2AA-BB;B-CCCC'
refuse "with duration 0" Q2AA-BBBB-CCCC --duration 0
refuse "with duration 3601" Q2AA-BBBB-CCCC --duration 3601
refuse "with duration 1.5" Q2AA-BBBB-CCCC --duration 1.5
refuse "with duration -5" Q2AA-BBBB-CCCC --duration -5
refuse "with duration 10s" Q2AA-BBBB-CCCC --duration 10s
refuse "with no serial" 
refuse "with two serials, the second bad" Q2AA-BBBB-CCCC Q2AA-BBBB-DDD
refuse "with two serials and one --id" Q2AA-BBBB-CCCC Q2AA-BBBB-DDDD --id two
refuse "with a bad id" Q2AA-BBBB-CCCC --id 'a/b'

# ---- every verb's -h/--help: its usage on stdout, exit 0, with or without a config ----
for verb in blink wait status jobs log cancel selftest; do
	out=$("$BLINKHOOKCTL" -c "$T/no-such.conf" $verb --help 2>"$T/err")
	rc=$?
	check "$verb --help without a config file: exit 0, its usage on stdout, nothing on stderr (rc $rc)" \
		sh -c "[ $rc = 0 ] && [ ! -s '$T/err' ] && printf '%s\n' \"\$1\" | head -1 | grep -q '^Usage: blinkhookctl .*$verb'" _ "$out"
	out=$(ctl $verb -h 2>"$T/err")
	rc=$?
	check "$verb -h with a config file: exit 0, its usage on stdout (rc $rc)" \
		sh -c "[ $rc = 0 ] && [ ! -s '$T/err' ] && printf '%s\n' \"\$1\" | head -1 | grep -q '^Usage: blinkhookctl .*$verb'" _ "$out"
	ctl $verb --x >/dev/null 2>"$T/err"
	rc=$?
	check "$verb --x: exit 2, the verb named, the way to help ($(head -1 "$T/err"))" \
		sh -c "[ $rc = 2 ] && grep -qx \"blinkhookctl $verb: unrecognized option '--x'\" '$T/err' && grep -qx \"Try 'blinkhookctl --help'.\" '$T/err'"
done

# One wording for a bad serial, wherever one is taken.
ctl blink Q2AA-BBBB >/dev/null 2>"$T/e1"
ctl blink -- Q2AA-BBBB >/dev/null 2>"$T/e2"
ctl jobs --serial Q2AA-BBBB >/dev/null 2>"$T/e3"
check "a bad serial: one message for blink, blink -- and jobs --serial ($(head -1 "$T/e3"))" \
	sh -c "grep -q 'is not a Meraki serial' '$T/e1' && cmp -s '$T/e1' '$T/e2' && cmp -s '$T/e1' '$T/e3'"

ctl status nosuchjob >/dev/null 2>"$T/err"
check "status of an unknown job: exit 1 with a message" test $? = 1 -a -s "$T/err"
ctl frobnicate >/dev/null 2>&1
check "an unknown command: exit 2" test $? = 2

# ---- the config check ----
out=$(MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" --check-config 2>&1)
check "--check-config accepts the test config and names the key source masked" \
	sh -c "echo '$out' | grep -q 'OK; API key …cdef from environment' && ! echo '$out' | grep -q '$API_KEY'"
cp "$T/bh.conf" "$T/bad.conf"
sed -i 's/^min_interval = .*/min_interval = 10 parsecs/' "$T/bad.conf"
line=$(grep -n '^min_interval' "$T/bad.conf" | cut -d: -f1)
out=$(MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bad.conf" --check-config 2>&1)
rc=$?
check "--check-config on a bad value: exit 1 and FILE:LINE: key: reason ($out)" \
	sh -c "[ $rc = 1 ] && echo '$out' | grep -q '^$T/bad.conf:$line: min_interval: '"
printf '[meraki]\ncolour = blue\n' >>"$T/bad2.conf"
out=$("$BLINKHOOKD" -c "$T/bad2.conf" --check-config 2>&1)
check "--check-config on an unknown key: exit 1 and the line ($out)" sh -c "echo '$out' | grep -q '^$T/bad2.conf:2: '"
out=$(env -u MERAKI_DASHBOARD_API_KEY "$BLINKHOOKD" -c "$T/bh.conf" --check-config 2>&1)
check "--check-config without any API key says where to put one ($out)" sh -c "echo '$out' | grep -qi 'api key'"
umask 022
echo "$API_KEY" >"$T/key"
printf '[meraki]\napi_key_file = %s\n' "$T/key" >"$T/keyfile.conf"
sed -n '/^\[callback\]/,$p' "$T/bh.conf" >>"$T/keyfile.conf"
out=$(env -u MERAKI_DASHBOARD_API_KEY "$BLINKHOOKD" -c "$T/keyfile.conf" --check-config 2>&1)
check "an api_key_file readable by others is refused ($out)" sh -c "echo '$out' | grep -q 'readable by group or others'"
chmod 600 "$T/key"
out=$(env -u MERAKI_DASHBOARD_API_KEY "$BLINKHOOKD" -c "$T/keyfile.conf" --check-config 2>&1)
check "a private api_key_file is used ($out)" sh -c "echo '$out' | grep -q 'from file'"

# ---- Permission denied: the group to join, and that it takes a new login ----
# As root the commands run as nobody; otherwise mode 000 keeps the files
# from their owner.  The group named is the file's own.
P=$T/perm
mkdir -p "$P/state" "$P/spool/tmp" "$P/spool/new" "$P/spool/rejected"
as=()
grp=$(id -gn)
if [ "$(id -u)" = 0 ]; then
	as=(runuser -u nobody --)
	grp=$(getent group nogroup >/dev/null && echo nogroup || id -gn nobody)
	chmod 711 "$T"
fi
sed -e "s|^dir = $T/spool|dir = $P/spool|" -e "s|^dir = $T/state|dir = $P/state|" "$T/bh.conf" >"$P/ok.conf"
cp "$P/ok.conf" "$P/private.conf"
echo '{"v":1}' >"$P/state/jobs.log"
chgrp "$grp" "$P/private.conf" "$P/state/jobs.log" "$P/spool"
chmod 755 "$P"; chmod 644 "$P/ok.conf"; chmod 000 "$P/private.conf" "$P/state/jobs.log"
chmod 751 "$P/state" "$P/spool"; chmod 000 "$P/spool/tmp" "$P/spool/new"
denied() { # denied DESCRIPTION CONFIG ARGS...
	local desc=$1 conf=$2; shift 2
	"${as[@]}" "$BLINKHOOKCTL" -c "$conf" "$@" >/dev/null 2>"$T/err"
	local rc=$?
	if [ "$rc" = 1 ] && grep -q 'Permission denied' "$T/err" && grep -q "needs the group $grp" "$T/err" &&
		grep -q "log in again or run \`newgrp $grp\`" "$T/err"; then
		ok "$desc: exit 1, the group $grp to join and the new login it takes"
	else
		notok "$desc: exit $rc, stderr '$(cat "$T/err")'"
	fi
}
denied "a config file that cannot be read" "$P/private.conf" jobs
denied "a job log that cannot be read" "$P/ok.conf" jobs
denied "a spool that cannot be written" "$P/ok.conf" blink Q2AA-BBBB-CCCC
chmod -R u+rwX "$P"
[ "$(id -u)" = 0 ] && chmod 700 "$T"

# ---- work queued while the daemon is down ----
A=$(ctl blink Q2AA-BBBB-0001 --duration 5)
B=$(ctl blink Q2AA-BBBB-0002 --duration 6)
C=$(ctl blink Q2AA-BBBB-0003 --id my-own-id_1)
check "a producer-chosen id is kept" test "$C" = my-own-id_1
check "status shows a job still in the spool as queued" state_is "$A" queued
ctl jobs --json >"$T/jobs.json"
check "jobs lists the requests still in the spool, newest first, as queued" \
	test "$(json '[(x["id"], x["state"]) for x in j]' <"$T/jobs.json")" = "[('$C', 'queued'), ('$B', 'queued'), ('$A', 'queued')]"
check "... each the object status --json gives it" \
	test "$(json "[x for x in j if x['id'] == '$B'][0]" <"$T/jobs.json")" = "$(ctl status "$B" --json | json j)"
check "... and jobs --serial, --state, --limit and the table take them too" \
	sh -c "[ \"\$('$BLINKHOOKCTL' -c '$T/bh.conf' jobs --serial Q2AA-BBBB-0002 --state queued --json | python3 -c 'import json,sys; print([x[\"id\"] for x in json.load(sys.stdin)])')\" = \"['$B']\" ] &&
		'$BLINKHOOKCTL' -c '$T/bh.conf' jobs --limit 1 | tail -n +2 | grep -Eq '^my-own-id_1 +Q2AA-BBBB-0003 +20s +queued '"
ctl cancel "$B" >/dev/null
check "cancel of a queued job is accepted while the daemon is down" test $? = 0
# Another producer's files: one good without an id, and bad ones.
printf '{"serial":"Q2AA-BBBB-0004","duration":9}' >"$T/spool/tmp/x" && mv "$T/spool/tmp/x" "$T/spool/new/other-producer.json"
printf 'not json' >"$T/spool/new/bad1.json"
printf '{"serial":"Q2AA-BBBB-0005","colour":"red"}' >"$T/spool/new/bad2.json"
printf '{"serial":"nope"}' >"$T/spool/new/bad3.json"
printf '{"serial":"Q2AA-BBBB-0006","duration":0}' >"$T/spool/new/bad4.json"
head -c 5000 /dev/zero | tr '\0' ' ' >"$T/spool/new/bad5.json"

start_daemon
check "a job queued while the daemon was down completes" wait_state 15 "$A" complete
check "the canceled job failed with error canceled" sh -c "ctl() { '$BLINKHOOKCTL' -c '$T/bh.conf' \"\$@\"; }; [ \"\$(ctl status $B --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j[\"state\"], j[\"error\"])')\" = 'failed canceled' ]"
check "the job with the producer's id completes" wait_state 15 "$C" complete
check "another producer's file without an id becomes a job" wait_until 15 sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' jobs --serial Q2AA-BBBB-0004 --json | python3 -c 'import json,sys; a=json.load(sys.stdin); sys.exit(0 if len(a)==1 and a[0][\"state\"]==\"complete\" else 1)'"
for f in bad1 bad2 bad3 bad4 bad5; do
	check "bad spool file $f.json is moved to rejected/ with a reason ($(cat "$T/spool/rejected/$f.json.reason" 2>/dev/null))" \
		test -f "$T/spool/rejected/$f.json" -a -s "$T/spool/rejected/$f.json.reason" -a ! -e "$T/spool/new/$f.json"
done
check "the cancel request itself left the spool" test -z "$(ls -A "$T/spool/new")"
ctl cancel "$A" >/dev/null 2>&1
check "cancel of a complete job: exit 1" test $? = 1

# ---- filters ----
check "jobs --state complete lists the three complete jobs" test "$(ctl jobs --state complete --json | json 'len(j)')" = 3
check "jobs --state failed lists the canceled one" test "$(ctl jobs --state failed --json | json 'j[0]["id"]')" = "$B"
check "jobs --serial" test "$(ctl jobs --serial Q2AA-BBBB-0001 --json | json 'j[0]["id"]')" = "$A"
check "jobs --limit 2 gives the two newest" test "$(ctl jobs --limit 2 --json | json 'len(j)')" = 2
ctl jobs --state bogus >/dev/null 2>&1
check "jobs --state with an unknown state: exit 2" test $? = 2

# ---- restart: the job log is replayed ----
stop_daemon
before=$(ctl jobs --json)
start_daemon
check "after a restart the jobs are the same" test "$(ctl jobs --json)" = "$before"
check "the restart replayed the log" grep -q 'replayed .* records: 4 jobs, 0 unfinished' "$T/daemon.log"
D=$(ctl blink Q2AA-BBBB-0007)
check "a job after the restart completes" wait_state 15 "$D" complete

# A second daemon on the same state directory is refused.
MERAKI_DASHBOARD_API_KEY=$API_KEY timeout 10 "$BLINKHOOKD" -c "$T/bh.conf" 2>"$T/second.log"
check "a second daemon on the same state directory refuses to start" sh -c "[ $? = 1 ] && grep -q 'another blinkhookd' '$T/second.log'"
stop_daemon
check "SIGTERM: exit 0" test "$D_STATUS" = 0
