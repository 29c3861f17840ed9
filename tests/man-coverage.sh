#!/usr/bin/env bash
# The man pages against the code they describe, so that they cannot fall
# behind it: every key of src/config.c's key table has its entry under its
# section in blinkhookd.conf(5), saying what the table says about a reload;
# every command of blinkhookctl and each of its long options is in
# blinkhookctl(1), the options under their command; blinkhookd's options are
# in blinkhookd(8).  Prints one line per thing missing; exit 1 if any is.
#
#   tests/man-coverage.sh [TOP]     (TOP: the source tree, default: this one)
set -u
TOP=${1:-$(cd "$(dirname "$0")/.." && pwd)}
MAN=$TOP/docs/man
fail=0
missing() { echo "man-coverage: $*" >&2; fail=1; }

# ---- blinkhookd.conf(5): KEY("section", "name", ...) and KEY_RESTART(...) ----
keys=$(sed -n 's/^[[:space:]]*\(KEY\|KEY_RESTART\)("\([a-z_]*\)", "\([a-z_]*\)".*/\1 \2 \3/p' "$TOP/src/config.c")
[ -n "$keys" ] || missing "no key table found in src/config.c"
while read -r kind section name; do
	# The entry: from ".It Cm NAME" in the section's .Ss to the next .It/.El.
	entry=$(awk -v sec="[$section]" -v key="$name" '
		/^\.S[sh] / { s = $0; sub(/^\.S[sh] "?/, "", s); sub(/"$/, "", s); in_sec = (s == sec); inside = 0; next }
		in_sec && /^\.(It|El)([ ]|$)/ { inside = 0 }
		in_sec && $1 == ".It" && $2 == "Cm" && $3 == key { inside = 1; found = 1 }
		inside { print }
		END { if (!found) exit 1 }' "$MAN/blinkhookd.conf.5") ||
		{ missing "blinkhookd.conf.5: [$section] $name has no entry (.It Cm $name under .Ss \"[$section]\")"; continue; }
	if [ "$kind" = KEY_RESTART ]; then
		grep -q 'Needs a restart\.' <<<"$entry" ||
			missing "blinkhookd.conf.5: [$section] $name needs a restart (KEY_RESTART), and its entry does not say so"
	else
		grep -q 'Applied by a reload' <<<"$entry" ||
			missing "blinkhookd.conf.5: [$section] $name is applied by a reload, and its entry does not say so"
	fi
done <<<"$keys"

# ---- blinkhookctl(1) ----
ctl=$TOP/src/blinkhookctl.c
# The commands table: {"blink", cmd_blink}, ...
verbs=$(grep -o '{"[a-z]*", cmd_[a-z_]*}' "$ctl" | sed 's/{"\([a-z]*\)", cmd_\([a-z_]*\)}/\1 \2/')
[ -n "$verbs" ] || missing "no command table found in src/blinkhookctl.c"
verb_re=$(awk '{ printf "%s%s", sep, $1; sep = "|" }' <<<"$verbs")
# Each command's long options: the option table inside its cmd_ function.
opts_of() {
	awk -v fn="$1" '
		$0 ~ "^(static )?int " fn "\\(" { inside = 1; next }
		inside && /^}/ { exit }
		inside { while (match($0, /\{"[a-z-]+", (no|required|optional)_argument/)) {
			o = substr($0, RSTART + 2, RLENGTH); sub(/".*/, "", o); print o; $0 = substr($0, RSTART + RLENGTH) } }' "$ctl"
}
# An option's own list item: an .It line (not a command's .It Cm) naming it.
has_item() { grep -v '^\.It Cm ' | grep -Eq "^\.It .*Fl -$1([^a-z-]|\$)"; }
while read -r verb fn; do
	block=$(awk -v verb="$verb" -v re="^\\\\.It Cm ($verb_re)( |\$)" '
		$0 ~ re { inside = ($3 == verb); if (inside) found = 1 }
		/^\.Sh / { inside = 0 }
		inside { print }
		END { if (!found) exit 1 }' "$MAN/blinkhookctl.1") ||
		{ missing "blinkhookctl.1: command $verb has no entry (.It Cm $verb under COMMANDS)"; continue; }
	for o in $(opts_of "cmd_$fn"); do
		has_item "$o" <<<"$block" || missing "blinkhookctl.1: option --$o of $verb has no item (.It Fl -$o) in its entry"
	done
done <<<"$verbs"
# The options before the command: main()'s table.
[ -n "$(opts_of main)" ] || missing "no option table found in blinkhookctl's main()"
for o in $(opts_of main); do
	has_item "$o" <"$MAN/blinkhookctl.1" || missing "blinkhookctl.1: option --$o has no item (.It ... Fl -$o)"
done

# ---- blinkhookd(8): main()'s table ----
ctl=$TOP/src/blinkhookd.c
[ -n "$(opts_of main)" ] || missing "no option table found in blinkhookd's main()"
for o in $(opts_of main); do
	has_item "$o" <"$MAN/blinkhookd.8" || missing "blinkhookd.8: option --$o has no item (.It ... Fl -$o)"
done

[ "$fail" = 0 ] && echo "man-coverage: every config key, command and option is in the man pages"
exit "$fail"
