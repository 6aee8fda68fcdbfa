"""Where a process's sampled CPU went, by the part of a join it belongs to.

Reads the collapsed stacks of ``cpu_sampler.py`` (``bench/join_cost.py --sample DIR``) and puts
each sample in the first category whose marker appears anywhere in its stack, in the order
below (so the REMB set-up inside ``addTransceiver`` counts as REMB, not as set-up).

    .venv/bin/python bench/sample_split.py DIR/bots.txt [DIR2/bots.txt ...]
"""

from __future__ import annotations

import sys
from collections import Counter

CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("logging", ("structlog", "logging/__init__.py")),
    ("interface scan (ifaddr)", ("ifaddr/",)),
    ("DTLS key, certificate, context", ("generateCertificate", "_create_ssl_context", "certificate_digest")),
    ("REMB estimator set-up", ("aiortc/rate.py:__init__", "rate.py:<listcomp>", "rate.py:reset")),
    ("SDP (parse, write)", ("aiortc/sdp.py",)),
    ("streaming media (steady)", ("fanout.py:_main", "encoders.py:_run", "lean_intake.py", "_run_rtcp",
                                  "media_silence", "publication.py:watch", "bandwidth", "talkers/service",
                                  "rtcrtpreceiver.py:_handle_rtcp", "rtcrtpsender.py:_handle_rtcp")),
    ("DTLS handshake, ICE checks", ("rtcdtlstransport.py", "aioice/")),
    ("peer connection set-up", ("aiortc/rtcpeerconnection.py", "aiortc/rtcrtp")),
    ("REST token", ("bot/tokens.py", "rest.py:create_token")),
    ("room events (callbacks, dispatch)", ("bot/rtc/dispatch.py", "bot/server/outbox.py", "presence.py")),
    ("Socket.IO, WebSocket", ("socketio/", "engineio/", "aiohttp/")),
    ("our join logic", ("bot/rtc/", "bot/agent/", "bot/server/", "bot/media/", "bot/webrtc/", "bot/proto/")),
]  # fmt: skip


def split(path: str) -> tuple[int, Counter[str]]:
    counts: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        stack, _, n = line.rpartition(" ")
        samples = int(n)
        total += samples
        for name, markers in CATEGORIES:
            if any(m in stack for m in markers):
                counts[name] += samples
                break
        else:
            counts["other (event loop, imports)"] += samples
    return total, counts


def main() -> None:
    results = [split(p) for p in sys.argv[1:]]
    names = [name for name, _ in CATEGORIES] + ["other (event loop, imports)"]
    print("| part | " + " | ".join(sys.argv[1:]) + " |")
    print("|---|" + "---|" * len(results))
    for name in names:
        cells = [f"{100 * c[name] / t:.1f}%" if t else "-" for t, c in results]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
