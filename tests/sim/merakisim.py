#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""merakisim — a Meraki Dashboard API simulator for blinkhook's tests and demo.

Serves the Dashboard API operations blinkhook uses, under /api/v1:

    POST /api/v1/devices/{serial}/liveTools/leds/blink       (create a blink job)
    GET  /api/v1/devices/{serial}/liveTools/leds/blink/{id}  (poll the job)
    GET  /api/v1/organizations                               (the key's organizations)
    GET  /api/v1/organizations/{id}/devices                  (find devices: name, mac,
                                                              serial, perPage, startingAfter)

and, like Meraki, POSTs a callback to the URL given in the request (or to a
configured "HTTP server", i.e. a Dashboard webhook receiver) once the job is
final.  It follows the published OpenAPI description (v1.53.0) and the notes
beside it; every place where the behaviour is not documented and this file had
to pick something is marked "GUESS".

Tests drive it through unauthenticated endpoints (JSON in and out):

    GET  /_sim/health     {"ok": true}
    GET  /_sim/requests   every API request, both listeners, in arrival order
                          (with t, t_answer: monotonic times; peer_port)
    GET  /_sim/jobs       every job;  GET /_sim/callbacks: every delivery attempt
    GET  /_sim/faults     faults still pending
    POST /_sim/faults     {"kind": K, "count": 1, "serial": null, ...params}
    POST /_sim/reset      forget faults, requests and callbacks (not jobs)
    GET  /_sim/inventory  the organizations and their devices
    POST /_sim/inventory  {"organizations": [{"id", "name", "devices": [{"name",
                          "serial", "mac", "networkId", ...}]}]} replaces them
                          (also --inventory FILE, the same JSON)
    GET  /_sim/mode       how callbacks are rendered now
    POST /_sim/mode       {"callback_secret": "body"|"header"|"none",
                           "callback_shape": "callback"|"alert"} (either or both)

Callback modes (also --callback-secret and --callback-shape): where the
shared secret travels, since Meraki does not document it: "body" (a top-level
"sharedSecret", the default), "header" (--callback-secret-header, default
"Authorization: Bearer <secret>"), or "none" (exactly the published callback
schema, which has no secret at all); and the body's shape: "callback" (the job
under "message") or "alert" (the alert webhook shape that some renderings of
the callback template use, the job under "alertData").

Fault kinds (parameters, flat or in "params"): status (status, message),
429 (retry_after), hang (seconds), delay (seconds: the blink is made at
once, as usual, and its 201 sent that much later; the job moves on from
then; a client that has gone meanwhile never hears of it), badbody (body, content_type, status),
redirect (status, to: a listener's role, moved: bool), notfound — these
answer one blink POST; poll_redirect (the same parameters) answers one poll
GET; failed (error), lost_callback, repeat_callback (times), never_final
(silent: no callback either),
progress, wrong_secret — these shape one new job; lookup_429 (retry_after),
lookup_status (status, message) and lookup_foreign_link (a rel=next on the
"foreign" listener) answer one GET of /organizations or of an
organization's devices.  A redirect's Location is
the request's own path on the target listener, or with "moved": true the
same under /moved, which every listener serves as an alias of the API.

Optional listeners serve the same API from the same state, each recording
its requests with its role in "server", so tests can check what a client
sends after a redirect (above all: neither the API key nor a callback
secret): "foreign" (--foreign-port-file) on another loopback address stands
for a foreign host, "otherport" (--other-port-file) for another port of the
main host, and "tls" (--tls-port-file, --tls-cert, --tls-key) serves https
on the main host.

Python 3.11 standard library only.  Run `merakisim.py --help` for options.
"""

import argparse
import datetime
import http.client
import itertools
import json
import math
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

API_PREFIX = "/api/v1"
MOVED_PREFIX = "/moved"
MAX_BODY = 1 << 20
CALLBACK_TIMEOUT = 10.0

# GUESS: Meraki serials look like Q2XX-ABCD-1234; the API's exact check is not
# published.  A malformed serial is answered like an unknown device (404).
SERIAL_RE = re.compile(r"^[A-Za-z0-9]{4}-[A-Za-z0-9]{4}-[A-Za-z0-9]{4}$")
BLINK_RE = re.compile(r"^/api/v1/devices/([^/]+)/liveTools/leds/blink$")
JOB_RE = re.compile(r"^/api/v1/devices/([^/]+)/liveTools/leds/blink/([^/]+)$")
ORGS_RE = re.compile(r"^/api/v1/organizations$")
ORG_DEVICES_RE = re.compile(r"^/api/v1/organizations/([^/]+)/devices$")

# Request-level faults replace the answer to one blink POST; job-level faults
# change what happens to one newly created job.  Both share one FIFO queue.
REQUEST_FAULTS = {"status", "429", "hang", "delay", "badbody", "redirect", "notfound"}
POLL_FAULTS = {"poll_redirect"}
LOOKUP_FAULTS = {"lookup_429", "lookup_status", "lookup_foreign_link"}
JOB_FAULTS = {"failed", "lost_callback", "repeat_callback", "never_final", "progress",
              "wrong_secret"}

# GUESS: the callback names the organisation and network of the device; the
# simulator has no inventory, so every device lives in this one network.
ORGANIZATION = {"id": "549236", "name": "Simulated Organization"}
NETWORK = {"id": "N_24329156", "name": "Simulated Network"}
# GUESS: the User-Agent of Meraki's webhook sender is not documented.
CALLBACK_USER_AGENT = "MerakiWebhooks/1.0 (merakisim)"
CALLBACK_SECRET_MODES = ("body", "header", "none")
CALLBACK_SHAPES = ("callback", "alert")


def mask_key(key):
    """What a log may show of an API key: its last 4 characters at most."""
    if not key:
        return "-"
    # A short key is hidden entirely: its last 4 characters would be most of it.
    return "…" + key[-4:] if len(key) > 8 else "****"


def rfc3339_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_int(v):
    # bool is a subclass of int in Python, but true/false is not a duration.
    return isinstance(v, int) and not isinstance(v, bool)


def make_log(stream):
    """A log function writing one line per event.  Its own lock (not the state
    lock), so that writing a line never stalls request handling."""
    lock = threading.Lock()

    def log(fmt, *args):
        line = "%s merakisim: %s\n" % (rfc3339_now(), fmt % args if args else fmt)
        with lock:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):
                pass
    return log


class NoRedirect(urllib.request.HTTPRedirectHandler):
    # GUESS: whether Meraki follows redirects from a callback receiver is not
    # documented; a 3xx is counted as a failed delivery here.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Sim:
    """All shared state, behind one lock."""

    def __init__(self, args, log):
        self.args = args
        self.log = log
        self.lock = threading.Lock()
        self.requests = []
        self.jobs = {}  # ledsBlinkId -> job, in creation order
        self.callbacks = []
        self.faults = []
        self.last_accepted = {}  # rate-limit scope key -> time.monotonic()
        self.listeners = {}  # "main"/"foreign" -> (host, port)
        self.http_servers = args.http_server  # id -> (url, secret)
        self.mode = {"callback_secret": args.callback_secret, "callback_shape": args.callback_shape}
        self.inventory = args.inventory
        # Ids are strings of digits in Meraki's examples; counters keep them unique.
        self.blink_ids = itertools.count(args.first_blink_id)
        self.callback_ids = itertools.count(1284392014819)
        ctx = ssl.create_default_context(cafile=args.callback_cafile)
        # No ProxyHandler settings from the environment: callbacks go direct.
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx), NoRedirect())

    # --- faults -------------------------------------------------------------

    def add_fault(self, spec):
        """Validates and queues a fault; returns (fault, None) or (None, error)."""
        if not isinstance(spec, dict):
            return None, "fault must be a JSON object"
        kind = spec.get("kind")
        if kind not in REQUEST_FAULTS | JOB_FAULTS | POLL_FAULTS | LOOKUP_FAULTS:
            return None, "unknown fault kind %r" % (kind,)
        count = spec.get("count", 1)
        if not is_int(count) or count < 1:
            return None, "count must be an integer >= 1"
        serial = spec.get("serial")
        if serial is not None and not isinstance(serial, str):
            return None, "serial must be a string"
        # Parameters may come nested in "params" or flat beside "kind".
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            return None, "params must be an object"
        params = dict(params)
        params.update({k: v for k, v in spec.items()
                       if k not in ("kind", "count", "serial", "params")})
        if kind in ("status", "lookup_status"):
            params.setdefault("status", 500)
            if not is_int(params["status"]) or not 200 <= params["status"] <= 599:
                return None, "status must be an HTTP status code from 200 to 599"
        elif kind in ("redirect", "poll_redirect"):
            params.setdefault("status", 307)
            params.setdefault("to", "main")
            if params["status"] not in (301, 302, 303, 307, 308):
                return None, "redirect status must be 301, 302, 303, 307 or 308"
            if params["to"] not in self.listeners:
                return None, "redirect target %r is not listening" % (params["to"],)
        elif kind in ("hang", "delay"):
            params.setdefault("seconds", 3600 if kind == "hang" else 2)
            if not isinstance(params["seconds"], (int, float)) or params["seconds"] < 0:
                return None, "seconds must be a number >= 0"
        elif kind in ("429", "lookup_429"):
            ra = params.get("retry_after")
            if ra is not None and not isinstance(ra, (int, float, str)):
                return None, "retry_after must be a number or a string"
        elif kind == "repeat_callback":
            params.setdefault("times", 3)
            if not is_int(params["times"]) or params["times"] < 1:
                return None, "times must be an integer >= 1"
        elif kind == "failed":
            params.setdefault("error", "Device is offline")
        fault = {"kind": kind, "count": count, "serial": serial, "params": params}
        with self.lock:
            self.faults.append(fault)
        return dict(fault), None

    def take_fault(self, kinds, serial):
        """Consumes one use of the oldest pending fault of kinds for serial."""
        with self.lock:
            for i, f in enumerate(self.faults):
                if f["kind"] in kinds and f["serial"] in (None, serial):
                    f["count"] -= 1
                    if f["count"] <= 0:
                        del self.faults[i]
                    return {"kind": f["kind"], "params": dict(f["params"])}
        return None

    # --- requests, rate limit, jobs -------------------------------------------

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)
        return entry

    def set_status(self, entry, status, too_fast=False):
        # t_answer: when the answer went (or was tried: the client may be
        # gone); None while a request is in flight, and for a "hang".
        with self.lock:
            entry.update(status=status, too_fast=too_fast, t_answer=time.monotonic())

    def claim_rate_slot(self, serial):
        """None if a blink may go ahead now (and takes the slot), else the
        seconds left until it may.

        The API says "one request every 10 seconds" without naming the scope
        (GUESS: --interval-scope picks global or per device).  Only requests
        that pass the check count, so a client hammering early does not push
        its own slot further away."""
        interval = self.args.min_interval
        if interval <= 0:
            return None
        key = serial if self.args.interval_scope == "device" else None
        now = time.monotonic()
        with self.lock:
            last = self.last_accepted.get(key)
            if last is not None and now - last < interval:
                return interval - (now - last)
            self.last_accepted[key] = now
        return None

    def create_job(self, serial, duration, callback, hold=0):
        fault = self.take_fault(JOB_FAULTS, serial)
        callback = callback or {"url": None, "secret": None}
        with self.lock:
            blink_id = str(next(self.blink_ids))
            job = {"ledsBlinkId": blink_id, "serial": serial, "duration": duration,
                   "status": "new", "error": None, "callback_url": callback["url"],
                   "shared_secret": callback["secret"], "fault": fault,
                   "callback_id": str(next(self.callback_ids)) if callback["url"] else None}
            self.jobs[blink_id] = job
        threading.Thread(target=self.run_job, args=(job, hold), daemon=True,
                         name="job-" + blink_id).start()
        return job

    def job_view(self, job):
        """The job as the API shows it (GET; the 201 adds "callback").  The
        schema types "error" as a string: it is absent when there is none,
        never null."""
        view = {
            # GUESS: the published example has a string; --numeric-ids sends
            # a JSON number, so that clients are tested against one too.
            "ledsBlinkId": int(job["ledsBlinkId"]) if self.args.numeric_ids else job["ledsBlinkId"],
            "url": "/devices/%s/liveTools/leds/blink/%s" % (job["serial"], job["ledsBlinkId"]),
            "status": job["status"],
            "request": {"serial": job["serial"], "duration": job["duration"]},
        }
        if job["error"] is not None:
            view["error"] = job["error"]
        return view

    def set_mode(self, spec):
        """Validates and applies a callback mode; returns (mode, None) or (None, error)."""
        if not isinstance(spec, dict) or not spec or \
                set(spec) - {"callback_secret", "callback_shape"}:
            return None, "mode must be an object with callback_secret and/or callback_shape"
        if spec.get("callback_secret", "body") not in CALLBACK_SECRET_MODES:
            return None, "callback_secret must be one of %s" % ", ".join(CALLBACK_SECRET_MODES)
        if spec.get("callback_shape", "callback") not in CALLBACK_SHAPES:
            return None, "callback_shape must be one of %s" % ", ".join(CALLBACK_SHAPES)
        with self.lock:
            self.mode.update(spec)
            return dict(self.mode), None

    def render_callback(self, job, message, secret):
        """The body and extra headers of one callback, in the current mode."""
        with self.lock:
            where, shape = self.mode["callback_secret"], self.mode["callback_shape"]
        if shape == "alert":
            # GUESS: the alert webhook shape as Meraki's alert webhooks send
            # it, with the job as alertData; the values are the simulator's.
            now = rfc3339_now()
            body = {"version": "0.1", "sentAt": now, "organizationId": ORGANIZATION["id"],
                    "organizationName": ORGANIZATION["name"], "networkId": NETWORK["id"],
                    "networkName": NETWORK["name"], "alertId": job["callback_id"],
                    "alertType": "API callback", "alertTypeId": "api_callback",
                    "alertLevel": "informational", "occurredAt": now, "alertData": message}
        else:
            body = {"callbackId": job["callback_id"], "organization": ORGANIZATION,
                    "network": NETWORK, "sentAt": rfc3339_now(), "message": message}
        headers = {}
        if where == "body":
            body["sharedSecret"] = secret
        elif where == "header":
            name = self.args.callback_secret_header
            headers[name] = "Bearer " + secret if name.lower() == "authorization" else secret
        return json.dumps(body).encode(), headers, where, shape

    def run_job(self, job, hold=0):
        """Moves a job along after its 201 (hold seconds away: a "delay")
        and sends its callbacks."""
        time.sleep(hold)
        fault = job["fault"] or {"kind": None, "params": {}}
        kind, params = fault["kind"], fault["params"]
        final = "failed" if kind == "failed" else "complete"
        # never_final: one "running", and then nothing, ever (with "silent",
        # not even its callback).
        steps = {"progress": ["scheduled", "running", final],
                 "never_final": ["running"]}.get(kind, [final])
        # The final status arrives --blink-time after the 201 whatever the steps.
        pause = self.args.blink_time / len(steps)
        for status in steps:
            time.sleep(pause)
            with self.lock:
                job["status"] = status
                if status == "failed":
                    job["error"] = str(params.get("error", "Device is offline"))
                message = self.job_view(job)
            if job["callback_url"] is None or kind == "lost_callback" or \
                    (kind == "never_final" and params.get("silent")):
                continue
            secret = job["shared_secret"]
            if kind == "wrong_secret":
                secret = "not-" + secret
            # GUESS: where the secret travels is undocumented; Meraki's alert
            # webhooks put it in the body as "sharedSecret", so this does by
            # default (see the callback modes).
            payload, headers, where, shape = self.render_callback(job, message, secret)
            times = params.get("times", 3) if kind == "repeat_callback" and status == final else 1
            # Repeats are byte-identical (same callbackId, same sentAt), as a
            # duplicate delivery would be.
            for _ in range(times):
                self.deliver(job, payload, status, headers, where, shape)

    def deliver(self, job, payload, status_sent, headers=None, secret_in="body", shape="callback"):
        """POSTs one callback, retrying on connection errors and non-2xx.

        GUESS: Meraki's retry policy is not documented; this retries
        --callback-retries more times, the delay doubling each time."""
        url = job["callback_url"]
        delay = self.args.callback_retry_delay
        attempts = self.args.callback_retries + 1
        for attempt in range(1, attempts + 1):
            http_status, error = None, None
            req = urllib.request.Request(url, data=payload, method="POST", headers=dict(
                headers or {}, **{"Content-Type": "application/json",
                                  "User-Agent": CALLBACK_USER_AGENT}))
            try:
                with self.opener.open(req, timeout=CALLBACK_TIMEOUT) as resp:
                    http_status = resp.status
                    resp.read(MAX_BODY)
            except urllib.error.HTTPError as e:
                http_status, error = e.code, "HTTP %d" % e.code
                e.close()
            except (OSError, ValueError, http.client.HTTPException) as e:
                error = str(e) or type(e).__name__
            ok = http_status is not None and 200 <= http_status < 300
            with self.lock:
                self.callbacks.append({
                    "t": time.monotonic(), "ledsBlinkId": job["ledsBlinkId"],
                    "callbackId": job["callback_id"], "url": url, "status_sent": status_sent,
                    "attempt": attempt, "http_status": http_status, "error": error,
                    "secret_in": secret_in, "shape": shape})
            self.log("callback %s %s attempt %d/%d -> %s", job["ledsBlinkId"], status_sent,
                     attempt, attempts, http_status if http_status is not None else error)
            if ok:
                return True
            if attempt < attempts:
                time.sleep(delay)
                delay *= 2
        return False

    # --- control API --------------------------------------------------------

    def snapshot(self, what):
        with self.lock:
            if what == "requests":
                return json.loads(json.dumps(self.requests))
            if what == "callbacks":
                return [dict(c) for c in self.callbacks]
            if what == "faults":
                return json.loads(json.dumps(self.faults))
            return [{
                "ledsBlinkId": j["ledsBlinkId"], "serial": j["serial"],
                "duration": j["duration"], "status": j["status"], "error": j["error"],
                "callback_url": j["callback_url"], "shared_secret": j["shared_secret"],
                "callback_id": j["callback_id"],
                "fault": j["fault"]["kind"] if j["fault"] else None,
            } for j in self.jobs.values()]

    def set_inventory(self, spec):
        """Validates and replaces the inventory; returns (inventory, None) or
        (None, error)."""
        inv, err = check_inventory(spec)
        if err:
            return None, err
        with self.lock:
            self.inventory = inv
        return inv, None

    def organizations(self):
        with self.lock:
            return [{"id": o["id"], "name": o["name"],
                     "url": "https://n1.meraki.com/o/%s/manage/organization/overview" % o["id"],
                     "api": {"enabled": True}, "licensing": {"model": "co-term"},
                     "cloud": {"region": {"name": "North America"}},
                     "management": {"details": []}}
                    for o in self.inventory]

    def devices(self, org_id):
        """The organization's devices as the API shows them, or None."""
        with self.lock:
            for o in self.inventory:
                if o["id"] == org_id:
                    return [device_view(d) for d in o["devices"]]
        return None

    def reset(self):
        # Jobs (and the rate-limit clock) stay: jobs still running would
        # otherwise report into a world that forgot them.
        with self.lock:
            self.faults.clear()
            self.requests.clear()
            self.callbacks.clear()


def device_view(d):
    # GUESS: the fields the simulator does not keep get plausible values.
    return {"name": d.get("name"), "lat": 37.4180951010362, "lng": -122.098531723022,
            "address": "", "notes": "", "tags": [], "networkId": d.get("networkId", NETWORK["id"]),
            "serial": d["serial"], "model": d.get("model", "MS120-8"), "mac": d.get("mac"),
            "lanIp": None, "firmware": "switch-16-7",
            "productType": d.get("productType", "switch"), "details": []}


def check_inventory(spec):
    """{"organizations": [...]} (or the list alone) -> (list, None) or (None, error)."""
    if isinstance(spec, dict):
        spec = spec.get("organizations")
    if not isinstance(spec, list):
        return None, "inventory must be {\"organizations\": [...]}"
    orgs = []
    for o in spec:
        if not isinstance(o, dict) or not isinstance(o.get("id"), str) or not o["id"]:
            return None, "each organization needs a string id"
        devices = o.get("devices", [])
        if not isinstance(devices, list):
            return None, "devices must be a list"
        for d in devices:
            if not isinstance(d, dict) or not isinstance(d.get("serial"), str):
                return None, "each device needs a string serial"
            for k in ("name", "mac"):
                if d.get(k) is not None and not isinstance(d[k], str):
                    return None, "a device's %s must be a string or null" % k
        orgs.append({"id": o["id"], "name": str(o.get("name", "Organization " + o["id"])),
                     "devices": [dict(d) for d in devices]})
    return orgs, None


def validate_blink_body(content_type, raw, http_servers):
    """Checks a blink request body; returns (error, None) or (None, request).

    GUESS: Meraki's wording of 400 errors is not published; these messages
    only say what is wrong."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json":
        return "Content-Type must be application/json", None
    try:
        body = json.loads(raw)
    except ValueError:
        return "Request body is not valid JSON", None
    if not isinstance(body, dict):
        return "Request body must be a JSON object", None
    if "duration" not in body:
        return "'duration' is required", None
    duration = body["duration"]
    # GUESS: the documented schema gives no range; any whole number of
    # seconds >= 1 is accepted (blinkhook itself keeps to 1..3600).
    if not is_int(duration) or duration < 1:
        return "'duration' must be an integer >= 1", None
    # The OpenAPI description requires only "duration": a blink without a
    # callback is valid and is simply never called back.
    if "callback" not in body:
        return None, {"duration": duration, "callback": None}
    cb = body["callback"]
    if not isinstance(cb, dict):
        return "'callback' must be an object", None
    url, secret, server = cb.get("url"), cb.get("sharedSecret"), cb.get("httpServer")
    if "payloadTemplate" in cb:
        tpl = cb["payloadTemplate"]
        if not isinstance(tpl, dict) or not isinstance(tpl.get("id"), str) or not tpl["id"]:
            return "'callback.payloadTemplate.id' must be a non-empty string", None
        # GUESS: templates are not simulated; every callback uses the default
        # "Callback (included)" shape (wpt_00005).
    if server is not None:
        # "If specifying this, please leave the url and sharedSecret fields blank."
        if url is not None or secret is not None:
            return ("Specify either 'callback.httpServer.id', or 'callback.url' and "
                    "'callback.sharedSecret', not both"), None
        if not isinstance(server, dict) or not isinstance(server.get("id"), str):
            return "'callback.httpServer.id' must be a string", None
        if server["id"] not in http_servers:
            return "'callback.httpServer.id' is not a known webhook receiver", None
        r_url, r_secret = http_servers[server["id"]]
        return None, {"duration": duration, "callback": {"url": r_url, "secret": r_secret}}
    if url is None and secret is None:
        return ("'callback' needs 'url' and 'sharedSecret', or 'httpServer.id'"), None
    # GUESS (deliberately lax): real Meraki calls only public HTTPS URLs;
    # plain http:// is accepted so that tests can use a local receiver.
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        return "'callback.url' must be an http:// or https:// URL", None
    if not isinstance(secret, str) or not secret:
        return "'callback.sharedSecret' must be a non-empty string", None
    return None, {"duration": duration, "callback": {"url": url, "secret": secret}}


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so that clients may keep connections alive (and get
    # "100 Continue" handled); every answer therefore carries Content-Length.
    protocol_version = "HTTP/1.1"
    server_version = "merakisim/1.0"
    sys_version = ""

    def log_message(self, fmt, *args):
        # Not the default line (to stderr, with no key masking): respond() logs.
        pass

    def log_error(self, fmt, *args):
        self.server.sim.log("%s error: %s", self.server.role, fmt % args)

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # --- plumbing -----------------------------------------------------------

    def dispatch(self):
        self.sim = self.server.sim
        self.entry = None
        self.key = None
        path = urlsplit(self.path).path
        raw, err = self.read_body()
        if err:
            self.close_connection = True
            self.respond(err[0], {"errors": [err[1]]})
            return
        if path == "/_sim" or path.startswith("/_sim/"):
            self.control(path, raw)
            return
        self.key, auth_header = self.presented_key()
        self.entry = self.sim.record({
            "t": time.monotonic(), "server": self.server.role, "method": self.command,
            "path": self.path, "api_key": self.key, "auth_header": auth_header,
            "user_agent": self.headers.get("User-Agent"),
            "content_type": self.headers.get("Content-Type"),
            "body": self.decode_for_record(raw), "status": None, "too_fast": False,
            "t_answer": None, "peer_port": self.client_address[1]})
        self.api(path, raw)

    def read_body(self):
        """Reads the request body, at most MAX_BODY bytes.  Returns (bytes, None)
        or (None, (status, message))."""
        if self.headers.get("Transfer-Encoding"):
            # Chunked bodies are not needed by any client of this simulator.
            return None, (411, "Length Required")
        length = self.headers.get("Content-Length", "0").strip()
        if not length.isdigit():
            return None, (400, "Bad Content-Length")
        n = int(length)
        if n > MAX_BODY:
            return None, (413, "Request body too large")
        return self.rfile.read(n), None

    @staticmethod
    def decode_for_record(raw):
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def presented_key(self):
        """The API key the client sent and how, whether or not it is valid."""
        auth = self.headers.get("Authorization")
        if auth:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip(), "bearer"
        value = (self.headers.get("X-Cisco-Meraki-API-Key") or "").strip()
        if value:
            return value, "x-cisco"
        return None, None

    def respond(self, status, obj=None, headers=(), raw=None, content_type="application/json",
                too_fast=False):
        if raw is None:
            raw = b"" if obj is None else (json.dumps(obj) + "\n").encode()
        if self.entry is not None:
            self.sim.set_status(self.entry, status, too_fast)
        try:
            self.send_response(status)
            if raw or obj is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            for name, value in headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (typically after a "hang"); nothing to tell.
            self.close_connection = True
        self.sim.log("%s %s %s %s -> %d key=%s%s", self.server.role, self.client_address[0],
                     self.command, self.path, status, mask_key(self.key),
                     " too_fast" if too_fast else "")

    def authorized(self):
        if not self.key:
            return False
        want = self.sim.args.api_key
        return want is None or self.key == want

    # --- the Dashboard API --------------------------------------------------

    def api(self, path, raw):
        if path.startswith(MOVED_PREFIX + API_PREFIX + "/"):
            path = path[len(MOVED_PREFIX):]
        m = BLINK_RE.match(path)
        if m and self.command == "POST":
            return self.blink(m.group(1), raw)
        m = JOB_RE.match(path)
        if m and self.command in ("GET", "HEAD"):
            return self.get_job(m.group(1), m.group(2))
        if ORGS_RE.match(path) and self.command in ("GET", "HEAD"):
            return self.lookup(None)
        m = ORG_DEVICES_RE.match(path)
        if m and self.command in ("GET", "HEAD"):
            return self.lookup(m.group(1))
        return self.respond(404, {"errors": ["Not found"]})

    def lookup(self, org_id):
        """GET /organizations (org_id None) or /organizations/{org_id}/devices."""
        if not self.authorized():
            return self.respond(401, {"errors": ["Invalid API key"]})
        fault = self.sim.take_fault(LOOKUP_FAULTS, None)
        foreign_next = fault is not None and fault["kind"] == "lookup_foreign_link"
        if fault and not foreign_next:
            return self.answer_fault(fault)
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        one = {k: v[-1] for k, v in query.items()}
        if org_id is None:
            items, key, (lo, hi, default) = self.sim.organizations(), "id", (3, 9000, 9000)
        else:
            items, key, (lo, hi, default) = self.sim.devices(org_id), "serial", (3, 1000, 1000)
            if items is None:
                # GUESS: an organization the key cannot see is answered 404.
                return self.respond(404, {"errors": ["Organization not found"]})
            # The API's filters: name "contains the search term or is an
            # exact match" (GUESS: case-insensitive, as Dashboard's search
            # is), and so does mac (GUESS: on the colon form, either case).
            if "name" in one:
                term = one["name"].lower()
                items = [d for d in items if term in (d["name"] or "").lower()]
            if "mac" in one:
                term = one["mac"].lower()
                items = [d for d in items if term in (d["mac"] or "").lower()]
            if "serial" in one:
                items = [d for d in items if d["serial"] == one["serial"]]
        per_page = default
        if "perPage" in one:
            if not one["perPage"].isdigit() or not lo <= int(one["perPage"]) <= hi:
                return self.respond(400, {"errors": [
                    "'perPage' must be an integer between %d and %d" % (lo, hi)]})
            per_page = int(one["perPage"])
        # GUESS: Meraki's page tokens are opaque; here startingAfter is the
        # last item's id (or serial) of the page before.
        start = 0
        if "startingAfter" in one:
            ids = [i[key] for i in items]
            start = ids.index(one["startingAfter"]) + 1 if one["startingAfter"] in ids else len(ids)
        page = items[start:start + per_page]
        links = []
        base = "http://%s%s" % (self.headers.get("Host") or "%s:%d" % self.server.server_address[:2],
                                urlsplit(self.path).path)

        def link(rel, after):
            q = [(k, v) for k, v in one.items() if k not in ("startingAfter", "endingBefore")]
            if after is not None:
                q.append(("startingAfter", after))
            return "<%s?%s>; rel=%s" % (base, urlencode(q), rel)
        links.append(link("first", None))
        if foreign_next:
            host, port = self.sim.listeners["foreign"]
            base = "http://%s:%d%s" % (host, port, urlsplit(self.path).path)
            links.append(link("next", page[-1][key] if page else "x"))
        elif start + per_page < len(items):
            links.append(link("next", page[-1][key]))
        # Only with --link-header-split: each relation in a Link header of its own.
        headers = [("Link", l) for l in links] if self.sim.args.link_header_split else \
            [("Link", ", ".join(links))]
        self.respond(200, page, headers=headers)

    def blink(self, serial, raw):
        if not self.authorized():
            return self.respond(401, {"errors": ["Invalid API key"]})
        # Injected faults come before the rate limit so that a test gets the
        # answer it asked for, whatever the timing; they do not use up a slot.
        fault = self.sim.take_fault(REQUEST_FAULTS, serial)
        if fault and fault["kind"] == "hang":
            # A server that takes the request and never answers: after the
            # wait the connection is dropped and nothing was done, so that a
            # client's retry is the only blink (and no late one skews pacing).
            time.sleep(fault["params"]["seconds"])
            self.close_connection = True
            return None
        delay = 0
        if fault and fault["kind"] == "delay":
            delay, fault = fault["params"]["seconds"], None
        elif fault:
            return self.answer_fault(fault)
        if not SERIAL_RE.match(serial):
            return self.respond(404, {"errors": ["Device not found"]})
        err, req = validate_blink_body(self.headers.get("Content-Type"), raw,
                                       self.sim.http_servers)
        if err:
            return self.respond(400, {"errors": [err]})
        # GUESS: the rate limit is checked after validation, so a malformed
        # request does not take the slot of the next good one.
        wait = self.sim.claim_rate_slot(serial)
        if wait is not None:
            return self.respond(429, {"errors": ["Too Many Requests"]},
                                headers=[("Retry-After", str(max(1, math.ceil(wait))))],
                                too_fast=True)
        job = self.sim.create_job(serial, req["duration"], req["callback"], hold=delay)
        body = self.sim.job_view(job)
        if job["callback_id"]:
            body["callback"] = {"id": job["callback_id"], "url": job["callback_url"],
                                "status": "new"}
        # A "delay": the blink is made (and its rate slot taken) now, the
        # answer comes late, so that a client killed meanwhile leaves a
        # blink it never heard of.
        time.sleep(delay)
        self.respond(201, body)

    def answer_fault(self, fault):
        kind, p = fault["kind"], fault["params"]
        if kind in ("status", "lookup_status"):
            code = p["status"]
            default = http.client.responses.get(code, "Error")
            return self.respond(code, {"errors": [str(p.get("message") or default)]})
        if kind in ("429", "lookup_429"):
            ra = p.get("retry_after")
            headers = []
            if isinstance(ra, str):
                # Sent verbatim: an HTTP-date, or something a client must survive.
                headers.append(("Retry-After", ra))
            elif ra is not None:
                headers.append(("Retry-After", str(int(ra)) if float(ra).is_integer() else str(ra)))
            return self.respond(429, {"errors": [str(p.get("message") or "Too Many Requests")]},
                                headers=headers)
        if kind == "badbody":
            body = p.get("body", "<html>oops</html>")
            return self.respond(p.get("status", 201), raw=str(body).encode(),
                                content_type=p.get("content_type", "text/html"))
        if kind in ("redirect", "poll_redirect"):
            host, port = self.sim.listeners[p["to"]]
            if ":" in host:
                host = "[%s]" % host
            path = self.path
            if p.get("moved") and not path.startswith(MOVED_PREFIX + "/"):
                path = MOVED_PREFIX + path
            location = "%s://%s:%d%s" % ("https" if p["to"] == "tls" else "http", host, port, path)
            return self.respond(p["status"], headers=[("Location", location)])
        # notfound
        return self.respond(404, {"errors": ["Device not found"]})

    def get_job(self, serial, blink_id):
        if not self.authorized():
            return self.respond(401, {"errors": ["Invalid API key"]})
        fault = self.sim.take_fault(POLL_FAULTS, serial)
        if fault:
            return self.answer_fault(fault)
        with self.sim.lock:
            job = self.sim.jobs.get(blink_id)
            view = self.sim.job_view(job) if job and job["serial"] == serial else None
        if view is None:
            return self.respond(404, {"errors": ["Not found"]})
        self.respond(200, view)

    # --- control endpoints for tests ----------------------------------------

    def control(self, path, raw):
        sim, method = self.sim, self.command
        if method == "GET" and path == "/_sim/health":
            return self.respond(200, {"ok": True})
        if method == "GET" and path in ("/_sim/requests", "/_sim/jobs", "/_sim/callbacks",
                                        "/_sim/faults"):
            return self.respond(200, sim.snapshot(path.rsplit("/", 1)[1]))
        if method == "POST" and path == "/_sim/faults":
            try:
                spec = json.loads(raw) if raw else None
            except ValueError:
                return self.respond(400, {"errors": ["fault is not valid JSON"]})
            fault, err = sim.add_fault(spec)
            if err:
                return self.respond(400, {"errors": [err]})
            return self.respond(200, {"ok": True, "fault": fault})
        if method == "GET" and path == "/_sim/mode":
            with sim.lock:
                return self.respond(200, dict(sim.mode))
        if method == "POST" and path == "/_sim/mode":
            try:
                spec = json.loads(raw) if raw else None
            except ValueError:
                return self.respond(400, {"errors": ["mode is not valid JSON"]})
            mode, err = sim.set_mode(spec)
            if err:
                return self.respond(400, {"errors": [err]})
            return self.respond(200, {"ok": True, "mode": mode})
        if method == "GET" and path == "/_sim/inventory":
            with sim.lock:
                return self.respond(200, {"organizations": json.loads(json.dumps(sim.inventory))})
        if method == "POST" and path == "/_sim/inventory":
            try:
                spec = json.loads(raw) if raw else None
            except ValueError:
                return self.respond(400, {"errors": ["inventory is not valid JSON"]})
            inv, err = sim.set_inventory(spec)
            if err:
                return self.respond(400, {"errors": [err]})
            return self.respond(200, {"ok": True, "organizations": inv})
        if method == "POST" and path == "/_sim/reset":
            sim.reset()
            return self.respond(200, {"ok": True})
        return self.respond(404, {"errors": ["Not found"]})


# --- start-up -----------------------------------------------------------------

def parse_http_server(value):
    """ID=URL=SECRET.  Receiver ids are often base64 and may end in '=', and
    URLs may hold '=' in their query, so the URL is found by its scheme and
    the secret is what follows the last '=' (it cannot contain one)."""
    m = re.match(r"^(.+?)=(https?://.+)=([^=]+)$", value)
    if not m:
        raise argparse.ArgumentTypeError("expected ID=URL=SECRET with an http(s) URL")
    return m.group(1), m.group(2), m.group(3)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Meraki Dashboard API simulator (LED blink).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--foreign-host", default="127.0.0.2")
    p.add_argument("--foreign-port", type=int, default=0)
    p.add_argument("--foreign-port-file",
                   help="start the 'foreign host' listener and write its port here")
    p.add_argument("--other-port-file",
                   help="start an 'otherport' listener on --host and write its port here")
    p.add_argument("--tls-port-file",
                   help="start a 'tls' (https) listener on --host and write its port here")
    p.add_argument("--tls-cert", help="certificate (PEM) of the 'tls' listener")
    p.add_argument("--tls-key", help="its private key (PEM)")
    p.add_argument("--first-blink-id", type=int, default=573000001,
                   help="the first ledsBlinkId (any size: ids stay exact)")
    p.add_argument("--numeric-ids", action="store_true",
                   help="send ledsBlinkId as a JSON number instead of a string")
    p.add_argument("--api-key", help="the only key accepted (default: any non-empty key)")
    p.add_argument("--min-interval", type=float, default=10.0,
                   help="seconds between accepted blink requests (0: no limit)")
    p.add_argument("--interval-scope", choices=("global", "device"), default="global")
    p.add_argument("--blink-time", type=float, default=0.3,
                   help="seconds from the 201 until the job is final")
    p.add_argument("--callback-retries", type=int, default=5)
    p.add_argument("--callback-retry-delay", type=float, default=0.5,
                   help="first delay between callback attempts; doubles")
    p.add_argument("--callback-cafile", help="CA bundle for https callback URLs")
    p.add_argument("--http-server", action="append", default=[], type=parse_http_server,
                   metavar="ID=URL=SECRET", help="a Dashboard webhook receiver (repeatable)")
    p.add_argument("--callback-secret", choices=CALLBACK_SECRET_MODES, default="body",
                   help="where callbacks carry the shared secret (none: the schema has no field)")
    p.add_argument("--callback-secret-header", default="Authorization",
                   help="the header for --callback-secret header (Authorization gets 'Bearer ')")
    p.add_argument("--callback-shape", choices=CALLBACK_SHAPES, default="callback",
                   help="the callback body: the job under message, or the alert shape (alertData)")
    p.add_argument("--inventory", help="JSON file: {\"organizations\": [{\"id\", \"name\", "
                   "\"devices\": [{\"name\", \"serial\", \"mac\", \"networkId\"}]}]}")
    p.add_argument("--link-header-split", action="store_true",
                   help="send each Link relation in a header of its own")
    p.add_argument("--log", help="append the log here instead of stderr")
    args = p.parse_args(argv)
    if args.inventory:
        try:
            with open(args.inventory, encoding="utf-8") as f:
                inv, err = check_inventory(json.load(f))
        except (OSError, ValueError) as e:
            inv, err = None, str(e)
        if err:
            p.error("--inventory: %s" % err)
        args.inventory = inv
    else:
        args.inventory = [{"id": ORGANIZATION["id"], "name": ORGANIZATION["name"], "devices": []}]
    if args.callback_retries < 0:
        p.error("--callback-retries must be >= 0")
    if args.min_interval < 0 or args.blink_time < 0 or args.callback_retry_delay < 0:
        p.error("intervals and delays must be >= 0")
    if args.tls_port_file and not (args.tls_cert and args.tls_key):
        p.error("--tls-port-file needs --tls-cert and --tls-key")
    args.http_server = {i: (u, s) for i, u, s in args.http_server}
    return args


def write_port_file(path, port):
    # Write then rename, so that a test polling for the file never reads half of it.
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must not hold up the exit

    def __init__(self, host, port, role, sim, tls=None):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), Handler)
        self.role = role
        self.sim = sim
        if tls:
            self.socket = tls.wrap_socket(self.socket, server_side=True)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stream = open(args.log, "a", buffering=1, encoding="utf-8") if args.log else sys.stderr
    log = make_log(stream)
    sim = Sim(args, log)
    # Before any port file exists, so that a test's early SIGTERM is clean too.
    # The handler only sets a flag: taking a lock (Event.set) in a signal
    # handler can deadlock against the main thread.
    stop = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
    servers = []
    try:
        if args.foreign_port_file:
            servers.append(Server(args.foreign_host, args.foreign_port, "foreign", sim))
        if args.other_port_file:
            servers.append(Server(args.host, 0, "otherport", sim))
        if args.tls_port_file:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(args.tls_cert, args.tls_key)
            servers.append(Server(args.host, 0, "tls", sim, tls))
        servers.insert(0, Server(args.host, args.port, "main", sim))
    except OSError as e:
        log("cannot listen: %s", e)
        return 1
    for s in servers:
        sim.listeners[s.role] = host, port = s.server_address[:2]
        threading.Thread(target=s.serve_forever, daemon=True, name=s.role).start()
        log("%s listening on %s://%s:%d%s", s.role, "https" if s.role == "tls" else "http",
            host, port, API_PREFIX)
    # The others first: once the main port file exists, every listener is up.
    for role, path in (("foreign", args.foreign_port_file), ("otherport", args.other_port_file),
                       ("tls", args.tls_port_file)):
        if path:
            write_port_file(path, sim.listeners[role][1])
    if args.port_file:
        write_port_file(args.port_file, sim.listeners["main"][1])
    while not stop:
        time.sleep(0.2)
    log("stopping on signal %d", stop[0])
    for s in servers:
        s.shutdown()
        s.server_close()
    if stream is not sys.stderr:
        stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
