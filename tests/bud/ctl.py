#!/usr/bin/env python3
"""Small clients for tests/bud.sh (standard library only).

  ctl.py fault PORT PATH FAULTS_JSON [METHOD]   queue faults on the test server
  ctl.py state PORT [PYTHON_EXPR]               the server's state, or an
                                                expression of it (s = state)
  ctl.py watch PORT TEXT                        count the requests whose body
                                                holds TEXT (state's "watch")
  ctl.py daemon PORT LINE [SOURCE_ADDRESS]      send one line to a daemon's
                                                control socket, print the reply
"""
import json
import socket
import sys
import urllib.request


def control(port, path, body=None):
    req = urllib.request.Request(
        "http://127.0.0.1:%s%s" % (port, path),
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def main():
    cmd, port = sys.argv[1], sys.argv[2]
    if cmd == "fault":
        method = sys.argv[5] if len(sys.argv) > 5 else "POST"
        print(control(port, "/_control/faults", {
            "path": sys.argv[3], "method": method, "faults": json.loads(sys.argv[4])}))
    elif cmd == "watch":
        print(control(port, "/_control/watch", {"needle": sys.argv[3]}))
    elif cmd == "state":
        s = control(port, "/_control/state")
        if len(sys.argv) > 3:
            v = eval(sys.argv[3], {"s": s, "json": json})  # test-only helper
            print(v if isinstance(v, str) else json.dumps(v))
        else:
            print(json.dumps(s))
    elif cmd == "daemon":
        src = sys.argv[4] if len(sys.argv) > 4 else None
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10,
                                      source_address=(src, 0) if src else None) as c:
            c.sendall(sys.argv[3].encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        print(data.decode().strip())
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
