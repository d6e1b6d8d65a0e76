"""Traffic splits stay legal: they add up to 100 and never leave traffic on an undeployed model."""

from __future__ import annotations

from modeldrop.traffic import NEW, deployed_model_id, rescale, with_new, without


def test_the_first_deployment_takes_all_traffic() -> None:
    """Whatever percent a first deploy asks, it gets 100: Vertex needs the split to add up."""
    assert with_new({}, 10) == {NEW: 100}


def test_a_canary_takes_its_share_from_the_others_in_proportion() -> None:
    """Deploying at 10% leaves 90% split as before among the others, adding up to 100."""
    split = with_new({"a": 50, "b": 50}, 10)
    assert split == {"a": 45, "b": 45, NEW: 10}
    odd = with_new({"a": 1, "b": 1, "c": 1}, 0)
    assert (
        sum(odd.values()) == 100
        and max(odd.values()) - min(v for k, v in odd.items() if k != NEW) <= 1
    )


def test_undeploying_hands_the_share_to_the_rest() -> None:
    """The removed model's traffic goes to the remaining ones; removing the last gives an empty split."""
    assert without({"a": 90, "b": 10}, {"b"}, {"a", "b"}) == {"a": 100}
    assert without({"a": 100, "b": 0}, {"a"}, {"a", "b"}) == {"b": 100}
    assert without({"a": 100}, {"a"}, {"a"}) == {}


def test_rescale_is_exact() -> None:
    """Largest-remainder rounding always hits the total exactly."""
    assert sum(rescale({"a": 1, "b": 1, "c": 1}, 100).values()) == 100
    assert rescale({"a": 0, "b": 0}, 100) == {"a": 50, "b": 50}


def test_deployed_model_ids_are_ten_digits_and_stable() -> None:
    """The id Vertex accepts (1-10 digits) is derived from the request, so a retry reuses it."""
    first = deployed_model_id("req-1")
    assert first == deployed_model_id("req-1") and len(first) == 10 and first.isdigit()
    assert deployed_model_id("req-1", "1") != first
