"""The Docker side of cleanup: containers of finished runs, images beyond keep_builds.

Containers carry the run labels of the step that started them. Images are known only by
what docker_build recorded in ansflow's store when it built them (engine, image id,
pipeline, build number), never by their labels: labels are data anyone writes (a pulled
image may claim build 999999 of a pipeline and push its real builds past keep_builds) and
are inherited (an image built FROM an ansflow-built one carries its labels). Each is
inspected again just before it is removed.
"""

from __future__ import annotations

from typing import Any

import docker
import requests

from ansflow.engines.docker import docker_client, engine_error
from ansflow.engines.errors import EngineUnreachable
from ansflow.engines.untrusted import clean_text as _clean
from ansflow.runtime.base import label_value
from ansflow.upkeep.cleanup import (
    BUILD_LABEL,
    KEEP_ANNOTATION,
    PIPELINE_LABEL,
    RUN_LABEL,
    CleanupOptions,
    CleanupReport,
    Item,
    RunStates,
)

WHERE = "docker"
_DOCKER_ERRORS = (docker.errors.DockerException, requests.RequestException, OSError)


def _kept_by_label(labels: dict) -> bool:
    return str(labels.get(KEEP_ANNOTATION, "")).lower() == "true"


def judge_container(labels: dict, states: RunStates, options: CleanupOptions) -> str | None:
    """None when a container may go, else why it stays."""
    if _kept_by_label(labels):
        return f"labelled {KEEP_ANNOTATION}=true"
    rid = str(labels.get(RUN_LABEL, ""))
    if options.pipelines and labels.get(PIPELINE_LABEL) not in \
            {label_value(p) for p in options.pipelines}:
        return "another pipeline's"
    return states.why_kept(rid, options)


def _build_key(image: dict) -> tuple[int, int]:
    raw = str((image.get("Labels") or {}).get(BUILD_LABEL, ""))
    return (int(raw) if raw.isdigit() else -1, int(image.get("Created") or 0))


def plan_images(images: list[dict], in_use: set[str], keep_builds: int,
                pipelines: set[str] | None = None) -> tuple[list[tuple[dict, str]],
                                                            list[tuple[dict, str]]]:
    """(remove, keep) of ansflow-built images, each with why: per pipeline, the images of
    its newest ``keep_builds`` builds are kept (by build number, then creation time); so
    is an image a container uses or one labelled ansflow.dev/keep=true."""
    by_pipeline: dict[str, list[dict]] = {}
    for image in images:
        pipeline = str((image.get("Labels") or {}).get(PIPELINE_LABEL, ""))
        if pipeline and (pipelines is None or pipeline in pipelines):
            by_pipeline.setdefault(pipeline, []).append(image)
    remove: list[tuple[dict, str]] = []
    keep: list[tuple[dict, str]] = []
    for pipeline, found in sorted(by_pipeline.items()):
        builds: dict[str, list[dict]] = {}
        for image in found:
            raw = str((image.get("Labels") or {}).get(BUILD_LABEL, ""))
            builds.setdefault(raw if raw.isdigit() else image["Id"], []).append(image)
        order = sorted(builds.values(), key=lambda imgs: max(_build_key(i) for i in imgs),
                       reverse=True)
        for rank, group in enumerate(order):
            for image in group:
                build = (image.get("Labels") or {}).get(BUILD_LABEL, "?")
                if rank < keep_builds:
                    keep.append((image, f"build {build}: among the newest {keep_builds} of "
                                        f"pipeline {pipeline}"))
                elif image["Id"] in in_use:
                    keep.append((image, "used by a container"))
                elif _kept_by_label(image.get("Labels") or {}):
                    keep.append((image, f"labelled {KEEP_ANNOTATION}=true"))
                else:
                    remove.append((image, f"build {build} of pipeline {pipeline}: beyond "
                                          f"the newest {keep_builds}"))
    return remove, keep


def _image_name(image: dict) -> str:
    tags = [t for t in image.get("RepoTags") or [] if t and t != "<none>:<none>"]
    return _clean(tags[0] if tags else image["Id"][7:19] if image["Id"].startswith(
        "sha256:") else image["Id"][:12])


def ansflow_images(client: Any, options: CleanupOptions) -> list[dict]:
    """The engine's images ansflow built: only those docker_build recorded in the store for
    this engine (records of images no longer there are forgotten, unless a dry run); an
    image's own ``ansflow.dev/pipeline`` and ``ansflow.dev/build`` labels count for nothing.
    Each as the engine lists it, the recorded pipeline and build in ``Labels``."""
    from ansflow.store import Store  # noqa: PLC0415
    from ansflow.tasks.docker_build import engine_key  # noqa: PLC0415

    present = {i["Id"]: i for i in client.api.images()}
    found: dict[str, dict] = {}
    engine = engine_key(options.docker_host)
    store = Store()
    try:
        records = store.built_images(engine)
        gone = [r["image_id"] for r in records if r["image_id"] not in present]
        if gone and not options.dry_run:
            store.forget_images(engine, gone)
    finally:
        store.close()
    for record in records:
        image = present.get(record["image_id"])
        if image is None:
            continue
        labels = {**(image.get("Labels") or {}), PIPELINE_LABEL: label_value(record["pipeline"]),
                  BUILD_LABEL: str(record["build_number"])}
        found[image["Id"]] = {**image, "Labels": labels}
    return list(found.values())


def plan_docker(options: CleanupOptions, states: RunStates, report: CleanupReport) -> None:
    """Add the engine's run containers and surplus images to the plan."""
    try:
        client = docker_client(options.docker_host)
    except EngineUnreachable as exc:
        report.problems.append(f"{WHERE}: {str(exc).splitlines()[0]}")
        return
    try:
        label = f"{RUN_LABEL}={options.run_id}" if options.run_id else RUN_LABEL
        found = client.api.containers(all=True, filters={"label": [label]})
        if not options.run_id:
            states.lookup(str((c.get("Labels") or {}).get(RUN_LABEL, "")) for c in found)
        for c in found:
            labels = c.get("Labels") or {}
            item = Item(WHERE, "Container", _clean((c.get("Names") or ["?"])[0].lstrip("/")),
                        key={"id": c["Id"], "run": str(labels.get(RUN_LABEL, ""))})
            why = judge_container(labels, states, options)
            if why is None:
                rid = item.key["run"]
                item.reason = f"run {_clean(rid, 64)} " + (
                    "chosen by --run-id" if options.run_id else f"ended {states.get(rid).state}")
                report.remove.append(item)
            else:
                item.reason = why
                report.kept.append(item)
        if options.run_id:
            return
        images = ansflow_images(client, options)
        in_use = {str(c.get("ImageID")) for c in client.api.containers(all=True)}
        wanted = {label_value(p) for p in options.pipelines} if options.pipelines else None
        remove, keep = plan_images(images, in_use, options.keep_builds, wanted)
        for image, why in remove:
            report.remove.append(Item(WHERE, "Image", _image_name(image), reason=why,
                                      key={"id": image["Id"],
                                           "pipeline": image["Labels"][PIPELINE_LABEL],
                                           "build": image["Labels"][BUILD_LABEL]}))
        for image, why in keep:
            report.kept.append(Item(WHERE, "Image", _image_name(image), reason=why))
    except _DOCKER_ERRORS as exc:
        report.problems.append(f"{WHERE}: {engine_error(exc, 'listing containers and images')}")
    finally:
        client.close()


def delete_items(items: list[Item], options: CleanupOptions, report: CleanupReport,
                 states: RunStates | None = None) -> None:
    """Remove the planned containers and images, each inspected again first."""
    states = states or RunStates()
    try:
        client = docker_client(options.docker_host)
    except EngineUnreachable as exc:
        for item in items:
            item.reason = f"not removed: {str(exc).splitlines()[0]}"
            report.failed.append(item)
        return
    try:
        for item in items:
            try:
                why = (_remove_container(client, item, options, states) if item.kind ==
                       "Container" else _remove_image(client, item, options))
            except _DOCKER_ERRORS as exc:
                item.reason = f"remove failed ({engine_error(exc, 'remove')}); tried again " \
                              "next time"
                report.failed.append(item)
                continue
            if why is None:
                report.removed.append(item)
            else:
                item.reason = f"kept: {why}"
                report.kept.append(item)
    finally:
        client.close()


def _remove_container(client: Any, item: Item, options: CleanupOptions,
                      states: RunStates) -> str | None:
    try:
        live = client.api.inspect_container(item.key["id"])
    except docker.errors.NotFound:
        return None  # gone already
    labels = (live.get("Config") or {}).get("Labels") or {}
    if str(labels.get(RUN_LABEL, "")) != item.key["run"]:
        return "its run label changed since the plan"
    why = judge_container(labels, states, options)
    if why is not None:
        return why
    try:
        client.api.remove_container(item.key["id"], force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise
    return None


def _recorded_build(options: CleanupOptions, image_id: str) -> str | None:
    from ansflow.store import Store  # noqa: PLC0415
    from ansflow.tasks.docker_build import engine_key  # noqa: PLC0415

    store = Store()
    try:
        for record in store.built_images(engine_key(options.docker_host)):
            if record["image_id"] == image_id:
                return str(record["build_number"])
    finally:
        store.close()
    return None


def _forget(options: CleanupOptions, image_id: str) -> None:
    from ansflow.store import Store  # noqa: PLC0415
    from ansflow.tasks.docker_build import engine_key  # noqa: PLC0415

    store = Store()
    try:
        store.forget_images(engine_key(options.docker_host), [image_id])
    finally:
        store.close()


def _remove_image(client: Any, item: Item, options: CleanupOptions) -> str | None:
    try:
        live = client.api.inspect_image(item.key["id"])
    except docker.errors.ImageNotFound:
        _forget(options, item.key["id"])
        return None
    recorded = _recorded_build(options, item.key["id"])
    if recorded is None:
        return "no longer recorded as built by ansflow"
    if recorded != item.key["build"]:
        return f"built again by build {recorded} since the plan"
    labels = (live.get("Config") or {}).get("Labels") or {}
    if live.get("Id") != item.key["id"]:
        return "another image has its name now"
    if _kept_by_label(labels):
        return f"labelled {KEEP_ANNOTATION}=true"
    if any(c.get("ImageID") == item.key["id"] for c in client.api.containers(all=True)):
        return "used by a container"
    try:
        for tag in [t for t in live.get("RepoTags") or [] if t and t != "<none>:<none>"]:
            try:  # only a tag that still names this image
                if client.api.inspect_image(tag).get("Id") == item.key["id"]:
                    client.api.remove_image(tag, force=False)
            except docker.errors.ImageNotFound:
                continue
        try:
            client.api.remove_image(item.key["id"], force=False)
        except docker.errors.ImageNotFound:
            pass
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            return f"the engine refused: {_clean(exc, 150)}"
        raise
    _forget(options, item.key["id"])
    return None
