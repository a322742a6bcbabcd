"""Tenancy through HTTP on the shipped weights, against SQLite and a real PostgreSQL: every route x
every key (one stored key per scope, all reaching acme-*, and the environment's two keys) x the key's
own gallery, another tenant's and a nonexistent one, each with the exact status of the table below;
no answer to a tenant's key reveals another tenant's gallery or subject ids, and a gallery out of
reach answers exactly as one that does not exist. No key secret is anywhere in the raw database (the
SQLite file with its WAL, a pg_dump and the PostgreSQL cluster's files), only its SHA-256. Expired,
revoked, malformed and wrong keys are 401, and no answer echoes the key it was sent.

Requests that pass authorisation really run (the shipped model; embeddings from /embed stand in for
images where a route accepts them, so only /embed and the setup run the networks). Destructive
requests act on throwaway galleries, subjects, templates and keys made for their case by the
environment's write key, so the cases run in any order.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from app.security import secret_hash
from tests.integration.real_service import real_service
from tests.support.answers import refused

pytestmark = [pytest.mark.anyio, pytest.mark.data]

# The environment's keys: ROOT (FACEVER_WRITE_API_KEYS) may do everything; READER (FACEVER_API_KEYS)
# may verify and read, in every gallery.
ROOT = "root-" + secrets.token_urlsafe(24)
READER = "reader-" + secrets.token_urlsafe(24)

SCOPES = ("verify", "read", "enrol", "delete", "admin")
PRINCIPALS = (*SCOPES, "env-read", "env-write")
# What each principal may do; the stored keys reach acme-* (an admin key every gallery all the same).
GRANTS = {scope: {scope} for scope in SCOPES} | {"admin": set(SCOPES), "env-read": {"verify", "read"},
                                                 "env-write": set(SCOPES)}
TENANT = ("verify", "read", "enrol", "delete")  # the keys kept to acme-*

OWN, OTHER, NONE = "acme-1", "other-1", "acme-none"
GALLERY = {"own": OWN, "other": OTHER, "none": NONE}
# The subject each case names: the own gallery's, the other tenant's; a request to the nonexistent
# gallery is the other tenant's request with only the gallery id changed.
SUBJECT = {"own": "alice", "other": "bob", "none": "bob"}
# Every gallery id of the other tenant starts with this, and every subject id of it holds "bob".
OTHER_MARKS = ("other-", "bob")

ALICE = ("Colin_Powell/Colin_Powell_0001.jpg", "Colin_Powell/Colin_Powell_0002.jpg")
BOB = "George_W_Bush/George_W_Bush_0001.jpg"
PROBE = "Colin_Powell/Colin_Powell_0003.jpg"

# --------------------------------------------------------------------------------------------------
# The exact status of every route, for each key, in the key's own gallery, the other tenant's and
# a nonexistent one ("-": the route names no gallery). 403 is forbidden (a scope the key lacks, whose
# message names it; for POST /galleries also a gallery out of reach, named); 404 gallery_not_found,
# with the message "no gallery '<id>'", the same out of reach as for a gallery that does not exist;
# 409 gallery_exists. POST /galleries is given a new acme id (own), the other tenant's existing
# other-1 (other), and a new id of the other tenant's (none): out of reach, existing or not, one answer.
TABLE = """
route                                             gallery verify read enrol delete admin env-read env-write
POST /verify                                      -       200    403  403   403    200   200      200
POST /embed                                       -       200    403  403   403    200   200      200
POST /group                                       -       200    403  403   403    200   200      200
GET /info                                         -       200    200  200   200    200   200      200
GET /metrics                                      -       200    200  200   200    200   200      200
GET /galleries                                    -       403    200  403   403    200   200      200
POST /galleries                                   own     403    403  201   403    201   403      201
POST /galleries                                   other   403    403  403   403    409   403      409
POST /galleries                                   none    403    403  403   403    201   403      201
GET /galleries/{g}                                own     403    200  403   403    200   200      200
GET /galleries/{g}                                other   403    404  403   403    200   200      200
GET /galleries/{g}                                none    403    404  403   403    404   404      404
DELETE /galleries/{g}                             own     403    403  403   200    200   403      200
DELETE /galleries/{g}                             other   403    403  403   404    200   403      200
DELETE /galleries/{g}                             none    403    403  403   404    404   403      404
POST /galleries/{g}/import                        own     403    403  201   403    201   403      201
POST /galleries/{g}/import                        other   403    403  404   403    201   403      201
POST /galleries/{g}/import                        none    403    403  404   403    404   403      404
POST /galleries/{g}/subjects                      own     403    403  201   403    201   403      201
POST /galleries/{g}/subjects                      other   403    403  404   403    201   403      201
POST /galleries/{g}/subjects                      none    403    403  404   403    404   403      404
GET /galleries/{g}/subjects                       own     403    200  403   403    200   200      200
GET /galleries/{g}/subjects                       other   403    404  403   403    200   200      200
GET /galleries/{g}/subjects                       none    403    404  403   403    404   404      404
GET /galleries/{g}/subjects/{s}                   own     403    200  403   403    200   200      200
GET /galleries/{g}/subjects/{s}                   other   403    404  403   403    200   200      200
GET /galleries/{g}/subjects/{s}                   none    403    404  403   403    404   404      404
DELETE /galleries/{g}/subjects/{s}                own     403    403  403   200    200   403      200
DELETE /galleries/{g}/subjects/{s}                other   403    403  403   404    200   403      200
DELETE /galleries/{g}/subjects/{s}                none    403    403  403   404    404   403      404
POST /galleries/{g}/subjects/{s}/faces            own     403    403  201   403    201   403      201
POST /galleries/{g}/subjects/{s}/faces            other   403    403  404   403    201   403      201
POST /galleries/{g}/subjects/{s}/faces            none    403    403  404   403    404   403      404
DELETE /galleries/{g}/subjects/{s}/faces/{t}      own     403    403  403   200    200   403      200
DELETE /galleries/{g}/subjects/{s}/faces/{t}      other   403    403  403   404    200   403      200
DELETE /galleries/{g}/subjects/{s}/faces/{t}      none    403    403  403   404    404   403      404
POST /galleries/{g}/subjects/{s}/verify           own     403    200  403   403    200   200      200
POST /galleries/{g}/subjects/{s}/verify           other   403    404  403   403    200   200      200
POST /galleries/{g}/subjects/{s}/verify           none    403    404  403   403    404   404      404
POST /galleries/{g}/search                        own     403    200  403   403    200   200      200
POST /galleries/{g}/search                        other   403    404  403   403    200   200      200
POST /galleries/{g}/search                        none    403    404  403   403    404   404      404
POST /galleries/{g}/duplicates                    own     403    403  202   403    202   403      202
POST /galleries/{g}/duplicates                    other   403    403  404   403    202   403      202
POST /galleries/{g}/duplicates                    none    403    403  404   403    404   403      404
DELETE /galleries/{g}/subjects/{s}/duplicates     own     403    403  200   403    200   403      200
DELETE /galleries/{g}/subjects/{s}/duplicates     other   403    403  404   403    200   403      200
DELETE /galleries/{g}/subjects/{s}/duplicates     none    403    403  404   403    404   403      404
POST /keys                                        -       403    403  403   403    201   403      201
GET /keys                                         -       403    403  403   403    200   403      200
DELETE /keys/{id}                                 -       403    403  403   403    200   403      200
GET /audit                                        -       403    403  403   403    200   403      200
GET /audit/export                                 -       403    403  403   403    200   403      200
"""

# The scope each route needs (None: any valid key).
SCOPE_OF = {
    "POST /verify": "verify", "POST /embed": "verify", "POST /group": "verify", "GET /info": None, "GET /metrics": None,
    "GET /galleries": "read", "POST /galleries": "enrol", "GET /galleries/{g}": "read",
    "DELETE /galleries/{g}": "delete", "POST /galleries/{g}/import": "enrol", "POST /galleries/{g}/subjects": "enrol",
    "GET /galleries/{g}/subjects": "read", "GET /galleries/{g}/subjects/{s}": "read",
    "DELETE /galleries/{g}/subjects/{s}": "delete", "POST /galleries/{g}/subjects/{s}/faces": "enrol",
    "DELETE /galleries/{g}/subjects/{s}/faces/{t}": "delete", "POST /galleries/{g}/subjects/{s}/verify": "read",
    "POST /galleries/{g}/search": "read", "POST /galleries/{g}/duplicates": "enrol",
    "DELETE /galleries/{g}/subjects/{s}/duplicates": "enrol", "POST /keys": "admin", "GET /keys": "admin", "DELETE /keys/{id}": "admin",
    "GET /audit": "admin", "GET /audit/export": "admin",
}


def parse_table(text: str) -> dict[tuple[str, str, str], int]:
    lines = text.strip().splitlines()
    header = lines[0].split()[2:]
    assert tuple(header) == PRINCIPALS, header
    expected = {}
    for line in lines[1:]:
        method, path, gallery, *statuses = line.split()
        assert len(statuses) == len(PRINCIPALS), line
        for principal, status in zip(PRINCIPALS, statuses):
            expected[(f"{method} {path}", principal, gallery)] = int(status)
    return expected


EXPECTED = parse_table(TABLE)
assert {route for route, _, _ in EXPECTED} == set(SCOPE_OF)


# -- the service and what it holds ---------------------------------------------------------------


@dataclass
class Backend:
    name: str
    url: str
    sqlite_path: Path | None = None
    postgres: Any = None  # tests.support.postgres.PostgresServer


@dataclass
class World:
    """The running service, the keys (principal -> X-API-Key value), and what setup enrolled."""

    client: httpx.AsyncClient
    backend: Backend
    keys: dict[str, str]
    key_ids: dict[str, str]
    alice: dict  # embeddings from /embed of LFW photos
    alice2: dict
    bob: dict
    probe_photo: bytes
    made_secrets: list[str] = field(default_factory=list)  # every stored key's secret made by any test


ROOT_HEADERS = {"X-API-Key": ROOT}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request, tmp_path_factory) -> Backend:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("tenancy") / "facever.sqlite3"
        return Backend("sqlite", f"sqlite:///{path}", sqlite_path=path)
    server = request.getfixturevalue("postgres_server")
    return Backend("postgres", server.fresh_database("tenancy_api"), postgres=server)


async def as_root(client: httpx.AsyncClient, method: str, url: str, expect: int, **kwargs) -> httpx.Response:
    response = await client.request(method, url, headers=ROOT_HEADERS, **kwargs)
    assert response.status_code == expect, (method, url, response.text)
    return response


async def new_key(client: httpx.AsyncClient, name: str, scopes: list[str],
                  galleries: Sequence[str] | None = ("acme-*",), **extra) -> dict:
    body = {"name": name, "scopes": scopes, "galleries": None if galleries is None else list(galleries),
            "rate_per_s": 1000, "burst": 1000, **extra}
    return (await as_root(client, "POST", "/keys", 201, json=body)).json()


@pytest.fixture(scope="module")
async def world(backend, lfw_dir):
    # A high failure limit: this module sends wrong keys on purpose, from the one test client address.
    async with real_service(storage_url=backend.url, api_keys=(READER,), write_api_keys=(ROOT,),
                            auth_failure_limit=100_000) as (_, client):
        deadline = time.monotonic() + 60
        while (await client.get("/health/ready")).json().get("storage") != "ok":
            assert time.monotonic() < deadline, "storage never became ready"
            await anyio.sleep(0.05)
        photos = {name: (lfw_dir / "images" / name).read_bytes() for name in (*ALICE, BOB, PROBE)}
        embedded = (await as_root(client, "POST", "/embed", 200, files=[
            ("images", (f"{i}.jpg", photos[name])) for i, name in enumerate((*ALICE, BOB))])).json()["embeddings"]
        for gallery, subject, photo in ((OWN, "alice", ALICE[0]), (OTHER, "bob", BOB)):
            await as_root(client, "POST", "/galleries", 201, json={"id": gallery})
            await as_root(client, "POST", f"/galleries/{gallery}/subjects", 201, json={"id": subject})
            await as_root(client, "POST", f"/galleries/{gallery}/subjects/{subject}/faces", 201,
                          files=[("images", ("face.jpg", photos[photo]))])
        keys, key_ids, made = {"env-read": READER, "env-write": ROOT}, {}, []
        for scope in SCOPES:  # an admin key reaches every gallery: it is given none
            created = await new_key(client, f"acme {scope}", [scope], None if scope == "admin" else ("acme-*",))
            assert created["galleries"] == (None if scope == "admin" else ["acme-*"]) and created["scopes"] == [scope]
            keys[scope], key_ids[scope] = created["key"], created["id"]
            made.append(created["key"])
        yield World(client, backend, keys, key_ids, embedded[0], embedded[1], embedded[2], photos[PROBE], made)


# -- the requests of the matrix --------------------------------------------------------------------


@dataclass
class Call:
    """One request of the matrix, the gallery it names (None: none), and a check of its effect, run
    with the answer once its status is asserted."""

    method: str
    url: str
    kwargs: dict = field(default_factory=dict)
    gallery: str | None = None
    after: Callable[[httpx.Response], Awaitable[None]] | None = None


def embedding_of(w: World, kind: str) -> dict:
    return w.alice if kind == "own" else w.bob


async def exists(w: World, url: str) -> bool:
    response = await w.client.get(url, headers=ROOT_HEADERS)
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def expect_effect(w: World, url: str) -> Callable[[httpx.Response], Awaitable[None]]:
    """After a request: `url` exists where the request succeeded, and not where it was refused."""

    async def check(response: httpx.Response) -> None:
        assert await exists(w, url) == response.is_success, (url, response.status_code)

    return check


def expect_gone(w: World, url: str) -> Callable[[httpx.Response], Awaitable[None]]:
    """After a delete: `url` is gone where it succeeded, and untouched where it was refused."""

    async def check(response: httpx.Response) -> None:
        assert await exists(w, url) != response.is_success, (url, response.status_code)

    return check


async def build(route: str, w: World, principal: str, kind: str) -> Call:
    """The request of `route` for `principal` in the gallery of `kind`; throwaways made by root."""
    g, s = GALLERY.get(kind), SUBJECT.get(kind)
    mark = "alice" if kind == "own" else "bob"  # subject ids of the other tenant hold "bob"
    tag = f"{principal}-{kind}"
    match route:
        case "POST /verify":
            return Call("POST", "/verify", {"json": {"embedding1": w.alice, "embedding2": w.alice2}})
        case "POST /embed":
            return Call("POST", "/embed", {"files": {"images": ("probe.jpg", w.probe_photo)}})
        case "POST /group":
            return Call("POST", "/group", {"json": {"embeddings": [w.alice, w.alice2, w.bob]}})
        case "GET /info":
            return Call("GET", "/info")
        case "GET /metrics":
            return Call("GET", "/metrics")
        case "GET /galleries":
            return Call("GET", "/galleries", {"params": {"limit": 1000}})
        case "POST /galleries":
            new = {"own": f"acme-made-{principal}", "other": OTHER, "none": f"other-made-{principal}"}[kind]
            after = expect_effect(w, f"/galleries/{new}") if kind != "other" else None
            return Call("POST", "/galleries", {"json": {"id": new}}, new, after)
        case "GET /galleries/{g}":
            return Call("GET", f"/galleries/{g}", gallery=g)
        case "DELETE /galleries/{g}":
            if kind != "none":
                g = f"{'acme' if kind == 'own' else 'other'}-del-{principal}"
                await as_root(w.client, "POST", "/galleries", 201, json={"id": g})
                await as_root(w.client, "POST", f"/galleries/{g}/subjects", 201, json={"id": f"{mark}-x"})
            return Call("DELETE", f"/galleries/{g}", gallery=g,
                        after=expect_gone(w, f"/galleries/{g}") if kind != "none" else None)
        case "POST /galleries/{g}/import":
            subject = f"{mark}-imp-{principal}"
            body = {"subjects": [{"id": subject, "embeddings": [embedding_of(w, kind)]}]}
            return Call("POST", f"/galleries/{g}/import", {"json": body}, g,
                        expect_effect(w, f"/galleries/{g}/subjects/{subject}") if kind != "none" else None)
        case "POST /galleries/{g}/subjects":
            subject = f"{mark}-new-{principal}"
            return Call("POST", f"/galleries/{g}/subjects", {"json": {"id": subject}}, g,
                        expect_effect(w, f"/galleries/{g}/subjects/{subject}") if kind != "none" else None)
        case "GET /galleries/{g}/subjects":
            return Call("GET", f"/galleries/{g}/subjects", gallery=g)
        case "GET /galleries/{g}/subjects/{s}":
            return Call("GET", f"/galleries/{g}/subjects/{s}", gallery=g)
        case "DELETE /galleries/{g}/subjects/{s}":
            if kind != "none":
                s = f"{mark}-del-{principal}"
                await as_root(w.client, "POST", f"/galleries/{g}/subjects", 201, json={"id": s})
            url = f"/galleries/{g}/subjects/{s}"
            return Call("DELETE", url, gallery=g, after=expect_gone(w, url) if kind != "none" else None)
        case "POST /galleries/{g}/subjects/{s}/faces":
            url = f"/galleries/{g}/subjects/{s}"

            async def check_enrolled(response: httpx.Response) -> None:
                if kind == "none":
                    return
                templates = (await as_root(w.client, "GET", url, 200)).json()["templates"]
                if response.is_success:
                    assert response.json()["subject"]["templates"] == templates
                    assert [added["id"] for added in response.json()["added"]]

            return Call("POST", f"{url}/faces", {"json": {"embeddings": [embedding_of(w, kind)]}}, g, check_enrolled)
        case "DELETE /galleries/{g}/subjects/{s}/faces/{t}":
            template = uuid.uuid4().hex
            if kind != "none":
                s = f"{mark}-face-{principal}"
                await as_root(w.client, "POST", f"/galleries/{g}/subjects", 201, json={"id": s})
                enrolled = await as_root(w.client, "POST", f"/galleries/{g}/subjects/{s}/faces", 201,
                                         json={"embeddings": [embedding_of(w, kind)]})
                template = enrolled.json()["added"][0]["id"]
            subject_url = f"/galleries/{g}/subjects/{s}"

            async def template_gone(response: httpx.Response) -> None:
                if kind == "none":
                    return
                left = (await as_root(w.client, "GET", subject_url, 200)).json()["templates"]
                assert left == (0 if response.is_success else 1), (response.status_code, left)

            return Call("DELETE", f"{subject_url}/faces/{template}", gallery=g, after=template_gone)
        case "POST /galleries/{g}/subjects/{s}/verify":
            probe = w.alice2 if kind == "own" else w.bob
            return Call("POST", f"/galleries/{g}/subjects/{s}/verify", {"json": {"embedding": probe}}, g)
        case "POST /galleries/{g}/search":
            probe = w.alice2 if kind == "own" else w.bob
            return Call("POST", f"/galleries/{g}/search", {"json": {"embedding": probe, "top_k": 3}}, g)
        case "POST /galleries/{g}/duplicates":
            return Call("POST", f"/galleries/{g}/duplicates", {"json": {}}, g)
        case "DELETE /galleries/{g}/subjects/{s}/duplicates":
            return Call("DELETE", f"/galleries/{g}/subjects/{s}/duplicates", gallery=g)
        case "POST /keys":
            body = {"name": f"made by {principal}", "scopes": ["read"], "galleries": ["acme-*"]}

            async def remember(response: httpx.Response) -> None:
                if response.is_success:
                    w.made_secrets.append(response.json()["key"])

            return Call("POST", "/keys", {"json": body}, after=remember)
        case "GET /keys":
            return Call("GET", "/keys")
        case "DELETE /keys/{id}":
            throwaway = await new_key(w.client, f"to revoke by {tag}", ["read"])
            w.made_secrets.append(throwaway["key"])

            async def revoked(response: httpx.Response) -> None:
                works = await w.client.get("/info", headers={"X-API-Key": throwaway["key"]})
                assert works.status_code == (401 if response.is_success else 200), works.text

            return Call("DELETE", f"/keys/{throwaway['id']}", after=revoked)
        case "GET /audit":
            return Call("GET", "/audit")
        case "GET /audit/export":
            return Call("GET", "/audit/export")
    raise AssertionError(route)


def answer_text(response: httpx.Response) -> str:
    """Everything an answer tells: its status line's reason aside, its headers and its body."""
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.multi_items())
    return headers + "\n" + response.content.decode("utf-8", "replace")


def random_part(secret: str) -> str:
    """A stored key's random part (after `fvk_<12 hex id>_`; it may hold '_' itself); else the whole."""
    return secret[len("fvk_") + 13:] if secret.startswith("fvk_") and len(secret) > 30 else secret


def assert_no_echo(response: httpx.Response, given: str) -> None:
    text = answer_text(response)
    assert given not in text and random_part(given) not in text, "the answer echoes the X-API-Key value"


def assert_no_other_tenant(response: httpx.Response, named: str | None) -> None:
    """No other-tenant id in an answer to a tenant key, but the gallery the request named itself
    (which may only be in the refusal's message)."""
    text = answer_text(response)
    if named:
        text = text.replace(named, "<named>")
    for mark in OTHER_MARKS:
        assert mark not in text, f"{mark!r} in an answer to a tenant key: {text[:2000]}"


def comparable(response: httpx.Response, gallery: str) -> tuple:
    """An answer with its request id and the gallery id it names taken out, to compare with another."""
    body = response.json()
    body.pop("request_id", None)
    body["error"]["message"] = body["error"]["message"].replace(repr(gallery), "<g>")
    headers = {name: value for name, value in response.headers.items()
               if name not in ("x-request-id", "content-length")}
    return response.status_code, body, headers


CASES = [
    pytest.param(route, principal, gallery, id=f"{route.replace(' ', '_')}-{principal}-{gallery}")
    for route in SCOPE_OF
    for principal in PRINCIPALS
    for gallery in sorted({g for (r, _, g) in EXPECTED if r == route}, key=["-", "own", "other", "none"].index)
]


@pytest.mark.parametrize(("route", "principal", "gallery"), CASES)
async def test_matrix(world: World, route: str, principal: str, gallery: str) -> None:
    w = world
    status = EXPECTED[(route, principal, gallery)]
    call = await build(route, w, principal, gallery)
    given = w.keys[principal]
    response = await w.client.request(call.method, call.url, headers={"X-API-Key": given}, **call.kwargs)

    scope = SCOPE_OF[route]
    if status == 403 and scope not in GRANTS[principal]:
        refused(response, 403, "forbidden", f"the {scope!r} scope")
    elif status == 403:  # a gallery out of reach, to create
        body = refused(response, 403, "forbidden", repr(call.gallery))
        assert "outside the galleries the key reaches" in body["error"]["message"]
    elif status == 404:
        body = refused(response, 404, "gallery_not_found")
        assert body["error"]["message"] == f"no gallery {call.gallery!r}", body
    elif status == 409:
        refused(response, 409, "gallery_exists", repr(call.gallery))
    else:
        assert response.status_code == status, response.text
        assert response.headers["X-Request-ID"]
    if call.after:
        await call.after(response)

    assert_no_echo(response, given)
    if principal in TENANT:
        assert_no_other_tenant(response, call.gallery if gallery in ("other", "none") else None)
        if gallery == "other" and status in (403, 404) and scope in GRANTS[principal]:
            # Out of reach answers exactly as nonexistent: the same request to a gallery that does not exist.
            twin = await build(route, w, principal, "none")
            nonexistent = await w.client.request(twin.method, twin.url, headers={"X-API-Key": given}, **twin.kwargs)
            assert comparable(response, call.gallery) == comparable(nonexistent, twin.gallery)
    if status < 300:
        await check_success(route, w, principal, gallery, response)


async def check_success(route: str, w: World, principal: str, gallery: str, response: httpx.Response) -> None:
    """That a request let through really ran."""
    body = response.json() if response.headers["content-type"].startswith("application/json") else None
    match route:
        case "POST /verify":
            assert body["same"] is True
        case "POST /embed":
            assert len(body["embeddings"]) == 1 and body["embeddings"][0]["dim"] == len(w.alice["embedding"])
        case "GET /metrics":
            assert "facever_http_requests" in response.text
        case "GET /galleries/{g}":
            assert body["id"] == GALLERY[gallery] and body["subjects"] >= 1
        case "GET /galleries/{g}/subjects":
            assert SUBJECT[gallery] in {s["id"] for s in body["subjects"]}
        case "GET /galleries/{g}/subjects/{s}":
            assert body["id"] == SUBJECT[gallery] and body["templates"] >= 1
        case "POST /galleries/{g}/subjects/{s}/verify":
            assert body["same"] is True
        case "POST /galleries/{g}/search":  # alice, or one of the subjects the matrix enrolled her in
            assert body["match"]["subject"].startswith(SUBJECT[gallery]), body
        case "POST /group":
            assert [len(group) for group in body["groups"]] == [2] and len(body["ungrouped"]) == 1
        case "POST /galleries/{g}/duplicates":  # the report runs to its end (alice's copies are pairs)
            url = f"/galleries/{GALLERY[gallery]}/duplicates/{body['id']}"
            for _ in range(200):
                report = (await w.client.get(url, headers={"X-API-Key": w.keys["env-write"]})).json()
                if report["state"] != "running":
                    break
                await anyio.sleep(0.05)
            assert report["state"] == "done" and report["gallery_size"] >= 1, report
        case "DELETE /galleries/{g}/subjects/{s}/duplicates":
            assert body["id"] == SUBJECT[gallery] and body["possible_duplicates"] == []
        case "GET /keys":
            listed = {key["id"] for key in body["keys"]}
            assert set(w.key_ids.values()) <= listed
            assert all("key" not in key for key in body["keys"])
            assert not any(secret in response.text for secret in w.made_secrets)
        case "GET /audit":
            assert body["entries"] and {"gallery.create", "key.create"} <= {e["action"] for e in body["entries"]}
        case "GET /audit/export":
            lines = [json.loads(line) for line in response.text.splitlines()]
            assert lines and all("hash" in line for line in lines)


# -- listings ---------------------------------------------------------------------------------------


async def all_galleries(w: World, principal: str) -> list[str]:
    ids, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await w.client.get("/galleries", params=params, headers={"X-API-Key": w.keys[principal]})
        assert response.status_code == 200, response.text
        ids += [g["id"] for g in response.json()["galleries"]]
        if not (cursor := response.json()["next_cursor"]):
            return ids


async def test_listings_hold_only_what_a_key_reaches(world: World) -> None:
    w = world
    tenant = await all_galleries(w, "read")
    assert OWN in tenant and all(g.startswith("acme-") for g in tenant), tenant
    for principal in ("admin", "env-read", "env-write"):
        everything = await all_galleries(w, principal)
        assert {OWN, OTHER} <= set(everything) and everything == sorted(everything), (principal, everything)
        assert [g for g in everything if g.startswith("acme-")] == tenant
    # A cursor past the tenant's galleries (one the service made, of another id) reaches nothing more.
    past = base64.urlsafe_b64encode(b"acme-zzz").decode().rstrip("=")
    response = await w.client.get("/galleries", params={"cursor": past}, headers={"X-API-Key": w.keys["read"]})
    assert response.status_code == 200 and response.json() == {"galleries": [], "next_cursor": None}, response.text
    # A key reaching an exact id and a prefix lists just those.
    narrow = await new_key(w.client, "narrow", ["read"], galleries=[OTHER, "nothing-*"])
    w.made_secrets.append(narrow["key"])
    listed = await w.client.get("/galleries", headers={"X-API-Key": narrow["key"]})
    assert [g["id"] for g in listed.json()["galleries"]] == [OTHER], listed.text
    refused(await w.client.get(f"/galleries/{OWN}", headers={"X-API-Key": narrow["key"]}), 404, "gallery_not_found")


async def test_open_routes_tell_nothing_of_galleries(world: World) -> None:
    """The health probes and the demo need no key, and name no gallery or subject."""
    w = world
    for url in ("/health/live", "/health/ready", "/demo"):
        response = await w.client.get(url)
        assert response.status_code == 200, (url, response.text)
        text = answer_text(response)
        for mark in (*OTHER_MARKS, "acme-"):  # (the demo page suggests "alice" as a subject id)
            assert mark not in text, (url, mark)


# -- keys that are not (or no longer) keys ------------------------------------------------------------


async def test_wrong_malformed_expired_and_revoked_keys_are_401(world: World) -> None:
    w = world
    assert (await w.client.get(f"/galleries/{OWN}", headers={"X-API-Key": w.keys["read"]})).status_code == 200
    known_id = w.key_ids["read"]
    wrong = [
        None,
        "",
        "not-a-key",
        "fvk_" + "0" * 12,
        "fvk_" + known_id + "_" + "A" * 43,  # the id of a real key, a wrong secret
        "fvk_" + secrets.token_hex(6) + "_" + secrets.token_urlsafe(32),  # well-formed, no such key
        w.keys["read"][:-1] + ("A" if w.keys["read"][-1] != "A" else "B"),  # one character off
        w.keys["read"] + "x",
        " " + w.keys["read"],
        ROOT.upper(),
    ]
    messages = set()
    for given in wrong:
        headers = {} if given is None else {"X-API-Key": given}
        response = await w.client.get(f"/galleries/{OWN}", headers=headers)
        body = refused(response, 401, "unauthorized")
        messages.add(body["error"]["message"])
        if given:
            assert_no_echo(response, given)
            assert given.strip() not in answer_text(response)
    assert len(messages) == 1, messages  # nothing tells which part was wrong

    expiring = await new_key(w.client, "expiring", ["read"], expires_at=(
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)).isoformat())
    w.made_secrets.append(expiring["key"])
    assert (await w.client.get(f"/galleries/{OWN}", headers={"X-API-Key": expiring["key"]})).status_code == 200
    await anyio.sleep(2.6)
    refused(await w.client.get(f"/galleries/{OWN}", headers={"X-API-Key": expiring["key"]}), 401, "unauthorized")
    refused(await w.client.get("/info", headers={"X-API-Key": expiring["key"]}), 401, "unauthorized")

    revoked = await new_key(w.client, "revoked", ["read", "enrol"])
    w.made_secrets.append(revoked["key"])
    assert (await w.client.get(f"/galleries/{OWN}", headers={"X-API-Key": revoked["key"]})).status_code == 200
    answer = (await as_root(w.client, "DELETE", f"/keys/{revoked['id']}", 200)).json()
    assert answer["revoked_at"] and "key" not in answer and revoked["key"] not in json.dumps(answer)
    # At once on this replica, without waiting out the key cache.
    for method, url in (("GET", f"/galleries/{OWN}"), ("GET", "/info"), ("POST", "/verify")):
        refused(await w.client.request(method, url, headers={"X-API-Key": revoked["key"]}), 401, "unauthorized")
    again = await as_root(w.client, "DELETE", f"/keys/{revoked['id']}", 200)
    assert again.json()["revoked_at"] == answer["revoked_at"]
    refused(await w.client.delete("/keys/" + "0" * 12, headers=ROOT_HEADERS), 404, "key_not_found")
    listed = {key["id"]: key for key in (await as_root(w.client, "GET", "/keys", 200, params={"limit": 1000})
                                         ).json()["keys"]}
    assert listed[revoked["id"]]["revoked_at"] and listed[expiring["id"]]["expires_at"]
    assert listed[w.key_ids["read"]]["last_used_at"]  # touched on use


# -- no secret in the raw database ---------------------------------------------------------------------


def needles(secret: str) -> dict[str, bytes]:
    """What of a secret must never be stored: itself, its random part, that part's bytes and hex."""
    random = random_part(secret)
    assert len(random) == 43, secret
    raw = base64.urlsafe_b64decode(random + "=")
    assert len(raw) == 32
    return {"secret": secret.encode(), "random part": random.encode(), "random bytes": raw,
            "random hex": raw.hex().encode()}


def raw_files(w: World) -> dict[str, bytes]:
    """The database as bytes: the SQLite file with its -wal and -shm; or a pg_dump of the database,
    and every file of the PostgreSQL cluster (its tables and its write-ahead log), read directly."""
    if w.backend.sqlite_path is not None:
        path = w.backend.sqlite_path
        files = {str(p): p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()}
        assert str(path) in files and len(files[str(path)]) > 0
        return files
    server = w.backend.postgres
    database = w.backend.url.rsplit("/", 1)[1]
    dump = subprocess.run([str(server.bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "facever",
                           "--no-owner", "--inserts", database], capture_output=True, timeout=120)
    assert dump.returncode == 0, dump.stderr.decode()
    assert b"api_keys" in dump.stdout
    files = {"pg_dump": dump.stdout}
    # Checkpointed first (PostgresServer.files): the write-ahead log's page headers may split a record.
    files["cluster files"] = server.files()
    return files


async def test_no_key_secret_in_the_raw_database(world: World) -> None:
    w = world
    # Keys of its own, used, so their last use is written too.
    for scopes in (["read"], ["admin"]):
        made = await new_key(w.client, "scanned", scopes, None if scopes == ["admin"] else ("acme-*",))
        w.made_secrets.append(made["key"])
        assert (await w.client.get("/galleries", headers={"X-API-Key": made["key"]})).status_code == 200
    for principal in PRINCIPALS:
        assert (await w.client.get("/info", headers={"X-API-Key": w.keys[principal]})).status_code == 200
    files = raw_files(w)
    everything = b"\n".join(files.values())
    # Where the scan must find each key's hash: the SQLite files together (a row may be in the WAL
    # only), the dump, and the cluster's own files.
    sources = {"sqlite files": everything} if w.backend.sqlite_path else files
    for secret in w.made_secrets:
        for what, needle in needles(secret).items():
            for name, data in files.items():
                assert needle not in data, f"a key's {what} is in {name}"
        # The store keeps the hash: the scan would find what is there.
        for name, data in sources.items():
            assert secret_hash(secret).encode() in data, f"a key's SHA-256 is not in {name}"
    for env_key in (ROOT, READER):  # the environment's keys are never written anywhere
        assert env_key.encode() not in everything and secret_hash(env_key).encode() not in everything
