#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/seeds/<target>/ from the inputs the tests and examples use.

Run from the repository: `python3 fuzz/make_seeds.py`. Deterministic; it replaces the seeds.
Each target's input layout (selector bytes, then data) is described in its file's doc.
"""
import hashlib
import json
import pathlib
import re
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def read(path):
    return (ROOT / path).read_text()


def rust_strings(path):
    """String literals of a Rust source: "..." (simple escapes) and r#"..."#."""
    text = read(path)
    found = []
    for m in re.finditer(r'r#"(.*?)"#', text, re.S):
        found.append(m.group(1))
    for m in re.finditer(r'(?<![r#\w])"((?:[^"\\\n]|\\.)*)"', text):
        raw = m.group(1)
        try:
            found.append(json.loads('"' + raw.replace("\\'", "'") + '"'))
        except ValueError:
            pass
    return found


def write(target, items):
    folder = SEEDS / target
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    seen = set()
    for item in items:
        data = item.encode() if isinstance(item, str) else bytes(item)
        name = hashlib.sha1(data).hexdigest()[:16]
        if name in seen or len(data) > 4096:
            continue
        seen.add(name)
        (folder / name).write_bytes(data)
    print(f"{target}: {len(seen)} seeds")


access = read("examples/data/access.log").splitlines()[:8]
events = read("examples/data/events.ndjson").splitlines()[:8]
parse_tests = rust_strings("pipelines/src/steps/parse/tests.rs")
nginx_lines = [s for s in parse_tests if re.match(r"^\d+\.\d+\.\d+\.\d+ ", s)] + access
apache = [
    '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326',
    '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
    '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"',
    '::1 - - [29/Feb/2024:23:59:59 +0000] "OPTIONS * HTTP/1.1" 200 -',
]
stack = (
    "2026-01-01 00:00:00 ERROR boom\njava.lang.RuntimeException: x\n\tat a.b(C.java:1)\n"
    "\tat d.e(F.java:2)\n... 3 more\nCaused by: y\n2026-01-01 00:00:01 INFO ok\n"
)

line_inputs = [
    "one\ntwo\nthr",
    "a\r\nb\r\n\r\nc\r",
    "a\r;b\r",
    "abcdefghijklm\nok\nabcd\r\nxyz",
    "x||y|||z||",
    "abababa aba",
    "\n\n\n \t \n",
] + ["\n".join(access[:4]) + "\n"]
write(
    "lines",
    [bytes([c, m, s]) + t.encode() for c, (t, m, s) in enumerate(
        (t, m, s) for t in line_inputs for (m, s) in ((3, 0x85), (63, 7), (0, 0x91)))],
)

write(
    "multiline",
    [bytes([c, m]) + t.encode() for c in range(12) for (t, m) in (
        (stack, 95), (stack, 20), ("orphan\n1 error\n  at a\n  at b\n2 ok", 40),
        ("Exception\n at a.b\n at c.d\nnext", 11), ("a \\\nb\n\nc", 4))],
)

write("access_presets", nginx_lines + apache + [l + "\r\n" for l in apache[:1]])

timestamps = [
    "01/Jan/2026:00:00:00 +0000", "10/Oct/2000:13:55:36 -0700", "29/Feb/2024:23:59:60 +0000",
    "2026-01-01T00:00:00.003Z", "2026-01-01T00:00:00+02:00", "2024-05-01t12:00:00.123456789z",
    "1714521600", "1714521600.5", "1714521600123", "-1", "2026-01-01 00:00:00.5",
    "2026-01-01T00:00:00UTC", "31.12.1999", "true", "FALSE", "0", "-", "", "1e3", "9223372036854775807",
]
own_formats = [
    "%Y-%m-%d %H:%M:%S|Europe/Paris\n2024-03-31 02:30:00", "%s\n1714521600",
    "%Y-%m-%dT%H:%M:%S%.3f%:z|local\n2026-01-01T00:00:00.123+02:00", "%Y-%m-%d|+02:00\n2026-01-01",
    "%H:%M\n12:00", "%Y-%m-%d %H:%M:%S %Z\n2026-01-01 00:00:00 UTC", "%j %Y\n366 2024",
    "%d/%b/%Y:%H:%M:%S %z\n01/Jan/2026:00:00:00 +0000", "%e-%b-%y %I:%M %p|UTC\n 1-Jan-26 12:00 AM",
]
write("timestamps", [bytes([c]) + t.encode() for c in range(14) for t in timestamps]
      + [b"\xff" + f.encode() for f in own_formats])

decode_tests = rust_strings("agent/sources/http_server/decode.rs")
json_inputs = [s for s in parse_tests + decode_tests if s.lstrip().startswith(("{", "["))] + events
json_inputs += ['{"a":"\\u00e9\\ud83d\\ude00","b":[1,2.5,-0.0,1e300,null,true],"c":{"d":{}}}',
                '{"n":18446744073709551615,"m":-9223372036854775808}', '"just a string"', "42"]
write("json", json_inputs)

logfmt = [s for s in parse_tests if "=" in s and not s.startswith(("format", "{", "^"))][:20]
logfmt += ['level=info msg="hello \\"world\\"" flag dur=1.5s', 'a= b="" c="\\x"']
csv = ['2026-01-01,alice,12.5', '"quoted, field","with ""quote""",x', 'a;b;c;d', 'a\tb', '"open']
regex_lines = ["2026-01-01T00:00:00Z INFO 200 all good", "key=1.5,true", "x=-2e3"] + nginx_lines[:2]
formats = []
for opt in (0x00, 0x10, 0x20):
    formats += [bytes([0, opt]) + s.encode() for s in logfmt]
    formats += [bytes([1, opt | k]) + s.encode() for s in csv for k in (2, 3 | 4, 1 | 8)]
    formats += [bytes([2 + 4 * p, opt]) + s.encode() for s in regex_lines for p in range(3)]
    formats += [bytes([3, opt]) + s.encode() for s in json_inputs[:6]]
write("parse_formats", formats)

cond_tests = rust_strings("pipelines/src/condition/tests.rs")
conditions = [s for s in cond_tests if 0 < len(s) < 200 and re.search(r"[=<>~()]|\b(and|or|not|in)\b", s)]
write("condition", conditions)

configs = [read(f"examples/{name}") for name in
           ("quickstart.toml", "web_analytics.toml", "clickstream.toml", "beacons.toml")]
config_tests = rust_strings("agent/config/tests.rs")
base = next(s for s in config_tests if s.startswith("[sources.in]"))
configs += [s.replace("{BASE}", base) for s in config_tests if "[" in s and "=" in s and len(s) > 20][:60]
configs += [p.read_text() for p in sorted((ROOT / "tests/fixtures/config").rglob("*.toml"))]
write("config", configs)

bodies = [s for s in decode_tests if s and not s.startswith(("application", "text/"))][:30]
bodies += ["\n".join(events[:4]), '[{"a":1},{"a":2}]', "one\r\ntwo\n\nthree", "\t\t", "  \n \r\n"]
http = []
for flags in (0, 1, 2, 3, 4 | 1, 4 | 2):
    http += [bytes([flags, 200]) + b.encode() for b in bodies]
http += [bytes([8 | 3, 255]) + ("application/x-ndjson\n" + "\n".join(events[:3])).encode(),
         bytes([8, 255]) + b"Application/JSON; charset=utf-8\n[{\"a\":1}]",
         bytes([8, 255]) + b"text/plain\nhello\r\nworld"]
write("http_body", http)
