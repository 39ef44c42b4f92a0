#!/usr/bin/env python3
"""A fake Bud TMP backend on loopback for atx's end-to-end tests.

It answers the subset of the Bud HTTP API described in BUD_API.md (everything
under /api) and records what clients send, so the tests (bash scripts) can
check what atx's Bud client put on the wire.  Standard library only.

    python3 server.py --port-file FILE [--port N] [--state-dir DIR]
                      [--api-key KEY] [--user EMAIL:PASSWORD ...]
                      [--version X.Y.Z] [--api-version v1]

It binds 127.0.0.1 (port 0 = any free port), writes the port number to FILE
atomically once listening, and serves until SIGTERM/SIGINT, then exits 0.
With --state-dir, uploaded artifacts are saved under DIR/artifacts/ and the
whole state is written to DIR/state.json on exit (and on POST /_control/save).

Control API (no auth; these requests are neither faulted nor logged):

  POST /_control/faults  {"path": "/api/results", "method": "POST",
                          "prefix": false, "faults": [F, ...]}
        Queue faults (FIFO) for requests matching method ("*" = any, the
        default) and path (exact, or a prefix with "prefix": true).  Each
        matching request pops one fault before normal handling.  F is an
        object of:
          "delay": seconds   sleep first, then go on (alone: handle normally)
          "status": N        answer N {"detail": "injected"} (or "detail": text)
          "retry_after": S   with "status": add a Retry-After: S header
          "drop": true       read the request, then close the connection with
                             no answer (FIN); "reset" closes with a TCP RST;
                             "partial" sends a status line ("status", default
                             200), headers and part of the body, then closes.
                             NB: libcurl silently resends a request once when
                             a *reused* connection dies before any answer byte
                             (true/"reset"); "partial" is never resent.
          "kill": PID        handle the request (what it sends is stored),
                             then SIGKILL PID and close with no answer: a
                             client killed between the server's work and
                             its answer
        A 401 answer carries WWW-Authenticate: Bearer.
        -> 200 {"queued": <faults pending for this matcher>}
  GET  /_control/faults  -> 200 {"faults": [{"method","path","prefix","pending"}]}
  POST /_control/reset   clear all queued faults (state is kept) -> 200 {"status":"ok"}
  POST /_control/revoke  {"token": T} -> 200 {"revoked": true|false}
  POST /_control/watch   {"needle": TEXT}: from now on, count the requests
        whose body holds TEXT (its bytes, UTF-8) -> 200 {"watching": N};
        the counts are in the state's "watch" ({TEXT: count})
  GET  /_control/state   -> 200 {"uploads","runs","runners","heartbeats",
                                 "artifacts","requests","logins",...}
  POST /_control/save    write DIR/state.json -> 200 {"path": ...|null}
"""

import argparse
import email.message
import email.utils
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections import deque
from datetime import datetime, timezone
from email.parser import HeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ONLINE_WINDOW = 120.0
RUN_STATUSES = ("Pending", "Running", "Completed", "Cancelled")
USERNAME_RE = re.compile(r"[A-Za-z0-9_-]+")
DEFAULT_USER = "admin@example.com:admin-password-123"
RESULT_STR_FIELDS = ("runner_account", "test_suite_name", "url_test_software",
                     "ref_test_software", "url_software_under_test",
                     "ref_software_under_test")
FAULT_KEYS = {"status", "retry_after", "drop", "delay", "detail", "kill"}


class HTTPError(Exception):
    """An error answer: {"detail": detail} with extra headers."""

    def __init__(self, status, detail, headers=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []


def verr(loc, msg, typ):
    return {"loc": list(loc), "msg": msg, "type": typ}


def unauthorized(detail="Not authenticated"):
    return HTTPError(401, detail, [("WWW-Authenticate", "Bearer")])


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def _no_constants(name):
    raise ValueError("invalid JSON constant " + name)


def parse_json(body, errors=None):
    """Parse a JSON object body; 422 (or appended to errors) otherwise."""
    errs = []
    data = None
    if not body.strip():
        errs.append(verr(["body"], "Field required", "missing"))
    else:
        try:
            data = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError) as e:
            errs.append({"loc": ["body", 0], "msg": "JSON decode error",
                         "type": "json_invalid", "ctx": {"error": str(e)}})
        else:
            if not isinstance(data, dict):
                errs.append(verr(["body"], "Input should be a valid dictionary",
                                 "dict_type"))
                data = None
    if errors is not None:
        errors.extend(errs)
        return data
    if errs:
        raise HTTPError(422, errs)
    return data


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_opt(data, key, pred, msg, typ, errs, loc=("body",)):
    if key in data and data[key] is not None and not pred(data[key]):
        errs.append(verr(list(loc) + [key], msg, typ))


def fix_text(s):
    """Part headers are read as Latin-1 (byte for byte); take UTF-8 back."""
    if s is None:
        return None
    try:
        return s.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return s


def parse_multipart(body, content_type):
    """Split a multipart/form-data body by hand.

    Returns a list of (name, filename or None, part content type, bytes).
    Raises HTTPError 422 on anything malformed.
    """
    bad = HTTPError(422, [verr(["body"], "Invalid multipart/form-data body",
                               "multipart_invalid")])
    holder = email.message.Message()
    holder["Content-Type"] = content_type or ""
    if holder.get_content_type() != "multipart/form-data":
        raise bad
    boundary = holder.get_param("boundary")
    if isinstance(boundary, tuple):
        boundary = email.utils.collapse_rfc2231_value(boundary)
    if not boundary:
        raise bad
    delim = b"\r\n--" + boundary.encode("latin-1", "replace")
    pieces = (b"\r\n" + body).split(delim)
    if len(pieces) < 2:
        raise bad
    parts = []
    closed = False
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            closed = True
            break
        eol = piece.find(b"\r\n")
        if eol < 0 or piece[:eol].strip(b" \t"):
            raise bad
        piece = piece[eol + 2:]
        if piece.startswith(b"\r\n"):
            head, content = b"", piece[2:]
        else:
            end = piece.find(b"\r\n\r\n")
            if end < 0:
                raise bad
            head, content = piece[:end + 2], piece[end + 4:]
        hdrs = HeaderParser().parsestr(head.decode("latin-1") + "\r\n")
        if hdrs.get("Content-Disposition") is None:
            raise bad
        name = hdrs.get_param("name", header="content-disposition")
        if isinstance(name, tuple):
            name = email.utils.collapse_rfc2231_value(name)
        filename = hdrs.get_filename()
        ctype = hdrs.get("Content-Type")
        parts.append((fix_text(name), fix_text(filename),
                      fix_text(ctype), content))
    if not closed:
        raise bad
    return parts


class State:
    """Everything the server knows; every access holds self.lock."""

    def __init__(self, api_key, users, version, api_version, state_dir):
        self.lock = threading.Lock()
        self.api_key = api_key
        self.users = dict(users)           # email -> password
        self.version = version
        self.api_version = api_version
        self.state_dir = state_dir
        self.user_tokens = {}              # token -> email
        self.runner_tokens = {}            # token -> account
        self.revoked = []
        self.runners = {}                  # account -> record (with pw hash)
        self.heartbeats = []
        self.runs = {}                     # id -> run (with rows, patches)
        self.next_run = 1
        self.uploads = []
        self.upload_by_key = {}            # Idempotency-Key -> its upload
        self.artifacts = []
        self.next_artifact = 1
        self.requests = []
        self.logins = 0
        self.login_failures = 0
        self.matchers = []                 # fault queues
        self.watch = {}                    # needle -> requests holding it

    # faults -------------------------------------------------------------
    def add_faults(self, method, path, prefix, faults):
        for m in self.matchers:
            if (m["method"], m["path"], m["prefix"]) == (method, path, prefix):
                break
        else:
            m = {"method": method, "path": path, "prefix": prefix,
                 "queue": deque()}
            self.matchers.append(m)
        m["queue"].extend(faults)
        return len(m["queue"])

    def pop_fault(self, method, path):
        best, best_rank = None, None
        for m in self.matchers:
            if not m["queue"]:
                continue
            if m["method"] not in ("*", method):
                continue
            if m["prefix"]:
                if not path.startswith(m["path"]):
                    continue
            elif path != m["path"]:
                continue
            rank = (not m["prefix"], len(m["path"]), m["method"] != "*")
            if best_rank is None or rank > best_rank:
                best, best_rank = m, rank
        return best["queue"].popleft() if best else None

    def faults_view(self):
        return [{"method": m["method"], "path": m["path"], "prefix": m["prefix"],
                 "pending": list(m["queue"])} for m in self.matchers]

    # tokens -------------------------------------------------------------
    def principal(self, token):
        if token in self.user_tokens:
            return ("user", self.user_tokens[token])
        if token in self.runner_tokens:
            return ("runner", self.runner_tokens[token])
        return None

    def new_token(self):
        while True:
            tok = secrets.token_urlsafe(32)
            if tok not in self.user_tokens and tok not in self.runner_tokens:
                return tok

    def revoke(self, token):
        found = False
        if self.user_tokens.pop(token, None) is not None:
            found = True
        account = self.runner_tokens.pop(token, None)
        if account is not None:
            found = True
            runner = self.runners.get(account)
            if runner and runner["token"] == token:
                runner["token"] = None
        if found:
            self.revoked.append(token)
        return found

    # runs ---------------------------------------------------------------
    def new_run(self, fields, now):
        run_id = self.next_run
        self.next_run += 1
        run = dict(fields)
        run.update({"id": run_id, "created_at": iso(now), "updated_at": iso(now),
                    "total_tests": 0, "passed_tests": 0, "failed_tests": 0,
                    "total_results": 0})
        run.setdefault("status", "Pending")
        run.setdefault("test_case_list", None)
        run.setdefault("test_suite_name", None)
        run["rows"] = []
        run["patches"] = []
        self.runs[run_id] = run
        return run

    @staticmethod
    def public_run(run):
        return {k: v for k, v in run.items() if k not in ("rows", "patches")}

    @staticmethod
    def recompute(run):
        classes = {}
        for row in run["rows"]:
            cls = row.get("test_class")
            classes[cls] = classes.get(cls, True) and row.get("passed") is True
        run["total_tests"] = len(classes)
        run["passed_tests"] = sum(1 for ok in classes.values() if ok)
        run["failed_tests"] = len(classes) - run["passed_tests"]
        run["total_results"] = len(run["rows"])

    # inspection ---------------------------------------------------------
    def snapshot(self):
        now = time.time()
        runners = {}
        for acct, r in self.runners.items():
            rec = {k: v for k, v in r.items() if k != "password_sha256"}
            rec["is_online"] = bool(r["last_heartbeat"] is not None
                                    and now - r["last_heartbeat"] <= ONLINE_WINDOW)
            runners[acct] = rec
        return {
            "uploads": self.uploads,
            "runs": {str(k): v for k, v in self.runs.items()},
            "runners": runners,
            "heartbeats": self.heartbeats,
            "artifacts": self.artifacts,
            "requests": self.requests,
            "logins": self.logins,
            "login_failures": self.login_failures,
            "user_tokens": [{"token": t, "email": e}
                            for t, e in self.user_tokens.items()],
            "revoked": self.revoked,
            "faults": self.faults_view(),
            "version": self.version,
            "watch": dict(self.watch),
        }

    def save(self):
        """Write DIR/state.json atomically; caller holds the lock."""
        if not self.state_dir:
            return None
        os.makedirs(self.state_dir, exist_ok=True)
        path = os.path.join(self.state_dir, "state.json")
        tmp = "%s.tmp.%d" % (path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.snapshot(), f, indent=1, default=list)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BudFake/1.0"
    sys_version = ""

    # Quiet: no request logging at all (errors go to stderr elsewhere).
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    # plumbing -----------------------------------------------------------
    @property
    def st(self):
        return self.server.state

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise ConnectionError("eof in chunked body")
                out += chunk
                self.rfile.readline(65537)
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        n = int(cl)
        if n < 0:
            raise ValueError("negative Content-Length")
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            raise ConnectionError("eof in body")
        return data

    def _send(self, status, payload, headers=(), ctype="application/json"):
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_json(self, status, obj, headers=()):
        self._send(status, json.dumps(obj).encode("utf-8"), headers)

    def _drop(self, how, status=200):
        self._status = 0
        self.close_connection = True
        conn = self.connection
        try:
            if how == "partial":
                body = b'{"message":"Results uploaded","test_run_id"'
                head = ("HTTP/1.1 %d Partial\r\nContent-Type: application/json\r\n"
                        "Content-Length: 4096\r\n\r\n" % status).encode("ascii")
                conn.sendall(head + body)
            if how == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
            else:
                conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            conn.close()
        except OSError:
            pass

    def _log_request(self, path, body, started, fault):
        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        entry = {"method": self.command, "path": path, "target": self.path,
                 "status": self._status, "headers": headers,
                 "body_sha256": sha256(body), "body_len": len(body),
                 "time": started}
        if fault is not None:
            entry["fault"] = fault
        with self.st.lock:
            self.st.requests.append(entry)

    def _dispatch(self):
        started = time.time()
        self._status = None
        path = urlsplit(self.path).path
        try:
            body = self._read_body()
        except (ValueError, ConnectionError, OSError):
            self.close_connection = True
            try:
                self._send_json(400, {"detail": "Bad request body"})
            except OSError:
                pass
            return
        if path == "/_control" or path.startswith("/_control/"):
            self._guarded(lambda: self._control(path, body))
            return
        fault = None
        with self.st.lock:
            for needle in self.st.watch:
                if needle.encode("utf-8") in body:
                    self.st.watch[needle] += 1
        try:
            with self.st.lock:
                fault = self.st.pop_fault(self.command, path)
            if fault is not None and self._apply_fault(fault):
                return
            if fault is not None and fault.get("kill"):
                try:
                    self._api(path, body)
                except Exception:
                    pass
                os.kill(int(fault["kill"]), signal.SIGKILL)
                self._drop(True, 200)
                return
            self._guarded(lambda: self._api(path, body))
        finally:
            self._log_request(path, body, started, fault)

    def _apply_fault(self, fault):
        """Act on a fault; True when the request was answered (or dropped)."""
        if fault.get("delay"):
            time.sleep(float(fault["delay"]))
        if fault.get("drop"):
            self._drop(fault["drop"], int(fault.get("status", 200)))
            return True
        if "status" in fault:
            status = int(fault["status"])
            headers = []
            if fault.get("retry_after") is not None:
                headers.append(("Retry-After", str(fault["retry_after"])))
            if status == 401:
                headers.append(("WWW-Authenticate", "Bearer"))
            self._send_json(status, {"detail": fault.get("detail", "injected")},
                            headers)
            return True
        return False

    def _guarded(self, fn):
        try:
            status, payload, headers = fn()
        except HTTPError as e:
            status, payload, headers = (
                e.status, json.dumps({"detail": e.detail}).encode(), e.headers)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            status, payload, headers = (
                500, b'{"detail":"Internal Server Error"}', [])
        self._send(status, payload, headers)

    # routing ------------------------------------------------------------
    ROUTES = [
        ("GET", re.compile(r"/api/health"), "health"),
        ("GET", re.compile(r"/api/version"), "version"),
        ("POST", re.compile(r"/api/auth/login"), "login"),
        ("POST", re.compile(r"/api/runners/register"), "register"),
        ("POST", re.compile(r"/api/runners/heartbeat"), "heartbeat"),
        ("GET", re.compile(r"/api/runners/status"), "runners_status"),
        ("POST", re.compile(r"/api/test-runs"), "run_create"),
        ("GET", re.compile(r"/api/test-runs/([^/]+)"), "run_get"),
        ("PATCH", re.compile(r"/api/test-runs/([^/]+)"), "run_patch"),
        ("POST", re.compile(r"/api/results"), "results"),
        ("POST", re.compile(r"/api/uploads"), "uploads"),
    ]

    def _api(self, path, body):
        known = False
        for method, rx, name in self.ROUTES:
            m = rx.fullmatch(path)
            if not m:
                continue
            known = True
            if method != self.command:
                continue
            with self.st.lock:
                status, obj, headers = getattr(self, "api_" + name)(
                    body, *m.groups())
                return status, json.dumps(obj).encode("utf-8"), headers
        if known:
            raise HTTPError(405, "Method Not Allowed")
        raise HTTPError(404, "Not Found")

    # auth helpers (called with the lock held) ---------------------------
    def _bearer(self):
        h = self.headers.get("Authorization")
        if not h:
            return None
        scheme, _, tok = h.strip().partition(" ")
        if scheme.lower() != "bearer" or not tok.strip():
            return None
        return tok.strip()

    def _require(self, kinds=("user", "runner")):
        tok = self._bearer()
        if tok is None:
            raise unauthorized()
        who = self.st.principal(tok)
        if who is None or who[0] not in kinds:
            raise unauthorized("Could not validate credentials")
        return who

    # endpoints (lock held) ----------------------------------------------
    def api_health(self, body):
        return 200, {"status": "healthy", "version": self.st.version}, []

    def api_version(self, body):
        return 200, {"version": self.st.version,
                     "api_version": self.st.api_version}, []

    def api_login(self, body):
        data = parse_json(body)
        errs = []
        for key in ("email", "password"):
            if key not in data:
                errs.append(verr(["body", key], "Field required", "missing"))
            elif not isinstance(data[key], str):
                errs.append(verr(["body", key], "Input should be a valid string",
                                 "string_type"))
        if errs:
            raise HTTPError(422, errs)
        st = self.st
        if st.users.get(data["email"]) != data["password"]:
            st.login_failures += 1
            raise HTTPError(401, "Incorrect email or password",
                            [("WWW-Authenticate", "Bearer")])
        tok = st.new_token()
        st.user_tokens[tok] = data["email"]
        st.logins += 1
        return 200, {"access_token": tok, "token_type": "bearer",
                     "user": {"email": data["email"], "is_active": True}}, []

    def api_register(self, body):
        st = self.st
        errs = []
        key = self.headers.get("X-API-Key")
        if key is None:
            errs.append(verr(["header", "x-api-key"], "Field required", "missing"))
        elif key != st.api_key:
            raise HTTPError(403, "Invalid API key")
        data = parse_json(body, errs)
        if data is not None:
            u = data.get("username")
            if "username" not in data:
                errs.append(verr(["body", "username"], "Field required", "missing"))
            elif not isinstance(u, str):
                errs.append(verr(["body", "username"],
                                 "Input should be a valid string", "string_type"))
            elif len(u) < 3:
                errs.append(verr(["body", "username"],
                                 "String should have at least 3 characters",
                                 "string_too_short"))
            elif len(u) > 50:
                errs.append(verr(["body", "username"],
                                 "String should have at most 50 characters",
                                 "string_too_long"))
            elif not USERNAME_RE.fullmatch(u):
                errs.append(verr(["body", "username"],
                                 "String should match pattern '^[A-Za-z0-9_-]+$'",
                                 "string_pattern_mismatch"))
            p = data.get("password")
            if "password" not in data:
                errs.append(verr(["body", "password"], "Field required", "missing"))
            elif not isinstance(p, str):
                errs.append(verr(["body", "password"],
                                 "Input should be a valid string", "string_type"))
            elif len(p) < 12:
                errs.append(verr(["body", "password"],
                                 "String should have at least 12 characters",
                                 "string_too_short"))
            elif len(p) > 128:
                errs.append(verr(["body", "password"],
                                 "String should have at most 128 characters",
                                 "string_too_long"))
            port = data.get("socket_port", 53035)
            if port is None:
                port = 53035
            if isinstance(port, str) and port.strip().isdigit():
                port = int(port.strip())
            if not is_int(port):
                errs.append(verr(["body", "socket_port"],
                                 "Input should be a valid integer", "int_type"))
            elif port < 1024:
                errs.append(verr(["body", "socket_port"],
                                 "Input should be greater than or equal to 1024",
                                 "greater_than_equal"))
            elif port > 65535:
                errs.append(verr(["body", "socket_port"],
                                 "Input should be less than or equal to 65535",
                                 "less_than_equal"))
            check_opt(data, "location", lambda v: isinstance(v, str),
                      "Input should be a valid string", "string_type", errs)
        if errs:
            raise HTTPError(422, errs)
        now = time.time()
        pw = sha256(data["password"].encode("utf-8"))
        runner = st.runners.get(u)
        if runner is not None and runner["password_sha256"] != pw:
            raise HTTPError(400, "Runner already exists")
        tok = st.new_token()
        if runner is None:
            runner = {"account": u, "password_sha256": pw, "created_at": iso(now),
                      "is_active": True, "last_heartbeat": None, "token": None,
                      "registrations": 0}
            st.runners[u] = runner
            message = "Runner registered successfully"
        else:
            message = "Runner re-registered; previous token revoked"
        if runner["token"] is not None:
            st.runner_tokens.pop(runner["token"], None)
            st.revoked.append(runner["token"])
        runner.update({"token": tok, "socket_port": port,
                       "location": data.get("location"),
                       "registrations": runner["registrations"] + 1})
        st.runner_tokens[tok] = u
        return 201, {"account": u, "token": tok, "message": message}, []

    def api_heartbeat(self, body):
        st = self.st
        _, account = self._require(("runner",))
        data = parse_json(body)
        errs = []
        if "runner_account" not in data:
            errs.append(verr(["body", "runner_account"], "Field required", "missing"))
        elif not isinstance(data["runner_account"], str):
            errs.append(verr(["body", "runner_account"],
                             "Input should be a valid string", "string_type"))
        check_opt(data, "location", lambda v: isinstance(v, str),
                  "Input should be a valid string", "string_type", errs)
        if errs:
            raise HTTPError(422, errs)
        if data["runner_account"] != account:
            raise HTTPError(403, "Runner account does not match token")
        now = time.time()
        runner = st.runners[account]
        runner["last_heartbeat"] = now
        if data.get("location") is not None:
            runner["location"] = data["location"]
        st.heartbeats.append({"account": account, "time": now,
                              "location": data.get("location")})
        return 200, {"status": "ok", "timestamp": iso(now), "account": account}, []

    def api_runners_status(self, body):
        self._require()
        now = time.time()
        out = []
        for acct in sorted(self.st.runners):
            r = self.st.runners[acct]
            hb = r["last_heartbeat"]
            out.append({"account": acct, "socket_port": r["socket_port"],
                        "location": r["location"], "is_active": True,
                        "last_heartbeat": iso(hb) if hb is not None else None,
                        "is_online": hb is not None and now - hb <= ONLINE_WINDOW})
        return 200, {"runners": out}, []

    def _run(self, raw_id):
        if not raw_id.isdigit():
            raise HTTPError(422, [verr(["path", "run_id"],
                                       "Input should be a valid integer",
                                       "int_parsing")])
        run = self.st.runs.get(int(raw_id))
        if run is None:
            raise HTTPError(404, "Test run not found")
        return run

    @staticmethod
    def _check_run_fields(data):
        errs = []
        if "status" in data and data["status"] not in RUN_STATUSES:
            errs.append(verr(["body", "status"],
                             "Input should be 'Pending', 'Running', 'Completed' "
                             "or 'Cancelled'", "enum"))
        check_opt(data, "duration_seconds", is_num,
                  "Input should be a valid number", "float_type", errs)
        check_opt(data, "product_id", is_int,
                  "Input should be a valid integer", "int_type", errs)
        check_opt(data, "product_composition_id", is_int,
                  "Input should be a valid integer", "int_type", errs)
        if errs:
            raise HTTPError(422, errs)

    def api_run_create(self, body):
        who = self._require()
        data = parse_json(body)
        self._check_run_fields(data)
        fields = dict(data)
        fields["created_by"] = "%s:%s" % who
        run = self.st.new_run(fields, time.time())
        return 201, self.st.public_run(run), []

    def api_run_get(self, body, raw_id):
        self._require()
        return 200, self.st.public_run(self._run(raw_id)), []

    def api_run_patch(self, body, raw_id):
        self._require()
        run = self._run(raw_id)
        data = parse_json(body)
        self._check_run_fields(data)
        run["patches"].append(data)
        for key in ("status", "duration_seconds", "product_id"):
            if key in data:
                run[key] = data[key]
        run["updated_at"] = iso(time.time())
        return 200, self.st.public_run(run), []

    def api_results(self, body):
        st = self.st
        who = None
        tok = self._bearer()
        if tok is not None:
            p = st.principal(tok)
            if p is not None:
                who = {"auth": "bearer", "kind": p[0], "principal": p[1]}
        data = None
        if who is None:
            if self.headers.get("X-API-Key") != st.api_key:
                raise unauthorized()
            data = parse_json(body)
            ra = data.get("runner_account")
            if not isinstance(ra, str) or not ra:
                raise unauthorized()
            who = {"auth": "api-key", "kind": "runner", "principal": ra}
        if data is None:
            data = parse_json(body)
        errs = []
        rows = data.get("results")
        if "results" not in data:
            errs.append(verr(["body", "results"], "Field required", "missing"))
        elif not isinstance(rows, list):
            errs.append(verr(["body", "results"], "Input should be a valid list",
                             "list_type"))
        else:
            for i, row in enumerate(rows):
                loc = ("body", "results", i)
                if not isinstance(row, dict):
                    errs.append(verr(loc, "Input should be a valid dictionary",
                                     "dict_type"))
                    continue
                for key, pred, typ in (("test_class", lambda v: isinstance(v, str),
                                        "string_type"),
                                       ("test_method", lambda v: isinstance(v, str),
                                        "string_type"),
                                       ("passed", lambda v: isinstance(v, bool),
                                        "bool_type")):
                    if key not in row:
                        errs.append(verr(loc + (key,), "Field required", "missing"))
                    elif not pred(row[key]):
                        errs.append(verr(loc + (key,), "Input has the wrong type",
                                         typ))
                check_opt(row, "duration_seconds", is_num,
                          "Input should be a valid number", "float_type", errs, loc)
                for key in ("error_message", "traceback"):
                    check_opt(row, key, lambda v: isinstance(v, str),
                              "Input should be a valid string", "string_type",
                              errs, loc)
                check_opt(row, "assertions", lambda v: isinstance(v, list),
                          "Input should be a valid list", "list_type", errs, loc)
                check_opt(row, "metadata", lambda v: isinstance(v, dict),
                          "Input should be a valid dictionary", "dict_type",
                          errs, loc)
        for key in ("test_run_id", "product_id"):
            check_opt(data, key, is_int, "Input should be a valid integer",
                      "int_type", errs)
        for key in RESULT_STR_FIELDS:
            check_opt(data, key, lambda v: isinstance(v, str),
                      "Input should be a valid string", "string_type", errs)
        if errs:
            raise HTTPError(422, errs)
        now = time.time()
        run_id = data.get("test_run_id")
        if run_id is not None:
            run = st.runs.get(run_id)
            if run is None:
                raise HTTPError(404, "Test run not found")
        else:
            fields = {k: data.get(k) for k in RESULT_STR_FIELDS}
            fields["product_id"] = data.get("product_id")
            fields["created_by"] = "%s:%s" % (who["kind"], who["principal"])
            run = st.new_run(fields, now)
        # A de-duplicating server (BUD_API.md allows one): a key it has
        # stored is answered as before and stored no second time.
        key = self.headers.get("Idempotency-Key")
        if key and key in st.upload_by_key:
            u = st.upload_by_key[key]
            u["repeats"] = u.get("repeats", 0) + 1
            return 201, {"message": "Results uploaded", "test_run_id": u["run_id"],
                         "count": u["count"]}, []
        run["rows"].extend(rows)
        st.recompute(run)
        run["status"] = "Completed"
        run["updated_at"] = iso(now)
        record = {"run_id": run["id"],
                  "idempotency_key": self.headers.get("Idempotency-Key"),
                  "body_sha256": sha256(body), "count": len(rows), "time": now,
                  "rows": rows}
        record.update(who)
        st.uploads.append(record)
        if key:
            st.upload_by_key[key] = record
        return 201, {"message": "Results uploaded", "test_run_id": run["id"],
                     "count": len(rows)}, []

    def api_uploads(self, body):
        st = self.st
        self._require()
        parts = parse_multipart(body, self.headers.get("Content-Type"))
        fields, files = {}, {}
        for name, filename, ctype, content in parts:
            if filename is not None:
                files.setdefault(name, (filename, ctype, content))
            else:
                fields.setdefault(name, content)
        errs = []
        if "file" not in files:
            errs.append(verr(["body", "file"], "Field required", "missing"))
        run_id = fields.get("run_id")
        if run_id is not None:
            text = run_id.decode("utf-8", "replace").strip()
            if text.isdigit():
                run_id = int(text)
            else:
                errs.append(verr(["body", "run_id"],
                                 "Input should be a valid integer", "int_parsing"))
        test_case = fields.get("test_case")
        if test_case is not None:
            test_case = test_case.decode("utf-8", "replace")
        if errs:
            raise HTTPError(422, errs)
        if run_id is not None and run_id not in st.runs:
            raise HTTPError(404, "Test run not found")
        filename, ctype, content = files["file"]
        art = {"id": st.next_artifact, "filename": filename, "size": len(content),
               "run_id": run_id, "test_case": test_case}
        st.next_artifact += 1
        record = dict(art, sha256=sha256(content), content_type=ctype,
                      time=time.time(), path=None)
        if st.state_dir:
            d = os.path.join(st.state_dir, "artifacts", str(art["id"]))
            os.makedirs(d, exist_ok=True)
            safe = os.path.basename(filename.replace("\\", "/")) or "file"
            record["path"] = os.path.join(d, safe)
            with open(record["path"], "wb") as f:
                f.write(content)
        st.artifacts.append(record)
        return 201, art, []

    # control API --------------------------------------------------------
    def _control(self, path, body):
        st = self.st
        cmd = self.command
        with st.lock:
            if path == "/_control/state" and cmd == "GET":
                obj = st.snapshot()
            elif path == "/_control/faults" and cmd == "GET":
                obj = {"faults": st.faults_view()}
            elif path == "/_control/faults" and cmd == "POST":
                obj = {"queued": self._control_faults(parse_json(body))}
            elif path == "/_control/reset" and cmd == "POST":
                st.matchers = []
                obj = {"status": "ok"}
            elif path == "/_control/revoke" and cmd == "POST":
                data = parse_json(body)
                if not isinstance(data.get("token"), str):
                    raise HTTPError(422, [verr(["body", "token"],
                                               "Field required", "missing")])
                obj = {"revoked": st.revoke(data["token"])}
            elif path == "/_control/watch" and cmd == "POST":
                data = parse_json(body)
                if not isinstance(data.get("needle"), str) or not data["needle"]:
                    raise HTTPError(422, [verr(["body", "needle"],
                                               "Field required", "missing")])
                st.watch.setdefault(data["needle"], 0)
                obj = {"watching": len(st.watch)}
            elif path == "/_control/save" and cmd == "POST":
                obj = {"path": st.save()}
            else:
                raise HTTPError(404, "Not Found")
            return 200, json.dumps(obj, default=list).encode("utf-8"), []

    def _control_faults(self, data):
        path = data.get("path")
        method = data.get("method", "*")
        prefix = data.get("prefix", False)
        faults = data.get("faults")
        problems = []
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append("path must be a string starting with /")
        if not isinstance(method, str):
            problems.append("method must be a string")
        if not isinstance(prefix, bool):
            problems.append("prefix must be a boolean")
        if not isinstance(faults, list):
            problems.append("faults must be a list")
            faults = []
        for i, f in enumerate(faults):
            if not isinstance(f, dict) or not f or set(f) - FAULT_KEYS:
                problems.append("fault %d: an object of %s" % (i, sorted(FAULT_KEYS)))
                continue
            if "status" in f and not (is_int(f["status"]) and 100 <= f["status"] <= 599):
                problems.append("fault %d: status must be an integer 100-599" % i)
            if "delay" in f and not (is_num(f["delay"]) and f["delay"] >= 0):
                problems.append("fault %d: delay must be a number >= 0" % i)
            if "drop" in f and f["drop"] not in (True, False, "reset", "partial"):
                problems.append("fault %d: drop must be true, \"reset\" or \"partial\"" % i)
            if "kill" in f and not (is_int(f["kill"]) and f["kill"] > 1):
                problems.append("fault %d: kill must be a pid" % i)
            if not ("status" in f or f.get("drop") or "delay" in f or "kill" in f):
                problems.append("fault %d: needs status, drop, delay or kill" % i)
        if problems:
            raise HTTPError(422, problems)
        return self.st.add_faults(method.upper() if method != "*" else "*",
                                  path, prefix, [dict(f) for f in faults])


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self):
        # Skip HTTPServer's getfqdn() lookup, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return
        traceback.print_exc(file=sys.stderr)


def write_port_file(path, port):
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.tmp.%d" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w", encoding="ascii") as f:
        f.write("%d\n" % port)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Fake Bud TMP server for atx tests")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state-dir")
    ap.add_argument("--api-key", default="test-api-key")
    ap.add_argument("--user", action="append", default=[],
                    metavar="EMAIL:PASSWORD")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--api-version", default="v1")
    args = ap.parse_args(argv)
    users = {}
    for spec in [DEFAULT_USER] + args.user:
        email_addr, sep, password = spec.partition(":")
        if not sep or not email_addr:
            ap.error("--user wants EMAIL:PASSWORD, got %r" % spec)
        users[email_addr] = password
    args.users = users
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    state = State(args.api_key, args.users, args.version, args.api_version,
                  args.state_dir)
    try:
        server = Server(("127.0.0.1", args.port), Handler)
    except OSError as e:
        print("bud server: cannot listen on 127.0.0.1:%d: %s" % (args.port, e),
              file=sys.stderr)
        return 1
    server.state = state
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = threading.Thread(target=server.serve_forever,
                              kwargs={"poll_interval": 0.1}, daemon=True)
    worker.start()
    write_port_file(args.port_file, server.server_address[1])
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    if state.state_dir:
        with state.lock:
            try:
                state.save()
            except OSError as e:
                print("bud server: cannot save state: %s" % e, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
