"""GET /metrics: Prometheus text with resonance_* connection and message counters."""

import re
import time

from conftest import uniq

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$")


def scrape(server):
    r = server.get("/metrics")
    assert r.status_code == 200, r.text
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain"), f"unexpected Content-Type {ctype!r}"
    samples = {}
    for line in r.text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line.strip())
        assert m, f"not a Prometheus sample line: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples, r.text


def names(samples):
    return sorted({k.split("{", 1)[0] for k in samples if k.startswith("resonance_")})


def increased(before, after, words):
    return {k: (before.get(k, 0.0), v) for k, v in after.items()
            if k.startswith("resonance_") and any(w in k.split("{", 1)[0] for w in words)
            and v > before.get(k, 0.0)}


def test_metrics_exposes_resonance_counters(server):
    samples, text = scrape(server)
    found = names(samples)
    print("resonance metric names:", found)
    assert found, f"no resonance_* metrics in:\n{text[:2000]}"
    assert any("connection" in n for n in found), f"no connection metric among {found}"
    assert any("message" in n or "event" in n for n in found), f"no message/event metric among {found}"
    # every resonance_ metric has HELP/TYPE metadata
    for n in found:
        base = re.sub(r"_(total|bucket|sum|count)$", "", n)
        assert re.search(rf"^# TYPE ({re.escape(n)}|{re.escape(base)}) ", text, re.M), f"no # TYPE for {n}"


def test_metrics_counters_increase(server):
    before, _ = scrape(server)
    ch = uniq("metrics-")
    with server.client() as ws:
        ws.subscribe(ch)
        mid, _ = scrape(server)
        conn_up = increased(before, mid, ("connection",))
        assert conn_up, f"no resonance_*connection* sample increased after a connect: {names(mid)}"
        for i in range(3):
            server.sdk().trigger(ch, "m", str(i))
        for i in range(3):
            ws.wait_event("m", ch)
        deadline = time.monotonic() + 2
        while True:
            after, _ = scrape(server)
            msg_up = {k: v for k, v in increased(mid, after, ("message", "event")).items() if v[1] - v[0] >= 3}
            if msg_up or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        print("increased after connect:", conn_up)
        print("increased after 3 triggers:", msg_up)
        assert msg_up, f"no resonance_*message*/*event* sample increased by >= 3 after 3 delivered triggers: {names(after)}"
