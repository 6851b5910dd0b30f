"""The ``upstream`` section of ``python -m bench``: the three upstream benches in one run, each
giving the gateway in front of a real upstream as a ratio of the upstream served directly.

* ``bench.upstream_ncip``: LookupUser and AcceptItem through Interlend to an upstream Interlend
  (circulation ``ncip``, profile ``generic-ncip2``) against that upstream directly;
* ``bench.upstream_z3950``: a Z39.50 cycle and kept-open Search+Present through Interlend to
  Koha's Zebra against Zebra directly;
* ``bench.upstream_sru``: a Z39.50 cycle through Interlend reading Koha's Zebra over SRU
  against Zebra's Z39.50 directly.

Each is measured once per run (the peers are the same run's); a sub-bench that cannot run (no
Koha Zebra recipe, no zebrasrv) is noted, not fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench import upstream_ncip, upstream_sru, upstream_z3950


def measure(cfg: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Run the three sub-benches with the mode's sizes; figures, ratios and any errors."""
    section: dict[str, Any] = {"description": (
        f"Each upstream bench once, in this run. NCIP: {cfg['up_ncip_requests']} requests per "
        f"service and path, {cfg['up_ncip_concurrency']} concurrent (urllib), Interlend -> "
        "upstream Interlend (generic-ncip2) vs that upstream directly; AcceptItem with a new "
        "RequestId each (a real temporary item upstream). Z39.50: Koha's Zebra "
        "(`../shared/lms/koha-zebra`, its sample records) with `[backend] catalogue = "
        f"\"z3950\"` (pool 8), `@attr 1=1016 library`, Present 1 USMARC, {cfg['up_seconds']} "
        "s per run. SRU: the same Zebra read over SRU (`catalogue = \"sru\"`, profile koha), "
        f"`@attr 1=4 history`, {cfg['up_seconds']} s per run, against Zebra's Z39.50 directly."
        " Ratio = gateway rate / direct rate, same run."), "errors": {}}
    started = time.perf_counter()
    try:
        section["ncip"] = upstream_ncip.measure(cfg["up_ncip_requests"],
                                                cfg["up_ncip_concurrency"])
        for service, figures in section["ncip"].items():
            log(f"  upstream ncip {service}: through/direct {figures['ratio']:.2f} "
                f"({figures['through']['rps']:.0f} vs {figures['direct']['rps']:.0f}/s)")
    except BaseException as exc:  # noqa: BLE001 - a sub-bench failing is a finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        section["errors"]["ncip"] = f"{type(exc).__name__}: {exc}"
        log(f"  upstream ncip failed: {section['errors']['ncip']}")
    clients = tuple(cfg["up_clients"])
    if upstream_sru.available():
        try:
            section["z3950"] = upstream_z3950.run(cfg["up_seconds"], clients)
            for row in section["z3950"]:
                log(f"  upstream z3950 {row['mode']} c={row['clients']}: {row['ratio']}x "
                    f"({row['gateway_rate']} vs {row['zebra_rate']}/s)")
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            section["errors"]["z3950"] = f"{type(exc).__name__}: {exc}"
        try:
            section["sru"] = upstream_sru.run(cfg["up_seconds"], 10**6, clients,
                                              log=lambda line: log("  upstream sru " + line))
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            section["errors"]["sru"] = f"{type(exc).__name__}: {exc}"
    else:
        section["errors"]["z3950"] = section["errors"]["sru"] = (
            "not measured: needs ../shared/lms/koha-zebra and zebrasrv (Debian idzebra-2.0)")
    section["seconds"] = round(time.perf_counter() - started, 1)
    return section


def ratios(section: dict[str, Any]) -> dict[str, float]:
    """The section's ratios by the keys of ``bench/first_reports.toml``."""
    out: dict[str, float] = {}
    for service, figures in (section.get("ncip") or {}).items():
        out[f"upstream_ncip|{service}"] = figures["ratio"]
    for row in section.get("z3950") or []:
        if row.get("ratio") is not None:
            out[f"upstream_z3950|{row['mode']}|{row['clients']}"] = row["ratio"]
    for row in (section.get("sru") or {}).get("rows", []):
        out[f"upstream_sru|{row['clients']}"] = row["ratio"]
    return out
