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


def test_codec_bench_runs() -> None:
    """``python -m bench.upstream_codec`` on Koha's Zebra: each fast path reads or writes
    what the path it replaced does (the bench checks that before it times anything; the
    figures themselves are the bench's business, not a test's)."""
    import shutil

    import pytest

    from bench import upstream_codec
    from bench.upstream_z3950 import KOHA_ZEBRA

    if not (KOHA_ZEBRA / "setup-and-run.sh").is_file() or shutil.which("zebrasrv") is None:
        pytest.skip("Koha's Zebra recipe (../shared) or zebrasrv (Debian idzebra-2.0) absent")
    rows = upstream_codec.run(calls=200)
    assert [name for name, _, _ in rows][:4] == [
        "read SearchResponse", "read PresentResponse", "write SearchRequest",
        "write PresentRequest"]
    assert all(before > 0 and after > 0 for _, before, after in rows)
