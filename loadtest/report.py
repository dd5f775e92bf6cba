"""Bench results → medians over rounds, same-run ratios, a Markdown table and PNG plots."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

KEYS = {
    "join_s": ("join", "all_done_s"),
    "join_errors": ("join", "errors"),
    "joined": ("join", "joined"),
    "join_cpu_ms": ("join", "server_cpu_ms_per_join"),
    "joins_per_s": ("join", "joins_per_s"),
    "ping_p99_ms": ("ping_burst", "p99_ms"),
    "storm_p99_ms": ("storm", "p99_ms"),
    "valkey_cpu_us_per_attempt": ("storm", "valkey", "cpu_us_per"),
    "valkey_usec_per_attempt": ("storm", "valkey", "usec_per"),
    "valkey_cpu_us_per_order": ("orders", "valkey", "cpu_us_per"),
    "valkey_usec_per_order": ("orders", "valkey", "usec_per"),
    "valkey_cpu_us_per_pin": ("quiet_pins", "valkey", "cpu_us_per"),
    "valkey_usec_per_pin": ("quiet_pins", "valkey", "usec_per"),
    "rss_kib": ("rss_per_conn_bytes",),
    "pin_p50_ms": ("single_pin", "p50_ms"),
    "pin_p99_ms": ("single_pin", "p99_ms"),
    "pin_max_ms": ("single_pin", "max_ms"),
    "fanout_ms_max": ("single_pin", "server_fanout_ms_max"),
    "msgs_per_s": ("stream", "msgs_per_s"),
    "cpu_us_per_msg": ("stream", "cpu_us_per_msg"),
    "gen_cpu_us_per_msg": ("stream", "generator_cpu_us_per_msg"),
    "valkey_us_per_event": ("stream", "valkey_cpu_us_per_event"),
    "valkey_us_per_event_net": ("stream", "valkey_cpu_us_per_event_net"),
    "stream_p99_ms": ("stream", "latency_p99_ms"),
    "delivered": ("stream", "delivered"),
    "expected": ("stream", "expected"),
    "order_errors": ("stream", "order_errors"),
}


def _get(res: dict[str, Any], path: tuple[str, ...]) -> float | None:
    cur: Any = res
    for k in path:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    if cur is None:
        return None
    value = float(cur)
    if path == ("rss_per_conn_bytes",):
        value /= 1024
    return None if math.isnan(value) else value


def _median(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def _ratio(rounds: list[dict[str, Any]], a: tuple[str, tuple[str, ...]],
           b: tuple[str, tuple[str, ...]]) -> dict[str, Any] | None:
    """median over rounds of a / b, each pair taken from the same round."""
    each = []
    for r in rounds:
        x, y = _get(r.get(a[0], {}), a[1]), _get(r.get(b[0], {}), b[1])
        if x is not None and y:
            each.append(x / y)
    return {"median": statistics.median(each), "each": each} if each else None


def summarize(rounds: list[dict[str, Any]], ref: dict[str, Any] | None = None) -> dict[str, Any]:
    servers: list[str] = []
    for r in rounds:
        servers += [s for s in r if s not in servers]
    out: dict[str, Any] = {"servers": {}, "ratios": {}}
    for s in servers:
        out["servers"][s] = {k: _median([_get(r[s], p) for r in rounds if s in r])
                             for k, p in KEYS.items()}
        storms = [r[s].get("storm") for r in rounds if s in r and r[s].get("storm")]
        if storms:
            out["servers"][s]["storm"] = storms[-1]
    # same-run ratios: livecart cpu/msg ÷ peer cpu/msg within each round, then the median
    for lc in [s for s in servers if s.startswith("livecart")]:
        for peer in [s for s in servers if s != lc]:
            ratios = []
            for r in rounds:
                a = _get(r.get(lc, {}), ("stream", "cpu_us_per_msg"))
                b = _get(r.get(peer, {}), ("stream", "cpu_us_per_msg"))
                if a and b:
                    ratios.append(a / b)
            if ratios:
                out["ratios"][f"{lc} / {peer}"] = {"median": statistics.median(ratios),
                                                   "each": ratios}
    out["targets"] = targets(rounds, servers, ref)
    return out


def targets(rounds: list[dict[str, Any]], servers: list[str],
            ref: dict[str, Any] | None) -> dict[str, Any]:
    """Issue 12's ratios, each from one run: join rate vs the bare peer, storm vs ping,
    Valkey cost vs the reference script, --workers 2 vs 1."""
    found: dict[str, Any] = {}
    lcs = [s for s in servers if s.startswith("livecart")]
    for lc in lcs:
        if "ws-broadcast" in servers:
            found[f"join rate {lc} / ws-broadcast"] = _ratio(
                rounds, (lc, ("join", "joins_per_s")), ("ws-broadcast", ("join", "joins_per_s")))
        found[f"storm p99 / ping p99 ({lc})"] = _ratio(
            rounds, (lc, ("storm", "p99_ms")), (lc, ("ping_burst", "p99_ms")))
        ref_cpu = (ref or {}).get("cpu_us_per")
        ref_usec = (ref or {}).get("usec_per")
        for what, path in (("storm attempt", ("storm", "valkey")),
                           ("successful order", ("orders", "valkey")),
                           ("pin", ("quiet_pins", "valkey"))):
            cpu = _median([_get(r.get(lc, {}), (*path, "cpu_us_per")) for r in rounds])
            usec = _median([_get(r.get(lc, {}), (*path, "usec_per")) for r in rounds])
            found[f"Valkey per {what} / reference ({lc})"] = {
                "cpu": cpu / ref_cpu if cpu is not None and ref_cpu else None,
                "commandstats": usec / ref_usec if usec is not None and ref_usec else None}
            single = (ref or {}).get("one_at_a_time") or {}
            if what == "pin" and single.get("cpu_us_per") and cpu is not None:
                found[f"Valkey per pin / reference one at a time ({lc})"] = {
                    "cpu": cpu / single["cpu_us_per"],
                    "commandstats": usec / single["usec_per"]
                    if usec is not None and single.get("usec_per") else None}
    for lc in lcs:
        if lc.startswith("livecart-w") and "livecart" in servers:
            found[f"join rate {lc} / livecart"] = _ratio(
                rounds, (lc, ("join", "joins_per_s")), ("livecart", ("join", "joins_per_s")))
    return {k: v for k, v in found.items() if v is not None}


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    args = result["args"]
    m = result["machine"]
    lines = [
        f"### {args['viewers']:,} viewers — {len(result['rounds'])} round(s), medians",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}. Join spread "
        f"{args['spread']} s; {args['pins']} single pins; stream {args['rate']} pins/s x "
        f"{args['duration']} s" + (f" in bursts of {args['burst']}" if args.get("burst", 1) > 1
                                   else "") + ".",
        "",
        "| server | joined (errors) | join all done s | RSS/conn KiB | pin p50 ms | pin p99 ms "
        "| pin max ms | server fan-out ms (max) | delivered msgs/s | server CPU µs/msg "
        "| generator CPU µs/msg | Valkey CPU µs/event (net of idle) | order errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, v in summary["servers"].items():
        lines.append(
            f"| {s} | {_f(v['joined'], 0)} ({_f(v['join_errors'], 0)}) | {_f(v['join_s'], 2)} "
            f"| {_f(v['rss_kib'])} | {_f(v['pin_p50_ms'])} | {_f(v['pin_p99_ms'])} "
            f"| {_f(v['pin_max_ms'])} | {_f(v['fanout_ms_max'])} | {_f(v['msgs_per_s'], 0)} "
            f"| {_f(v['cpu_us_per_msg'], 2)} | {_f(v['gen_cpu_us_per_msg'], 2)} "
            f"| {_f(v['valkey_us_per_event'], 0)} ({_f(v['valkey_us_per_event_net'], 0)}) "
            f"| {_f(v['order_errors'], 0)} |")
    if summary["ratios"]:
        lines += ["", "| CPU per delivered message, same run | median ratio | each round |",
                  "|---|---|---|"]
        for k, v in summary["ratios"].items():
            each = ", ".join(f"{x:.2f}" for x in v["each"])
            lines.append(f"| {k} | **{v['median']:.2f}x** | {each} |")
    lines += ["", "| server | joins/s | server CPU ms/join | ping burst p99 ms | storm p99 ms "
              "| Valkey µs/storm attempt (cpu, commandstats) | Valkey µs/order (cpu, "
              "commandstats) | Valkey µs/pin (cpu, commandstats) |",
              "|---|---|---|---|---|---|---|---|"]
    for s, v in summary["servers"].items():
        lines.append(
            f"| {s} | {_f(v['joins_per_s'], 0)} | {_f(v['join_cpu_ms'], 2)} "
            f"| {_f(v['ping_p99_ms'])} | {_f(v['storm_p99_ms'])} "
            f"| {_f(v['valkey_cpu_us_per_attempt'])}, {_f(v['valkey_usec_per_attempt'])} "
            f"| {_f(v['valkey_cpu_us_per_order'])}, {_f(v['valkey_usec_per_order'])} "
            f"| {_f(v['valkey_cpu_us_per_pin'])}, {_f(v['valkey_usec_per_pin'])} |")
    ref = result.get("reference")
    if ref:
        lines += ["", f"Reference script on a fresh Valkey (HGETALL of a 10-field hash, 10 "
                  f"HINCRBY, one XADD, one PUBLISH; {ref['count']} calls): "
                  f"{_f(ref['cpu_us_per'])} µs of Valkey CPU per call, "
                  f"{_f(ref['usec_per'])} µs inside commands (commandstats)."]
        single = ref.get("one_at_a_time")
        if single:
            lines.append(
                f"The same reference sent one call at a time (each reply awaited; {single['count']}"
                f" calls): {_f(single['cpu_us_per'])} µs CPU "
                f"({_f(single['cpu_us_per'] / ref['cpu_us_per'], 2)}x the pipelined), "
                f"{_f(single['usec_per'])} µs commandstats "
                f"({_f(single['usec_per'] / ref['usec_per'], 2)}x) — what a command costs when "
                "it arrives alone.")
        for what, floor in (ref.get("floors") or {}).items():
            lines.append(
                f"Floor of {'an' if what[0] in 'aeiou' else 'a'} {what} on the same Valkey "
                f"(only the writes it must make, "
                f"loadtest/bench.py FLOOR_{what.upper()}_LUA): {_f(floor['cpu_us_per'])} µs "
                f"CPU ({_f(floor['cpu_us_per'] / ref['cpu_us_per'], 2)}x the reference), "
                f"{_f(floor['usec_per'])} µs commandstats "
                f"({_f(floor['usec_per'] / ref['usec_per'], 2)}x).")
    if summary.get("targets"):
        lines += ["", "| same-run ratio | median | each round |", "|---|---|---|"]
        for k, v in summary["targets"].items():
            if "median" in v:
                each = ", ".join(f"{x:.2f}" for x in v["each"])
                lines.append(f"| {k} | **{v['median']:.2f}x** | {each} |")
            else:
                lines.append(f"| {k} | cpu {_f(v.get('cpu'), 2)}x, commandstats "
                             f"{_f(v.get('commandstats'), 2)}x | |")
    lines += ["", "Columns: *Valkey CPU µs/event* is the Valkey process's CPU (utime+stime "
              "from /proc, 10 ms ticks) over the stream phase divided by the pins published, "
              "gross and (in brackets) net of Valkey's idle burn measured while settling; it "
              "covers the whole pin command (its script, history, PUBLISH) plus presence "
              "ticks in the window. *Valkey µs/pin* is measured apart, over `--quiet-pins` pins "
              "in a show nobody watches (the whole command: reads, deal checks, pin.lua). "
              "*commandstats* figures are the time Valkey spent inside "
              "scripts (INFO commandstats usec of EVAL/EVALSHA/FCALL) per attempt/order/pin "
              "— without Valkey's networking and event-loop overhead, and on a loaded box "
              "inflated by preemption (it is wall time inside the command)."]
    for s, v in summary["servers"].items():
        st = v.get("storm")
        if st:
            if "skipped" in st:
                lines += ["", f"Flash-sale storm ({s}): skipped — {st['skipped']}"]
            else:
                lines += ["", f"Flash-sale storm ({s}): {st['buyers']} buyers, "
                          f"{st['orders']} orders (expected {st['expected_orders']}), replies "
                          f"{st['replies']}, reply p50 {_f(st['p50_ms'])} ms, p99 "
                          f"{_f(st['p99_ms'])} ms, max {_f(st['max_ms'])} ms"]
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = result["args"]["viewers"]
    last = result["rounds"][-1] if result["rounds"] else {}
    made: list[Path] = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for s, res in last.items():
        cdf = (res.get("single_pin") or {}).get("cdf_ms") or []
        if cdf:
            ys = [(i + 1) / len(cdf) for i in range(len(cdf))]
            ax.plot(cdf, ys, label=s)
    ax.set_xlabel("pin → viewer latency (ms)")
    ax.set_ylabel("fraction of viewers")
    ax.set_title(f"single pin delivery CDF, {n:,} viewers")
    ax.grid(alpha=0.3)
    ax.legend()
    path = out / f"cdf_{n}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    made.append(path)

    fig, ax = plt.subplots(figsize=(7, 4))
    for s, res in last.items():
        per_sec = (res.get("stream") or {}).get("per_sec") or {}
        if per_sec:
            xs = [int(k) for k in per_sec]
            ax.plot(xs, [per_sec[k]["p99"] for k in per_sec], label=f"{s} p99")
            ax.plot(xs, [per_sec[k]["p50"] for k in per_sec], linestyle=":", label=f"{s} p50")
    ax.set_xlabel("seconds into the stream")
    ax.set_ylabel("latency (ms, receive - event ts)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"latency over time, {n:,} viewers, {result['args']['rate']} pins/s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = out / f"latency_{n}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    made.append(path)
    return made


if __name__ == "__main__":  # re-render: python -m loadtest.report RESULT.json OUTDIR
    import sys

    import orjson

    data = orjson.loads(Path(sys.argv[1]).read_bytes())
    data["summary"] = summarize(data["rounds"], data.get("reference"))
    print(markdown(data))
    plots(data, Path(sys.argv[2] if len(sys.argv) > 2 else Path(sys.argv[1]).parent))
