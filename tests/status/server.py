#!/usr/bin/env python3
"""A status server on loopback for atx's status aggregator tests. Stdlib only.

    server.py --port-file FILE --record FILE [--header NAME] [--delay SECONDS]
    server.py --port-file FILE --hang

The first form answers every POST with 200 {} after appending its JSON body
(one line; with --header, the header's value added as "_header") to the
record file, so the body is on disk before the client hears back; with
--delay, it first sleeps that long (a slow server). The second
accepts connections and never reads or answers them: a server that hangs.
Either binds 127.0.0.1 on a free port and writes the port number to the port
file (atomically) once listening; SIGTERM ends it.
"""
import argparse
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time


def write_port(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def hang(port_file):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    write_port(port_file, srv.getsockname()[1])
    held = []
    while True:
        conn, _ = srv.accept()
        held.append(conn)   # kept open, never read, never answered


def serve(port_file, record, header, delay):
    lock = threading.Lock()
    out = open(record, "a", buffering=1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True   # headers and body go out without waiting for an ACK

        def do_POST(self):
            if delay:
                time.sleep(delay)
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            try:
                row = json.loads(body)
            except ValueError:
                self.answer(400, b'{"detail": "not JSON"}')
                return
            if header:
                row["_header"] = self.headers.get(header)
            with lock:
                out.write(json.dumps(row) + "\n")
            self.answer(200, b"{}")

        def answer(self, code, data):
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass   # the client gave up waiting (a slow server's fate)

        def log_message(self, fmt, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    write_port(port_file, httpd.server_address[1])
    httpd.serve_forever()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--record")
    ap.add_argument("--header")
    ap.add_argument("--delay", type=float, default=0)
    ap.add_argument("--hang", action="store_true")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if a.hang:
        hang(a.port_file)
    elif a.record:
        serve(a.port_file, a.record, a.header, a.delay)
    else:
        ap.error("--record or --hang is needed")


if __name__ == "__main__":
    main()
