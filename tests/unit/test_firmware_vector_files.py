"""The vector files themselves: each names where it comes from, and the facts the profile
rewrite relies on are pinned, so a regenerated file cannot silently drop them."""

from __future__ import annotations

import re

import pytest

from tests.unit.firmware_data import DATA, load

COMMIT = re.compile(r"[0-9a-f]{40}")
EXPECT = {"reading", "ignored", "error"}


@pytest.mark.parametrize("name", ["openevse.json", "axis_object_analytics.json"])
def test_every_device_vector_cites_its_source_and_says_what_must_happen(name):
    doc = load("firmware", name)
    assert any(COMMIT.search(str(v)) for v in doc["source"].values())
    for vector in doc["vectors"]:
        assert vector["expect"] in EXPECT
        assert vector["cite"]
        if vector["expect"] == "error":
            assert vector.get("note")  # the DecodeError reason


@pytest.mark.parametrize("path", sorted(p.name for p in (DATA / "lorawan").glob("*.json")))
def test_network_server_examples_cite_repository_commit_and_url(path):
    source = load("lorawan", path)["source"]
    assert COMMIT.fullmatch(source["commit"])
    assert "url" in str(source)


def test_paxcounter_vectors_come_from_a_pinned_firmware_commit():
    doc = load("firmware", "paxcounter.json")
    assert COMMIT.fullmatch(doc["source"]["commit"])
    assert set(doc["formats"]) == {"packed", "packed_opensensebox", "plain", "lpp_dynamic",
                                   "lpp_packed"}  # fmt: skip


def test_openevse_vectors_pin_the_default_topic_status_words_and_housekeeping():
    doc = load("firmware", "openevse.json")
    vectors = doc["vectors"]
    base = doc["default_base_topic"]
    assert re.fullmatch(r"openevse-[0-9a-f]{4}", base)  # one level: the hostname
    status = {v["payload"] for v in vectors if v["topic"] == f"{base}/status"}
    assert {"active", "disabled", "none"} <= status
    keys = {v["topic"].removeprefix(f"{base}/") for v in vectors}
    assert {"watthour", "wattsec"} <= keys and "wh" not in keys
    for key in ("config", "claim", "override", "schedule", "limit"):
        rows = [v for v in vectors if v["topic"] == f"{base}/{key}"]
        documents = [v for v in rows if v["payload"][:1] in "{["]
        assert documents and all(v["retained"] for v in documents)
        assert all(v["expect"] == "ignored" for v in rows)


def test_axis_vectors_hold_axis_own_example_without_a_scenario_key():
    doc = load("firmware", "axis_object_analytics.json")
    axis_own = [v for v in doc["vectors"] if v["cite"].startswith("AxisCommunications/")]
    assert axis_own and all('"scenario"' not in v["payload"] for v in axis_own)
    assert any('"totalMotorcycle/bicycle"' in v["payload"] for v in axis_own)
