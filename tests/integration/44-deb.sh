#!/usr/bin/env bash
# asan: skip (it packages the normal build)
# The Debian package: `make deb` builds it, lintian finds no error and no
# warning, it holds what an installation needs; then it goes into a booted
# systemd-nspawn container whose root is an overlay of this machine's (writes
# land in a tmpfs, the host stays untouched), is installed with apt-get,
# configured, started, removed and purged.
#
# Needs root for the container part; skipped there, loudly ("# SKIP: ..."),
# only when systemd-nspawn cannot run a container on this machine at all.
. "$(dirname "$0")/../lib.sh"

MACHINE=blinkhook-deb$$
SIM_IN_PORT=9797
CB_PORT=8787 # the ListenStream= of blinkhookd.socket
CT_PATH=/usr/sbin:/usr/bin:/sbin:/bin
NS_PID=
LEADER=
OVL=

skip() {
	echo "# SKIP: $*"
	echo "# SKIP 44-deb.sh: $*" >&2
	exit 0
}

# ---- the package ----

VERSION=$(sed -n 's/^#define BLINKHOOK_VERSION "\(.*\)"/\1/p' "$TOP/include/blinkhook/version.h")
ARCH=$(dpkg --print-architecture)
DEB=$TOP/$B/deb/blinkhook_${VERSION}_${ARCH}.deb
nice make -s --no-print-directory -C "$TOP" B="$B" deb >"$T/deb.log" 2>&1
rc=$?
check "make deb succeeds" test "$rc" = 0
if [ "$rc" != 0 ] || [ ! -f "$DEB" ]; then
	notok "make deb builds $B/deb/blinkhook_${VERSION}_${ARCH}.deb"
	tail -n 30 "$T/deb.log" | sed 's/^/#   /'
	exit 1
fi
ok "make deb builds $B/deb/blinkhook_${VERSION}_${ARCH}.deb (the version of version.h)"

lintian --fail-on error,warning "$DEB" "${DEB%.deb}.changes" >"$T/lintian.log" 2>&1
rc=$?
check "lintian --fail-on error,warning passes on the .deb and the .changes" test "$rc" = 0
grep -E '^[EW]: ' "$T/lintian.log" | sed 's/^/#   /'

dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|' >"$T/contents"
dpkg-deb -f "$DEB" Depends >"$T/depends"
has() { grep -qxF -- "$1" "$T/contents"; }
for f in /usr/sbin/blinkhookd /usr/bin/blinkhookctl /lib/systemd/system/blinkhookd.service \
	/lib/systemd/system/blinkhookd.socket /lib/systemd/system/blinkhookd@.service \
	/usr/lib/sysusers.d/blinkhook.conf /usr/lib/tmpfiles.d/blinkhook.conf /etc/blinkhook/blinkhookd.conf \
	/usr/share/bash-completion/completions/blinkhookctl /usr/share/doc/blinkhook/copyright \
	/usr/share/doc/blinkhook/examples/nginx-site.conf /usr/share/doc/blinkhook/examples/haproxy.cfg \
	/usr/share/doc/blinkhook/examples/apache-blinkhook.conf /usr/share/doc/blinkhook/examples/Caddyfile \
	/usr/share/doc/blinkhook/examples/nginx-two-nodes.conf /usr/share/doc/blinkhook/docs/postgresql.md; do
	check "the package holds $f" has "$f"
done
# Every man page the tree has, compressed into its section.
for m in "$TOP"/docs/man/*.[1-8]; do
	[ -e "$m" ] || continue
	n=$(basename "$m")
	check "the package holds the man page $n" has "/usr/share/man/man${n##*.}/$n.gz"
done
check "/etc/blinkhook/blinkhookd.conf is a conffile (and the only one)" \
	test "$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xOf - ./conffiles)" = /etc/blinkhook/blinkhookd.conf
check "Depends names procps (the units' ExecReload= runs /bin/kill)" grep -qE '(^|, )procps(,|$| )' "$T/depends"
check "Depends names libpq5 (the PostgreSQL store)" grep -q 'libpq5' "$T/depends"
check "Suggests names postgresql" sh -c "dpkg-deb -f '$DEB' Suggests | grep -qx postgresql"
check "Depends names the shared libraries (shlibs), e.g. libmicrohttpd12" grep -q 'libmicrohttpd12' "$T/depends"
check "the daemon is built with dpkg-buildflags' hardening (fortified: calls __*_chk)" \
	sh -c "dpkg-deb --fsys-tarfile '$DEB' | tar -xOf - ./usr/sbin/blinkhookd >'$T/blinkhookd' && nm -D '$T/blinkhookd' | grep -qE ' U __[a-z_]+_chk(@|\$)'"

# ---- the container: an overlay of this machine's root, booted ----

stop_container() {
	if [ -n "$NS_PID" ] && kill -0 "$NS_PID" 2>/dev/null; then
		kill -TERM "$NS_PID" 2>/dev/null
		local i
		for i in $(seq 200); do
			kill -0 "$NS_PID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$NS_PID" 2>/dev/null; then
			diag "the container did not power off in 20 s; killing it"
			[ -n "$LEADER" ] && kill -KILL "$LEADER" 2>/dev/null
			kill -KILL "$NS_PID" 2>/dev/null
		fi
	fi
	[ -n "$NS_PID" ] && wait "$NS_PID" 2>/dev/null
	NS_PID=
	if [ -n "$OVL" ]; then
		umount "$OVL/root" 2>/dev/null
		umount "$OVL/rw" 2>/dev/null
		OVL=
	fi
}
trap 'stop_container; cleanup' EXIT

[ "$(id -u)" = 0 ] || skip "the installation test needs root (running as uid $(id -u))"
if ! command -v systemd-nspawn >/dev/null || ! command -v nsenter >/dev/null; then
	notok "systemd-nspawn and nsenter are installed (Debian packages systemd-container, util-linux; make deps installs them)"
	exit 1
fi
probe=$(timeout 60 systemd-nspawn --quiet --register=no --keep-unit --volatile=yes --directory=/ \
	--private-network --machine="$MACHINE-probe" </dev/null /bin/true 2>&1)
rc=$?
if [ "$rc" != 0 ]; then
	skip "systemd-nspawn cannot run a container here (exit $rc): $(tr '\n' ' ' <<<"$probe" | sed 's/\x1b\[[0-9;]*m//g')"
fi
if dpkg-query -W -f='${Status}' blinkhook 2>/dev/null | grep -q 'installed'; then
	skip "the package blinkhook is installed on this machine; the container would start with it"
fi

# The overlay's writable layer is a tmpfs of its own (never this machine's
# disk); the lower layer is this machine's root file system, read as it is.
OVL=$T/ovl
mkdir -p "$OVL/root" "$OVL/rw"
mount -t tmpfs -o mode=0755 tmpfs "$OVL/rw" && mkdir "$OVL/rw/upper" "$OVL/rw/work" &&
	mount -t overlay overlay -o "lowerdir=/,upperdir=$OVL/rw/upper,workdir=$OVL/rw/work" "$OVL/root"
rc=$?
[ "$rc" = 0 ] || skip "cannot mount an overlay of / (exit $rc)"
R0=$OVL/root
# Not this machine's services (web servers, databases, timers): only the
# basics boot, and what the package enables.
find "$R0/etc/systemd/system" -mindepth 2 -maxdepth 2 -path '*.wants/*' \
	! -path '*/sysinit.target.wants/*' ! -path '*/sockets.target.wants/*' -delete
python3 -c 'import uuid; print(uuid.uuid4().hex)' >"$R0/etc/machine-id"
# A policy-rc.d (container images carry one that forbids every start and
# stop) would keep the maintainer scripts from stopping and restarting the
# daemon, as they do on a real installation.
rm -f "$R0/usr/sbin/policy-rc.d"
mkdir -p "$R0/srv/blinkhook-deb" "$R0/srv/blinkhook-sim"
cp "$DEB" "$R0/srv/blinkhook-deb/"
cp "$TOP/tests/sim/merakisim.py" "$R0/srv/blinkhook-sim/"

systemd-nspawn --quiet --register=no --keep-unit --boot --directory="$R0" \
	--private-network --machine="$MACHINE" --console=read-only \
	-- systemd.unit=multi-user.target systemd.mask=systemd-machine-id-commit.service \
	</dev/null >"$T/nspawn.log" 2>&1 &
NS_PID=$!

# in_ct COMMAND...: in the container, as its root, clean environment, bounded
# (CT_TIMEOUT seconds: apt-get's man-db trigger may take a while).
in_ct() {
	timeout "${CT_TIMEOUT:-120}" nsenter --target "$LEADER" --mount --uts --ipc --net --pid --cgroup -- \
		env -i PATH="$CT_PATH" SYSTEMD_PAGER= SYSTEMD_COLORS=0 LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
ct_show() { in_ct systemctl show -P "$2" "$1"; }
ct_curl() { in_ct curl -sS --max-time 5 "$@"; }
dump_journal() { in_ct journalctl --no-pager -q -n 30 -u "$1" 2>&1 | sed 's/^/#   /'; }
child_of() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(awk '{ sub(/^.*\) /, ""); print $2 }' "$p/stat" 2>/dev/null)" = "$1" ] && { basename "$p"; return 0; }
	done
	return 1
}
booted() {
	kill -0 "$NS_PID" 2>/dev/null || return 2
	[ -n "$LEADER" ] || LEADER=$(child_of "$NS_PID")
	[ -n "$LEADER" ] || return 1
	case "$(in_ct systemctl is-system-running 2>/dev/null)" in
	running | degraded) return 0 ;;
	esac
	return 1
}
if ! wait_until 90 booted; then
	notok "the container boots systemd within 90 s"
	sed 's/\x1b\[[0-9;]*m//g; s/^/#   /' "$T/nspawn.log" | tail -n 40
	exit 1
fi
ok "the container (an overlay of this machine's root) boots systemd"
failed_units=$(in_ct systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')
[ -z "$failed_units" ] || diag "failed units in the container after boot: $failed_units"
R=/proc/$LEADER/root

# ---- install ----

CT_TIMEOUT=300 in_ct apt-get install -y -q --no-install-recommends "/srv/blinkhook-deb/$(basename "$DEB")" >"$T/apt-install.log" 2>&1
rc=$?
check "apt-get install ./blinkhook_${VERSION}_${ARCH}.deb succeeds (offline: a private network)" test "$rc" = 0
[ "$rc" = 0 ] || { diag "exit $rc"; tail -n 20 "$T/apt-install.log" | sed 's/^/#   /'; exit 1; }
check "dpkg lists blinkhook $VERSION as installed" \
	test "$(in_ct dpkg-query -W -f='${Status} ${Version}' blinkhook)" = "install ok installed $VERSION"
check "the user blinkhook and the group blinkhook-queue exist (sysusers)" \
	sh -c "grep -q '^blinkhook:' '$R/etc/passwd' && grep -q '^blinkhook-queue:' '$R/etc/group'"
check "blinkhook is a member of blinkhook-queue" sh -c "grep -q '^blinkhook-queue:.*[:,]blinkhook\(,\|\$\)' '$R/etc/group'"
check "the spool is as the tmpfiles entry says (2751, tmp/ and new/ 3770, rejected/ 2750)" \
	test "$(in_ct stat -c '%n %U:%G %a' /var/spool/blinkhook /var/spool/blinkhook/tmp /var/spool/blinkhook/new \
		/var/spool/blinkhook/rejected | tr '\n' ' ')" = "/var/spool/blinkhook blinkhook:blinkhook-queue 2751 \
/var/spool/blinkhook/tmp blinkhook:blinkhook-queue 3770 /var/spool/blinkhook/new blinkhook:blinkhook-queue 3770 \
/var/spool/blinkhook/rejected blinkhook:blinkhook-queue 2750 "
check "the config is root:blinkhook-queue 0640 (tmpfiles)" \
	test "$(in_ct stat -c '%U:%G %a' /etc/blinkhook/blinkhookd.conf)" = "root:blinkhook-queue 640"
check "blinkhookd.socket is enabled" test "$(in_ct systemctl is-enabled blinkhookd.socket)" = enabled
check "blinkhookd.service is enabled" test "$(in_ct systemctl is-enabled blinkhookd.service)" = enabled
check "no instance of the template blinkhookd@.service is enabled" \
	test -z "$(find "$R/etc/systemd/system" -name 'blinkhookd@*')"
check "the package starts nothing before the operator has put the API key in place" \
	test "$(ct_show blinkhookd.service ActiveState)/$(ct_show blinkhookd.socket ActiveState)" = inactive/inactive
if in_ct sh -c 'command -v man' >/dev/null && [ -n "$(ls "$TOP"/docs/man/*.8 2>/dev/null)" ]; then
	man_found() { test "$(in_ct man -w blinkhookd 2>/dev/null)" = /usr/share/man/man8/blinkhookd.8.gz; }
	check "man -w blinkhookd finds the installed page" man_found
fi

# ---- the operator's steps: the config and the key, then start ----

cat >"$R/etc/blinkhook/blinkhookd.conf" <<EOF
# written by 44-deb.sh
[meraki]
base_url = http://127.0.0.1:$SIM_IN_PORT/api/v1
min_interval = 0.2s
retry_initial = 100ms
retry_max = 1s
request_timeout = 5s
[callback]
public_url = http://127.0.0.1:$CB_PORT
EOF
(umask 077 && printf '%s\n' "$API_KEY" >"$R/etc/blinkhook/meraki-api-key")
in_ct systemd-run --quiet --unit=merakisim --property=Type=exec \
	/usr/bin/python3 /srv/blinkhook-sim/merakisim.py --host 127.0.0.1 --port "$SIM_IN_PORT" \
	--api-key "$API_KEY" --min-interval 0.1 --blink-time 0.3 --log /run/merakisim.log
sim_up() { ct_curl -f -o /dev/null "http://127.0.0.1:$SIM_IN_PORT/_sim/health"; }
check "the simulator runs in the container" wait_until 20 sim_up
# As the unit runs it: its user and group, the key as a credential.
check_config() {
	in_ct systemd-run --quiet --wait --pipe --property=User=blinkhook --property=Group=blinkhook-queue \
		--property=LoadCredential=meraki-api-key:/etc/blinkhook/meraki-api-key \
		/usr/sbin/blinkhookd --check-config >"$T/check-config.log" 2>&1
}
check "blinkhookd --check-config accepts the config and the key" check_config
in_ct systemctl start blinkhookd.socket blinkhookd.service >"$T/start.log" 2>&1
check "systemctl start blinkhookd.socket blinkhookd.service succeeds" test $? = 0
if ! test "$(ct_show blinkhookd.service ActiveState)" = active; then
	notok "blinkhookd.service is active"
	sed 's/^/#   /' "$T/start.log"
	dump_journal blinkhookd.service
else
	ok "blinkhookd.service is active"
fi
healthz_ok() { test "$(ct_curl -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CB_PORT/healthz")" = 200; }
check "/healthz answers 200 through the socket" wait_until 10 healthz_ok
id=$(in_ct blinkhookctl blink Q2AA-BBBB-DEB1 --duration 1)
job_complete() { test "$(in_ct blinkhookctl status "$id" --json | json 'j["state"]')" = complete; }
check "a blink queued with blinkhookctl reaches complete" wait_until 20 job_complete
reload_ok() { in_ct systemctl reload blinkhookd.service && test "$(ct_show blinkhookd.service ActiveState)" = active; }
check "systemctl reload blinkhookd (ExecReload's /bin/kill, from procps) succeeds" reload_ok

# ---- upgrade to a higher version: restarted, jobs, config and key kept ----

# The same tree, with a changelog entry of a higher version on top; built
# without a clean (the binaries are there already).
SRC2=$T/src2
cp -a "$TOP/$B/deb/src" "$SRC2"
V2="$VERSION+t1"
{
	printf 'blinkhook (%s) unstable; urgency=medium\n\n  * An upgrade for 44-deb.sh.\n\n' "$V2"
	printf ' -- %s  %s\n\n' "$(sed -n 's/^Maintainer: //p' "$SRC2/debian/control")" "$(LC_ALL=C date -u -R)"
	cat "$TOP/$B/deb/src/debian/changelog"
} >"$SRC2/debian/changelog"
(cd "$SRC2" && nice dpkg-buildpackage -us -uc -b -nc) >"$T/deb2.log" 2>&1
DEB2=$T/blinkhook_${V2}_${ARCH}.deb
check "a package of version $V2 builds" test -f "$DEB2"
MAIN1=$(ct_show blinkhookd.service MainPID)
cp "$DEB2" "$R/srv/blinkhook-deb/"
CT_TIMEOUT=300 in_ct apt-get install -y -q --no-install-recommends "/srv/blinkhook-deb/$(basename "$DEB2")" >"$T/apt-upgrade.log" 2>&1
rc=$?
check "apt-get install of $V2 upgrades the package" test "$rc" = 0
[ "$rc" = 0 ] || tail -n 20 "$T/apt-upgrade.log" | sed 's/^/#   /'
check "dpkg lists blinkhook $V2 as installed" \
	test "$(in_ct dpkg-query -W -f='${Status} ${Version}' blinkhook)" = "install ok installed $V2"
restarted() { test "$(ct_show blinkhookd.service ActiveState)" = active && test "$(ct_show blinkhookd.service MainPID)" != "$MAIN1"; }
check "the upgrade restarted the running daemon (a new main pid, active)" wait_until 10 restarted
check "the upgrade kept the operator's config and the API key" \
	sh -c "grep -q '^# written by 44-deb.sh' '$R/etc/blinkhook/blinkhookd.conf' && test -s '$R/etc/blinkhook/meraki-api-key'"
check "the job from before the upgrade is still there, complete" wait_until 10 job_complete

# ---- remove: the config, the state and the spool stay ----

CT_TIMEOUT=300 in_ct apt-get remove -y -q blinkhook >"$T/apt-remove.log" 2>&1
rc=$?
check "apt-get remove blinkhook succeeds" test "$rc" = 0
[ "$rc" = 0 ] || tail -n 20 "$T/apt-remove.log" | sed 's/^/#   /'
check "after remove the daemon is stopped" test "$(ct_show blinkhookd.service ActiveState)" != active
check "after remove the programs and the units are gone" \
	sh -c "! test -e '$R/usr/sbin/blinkhookd' && ! test -e '$R/usr/bin/blinkhookctl' && ! test -e '$R/lib/systemd/system/blinkhookd.service' && ! test -e '$R/lib/systemd/system/blinkhookd.socket'"
check "after remove the config and the API key stay" \
	sh -c "test -s '$R/etc/blinkhook/blinkhookd.conf' && test -s '$R/etc/blinkhook/meraki-api-key'"
check "after remove the job log (/var/lib/blinkhook) stays" test -n "$(ls -A "$R/var/lib/blinkhook" 2>/dev/null)"
check "after remove the spool stays" test -d "$R/var/spool/blinkhook/new"

# ---- purge: everything of the package goes, the user stays ----

CT_TIMEOUT=300 in_ct apt-get purge -y -q blinkhook >"$T/apt-purge.log" 2>&1
rc=$?
check "apt-get purge blinkhook succeeds" test "$rc" = 0
[ "$rc" = 0 ] || tail -n 20 "$T/apt-purge.log" | sed 's/^/#   /'
purged() { ! in_ct dpkg-query -W -f='${Status}' blinkhook 2>/dev/null | grep -q .; }
check "after purge dpkg knows nothing of blinkhook" purged
check "after purge /etc/blinkhook is gone (config and API key)" test ! -e "$R/etc/blinkhook"
check "after purge the state directory /var/lib/blinkhook is gone" test ! -e "$R/var/lib/blinkhook"
check "after purge the spool /var/spool/blinkhook is gone" test ! -e "$R/var/spool/blinkhook"
check "after purge no enablement symlink is left" test -z "$(find "$R/etc/systemd/system" -name 'blinkhookd*')"
check "after purge the user blinkhook stays (Debian leaves system users)" grep -q '^blinkhook:' "$R/etc/passwd"

stop_container
check "this machine has no /etc/blinkhook and no package blinkhook afterwards" \
	sh -c "! test -e /etc/blinkhook && ! dpkg-query -W blinkhook >/dev/null 2>&1"
