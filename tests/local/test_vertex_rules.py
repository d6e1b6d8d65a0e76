"""Pure rules of the emulator: traffic splits, list filters and page tokens, names and labels."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from local.vertex import listing, naming, traffic
from local.vertex.errors import ApiError
from local.vertex.faults import FaultConfig, FaultRule, Faults, parse_rule
from local.vertex.settings import Settings


def test_the_first_deploy_takes_all_traffic_and_later_ones_none_by_default() -> None:
    """An empty deploy split gives the first model 100 and leaves an existing split alone."""
    assert traffic.after_deploy({}, {}, "a", []) == {"a": 100}
    assert traffic.after_deploy({"a": 100}, {}, "b", ["a"]) == {"a": 100}


def test_the_zero_key_names_the_model_being_deployed() -> None:
    """ "0" in a deploy split becomes the new deployed model's id."""
    assert traffic.after_deploy({"a": 100}, {"0": 25, "a": 75}, "b", ["a"]) == {"a": 75, "b": 25}


@pytest.mark.parametrize(
    ("split", "reason"),
    [
        ({"0": 50, "a": 40}, "add up to 100"),
        ({"0": 100, "x": 0}, "not the id"),
        ({"0": 150, "a": -50}, "not in"),
    ],
)
def test_bad_deploy_splits_are_invalid(split: dict[str, int], reason: str) -> None:
    """Splits that do not add to 100, name unknown ids or go outside [0, 100] are INVALID_ARGUMENT."""
    with pytest.raises(ApiError, match=reason) as error:
        traffic.check_deploy(split, ["a"])
    assert error.value.status == "INVALID_ARGUMENT"


def test_undeploy_refuses_to_leave_traffic_on_the_removed_model() -> None:
    """Undeploying a model with traffic needs a split moving it; the last model leaves an empty split."""
    with pytest.raises(ApiError) as error:
        traffic.after_undeploy({"a": 60, "b": 40}, {}, "a", ["b"])
    assert error.value.status == "FAILED_PRECONDITION"
    assert traffic.after_undeploy({"a": 60, "b": 40}, {"b": 100}, "a", ["b"]) == {"b": 100}
    assert traffic.after_undeploy({"a": 0, "b": 100}, {}, "a", ["b"]) == {"b": 100}
    assert traffic.after_undeploy({"a": 100}, {}, "a", []) == {}
    with pytest.raises(ApiError, match="being undeployed"):
        traffic.after_undeploy({"a": 60, "b": 40}, {"a": 10, "b": 90}, "a", ["b"])


def test_routing_follows_the_split_weights() -> None:
    """Requests are drawn by weight; a model with 0% never gets one."""
    rng = random.Random(1)
    seen = Counter(traffic.route({"a": 80, "b": 20, "c": 0}, rng) for _ in range(2000))
    assert seen["c"] == 0 and 1400 < seen["a"] < 1800
    with pytest.raises(ApiError, match="no deployed model"):
        traffic.route({}, rng)


def test_filters_match_labels_and_display_names() -> None:
    """labels.k=v, labels.k:*, labels.k!=v and display_name=, joined by AND, select items."""
    terms = listing.parse_filter(
        'labels.managed-by=modeldrop AND labels.team:* AND display_name="gemma"'
    )
    assert all(t.matches({"managed-by": "modeldrop", "team": "x"}, "gemma") for t in terms)
    assert not all(t.matches({"managed-by": "modeldrop"}, "gemma") for t in terms)
    assert listing.parse_filter("labels.a!=b")[0].matches({}, "")
    with pytest.raises(ApiError, match="Unsupported filter"):
        listing.parse_filter("labels.a=b OR labels.c=d")


def test_page_tokens_walk_every_item_once() -> None:
    """Pages of a list, followed by their tokens, return every item once; a forged token is refused."""
    items, token, seen = list(range(7)), None, []
    while True:
        chunk, token = listing.page(items, 3, token)
        seen += chunk
        if not token:
            break
    assert seen == items
    with pytest.raises(ApiError, match="page_token"):
        listing.page(items, 3, "forged")


def test_names_and_labels_are_checked() -> None:
    """Ids, aliases and labels outside Vertex's formats are refused; masks are read in camelCase."""
    for bad in (
        lambda: naming.check_endpoint_id("-x"),
        lambda: naming.check_aliases(["1x"]),
        lambda: naming.check_labels({"Upper": "x"}),
        lambda: naming.check_deployed_model_id("12345678901"),
    ):
        with pytest.raises(ApiError):
            bad()
    assert naming.mask_paths("traffic_split,labels") == ["trafficSplit", "labels"]
    assert naming.split_version("m@candidate") == ("m", "candidate")


def test_fault_rules_parse_and_draw_reproducibly() -> None:
    """`METHOD=RATE:CODE` parses; the same seed draws the same failures."""
    assert parse_rule("DeployModel=0.5:429") == FaultRule(method="DeployModel", rate=0.5, code=429)
    config = FaultConfig(rules=[FaultRule(method="*Predict", rate=0.3, code=503)], seed=3)
    first, second = Faults(config), Faults(config)
    assert [first.draw("Predict") is None for _ in range(30)] == [
        second.draw("Predict") is None for _ in range(30)
    ]
    assert first.draw("GetModel") is None


def test_serving_images_map_to_python_m_serving() -> None:
    """Images ending in /serving or /modeldrop-serving (any tag) run `python -m serving`; the map comes first."""
    settings = Settings(image_map=(("*/custom:*", ("run-it",)),))
    assert settings.command_for("us-docker.pkg.dev/p/r/serving:0.1")[-2:] == ["-m", "serving"]  # type: ignore[index]
    assert settings.command_for("europe-docker.pkg.dev/p/r/modeldrop-serving")[-1] == "serving"  # type: ignore[index]
    assert settings.command_for("x/custom:1") == ["run-it"]
    assert settings.command_for("x/servings:1") is None
    assert settings.is_serving("x/serving:2") and not Settings(
        image_map=(("*", ("a",)),)
    ).is_serving("x/serving")
