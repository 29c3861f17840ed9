-- SPDX-License-Identifier: MIT
-- wrk script: Meraki LED-blink callbacks (~640-byte JSON bodies shaped like
-- the simulator's and Meraki's), one request a job and status.
--
-- Configured from the environment (run-bench.sh sets it):
--   BENCH_MODE     accepted  each request carries a NEW status for its job, so
--                            that every 200 is a new durable record: position p
--                            of a stream goes to job p % N with status
--                            ready, scheduled, running, complete for the
--                            1st..4th pass (ranks only go up)
--                  repeat    a status the job already has (200, nothing new
--                            to record): "ready" for jobs 1..BENCH_POOL
--                  wrong     valid jobs, a wrong secret (401)
--                  unknown   job ids that do not exist, each with its own
--                            correct secret (404: the secret is checked first)
--                  fixed     ids from the stream, the one secret BENCH_SECRET
--                            (the baseline and the webhook alternative)
--   BENCH_SECRETS  file: line i+1 is job i's secret (job i is bj%08d)
--   BENCH_GHOSTS   file: "id secret" lines of jobs that do not exist
--   BENCH_N        jobs prepared;  BENCH_START  first stream position
--   BENCH_THREADS  wrk's -t;       BENCH_POOL   jobs for "repeat"
--   BENCH_PATH     path format with one %s for the job id
--   BENCH_CLOSE    1: send Connection: close
--   BENCH_OUT      done() writes one "key=value ..." line here
--
-- Thread t of T sends stream positions start + t, start + t + T, ...; done()
-- reports the first position no thread used (next=), for the next run.

local mode = os.getenv("BENCH_MODE") or "fixed"
local N = tonumber(os.getenv("BENCH_N") or "1")
local START = tonumber(os.getenv("BENCH_START") or "0")
local T = tonumber(os.getenv("BENCH_THREADS") or "1")
local POOL = tonumber(os.getenv("BENCH_POOL") or "1000")
local PATH = os.getenv("BENCH_PATH") or "/callbacks/leds-blink/%s"
local CLOSE = os.getenv("BENCH_CLOSE") == "1"
local FIXED = os.getenv("BENCH_SECRET") or "x"
local STATUSES = { "ready", "scheduled", "running", "complete" }

local BODY = '{"callbackId":"%d","organization":{"id":"549236","name":"Example Corporation - Data Centre Operations",'
	.. '"url":"https://n392.meraki.com/o/Jo2tXb/manage/organization/overview"},'
	.. '"network":{"id":"L_646829496481105433","name":"Frankfurt DC2 / Hall B / Row C - Core Switching",'
	.. '"url":"https://n392.meraki.com/DC2-Core/n/4nWq2d/manage/nodes/list"},'
	.. '"sentAt":"2026-11-27T11:20:32.123456Z","sharedSecret":"%s",'
	.. '"message":{"ledsBlinkId":"%d","url":"/devices/Q2AA-BBBB-CCCC/liveTools/leds/blink/%d",'
	.. '"status":"%s","request":{"serial":"Q2AA-BBBB-CCCC","duration":30},"error":null}}'

local threads = {}
local counter = 0

function setup(thread)
	thread:set("tid", counter)
	counter = counter + 1
	table.insert(threads, thread)
end

-- Per thread (each has its own Lua state).
local secrets, ghosts = nil, nil
issued = 0 -- global: done() reads it with thread:get()
local head

local function load_lines(path)
	local t = {}
	for line in io.lines(path) do
		t[#t + 1] = line
	end
	return t
end

function init(args)
	if mode == "accepted" or mode == "repeat" or mode == "wrong" then
		secrets = load_lines(os.getenv("BENCH_SECRETS"))
	elseif mode == "unknown" then
		ghosts = {}
		for _, line in ipairs(load_lines(os.getenv("BENCH_GHOSTS"))) do
			local id, s = line:match("^(%S+) (%S+)$")
			ghosts[#ghosts + 1] = { id, s }
		end
	end
	head = "Host: " .. wrk.host .. ":" .. tostring(wrk.port) .. "\r\nUser-Agent: MerakiWebhooks/1.0 (bench)\r\n"
		.. "Content-Type: application/json\r\n" .. (CLOSE and "Connection: close\r\n" or "")
end

function request()
	local k = issued
	issued = issued + 1
	local p = START + tid + k * T
	local j = p % N
	local id, secret, status
	if mode == "accepted" then
		id, secret = string.format("bj%08d", j), secrets[j + 1]
		status = STATUSES[math.floor(p / N) + 1] or "complete"
	elseif mode == "repeat" then
		j = 1 + p % POOL -- job 0 may lack a status: wrk builds (and drops) one request to check the script
		id, secret, status = string.format("bj%08d", j), secrets[j + 1], "ready"
	elseif mode == "wrong" then
		id, secret, status = string.format("bj%08d", j), "wrong-secret-wrong-secret-wrong-secret-0000", "running"
	elseif mode == "unknown" then
		local g = ghosts[(p % #ghosts) + 1]
		id, secret, status = g[1], g[2], "running"
	else
		id, secret = string.format("bj%08d", j), FIXED
		status = STATUSES[(math.floor(p / N) % 4) + 1]
	end
	local lbi = 100000000 + j
	local body = string.format(BODY, 1500000000000000 + p, secret, lbi, lbi, status)
	return string.format("POST " .. PATH .. " HTTP/1.1\r\n", id) .. head
		.. "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

function done(summary, latency, requests)
	local next_pos = START
	for _, t in ipairs(threads) do
		local n = t:get("issued") or 0
		local last = START + t:get("tid") + n * T
		if last > next_pos then
			next_pos = last
		end
	end
	local secs = summary.duration / 1e6
	local e = summary.errors
	local line = string.format(
		"requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d "
			.. "non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d next=%d bytes=%d",
		summary.requests, secs, summary.requests / secs, latency:percentile(50), latency:percentile(90),
		latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout, next_pos,
		summary.bytes)
	local out = os.getenv("BENCH_OUT")
	if out then
		local f = io.open(out, "w")
		f:write(line, "\n")
		f:close()
	end
	io.write(line, "\n")
end
