"""The upstream bench's gateway configuration is one the gateway accepts (the bench itself
needs Koha's Zebra and minutes: ``python -m bench.upstream_z3950``)."""

from __future__ import annotations

import tomllib

from bench.upstream_z3950 import gateway_config
from gateway.config import parse_config


def test_bench_gateway_config_selects_the_z3950_catalogue() -> None:
    config = parse_config(tomllib.loads(gateway_config(9999, 8)))
    assert config.backend.catalogue_kind == "z3950"
    assert config.backend.tables["z3950"]["port"] == 9999
