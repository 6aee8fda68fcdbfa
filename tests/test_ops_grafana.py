"""deploy/grafana/enx-bot.json: a Grafana dashboard whose every query names metrics the code
really exports (the agent's registry and the room server's), read off live registries."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bot.agent.ops import Metrics
from bot.server import RoomServer

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "enx-bot.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_names(*registries: CollectorRegistry) -> set[str]:
    """Every sample name a scrape can show, labelled families with no series yet included."""
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
            names.update(sample.name for sample in family.samples)
    return names


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def test_the_dashboard_is_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"].strip("${}") in variables
        for target in panel["targets"]:
            assert target["refId"] and target["expr"], panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


async def test_every_metric_the_dashboard_queries_is_exported() -> None:
    server = RoomServer(app_id="grafana", app_key="grafana-key-0123456789abcdef012345")
    names = exported_names(Metrics(target=1).registry, server.registry)
    assert "enx_bot_join_latency_seconds_bucket" in names and "enx_server_joins_total" in names
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for title, expr in queries(dashboard):
        for name in re.findall(r"\benx_[a-z0-9_]+", expr):
            used.add(name)
            assert name in names, f"panel {title!r} queries {name}, which nothing exports"
    assert len(used) >= 15
    assert "enx_nope_total" not in names  # the check can fail
