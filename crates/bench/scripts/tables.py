#!/usr/bin/env python3
"""Prints the tables of docs/BENCHMARKS.md from the raw results, so that every figure there is
one of these files' numbers:

  RESULTS/machine.txt, RESULTS/*.json            baseline.sh (the load tool, one run)
  RESULTS/criterion/<group>/<bench>/*.json      criterion.sh (criterion's own estimates)

  tables.py RESULTS                 print every table
  tables.py RESULTS --write DOC     replace each block between `<!-- table:NAME -->` and
                                    `<!-- /table -->` in DOC with the table NAME
  tables.py RESULTS --check DOC     exit 1 if a block of DOC differs from what --write writes

Links to the raw files are written relative to DOC's directory (or to the working directory
when printing). Python 3 standard library only.
"""

import json
import os
import sys

RESULTS = "."
LINK_BASE = "."


def load(name):
    path = os.path.join(RESULTS, name)
    with open(path) as f:
        return json.load(f)


def exists(name):
    return os.path.exists(os.path.join(RESULTS, name))


def link(name, text=None):
    target = os.path.relpath(os.path.join(RESULTS, name), LINK_BASE)
    return f"[{text or os.path.basename(name)}]({target})"


def machine():
    """machine.txt as a dict (`key: value` lines)."""
    out = {}
    with open(os.path.join(RESULTS, "machine.txt")) as f:
        for line in f:
            key, _, value = line.partition(":")
            if value:
                out[key.strip()] = value.strip()
    return out


def n(x):
    """A count or rate with thousands separators."""
    return f"{x:,.0f}"


def ms(us):
    return f"{us / 1000:.1f} ms" if us < 1_000_000 else f"{us / 1e6:.1f} s"


def lat(latency, keys=("p50_us", "p99_us", "p999_us")):
    return " / ".join(ms(latency[k]) for k in keys)


def pct(x):
    return f"{x:.1f} %"


# ---------------------------------------------------------------------------------------------
# criterion


def estimate(path):
    """Criterion's median estimate (ns) of one benchmark, and its benchmark.json."""
    base = os.path.join("criterion", path)
    return load(os.path.join(base, "estimates.json"))["median"]["point_estimate"], load(
        os.path.join(base, "benchmark.json")
    )


def micro(ns):
    return f"{ns / 1000:.1f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"


def table_codec():
    batch = 64
    rows = [
        "| payload | operation | per frame | frames/s | bytes/s | × memcpy | raw |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, label in ((64, "64 B"), (1024, "1 KiB"), (65536, "64 KiB")):
        base, _ = estimate(f"codec/memcpy/{size}")
        for op in ("memcpy", "encode", "decode", "decode_in_place"):
            path = f"codec/{op}/{size}"
            ns, bench = estimate(path)
            per = ns / batch
            fps = 1e9 / per
            bytes_per_s = bench["throughput"]["Bytes"] * 1e9 / ns / 2**30
            note = " (not copied)" if op == "decode_in_place" and size == 65536 else ""
            rows.append(
                f"| {label} | {op} | {per:.1f} ns | {fps / 1e6:.1f} M | "
                f"{bytes_per_s:.1f} GiB/s{note} | {ns / base:.2f} | "
                f"{link(f'criterion/{path}/estimates.json', 'estimates')} |"
            )
    return "\n".join(rows)


HANDSHAKE_ROWS = [
    ("floor/x25519_dalek_keygen", "floor: X25519 key generation (curve25519-dalek, fixed base)"),
    ("floor/x25519_dalek_dh", "floor: X25519 agreement, curve25519-dalek (snow's default)"),
    ("floor/x25519_aws_lc_dh", "floor: X25519 agreement, aws-lc-rs"),
    ("floor/schnorr_check_math", "floor: Schnorr check math"),
    ("floor/ed25519_sign", "floor: Ed25519 signature"),
    ("server/proof_verify", "server: proof verify"),
    ("server/noise_msg1_msg2", "server: Noise message 1 in, message 2 out (aws-lc-rs X25519)"),
    (
        "server/noise_msg1_msg2_snow_default",
        "server: Noise message 1 in, message 2 out (snow default X25519)",
    ),
    ("server/noise_msg3", "server: Noise message 3 in"),
    ("server/certificate_issue", "server: certificate issue"),
    (
        "handshake_in_memory_new_device",
        "whole handshake in memory, client + server + SQLite (new device)",
    ),
]


def handshake_floor():
    """(floor, server crypto) in ns: the server's cryptographic work per XK handshake and the
    bare operations it needs (aws-lc-rs X25519, as the server uses)."""
    e = {path: estimate(path)[0] for path, _ in HANDSHAKE_ROWS}
    floor = (
        e["floor/x25519_dalek_keygen"]
        + 3 * e["floor/x25519_aws_lc_dh"]
        + e["floor/schnorr_check_math"]
        + e["floor/ed25519_sign"]
    )
    server = (
        e["server/proof_verify"]
        + e["server/noise_msg1_msg2"]
        + e["server/noise_msg3"]
        + e["server/certificate_issue"]
    )
    return floor, server, e


def table_handshake():
    rows = ["| operation | median | raw |", "|---|---|---|"]
    for path, label in HANDSHAKE_ROWS:
        ns, _ = estimate(path)
        rows.append(f"| {label} | {micro(ns)} | {link(f'criterion/{path}/estimates.json', 'estimates')} |")
    floor, server, e = handshake_floor()
    rows.append("")
    rows.append(
        f"Server cryptographic work per handshake (proof verify + message 1/2 + message 3 + "
        f"certificate): **{micro(server)}**, against a floor of key generation + 3 × aws-lc-rs "
        f"agreement + Schnorr math + Ed25519 signature = **{micro(floor)}**: "
        f"**{server / floor:.2f} ×** the floor. aws-lc-rs X25519 instead of snow's default: "
        f"message 1/2 step {e['server/noise_msg1_msg2_snow_default'] / e['server/noise_msg1_msg2']:.2f} × "
        f"faster, the agreement alone {e['floor/x25519_dalek_dh'] / e['floor/x25519_aws_lc_dh']:.2f} × faster."
    )
    return "\n".join(rows)


STORE_ROWS = [
    ("floor_round_trip", "floor: round trip (`ping`)"),
    ("floor_durable_write", "floor: durable write (`extend_session`)"),
    ("enqueue_1_recipients", "enqueue, 1 recipient"),
    ("enqueue_8_recipients", "enqueue, 8 recipients"),
    ("replay_batch_64", "replay, batch of 64"),
    ("handshake_store_calls_new_device", "handshake store calls, new device"),
    ("handshake_store_calls_known_device", "handshake store calls, known device"),
]


def table_store():
    pg = exists("criterion/floor_round_trip/postgres/estimates.json")
    head = "| operation | SQLite | raw |"
    rule = "|---|---|---|"
    if pg:
        head = "| operation | SQLite | PostgreSQL | PG ÷ SQLite | raw |"
        rule = "|---|---|---|---|---|"
    rows = [head, rule]
    for group, label in STORE_ROWS:
        lite, _ = estimate(f"{group}/sqlite")
        raw = link(f"criterion/{group}/sqlite/estimates.json", "sqlite")
        if pg:
            post, _ = estimate(f"{group}/postgres")
            raw += ", " + link(f"criterion/{group}/postgres/estimates.json", "postgres")
            rows.append(f"| {label} | {micro(lite)} | {micro(post)} | {post / lite:.2f} | {raw} |")
        else:
            rows.append(f"| {label} | {micro(lite)} | {raw} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# load tool


def table_machine():
    m = machine()
    lines = [
        f"- machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory', '?')}, "
        f"{m.get('kernel', '?')}",
        f"- build: commit {m.get('commit', '?')}, {m.get('rustc', '?')}, release profile; "
        f"binary {m.get('binary', '?')}",
        f"- run: {m.get('date', '?')}; load average (1, 5, 15 min) {m.get('load before', '?')} "
        f"before, {m.get('load after', '?')} after",
        f"- raw: {link('machine.txt')}",
    ]
    return "\n".join(lines)


def phase_line(phase):
    return (
        f"{n(phase['msgs_per_s'])} msgs/s; {n(phase['sent'])} sent, {n(phase['lost'])} lost; "
        f"p50 / p99 / p999 {lat(phase['latency'])}"
    )


def table_results():
    rows = ["| measure | result | target | raw |", "|---|---|---|---|"]
    floor = None
    if exists("criterion/floor/x25519_aws_lc_dh/estimates.json"):
        floor, _, _ = handshake_floor()
    for name, label in (("handshake", "returning devices"), ("handshake-fresh", "new devices")):
        h = load(f"{name}.json")
        rows.append(
            f"| handshakes/s, {label} ({h['loops']} loops, {h['pattern']}) | "
            f"**{n(h['handshakes_per_s'])}**/s ({n(h['handshakes'])} done, {n(h['failures'])} failed); "
            f"p50 / p99 / p999 {lat(h['latency'])} | — | {link(name + '.json')} |"
        )
    h, hf = load("handshake.json"), load("handshake-fresh.json")
    cpu, cpu_fresh = h["server_cpu_us_per_handshake"], hf["server_cpu_us_per_handshake"]
    if floor:
        ratio = cpu / (floor / 1000)
        rows.append(
            f"| server CPU per handshake (returning / new device) | **{n(cpu)} µs** / {n(cpu_fresh)} µs "
            f"= **{ratio:.1f} ×** the {micro(floor)} cryptographic floor (criterion median, wall "
            f"time: see the handshake section) | ≤ 1.5 × — "
            f"{'reached' if ratio <= 1.5 else '**not reached**'} | {link('handshake.json')}, "
            f"{link('handshake-fresh.json')}, floor: criterion below |"
        )
    r = load("relay.json")
    echo = r["echo"]
    rows.append(
        f"| echo baseline, {r['connections']} connections, {r['size']}-byte frames, window "
        f"{r['window']}, {r['duration_s']} s | {phase_line(echo)} | — | {link('relay.json')} |"
    )
    for phase, label in (("plain", "relay, plain"), ("noise", "relay, `noise-transport`")):
        p = r[phase]
        share = r[f"{phase}_pct_of_echo"]
        rows.append(
            f"| {label} | {phase_line(p)}; **{pct(share)} of echo**; server "
            f"{p['server_cpu_us_per_msg']:.2f} µs CPU/msg | ≥ 50 % of echo — "
            f"{'reached' if share >= 50 else '**not reached**'} | {link('relay.json')} |"
        )
    for name in ("idle-1k", "idle-15k"):
        i = load(f"{name}.json")
        per = i["server_bytes_per_session"]
        rows.append(
            f"| server memory per idle session, {n(i['sessions_open'])} sessions | "
            f"**{n(per)} B** ({per / 1024:.1f} KiB); RSS {i['server_rss_before_bytes'] / 2**20:.0f} → "
            f"{i['server_rss_after_hold_bytes'] / 2**20:.0f} MiB; client side "
            f"{i['client_bytes_per_session'] / 1024:.1f} KiB; opened at {n(i['sessions_per_s'])}/s, "
            f"{n(i['failures'])} failures"
            + (
                f", {n(i['sessions_closed_during_hold'])} closed during the hold"
                if "sessions_closed_during_hold" in i
                else ""
            )
            + " | ≤ 16 KiB — "
            f"{'reached' if per <= 16 * 1024 else '**not reached**'} | {link(name + '.json')} |"
        )
    f = load("fanout.json")
    rows.append(
        f"| fan-out, K = {n(f['members'])} (one sender, {n(f['members'] - 1)} receivers, "
        f"{f['size']}-byte MSG) | **{n(f['deliveries_per_s'])} deliveries/s** over {f['elapsed_s']} s "
        f"({n(f['deliveries'])} of {n(f['deliveries_expected'])} delivered, {n(f['lost'])} lost); "
        f"p50 / p99 {lat(f['latency'], ('p50_us', 'p99_us'))}; server "
        f"{f['server_cpu_us_per_delivery']:.2f} µs CPU/delivery | ≥ 500 k/s — "
        f"{'reached' if f['deliveries_per_s'] >= 500_000 else '**not reached**'} | {link('fanout.json')} |"
    )
    o = load("offline.json")
    rows.append(
        f"| offline replay, {n(o['envelopes'])} envelopes | **{o['replay_ms']:.0f} ms** "
        f"({n(o['replayed'])} replayed, {n(o['lost'])} lost; {n(o['replayed_per_s'])} envelopes/s; "
        f"reconnect {o['reconnect_ms']:.1f} ms); queueing them took {o['queue_s']} s "
        f"({n(o['queued_per_s'])}/s, one durable commit per ACK) | < 200 ms — "
        f"{'reached' if o['replay_ms'] < 200 and o['lost'] == 0 else '**not reached**'} | "
        f"{link('offline.json')} |"
    )
    return "\n".join(rows)


def rate_runs():
    runs = []
    for name in os.listdir(RESULTS):
        if name.startswith("relay-rate-") and name.endswith(".json"):
            runs.append((name, load(name)))
    runs.sort(key=lambda r: r[1]["offered_rate"])
    return runs


def table_rates():
    rows = [
        "| offered msgs/s | echo delivered msgs/s | echo lost / unsent | echo p50 / p99 | "
        "relay delivered msgs/s | relay lost / unsent | relay p50 / p99 | raw |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rate_runs():
        cells = [n(r["offered_rate"])]
        for phase in ("echo", "plain"):
            p = r[phase]
            cells += [
                n(p["msgs_per_s"]),
                f"{n(p['lost'])} / {n(p['unsent'])} of {n(p['scheduled'])}",
                lat(p["latency"], ("p50_us", "p99_us")),
            ]
        cells.append(link(name))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def table_headline():
    """One line for the README's status row."""
    r = load("relay.json")
    h = load("handshake.json")
    f = load("fanout.json")
    o = load("offline.json")
    i = load("idle-15k.json")
    parts = [
        f"plain relay {r['plain_pct_of_echo']:.0f} % of echo ({n(r['plain']['msgs_per_s'])} msgs/s, "
        f"{n(r['plain']['lost'])} lost)",
        f"noise relay {r['noise_pct_of_echo']:.0f} % of echo",
    ]
    if exists("criterion/floor/x25519_aws_lc_dh/estimates.json"):
        floor, _, _ = handshake_floor()
        parts.append(f"handshake CPU {h['server_cpu_us_per_handshake'] / (floor / 1000):.1f} × crypto floor")
    parts += [
        f"{i['server_bytes_per_session'] / 1024:.0f} KiB per idle session",
        f"fan-out {f['deliveries_per_s'] / 1000:.0f}k deliveries/s",
        f"10k-envelope replay {o['replay_ms']:.0f} ms",
    ]
    return "; ".join(parts)


PQ_ROWS = [
    ("pq_floor/mlkem768_encapsulate", "floor: ML-KEM-768 encapsulation (aws-lc-rs)"),
    ("pq_floor/mldsa65_verify_transcript", "floor: ML-DSA-65 verification of the transcript (aws-lc-rs)"),
    ("pq_hybrid/validate_bundle_0_one_time_keys", "`pq_bundle` check, no one-time keys"),
    ("pq_hybrid/validate_bundle_32_one_time_keys", "`pq_bundle` check, 32 one-time keys"),
    ("pq_hybrid/session_derive", "session derivation (HKDF-SHA3-512, 96 B)"),
    ("pq_hybrid/message_key", "message key (BLAKE3 keyed chain step)"),
    ("pq_hybrid/ratchet_step_encapsulate", "ratchet step, server side (encapsulation + derivation)"),
    ("pq_hybrid/mlkem768_decapsulate", "client: ML-KEM-768 decapsulation"),
    ("pq_hybrid/mldsa65_sign_transcript", "client: ML-DSA-65 signature of the transcript"),
]


def table_pq():
    rows = ["| operation | median | raw |", "|---|---|---|"]
    e = {}
    for path, label in PQ_ROWS:
        ns, _ = estimate(path)
        e[path] = ns
        rows.append(f"| {label} | {micro(ns)} | {link(f'criterion/{path}/estimates.json', 'estimates')} |")
    floor = e["pq_floor/mlkem768_encapsulate"] + e["pq_floor/mldsa65_verify_transcript"]
    rows.append("")
    rows.append(
        f"Post-quantum floor the hybrid adds to a server handshake (one encapsulation + one "
        f"verification): **{micro(floor)}**; with the session derivation and a bundle check "
        f"without one-time keys: {micro(floor + e['pq_hybrid/session_derive'] + e['pq_hybrid/validate_bundle_0_one_time_keys'])}."
    )
    return "\n".join(rows)


TABLES = {
    "machine": table_machine,
    "codec": table_codec,
    "handshake": table_handshake,
    "store": table_store,
    "pq": table_pq,
    "results": table_results,
    "rates": table_rates,
    "headline": table_headline,
}

BEGIN = "<!-- table:"
END = "<!-- /table -->"


def render(doc_text):
    """DOC's text with every table block replaced."""
    out, rest = [], doc_text
    while True:
        start = rest.find(BEGIN)
        if start < 0:
            out.append(rest)
            return "".join(out)
        close = rest.index("-->", start)
        name = rest[start + len(BEGIN) : close].strip()
        end = rest.index(END, close)
        out.append(rest[: close + 3])
        out.append("\n" + TABLES[name]() + "\n")
        out.append(END)
        rest = rest[end + len(END) :]


def main():
    global RESULTS, LINK_BASE
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    RESULTS = args[0]
    if len(args) == 3 and args[1] in ("--write", "--check"):
        doc = args[2]
        LINK_BASE = os.path.dirname(doc) or "."
        with open(doc) as f:
            text = f.read()
        new = render(text)
        if args[1] == "--write":
            with open(doc, "w") as f:
                f.write(new)
        elif new != text:
            sys.exit(f"{doc}: tables differ from {RESULTS}; run tables.py {RESULTS} --write {doc}")
        return
    if len(args) != 1:
        sys.exit(__doc__)
    for name, table in TABLES.items():
        try:
            body = table()
        except FileNotFoundError as e:
            body = f"(missing: {e.filename})"
        print(f"{BEGIN} {name} -->\n{body}\n{END}\n")


if __name__ == "__main__":
    main()
