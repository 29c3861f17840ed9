#!/usr/bin/env bash
# asan: skip (no program runs: it reads the documentation)
# The documentation holds together: the README stays an entry point (at most
# 300 lines) that still names the test command CI runs; every relative link
# in README.md, CHANGELOG.md and docs/*.md names a file in the tree, and
# every #anchor a heading of the file it points into (GitHub's rule: lower
# case, punctuation but - and _ dropped, spaces to -); the changelog's
# unreleased section is at its top.
. "$(dirname "$0")/../lib.sh"

cd "$TOP" || exit 1
n=$(wc -l <README.md)
check "README.md is an entry point of at most 300 lines ($n)" test "$n" -le 300
check "README.md has the command CI runs (make check)" grep -q '^make check ' README.md
check "CI runs exactly make check" test "$(grep -v "^#" .ci/run | grep "^make ")" = "make check"
# The top of the changelog is this version, or an unreleased one after it.
version=$(sed -n 's/^#define BLINKHOOK_VERSION "\(.*\)"$/\1/p' include/blinkhook/version.h)
top=$(grep -m1 '^## ' CHANGELOG.md)
top_is_current() {
	local next=${top#\#\# }
	next=${next% (unreleased)}
	[ "$top" = "## $version" ] && return 0
	[ "$top" = "## $next (unreleased)" ] && [ "$next" != "$version" ] &&
		[ "$(printf '%s\n' "$version" "$next" | sort -V | tail -n1)" = "$next" ]
}
check "CHANGELOG.md starts with blinkhook $version or an unreleased version after it ($top)" top_is_current

# links FILE...: prints "FILE: TARGET: why" for each relative link that does
# not resolve; nothing when all do.
links() {
	python3 - "$@" <<'PY'
import os, re, sys
def anchors(path):
    out, fence = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"#+ (.*)", line)
        if m:
            a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(a)
    return out
bad = 0
for f in sys.argv[1:]:
    text = re.sub(r"```.*?```", "", open(f, encoding="utf-8").read(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, frag = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
        if not os.path.exists(dest):
            print(f"{f}: {target}: no such file"); bad += 1
        elif frag and frag not in anchors(dest):
            print(f"{f}: {target}: no such heading"); bad += 1
sys.exit(1 if bad else 0)
PY
}
nlinks=$(cat README.md CHANGELOG.md docs/*.md | grep -o '](' | wc -l)
out=$(links README.md CHANGELOG.md docs/*.md)
check "every relative link and #anchor in README.md, CHANGELOG.md and docs/*.md resolves ($nlinks links)" test -z "$out"
[ -z "$out" ] || diag "$out"
check "README.md links each page of docs/" sh -c 'for f in docs/*.md; do grep -qF "]($f)" README.md || exit 1; done'
# A link checker that cannot fail proves nothing: it must catch a bad link.
printf '[x](docs/no-such.md) [y](docs/design.md#no-such-heading)\n' >"$T/bad.md"
cp -r docs "$T/docs"
check "the link check finds a missing file and a missing heading" \
	test "$(cd "$T" && links bad.md | wc -l)" = 2
