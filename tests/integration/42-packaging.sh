#!/usr/bin/env bash
# asan: skip (it builds and installs its own normal binaries)
# A packager's build, into its own build directories: Debian's flags from
# dpkg-buildflags build clean under -Werror and reach every compile; a
# _FORTIFY_SOURCE level of the packager's, in CPPFLAGS or CFLAGS, replaces
# the project's; SYSCONFDIR is the compiled-in default config and what the
# installed units and tmpfiles entry name, and changing it rebuilds.
. "$(dirname "$0")/../lib.sh"

MAKE_J=(nice make -j2 --no-print-directory -C "$TOP")
FCC=$(command -v clang >/dev/null && echo clang || echo cc)

# compiles LOG: the compiler command lines make ran (one per object).
compiles() { grep -E -- ' -c [^ ]+\.c -o ' "$1"; }
# every_compile LOG PATTERN: there were compiles, and each matches PATTERN.
every_compile() {
	local n
	n=$(compiles "$1" | wc -l)
	[ "$n" -gt 0 ] && [ "$(compiles "$1" | grep -cE -- "$2")" = "$n" ]
}
# every_compile_has LOG STRING: the same for a fixed string.
every_compile_has() {
	local n
	n=$(compiles "$1" | wc -l)
	[ "$n" -gt 0 ] && [ "$(compiles "$1" | grep -cF -- "$2")" = "$n" ]
}
# no_compile LOG PATTERN: no compile matches PATTERN.
no_compile() { ! compiles "$1" | grep -qE -- "$2"; }
# fortified FILE: the binary calls glibc's checked functions.
fortified() { nm -D "$1" | grep -qE ' U __[a-z_]+_chk(@|$)'; }
show_log() { tail -n 20 "$1" | sed 's/^/#   /'; }

# ---- Debian's flags, exactly as a package build passes them ----

if ! command -v dpkg-buildflags >/dev/null; then
	notok "dpkg-buildflags is missing (Debian package dpkg-dev)"
	exit 1
fi
D_CFLAGS=$(cd "$TOP" && dpkg-buildflags --get CFLAGS)
D_CPPFLAGS=$(cd "$TOP" && dpkg-buildflags --get CPPFLAGS)
D_LDFLAGS=$(cd "$TOP" && dpkg-buildflags --get LDFLAGS)
diag "dpkg-buildflags: CPPFLAGS=$D_CPPFLAGS CFLAGS=$D_CFLAGS LDFLAGS=$D_LDFLAGS"
DEB=$T/deb
DEB_FLAGS=(CFLAGS="$D_CFLAGS" CPPFLAGS="$D_CPPFLAGS" LDFLAGS="$D_LDFLAGS")
"${MAKE_J[@]}" B="$DEB" "${DEB_FLAGS[@]}" all >"$T/deb.log" 2>&1
rc=$?
check "dpkg-buildflags' CFLAGS, CPPFLAGS and LDFLAGS build clean under -Werror" test "$rc" = 0
[ "$rc" = 0 ] || show_log "$T/deb.log"
check "every compile ran with -Werror" every_compile "$T/deb.log" ' -Werror '
check "every compile ran with dpkg-buildflags' CPPFLAGS ($D_CPPFLAGS)" every_compile_has "$T/deb.log" " $D_CPPFLAGS "
check "every compile ran with dpkg-buildflags' CFLAGS" every_compile_has "$T/deb.log" " $D_CFLAGS "
check "no compile defined _FORTIFY_SOURCE twice" no_compile "$T/deb.log" '_FORTIFY_SOURCE=.*_FORTIFY_SOURCE'
check "the daemon is fortified (calls __*_chk)" fortified "$DEB/blinkhookd"
check "blinkhookd --help names the default config /etc/blinkhook/blinkhookd.conf" \
	sh -c "'$DEB/blinkhookd' --help | grep -qF '(default /etc/blinkhook/blinkhookd.conf)'"

# ---- the packager's own _FORTIFY_SOURCE level ----

"${MAKE_J[@]}" B="$T/f3cpp" CC="$FCC" CPPFLAGS=-D_FORTIFY_SOURCE=3 all >"$T/f3cpp.log" 2>&1
rc=$?
check "CPPFLAGS=-D_FORTIFY_SOURCE=3 builds clean under -Werror ($FCC)" test "$rc" = 0
[ "$rc" = 0 ] || show_log "$T/f3cpp.log"
check "CPPFLAGS=-D_FORTIFY_SOURCE=3: every compile has level 3" every_compile "$T/f3cpp.log" ' -D_FORTIFY_SOURCE=3 '
check "CPPFLAGS=-D_FORTIFY_SOURCE=3: no compile has level 2" no_compile "$T/f3cpp.log" '_FORTIFY_SOURCE=2'

"${MAKE_J[@]}" B="$T/f3c" CC="$FCC" CFLAGS='-O2 -D_FORTIFY_SOURCE=3' all >"$T/f3c.log" 2>&1
rc=$?
check "CFLAGS='-O2 -D_FORTIFY_SOURCE=3' builds clean under -Werror ($FCC)" test "$rc" = 0
[ "$rc" = 0 ] || show_log "$T/f3c.log"
check "CFLAGS=... -D_FORTIFY_SOURCE=3: no compile has level 2" no_compile "$T/f3c.log" '_FORTIFY_SOURCE=2'

# ---- SYSCONFDIR: compiled in, substituted, and a change rebuilds ----

ROOT=$T/root
"${MAKE_J[@]}" B="$DEB" "${DEB_FLAGS[@]}" install DESTDIR="$ROOT" PREFIX=/usr SYSCONFDIR=/opt/etc >"$T/install.log" 2>&1
rc=$?
check "make install DESTDIR=... PREFIX=/usr SYSCONFDIR=/opt/etc succeeds" test "$rc" = 0
[ "$rc" = 0 ] || show_log "$T/install.log"
check "the new SYSCONFDIR recompiled the objects already built" \
	grep -qE -- " -DBLINKHOOK_SYSCONFDIR='\"/opt/etc\"' .* -c src/blinkhookd.c " "$T/install.log"
UNITS=$ROOT/usr/lib/systemd/system
TMPF=$ROOT/usr/lib/tmpfiles.d/blinkhook.conf
check "installed the config as /opt/etc/blinkhook/blinkhookd.conf" test -f "$ROOT/opt/etc/blinkhook/blinkhookd.conf"
check "the installed config's own comment names /opt/etc/blinkhook/blinkhookd.conf" \
	grep -q '^# blinkhookd configuration: /opt/etc/blinkhook/blinkhookd.conf$' "$ROOT/opt/etc/blinkhook/blinkhookd.conf"
check "blinkhookd.service runs -c /opt/etc/blinkhook/blinkhookd.conf" \
	grep -qx 'ExecStart=/usr/sbin/blinkhookd -c /opt/etc/blinkhook/blinkhookd.conf' "$UNITS/blinkhookd.service"
check "blinkhookd.service loads the key from /opt/etc/blinkhook/meraki-api-key" \
	grep -qx 'LoadCredential=meraki-api-key:/opt/etc/blinkhook/meraki-api-key' "$UNITS/blinkhookd.service"
check "blinkhookd@.service runs -c /opt/etc/blinkhook/%i.conf" \
	grep -qx 'ExecStart=/usr/sbin/blinkhookd -c /opt/etc/blinkhook/%i.conf' "$UNITS/blinkhookd@.service"
check "blinkhookd@.service loads the key from /opt/etc/blinkhook/%i.meraki-api-key" \
	grep -qx 'LoadCredential=meraki-api-key:/opt/etc/blinkhook/%i.meraki-api-key' "$UNITS/blinkhookd@.service"
check "the tmpfiles entry sets the mode of /opt/etc/blinkhook/blinkhookd.conf" \
	grep -qE '^z /opt/etc/blinkhook/blinkhookd.conf 0640 root +blinkhook-queue -$' "$TMPF"
check "nothing installed names /etc/blinkhook any more" \
	sh -c "! grep -rq '[^t]/etc/blinkhook' '$UNITS' '$TMPF' '$ROOT/opt/etc/blinkhook/blinkhookd.conf' '$ROOT/usr/share/man'"
check "the installed blinkhookd(8) names /opt/etc/blinkhook/blinkhookd.conf" \
	grep -q '/opt/etc/blinkhook/blinkhookd.conf' "$ROOT/usr/share/man/man8/blinkhookd.8"

D=$ROOT/usr/sbin/blinkhookd
CTL=$ROOT/usr/bin/blinkhookctl
check "the installed blinkhookd --help names /opt/etc/blinkhook/blinkhookd.conf" \
	sh -c "'$D' --help | grep -qF '(default /opt/etc/blinkhook/blinkhookd.conf)'"
check "the installed blinkhookctl --help names /opt/etc/blinkhook/blinkhookd.conf" \
	sh -c "'$CTL' --help | grep -qF '(default /opt/etc/blinkhook/blinkhookd.conf)'"
if [ -e /opt/etc/blinkhook/blinkhookd.conf ]; then
	diag "SKIP: /opt/etc/blinkhook/blinkhookd.conf exists on this machine: not run without -c"
else
	out=$(env -u JOURNAL_STREAM "$D" 2>&1)
	rc=$?
	check "blinkhookd without -c fails (exit 1, got $rc) reading /opt/etc/blinkhook/blinkhookd.conf" \
		sh -c "[ $rc = 1 ] && printf '%s\n' \"\$1\" | grep -qF '/opt/etc/blinkhook/blinkhookd.conf: No such file or directory'" _ "$out"
	out=$("$CTL" jobs 2>&1)
	check "blinkhookctl without -c reads /opt/etc/blinkhook/blinkhookd.conf" \
		sh -c "printf '%s\n' \"\$1\" | grep -qF '/opt/etc/blinkhook/blinkhookd.conf: No such file or directory'" _ "$out"
fi

# The installed units still verify (ExecStart= pointed at the installed
# daemon, which verify needs to exist, as in 60-systemd.sh).
VU=$T/verify
mkdir -p "$VU"
cp "$UNITS/blinkhookd.service" "$UNITS/blinkhookd.socket" "$UNITS/blinkhookd@.service" "$VU/"
sed -i "s|^ExecStart=/usr/sbin/blinkhookd |ExecStart=$D |" "$VU/blinkhookd.service" "$VU/blinkhookd@.service"
ln -s blinkhookd@.service "$VU/blinkhookd@test.service"
for u in blinkhookd.socket blinkhookd.service blinkhookd@test.service; do
	# verify runs man(1) for the units' Documentation=man:...: the pages installed.
	out=$(cd "$VU" && MANPATH=$ROOT/usr/share/man SYSTEMD_LOG_COLOR=0 timeout 60 systemd-analyze verify "$VU/$u" 2>&1)
	rc=$?
	if [ "$rc" = 0 ] && [ -z "$out" ]; then
		ok "systemd-analyze verify of the installed $u prints nothing"
	else
		notok "systemd-analyze verify of the installed $u prints nothing (exit $rc)"
		sed 's/^/#   /' <<<"$out"
	fi
done

# A plain make after all this is back to /etc (the flags changed back).
"${MAKE_J[@]}" B="$DEB" "${DEB_FLAGS[@]}" all >"$T/deb2.log" 2>&1
check "a plain make after SYSCONFDIR=/opt/etc rebuilds with /etc again" \
	sh -c "'$DEB/blinkhookd' --help | grep -qF '(default /etc/blinkhook/blinkhookd.conf)'"
"${MAKE_J[@]}" B="$DEB" "${DEB_FLAGS[@]}" all >"$T/deb3.log" 2>&1
rc=$?
compiled=$(compiles "$T/deb3.log" | wc -l)
check "the same flags once more: make succeeds and compiles nothing (compiled $compiled)" \
	test "$rc" = 0 -a "$compiled" = 0
