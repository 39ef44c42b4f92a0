#!/usr/bin/env python3
"""Make atx's man pages from their one source each:
atx(1) from the atx command's own --help texts (so they stay in step),
atx-plan(5) from share/plan.schema.json, atx-plugin(7) from docs/plugins.md,
libatx(3) from the documented functions of the public headers.

usage: mkman.py ATX SRCDIR OUTDIR VERSION
"""
import glob
import json
import os
import re
import subprocess
import sys

DATE = "2026-12-02"


def esc(text):
    """Text as roff: backslashes, leading dots and quotes, and hyphens."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def header(name, section, version, title):
    return '.TH %s %s "%s" "atx %s" "%s"\n' % (name.upper(), section, DATE, version, title)


def help_of(atx, *args):
    return subprocess.run([atx, *args, "--help"], capture_output=True, text=True,
                          check=True).stdout


OPTION = re.compile(r"^  (-[a-zA-Z], )?(--?[a-zA-Z][\w-]*)(\s\S+)?\s{2,}(.*)$")
OPTION_ONLY = re.compile(r"^  (-[a-zA-Z], )?(--?[a-zA-Z][\w-]*[^ ]*( [A-Z][A-Z.,:=\[\]_]*)?)$")


def render_help(text):
    """A command's --help as roff: usage lines, paragraphs, option lists."""
    out = []
    lines = text.rstrip("\n").split("\n")
    i = 0
    mode = None
    while i < len(lines):
        line = lines[i]
        if line.startswith("usage: ") or (mode == "usage" and line.startswith("       ")):
            out.append(".nf\n" if mode != "usage" else "")
            out.append(esc(line[7:].strip()) + "\n")
            mode = "usage"
            i += 1
            continue
        if mode == "usage":
            out.append(".fi\n")
            mode = None
        if not line.strip():
            out.append(".PP\n")
            mode = None
        elif line.rstrip().endswith(":") and not line.startswith(" "):
            out.append(".PP\n\\fB%s\\fR\n" % esc(line.rstrip()[:-1]))
            mode = "list"
        elif mode == "list" and line.startswith("  ") and not line.startswith("   "):
            m = OPTION.match(line)
            if m:
                term = (m.group(1) or "") + m.group(2) + (m.group(3) or "")
                out.append(".TP\n\\fB%s\\fR\n%s\n" % (esc(term.strip()), esc(m.group(4))))
            else:
                out.append(".TP\n\\fB%s\\fR\n" % esc(line.strip()))
        elif mode == "list" and line.startswith("   "):
            out.append(esc(line.strip()) + "\n")
        else:
            out.append(esc(line.strip()) + "\n")
        i += 1
    if mode == "usage":
        out.append(".fi\n")
    return "".join(out)


def atx1(atx, src, version):
    page = [header("atx", 1, version, "User Commands")]
    page.append(".SH NAME\natx \\- run test suites on pools of systems\n")
    page.append(".SH SYNOPSIS\n" + render_help(help_of(atx)))
    page.append(".SH DESCRIPTION\n"
                "atx runs tests on systems that provisioners lease (this host, podman "
                "containers, SSH lab machines), with executors for commands, TAP, JUnit "
                "and fmf trees, and writes reports as results come (JUnit XML, JSON "
                "lines, an HTML page, CTRF, Bud TMP). Each command's options follow, as "
                "its \\fB\\-\\-help\\fR prints them.\n")
    page.append(".SH COMMANDS\n")
    for cmd in ("run", "list", "report", "plugins", "bud", "runnable-run", "capabilities"):
        page.append(".SS atx %s\n" % esc(cmd))
        page.append(render_help(help_of(atx, cmd)))
    page.append(
        ".SH SIGNALS\n"
        "The first SIGINT or SIGTERM cancels the run: running tests are killed and "
        "recorded as interrupted, the reports are written. A second one gives up on "
        "systems that do not answer.\n"
        ".SH EXIT STATUS\n"
        "0 all tests passed; 1 a test failed or errored, or the run was cancelled; "
        "2 usage, plan or plugin error; 3 infrastructure failure. Quarantined failures, "
        "and with \\fB\\-\\-fail\\-on new\\fR those of tests that failed in the run "
        "compared with, do not make it 1.\n"
        ".SH ENVIRONMENT\n"
        ".TP\n.B ATX_PLUGIN_PATH\nColon\\-separated plugin folders.\n"
        ".TP\n.B NO_COLOR\nNo colour with \\fB\\-\\-color=auto\\fR.\n"
        ".TP\n.BR BUD_BACKEND_URL \", \" BUD_TOKEN \", \" BUD_PASSWORD \", \" "
        "BUD_RUNNER_TOKEN \", \" RUNNER_API_KEY\n"
        "Bud TMP identity. These are hidden from tests and their values masked.\n"
        ".TP\n.B XDG_STATE_HOME\nWhere the duration and outcome history lives "
        "(default \\fI~/.local/state\\fR).\n"
        ".SH SEE ALSO\n"
        ".BR atx\\-plan (5),\n.BR atx\\-plugin (7),\n.BR libatx (3)\n")
    return "".join(page)


def plan5(src, version):
    schema = json.load(open(os.path.join(src, "share/plan.schema.json")))
    d = schema["$defs"]
    page = [header("atx-plan", 5, version, "File Formats")]
    page.append(".SH NAME\natx\\-plan \\- the JSON plan atx runs\n")
    page.append(".SH DESCRIPTION\n%s\n" % esc(schema["description"]))
    page.append(".PP\nEvery key is optional but \\fBtests\\fR; an unknown key is an error. "
                "The JSON Schema is \\fIshare/atx/plan.schema.json\\fR.\n")
    page.append(".SH KEYS\n")
    about = {
        "provisioners": "The systems: a list of {\"plugin\": NAME, ...its configuration}, "
                        "with setup, cleanup, ready and ready_timeout for every system.",
        "executors": "Executor configuration: {\"plugin\": NAME, ...}; tests of an "
                     "executor not listed get its defaults.",
        "aggregators": "The reports: {\"plugin\": NAME, ...}; without any, atx run "
                       "writes junit.xml, results.jsonl and report.html.",
        "tests": d["test"]["description"],
        "policy": "Run policy (below).",
        "quarantine": schema["properties"]["quarantine"]["description"],
    }
    for key in schema["properties"]:
        page.append(".TP\n.B %s\n%s\n" % (esc(key), esc(about[key])))
    page.append(".SH TEST KEYS\n")
    for key, spec in d["test"]["properties"].items():
        kind = spec.get("type", "duration" if "$ref" in spec else "")
        page.append(".TP\n.B %s\n%s\n" % (esc(key), esc(kind)))
    page.append(".SH POLICY KEYS\n")
    for key, spec in d["policy"]["properties"].items():
        kind = spec.get("type", "duration" if "$ref" in spec else "")
        page.append(".TP\n.B %s\n%s\n" % (esc(key), esc(kind)))
    page.append(".SH DURATIONS\n%s\n" % esc(d["duration"]["description"]))
    example = open(os.path.join(src, "examples/demo/plan.json")).read().rstrip("\n")
    page.append(".SH EXAMPLE\n.nf\n%s\n.fi\n" % esc(example))
    page.append(".SH SEE ALSO\n.BR atx (1)\n")
    return "".join(page)


def markdown(md):
    """The little Markdown docs/plugins.md uses, as roff."""
    out, code = [], False
    for line in md.split("\n"):
        if line.startswith("```"):
            out.append(".fi\n" if code else ".nf\n")
            code = not code
            continue
        if code:
            out.append(esc(line) + "\n")
            continue
        text = re.sub(r"`([^`]*)`", lambda m: "\\fB" + m.group(1) + "\\fR", line)
        if line.startswith("# "):
            continue
        if line.startswith("## "):
            out.append(".SH %s\n" % esc(line[3:].upper()))
        elif line.startswith("### "):
            out.append(".SS %s\n" % esc(line[4:]))
        elif line.startswith(("- ", "* ")):
            out.append(".IP \\(bu 2\n%s\n" % esc_inline(text[2:]))
        elif not line.strip():
            out.append(".PP\n")
        else:
            out.append(esc_inline(text.strip()) + "\n")
    return "".join(out)


def esc_inline(text):
    """esc() that keeps the \\fB...\\fR made from backquotes."""
    parts = re.split(r"(\\f[BR])", text)
    return "".join(p if re.fullmatch(r"\\f[BR]", p) else esc(p) for p in parts)


def plugin7(src, version):
    page = [header("atx-plugin", 7, version, "Miscellaneous")]
    page.append(".SH NAME\natx\\-plugin \\- writing provisioners, executors and aggregators\n")
    page.append(".SH DESCRIPTION\n")
    page.append(markdown(open(os.path.join(src, "docs/plugins.md")).read()))
    page.append(".SH SEE ALSO\n.BR atx (1),\n.BR libatx (3)\n")
    return re.sub(r"(\.PP\n)+", ".PP\n", "".join(page))


def lib3(src, version):
    page = [header("libatx", 3, version, "Library Functions Manual")]
    page.append(".SH NAME\nlibatx \\- run test suites on pools of systems from C\n")
    page.append(".SH SYNOPSIS\n.nf\n.B #include <atx.h>\n.PP\n"
                "Link with \\fI\\-latx\\fR (pkg\\-config atx).\n.fi\n")
    page.append(".SH DESCRIPTION\nThe functions of the public headers, each with what "
                "its header says of it.\n")
    proto = re.compile(r"/\*\*(.*?)\*/\s*ATX_API\s+([^;{]*?\))\s*(?:ATX_PRINTF\([^)]*\))?\s*;", re.S)
    for h in sorted(glob.glob(os.path.join(src, "framework/include/atx/*.h"))):
        text = open(h).read()
        found = proto.findall(text)
        if not found:
            continue
        page.append(".SS <atx/%s>\n" % esc(os.path.basename(h)))
        for doc, sig in found:
            doc = " ".join(l.strip().lstrip("*").strip() for l in doc.split("\n")).strip()
            doc = re.sub(r"@(param|return)\s*", "", doc)
            sig = " ".join(sig.split())
            page.append(".TP\n.B %s\n%s\n" % (esc(sig), esc(doc)))
    page.append(".SH SEE ALSO\n.BR atx (1),\n.BR atx\\-plugin (7)\n")
    return "".join(page)


def main():
    atx, src, out, version = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    pages = {"atx.1": atx1(atx, src, version), "atx-plan.5": plan5(src, version),
             "atx-plugin.7": plugin7(src, version), "libatx.3": lib3(src, version)}
    for name, text in pages.items():
        text = re.sub(r"(\.PP\n)+", ".PP\n", text)
        with open(os.path.join(out, name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
