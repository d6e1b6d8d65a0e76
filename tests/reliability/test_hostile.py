"""Hostile input: every bad command and upload in the corpus gets one clear failed result, is acknowledged, and crashes nothing."""

from __future__ import annotations

import json
import time

import pytest
from reliability.corpus import BAD_PATHS, COMMANDS, EXPECTED_STATUS, KNOWN, UPLOADS, manifest_for
from reliability.figures import Figures
from reliability.helpers import endpoints, model_versions, upload
from reliability.plane import Plane

from modeldrop.results import Result, Status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]
RID = "hostile-"


def request_id_in(body: bytes | dict[str, object]) -> str | None:
    """The request id on_command keys a bad message's result by (None: the message id is used)."""
    from modeldrop.commands import peek

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return peek(data).request_id


def explain(result: Result | None) -> str:
    return "" if result is None else f"{result.status.value}: {result.message} {result.reasons}"


def test_the_hostile_corpus_is_rejected_clearly_and_acknowledged(
    plane: Plane, figures: Figures
) -> None:
    """Each of the corpus's bad commands gets one `failed` (register: `rejected`) result and each bad upload one `rejected`, naming the problem; each is acknowledged (none dead-lettered), no function dies, nothing is created."""
    world = plane.world
    upload(world, KNOWN, "v1")
    plane.deliver_uploads(plane.notifications(), [1, 1, 1])
    assert plane.wait_uploads([(KNOWN, "v1")], timeout_s=60)
    errors_before = plane.function_errors()
    error_lines_before = len(plane.error_lines())
    redeliveries_before = plane.redeliveries()

    expected: dict[str, tuple[str, str]] = {}  # request id -> (row, needle)
    for n, (name, body, needle) in enumerate(COMMANDS):
        if isinstance(body, dict):
            # An endpoint (and so a lease) of its own: rows don't queue behind each other.
            own = {"endpoint": f"hostile-{n}"}
            if body.get("action") == "register" or body.get("endpoint", "nowhere") != "nowhere":
                own = {}
            body = {"request_id": RID + name, **body, **own}
        (message_id,) = plane.publish(body)
        rid = request_id_in(body)
        expected[rid or f"invalid-{message_id}"] = (name, needle)

    models = {}
    for n, (name, files, _) in enumerate(UPLOADS):
        model = f"bad-{n}"
        models[model] = name
        for file_name, data in files.items():
            if file_name != "modeldrop-manifest.json":
                world.put(model, "v1", file_name, data)
        world.put(model, "v1", "modeldrop-manifest.json", manifest_for(model, RID + name, files))
    from google.cloud import storage

    bucket = storage.Client(project=world.settings.project).bucket(world.settings.weights_bucket)
    for object_name, _ in BAD_PATHS:
        bucket.blob(object_name).upload_from_string(b'{"format": "modeldrop-manifest/1"}')
    notes = plane.notifications()
    # One at a time: concurrent events of one bad folder have their own test below.
    delivered = plane.deliver_uploads(notes, [1] * len(notes), at_once=1)

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        seen = world.results(timeout_s=1)
        uploads_done = {r.model for r in seen if r.kind == "upload" and r.terminal}
        if set(expected) <= {r.request_id for r in seen} and set(models) <= uploads_done:
            break
    time.sleep(2)
    seen = world.results(timeout_s=1)
    errors = plane.function_errors() - errors_before
    error_lines = plane.error_lines()[error_lines_before:]
    redelivered = plane.redeliveries() - redeliveries_before

    wrong = []
    command_results = 0
    for rid, (name, needle) in expected.items():
        got = [r for r in seen if r.request_id == rid and r.terminal]
        command_results += len(got)
        text = explain(got[0]) if got else ""
        wanted = EXPECTED_STATUS.get(name)
        if wanted:
            right = bool(got) and got[0].status.value == wanted
        else:
            right = bool(got) and got[0].status in (Status.FAILED, Status.REJECTED)
        if len(got) != 1 or not right or needle.lower() not in text.lower():
            wrong.append(f"command {name}: {len(got)} result(s) {text[:300]}")
    upload_results = 0
    for model, name in models.items():
        needle = next(n for row, _, n in UPLOADS if row == name)
        got = [r for r in seen if r.kind == "upload" and r.model == model and r.terminal]
        upload_results += len(got)
        text = explain(got[0]) if got else ""
        if (
            len(got) != 1
            or got[0].status is not Status.REJECTED
            or needle.lower() not in text.lower()
        ):
            wrong.append(f"upload {name}: {len(got)} result(s) {text[:300]}")
    outside = [r for r in seen if r.kind == "upload" and r.model is None]
    registered = model_versions(plane.vertex.url, world, KNOWN)
    others = sum(len(model_versions(plane.vertex.url, world, m)) for m in models)
    dead = plane.dead_letters()
    figures.record(
        "hostile",
        corpus=len(COMMANDS) + len(UPLOADS) + len(BAD_PATHS),
        commands=len(COMMANDS),
        uploads=len(UPLOADS),
        bad_paths=len(BAD_PATHS),
        failed_results=command_results,
        rejected_results=upload_results + len(outside),
        wrong_or_missing=len(wrong),
        retried=errors,
        redelivered=redelivered,
        error_lines=len(error_lines),
        dead_letters=len(dead),
        notifications_acked=delivered["acked"],
        notifications=delivered["deliveries"],
        created=others + len(endpoints(plane.vertex.url, world)),
    )
    assert wrong == [], "\n".join(wrong)
    # Bad input is a designed outcome: answered at once (no redelivery), nothing at ERROR.
    assert redelivered == 0 and errors == 0
    assert error_lines == [], "\n".join(error_lines)
    assert sorted(json.dumps(r.reasons) for r in outside) and len(outside) == sum(
        1 for _, what in BAD_PATHS if what == "rejected"
    ), [explain(r) for r in outside]
    assert dead == []
    assert delivered["acked"] == delivered["deliveries"]
    assert len(registered) == 1 and others == 0
    assert endpoints(plane.vertex.url, world) == {}
    assert all(plane.alive().values())


def test_concurrent_events_of_one_bad_folder_give_one_rejection(
    plane: Plane, figures: Figures
) -> None:
    """The notifications of three bad folders, all handled at the same time, give one `rejected` result per folder."""
    world = plane.world
    files = {**UPLOADS[0][1], "extra.pkl": b"\x80\x04"}
    folders = [f"bad-concurrent-{n}" for n in range(3)]
    for model in folders:
        for file_name, data in files.items():
            world.put(model, "v1", file_name, data)
        manifest = manifest_for(model, RID + model, files)
        world.put(model, "v1", "modeldrop-manifest.json", manifest)
    notes = plane.notifications()
    plane.deliver_uploads(notes, [1] * len(notes), at_once=len(notes))
    time.sleep(3)
    seen = world.results(timeout_s=2)
    got = {m: [r for r in seen if r.request_id == RID + m and r.terminal] for m in folders}
    figures.record(
        "hostile-concurrent-events",
        folders=len(folders),
        events=len(notes),
        rejected_results=sum(len(g) for g in got.values()),
        duplicated=sum(1 for g in got.values() if len(g) > 1),
    )
    assert {m: len(g) for m, g in got.items()} == {m: 1 for m in folders}


def test_abandoned_uploads_end_rejected_naming_what_never_came(
    plane: Plane, figures: Figures
) -> None:
    """A copy without weights, a manifest whose file never comes and a CLI upload cut before its
    manifest each end `rejected` once the upload wait has passed, judged by the sweep."""
    from reliability.corpus import sound

    from modeldrop.layout import UPLOAD_METADATA_KEY

    world = plane.world
    cases = {
        "abandoned-copy": (sound(model__safetensors=None), None, "model.safetensors is missing"),
        "abandoned-manifest": (sound(tokenizer__json=None), sound(), "not in the bucket"),
        "abandoned-cli": (sound(), None, "resume"),
    }
    for model, (files, listed, _) in cases.items():
        metadata = {UPLOAD_METADATA_KEY: "cli-gone"} if model == "abandoned-cli" else None
        if listed is not None:
            world.put(
                model, "v1", "modeldrop-manifest.json", manifest_for(model, RID + model, listed)
            )
        for name, data in files.items():
            world.put(model, "v1", name, data, metadata=metadata)
    notes = plane.notifications()
    plane.deliver_uploads(notes, [1] * len(notes), at_once=1)
    assert [r for r in world.results(timeout_s=1) if r.model in cases and r.terminal] == []
    time.sleep(16)  # the plane's MODELDROP_UPLOAD_WAIT is 15 s

    def done() -> bool:
        ended = {r.model for r in world.results(timeout_s=0) if r.model in cases and r.terminal}
        return ended == set(cases)

    ticks = plane.sweep_until(done, max_ticks=5)
    got = {m: [r for r in world.results(timeout_s=0) if r.model == m and r.terminal] for m in cases}
    figures.record("hostile-abandoned", folders=len(cases), sweep_ticks=ticks)
    for model, (_, _, needle) in cases.items():
        assert len(got[model]) == 1, (model, got[model])
        result = got[model][0]
        assert result.status is Status.REJECTED and needle in " ".join(result.reasons), result
