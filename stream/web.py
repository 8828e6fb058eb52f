"""Recommendations on demand: the worker's HTTP routes, served by Faust's own web server (aiohttp).

* ``GET /users/{user_id}/recommendations?k=10``: the user's list as a ``recommendations`` message would carry it
  (``event_id`` null, a fresh ``rec_id``). Faust's table routing forwards the request to the worker that owns the
  user's partition of ``user-sequences``, so any worker answers for any user. A user the worker has never seen
  gets popular and fresh items.
* ``GET /items/{item_id}/similar?k=10``: the items nearest to an item in the adapted item space (every worker
  holds the whole catalog, so the worker asked answers; each ranks with its own model).
* ``GET /openapi.json``: the OpenAPI 3.1 document of these routes; ``GET /healthz``, ``GET /readyz``: liveness
  and readiness (:class:`stream.health.WorkerHealth`).

Answering reads state only: nothing is written to the user table, nothing is sent on a topic, no rate-limit token
is taken, nothing is learned, and the learner is asked through its read-only protocol methods
(:meth:`~learners.types.Learner.recommend_readonly`, :meth:`~learners.types.Learner.similar_stages`). The handlers
run on the worker's event loop while a learning step's gradient is computed on the learning thread; the model
changes only between those computations, on the loop (:func:`stream.app.learn_off_the_loop`), so a handler always
sees one consistent model. The one exception is a stage the learner marks as reading nothing a learning step moves
(the similar-items scan of a large catalog's ANN index), which runs on a thread while the loop goes on.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import TYPE_CHECKING, Any

from faust.app.router import Router
from faust.exceptions import NotReady
from faust.types.core import K
from faust.web import Request, Response, View, Web
from faust.web.exceptions import ServiceUnavailable
from yarl import URL

from connectors.schemas import RECOMMENDATION_JSON_SCHEMA, recommendation_record
from learners.history import UserState
from learners.types import Query
from stream.settings import Settings

if TYPE_CHECKING:
    from stream.app import StreamrecApp

K_MAX = 1000
_K = re.compile(r"[0-9]{1,4}")


def web_server_options(s: Settings) -> dict[str, Any]:
    """Faust's web-server settings for these streamrec settings (``web_port`` 0: no web server).

    The canonical URL is where other workers forward a user's request: ``web_canonical_url``, else
    ``http://web_host:web_port`` (this machine's host name when bound to every interface). Faust's own pages are
    off: ``/table`` would show any user's state to anyone, the others are debugging aids.

    >>> web_server_options(Settings(web_port=7001))["canonical_url"]
    'http://127.0.0.1:7001'
    >>> web_server_options(Settings(web_port=0))
    {'web_enabled': False}
    """
    if s.web_port == 0:
        return {"web_enabled": False}
    host = s.web_host if s.web_host not in ("0.0.0.0", "::", "") else socket.gethostname()  # noqa: S104
    netloc = f"[{host}]" if ":" in host else host
    return {
        "web_enabled": True,
        "web_port": s.web_port,
        "web_bind": s.web_host,
        "web_host": host,
        "canonical_url": s.web_canonical_url or f"http://{netloc}:{s.web_port}",
        "web_in_thread": False,
        "Router": WorkerRouter,
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_metrics_enabled": False,
    }


def parse_k(raw: str | None, default: int) -> int | str:
    """``k`` from the query string, or the one-line error naming it.

    >>> parse_k(None, 10), parse_k("25", 10), parse_k("0", 10)
    (10, 25, "k: expected an integer from 1 to 1000, got '0'")
    """
    if raw is None:
        return default
    if _K.fullmatch(raw) and 1 <= int(raw) <= K_MAX:
        return int(raw)
    return f"k: expected an integer from 1 to {K_MAX}, got {raw[:40]!r}"


class OnDemandAnswers:
    """The bodies behind the routes, from the worker's state; reads only (see the module doc)."""

    def __init__(self, sr: StreamrecApp) -> None:
        self.sr = sr
        self.settings = sr.settings

    def check(self, name: str, value: str, k: str | None) -> tuple[int, str] | None:
        """(400, one-line error) for a bad id or ``k``, else None."""
        if not value or len(value) > self.settings.max_id_length:
            return 400, f"{name}: expected 1 to {self.settings.max_id_length} characters, got {len(value)}"
        bad = parse_k(k, self.settings.top_k)
        return (400, bad) if isinstance(bad, str) else None

    def user_recommendations(self, user_id: str, k: str | None) -> tuple[int, dict[str, Any]]:
        """(status, body) of ``GET /users/{user_id}/recommendations``: a recommendation record, or an error."""
        bad = self.check("user_id", user_id, k)
        if bad is not None:
            return bad[0], {"error": bad[1]}
        asked = time.time()
        state = UserState.from_dict(self.sr.user_table.get(user_id))
        learner = self.sr.learner
        q = Query(user_id, tuple(state.seq), frozenset(state.seen))
        items = learner.recommend_readonly(q, int(parse_k(k, self.settings.top_k)))
        why = learner.explain_many([q], [items])[0] if self.settings.explain else None
        return 200, recommendation_record(user_id, None, items, learner.model_version, asked, because=why)

    async def similar_items(self, item_id: str, k: str | None) -> tuple[int, dict[str, Any]]:
        """(status, body) of ``GET /items/{item_id}/similar``: the nearest items, or an error (404: unknown). The
        learner's off-the-loop stages (past ``retrieval.exact_max_items``, the scan of the ANN index's vectors:
        ~54 ms at 1M items) run on the default executor, so events and other requests are served meanwhile."""
        bad = self.check("item_id", item_id, k)
        if bad is not None:
            return bad[0], {"error": bad[1]}
        learner = self.sr.learner
        stages = learner.similar_stages(item_id, int(parse_k(k, self.settings.top_k)))
        loop = asyncio.get_running_loop()
        while True:
            try:
                stage = next(stages)
            except StopIteration as done:
                items = done.value
                break
            await loop.run_in_executor(None, stage)
        if items is None:
            return 404, {"error": f"item_id: {item_id[:80]!r} is not in the catalog"}
        return 200, {"item_id": item_id, "items": [{"item_id": i, "score": float(s)} for i, s in items],
                     "model_version": int(learner.model_version), "emitted_ts": time.time()}


def install_routes(sr: StreamrecApp) -> None:
    """Add the routes of the module doc to ``sr.app``'s web server (nothing when ``web_port`` is 0)."""
    if sr.settings.web_port == 0:
        return
    app = sr.app
    answers = OnDemandAnswers(sr)

    async def answer_here(view: View, request: Request) -> Response:
        status, body = answers.user_recommendations(request.match_info["user_id"], request.query.get("k"))
        return view.json(body, status=status)

    answer_where_owned = app.table_route(table=sr.user_table, match_info="user_id")(answer_here)

    @app.page("/users/{user_id}/recommendations", name="user_recommendations")
    class UserRecommendations(View):
        async def get(self, request: Request, user_id: str) -> Response:
            bad = answers.check("user_id", user_id, request.query.get("k"))
            if bad is not None:  # before forwarding: a bad request costs no hop
                return self.json({"error": bad[1]}, status=bad[0])
            return await answer_where_owned(self, request)

    @app.page("/items/{item_id}/similar", name="similar_items")
    class SimilarItems(View):
        async def get(self, request: Request, item_id: str) -> Response:
            status, body = await answers.similar_items(item_id, request.query.get("k"))
            return self.json(body, status=status)

    @app.page("/openapi.json", name="openapi")
    class OpenAPIDocument(View):
        async def get(self, request: Request) -> Response:
            return self.json(openapi_document(sr.settings))

    @app.page("/healthz", name="healthz")
    class Liveness(View):
        async def get(self, request: Request) -> Response:
            status, body = sr.health.liveness()
            return self.json(body, status=status)

    @app.page("/readyz", name="readyz")
    class Readiness(View):
        async def get(self, request: Request) -> Response:
            status, body = sr.health.readiness()
            return self.json(body, status=status)


class WorkerRouter(Router):
    """Faust's router (``app.router``), placing a user as its events were placed; it answers 503 while the
    producer is not started (Faust raises ``NotReady``: a 500) and makes sure the producer can place the key.

    A user's state lives in the partition of the user's events, which producers key by the user id's UTF-8 bytes
    (murmur2, Kafka's default partitioner); the table writes under each event's partition. Faust's router hashes
    the key as the changelog serialises it, JSON (``b'"user0"'``), which lands elsewhere: asked for ``user0``, the
    worker owning another partition answered as if the user were unknown (two workers, Tansu).

    Faust places a table key with the producer's partitioner, which raises ``TypeError`` for a topic missing from
    the producer's metadata. aiokafka's metadata has held every topic in the tests (a worker that had processed no
    event answered with and without this check), so fetching the changelog's metadata first is a cheap precaution.
    """

    async def route_req(self, table_name: str, key: K, web: Web, request: Request) -> Response:
        try:
            producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]  # aiokafka's
        except NotReady:
            raise ServiceUnavailable("the worker is starting: try again") from None
        topic = self.app.tables[table_name].changelog_topic.get_topic_name()
        if producer.client.cluster.partitions_for_topic(topic) is None:
            await producer.partitions_for(topic)
        return await super().route_req(table_name, key, web, request)

    def key_store(self, table_name: str, key: K) -> URL:
        """The canonical URL of the worker owning ``key``'s partition of the table, placed by :func:`event_key`."""
        topic = self._get_table_topic(self._get_table(table_name))
        return self._assignor.key_store(topic, event_key(key))


def event_key(key: Any) -> bytes:
    """A table key as producers key the events it comes from: the id's UTF-8 bytes.

    >>> event_key("user0"), event_key(b"raw")
    (b'user0', b'raw')
    """
    return key if isinstance(key, bytes) else str(key).encode()


def openapi_document(s: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes (``/openapi.json``); the recommendation body is
    :data:`connectors.schemas.RECOMMENDATION_JSON_SCHEMA`, the ``recommendations`` topic's own schema."""

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def body(name: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(name)}}}

    def id_param(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "description": description,
                "schema": {"type": "string", "minLength": 1, "maxLength": s.max_id_length}}

    k_param = {"name": "k", "in": "query", "required": False, "description": "How many items (default: top_k).",
               "schema": {"type": "integer", "minimum": 1, "maximum": K_MAX, "default": s.top_k}}
    bad = body("Error", "A bad id or k; the error names it.")
    scored = {"type": "object", "required": ["item_id", "score"],
              "properties": {"item_id": {"type": "string", "minLength": 1}, "score": {"type": "number"}}}
    health = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamrec worker", "version": "1",
                 "description": "Recommendations on demand and the worker's health (see the README)."},
        "paths": {
            "/users/{user_id}/recommendations": {"get": {
                "operationId": "userRecommendations",
                "summary": "A user's top-k now, from their stored state; no state changes, nothing is learned.",
                "parameters": [id_param("user_id", "Any user id; an unknown user gets popular and fresh items."),
                               k_param],
                "responses": {"200": body("Recommendation", "The same body as a `recommendations` message, "
                                          "with `event_id` null."),
                              "400": bad, "503": body("Error", "The worker cannot place the user yet.")},
            }},
            "/items/{item_id}/similar": {"get": {
                "operationId": "similarItems",
                "summary": "The items nearest to an item in the adapted item space (the item itself left out).",
                "parameters": [id_param("item_id", "A catalog item id."), k_param],
                "responses": {"200": body("SimilarItems", "The nearest items, best first."), "400": bad,
                              "404": body("Error", "The item is not in the catalog.")},
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/healthz": {"get": {
                "operationId": "liveness", "summary": "Live: no agent has crashed.",
                "responses": {"200": body("Health", "Live."), "500": body("Health", "An agent crashed.")},
            }},
            "/readyz": {"get": {
                "operationId": "readiness", "summary": "Ready: the catalog is loaded and events are taken.",
                "responses": {"200": body("Health", "Ready (catalog size, partitions, model version)."),
                              "503": body("Health", "Not ready yet, or failed.")},
            }},
        },
        "components": {"schemas": {
            "Recommendation": {k: v for k, v in RECOMMENDATION_JSON_SCHEMA.items() if not k.startswith("$")},
            "SimilarItems": {
                "type": "object", "required": ["item_id", "items", "model_version", "emitted_ts"],
                "properties": {"item_id": {"type": "string"}, "items": {"type": "array", "items": scored},
                               "model_version": {"type": "integer", "minimum": 0}, "emitted_ts": {"type": "number"}},
            },
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Health": health,
        }},
    }
