#!/usr/bin/env bash
# asan: skip (bash completion: the real program only lists jobs)
# Bash completion for blinkhookctl, as bash calls it: the file is sourced,
# the function is called with COMP_WORDS and COMP_CWORD, COMPREPLY read.
. "$(dirname "$0")/../lib.sh"

COMPLETION=$TOP/conf/blinkhookctl.bash-completion
SIM_URL=http://127.0.0.1:1
write_config
mkdir -p "$T/state"
# Two jobs in the log: one complete, one still queued.
python3 - "$T/state/jobs.log" <<'PY'
import sys, time, json
ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
recs = [
    {"id": "done-job-1", "event": "queued", "serial": "Q2AA-COMP-0001", "duration": 5, "source": "queue"},
    {"id": "done-job-1", "event": "submitted", "leds_blink_id": "1", "meraki_status": "new", "attempts": 1, "source": "api"},
    {"id": "done-job-1", "event": "complete", "leds_blink_id": "1", "meraki_status": "complete", "source": "callback"},
    {"id": "open-job-2", "event": "queued", "serial": "Q2AA-COMP-0002", "duration": 5, "source": "queue"},
]
with open(sys.argv[1], "w") as f:
    for r in recs:
        r.update({"v": 1, "ts": ts})
        f.write(json.dumps(r, separators=(",", ":")) + "\n")
PY

# complete WORD...: the candidates for the last word, sorted, one a line.
complete_words() {
	bash -c '
		. "$1"; shift
		COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMPREPLY=()
		_blinkhookctl
		printf "%s\n" "${COMPREPLY[@]}" | sort' _ "$COMPLETION" "$@"
}
has() { # has CANDIDATES WORD...: every word is among the candidates
	local c=$1 w; shift
	for w in "$@"; do grep -qx -- "$w" <<<"$c" || return 1; done
}

bash -n "$COMPLETION"
check "the completion file is valid bash" test $? = 0
check "it registers _blinkhookctl for blinkhookctl" \
	sh -c "bash -c '. \"$COMPLETION\"; complete -p blinkhookctl' | grep -q -- '-F _blinkhookctl blinkhookctl'"
c=$(complete_words "$BLINKHOOKCTL" "")
check "the verbs ($(echo $c))" test "$(echo $c)" = "blink cancel jobs log selftest status wait"
c=$(complete_words "$BLINKHOOKCTL" "st")
check "a verb's prefix: st -> status ($(echo $c))" test "$(echo $c)" = "status"
c=$(complete_words "$BLINKHOOKCTL" "--")
check "the global options ($(echo $c))" has "$c" --config --help --version
c=$(complete_words "$BLINKHOOKCTL" -c "$T/bh.conf" blink Q2AA-COMP-0001 --)
check "blink's options ($(echo $c))" has "$c" --name --mac --duration --id --wait --json
c=$(complete_words "$BLINKHOOKCTL" blink --d)
check "blink --d -> --duration ($(echo $c))" test "$(echo $c)" = "--duration"
c=$(complete_words "$BLINKHOOKCTL" wait --)
check "wait's options ($(echo $c))" test "$(echo $c)" = "--json --timeout"
c=$(complete_words "$BLINKHOOKCTL" -c "$T/bh.conf" status "")
check "status: the job ids of the log, read with -c FILE ($(echo $c))" test "$(echo $c)" = "done-job-1 open-job-2"
c=$(complete_words "$BLINKHOOKCTL" --config="$T/bh.conf" wait done-job-1 "o")
check "wait: more ids, by prefix, with --config=FILE ($(echo $c))" test "$(echo $c)" = "open-job-2"
c=$(complete_words "$BLINKHOOKCTL" -c "$T/bh.conf" cancel "")
check "cancel: only the queued job ($(echo $c))" test "$(echo $c)" = "open-job-2"
c=$(complete_words "$BLINKHOOKCTL" jobs --state "")
check "jobs --state: the states ($(echo $c))" test "$(echo $c)" = "complete expired failed queued submitted"
c=$(complete_words "$BLINKHOOKCTL" -c "$T/bh.conf" blink --duration "")
check "no candidates for a value of the user's own (--duration)" test -z "$c"
c=$(complete_words "$BLINKHOOKCTL" -c "$T/b")
check "-c completes a file name ($(echo $c))" has "$c" "$T/bh.conf"

# A long log: the ids offered are the 200 newest, not all of them (a Tab
# reads no more than that).
python3 - "$T/state/jobs.log" <<'PY'
import sys, time, json
ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
with open(sys.argv[1], "a") as f:
    for i in range(250):
        f.write(json.dumps({"v": 1, "ts": ts, "id": "many-%03d" % i, "event": "queued", "serial": "Q2AA-COMP-0003",
                            "duration": 5, "source": "queue"}, separators=(",", ":")) + "\n")
PY
c=$(complete_words "$BLINKHOOKCTL" -c "$T/bh.conf" status "")
check "status on a long log: the 200 newest ids ($(wc -w <<<"$c") offered)" \
	sh -c "[ $(wc -w <<<"$c") = 200 ] && echo '$c' | grep -qx many-249 && echo '$c' | grep -qx many-050 && ! echo '$c' | grep -qx many-049"
c=$(complete_words "$BLINKHOOKCTL" -c "$T/bh.conf" cancel "")
check "cancel on a long log: the 200 newest queued ids ($(wc -w <<<"$c") offered)" \
	sh -c "[ $(wc -w <<<"$c") = 200 ] && echo '$c' | grep -qx many-249 && ! echo '$c' | grep -qx open-job-2"

# make install puts it where bash-completion looks for it.
make -s -C "$TOP" install DESTDIR="$T/root" PREFIX=/usr B="$B" >"$T/install.log" 2>&1
check "make install puts it under PREFIX/share/bash-completion/completions" \
	cmp -s "$COMPLETION" "$T/root/usr/share/bash-completion/completions/blinkhookctl"
make -s -C "$TOP" uninstall DESTDIR="$T/root" PREFIX=/usr B="$B" >>"$T/install.log" 2>&1
check "make uninstall removes it" test ! -e "$T/root/usr/share/bash-completion/completions/blinkhookctl"
