"""The HTTP service (FastAPI): POST /v1/predict, POST /v1/predict/batch, GET /v1/behaviors, GET /healthz,
GET /metrics (serving.metrics), OpenAPI at /docs. Every response carries the request's X-Request-ID
(serving.middleware); after `drain()` (SIGTERM) /healthz answers 503 "draining".

Errors are JSON ``{"error": "<one line>", "field": ...}``: 422 for an invalid request (the field is named,
e.g. ``events[2].timestamp``; an unknown behavior also lists the ``closest`` known names), 413 for a body
over the limit, 401 when API_KEY is set and the request lacks ``Authorization: Bearer <key>``. The OpenAPI
schema declares each of them (and the bearer scheme only when API_KEY is set): clients and fuzzers can rely on it.
"""
from __future__ import annotations

import asyncio
import hmac
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field, StrictStr, field_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.config import PredictionConfig, ServeConfig
from serving.metrics import ServiceMetrics, add_metrics_route, training_shares
from serving.micro_batcher import MicroBatcher
from serving.middleware import Observed
from serving.predictor import result_line
from serving.prompting import MODES
from serving.queries import (
    BehaviorNames,
    FieldError,
    events_from_raw,
    make_query,
    parse_time_values,
)

Mode = Literal[MODES]


def _unicode(value: str) -> str:
    # JSON may escape a lone surrogate (\\ud800): not text, the tokenizer and the UTF-8 response cannot take it
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("unicode", "must be valid Unicode text (a lone surrogate escape is not)") from None
    return value


Text = Annotated[StrictStr, AfterValidator(_unicode)]


def _timestamp(value):
    # checked before pydantic's own union check, whose errors would name the union member, not the field
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PydanticCustomError("timestamp_type", "timestamp must be an ISO-8601 string or epoch seconds")
    if isinstance(value, str):
        return _unicode(value)
    if isinstance(value, int) and abs(value) > 1e15:   # also far beyond a float's range: 10**400
        raise PydanticCustomError("timestamp_range", "timestamp out of range for epoch seconds")
    return value


class NextIn(BaseModel):
    timestamp: str | float = Field(description="when the behavior to predict happens: gives weekday and hour; "
                                               "ISO-8601 (local wall time, or with an offset / Z) or epoch seconds")
    place: Text

    _check_timestamp = field_validator("timestamp", mode="before")(_timestamp)


class EventIn(NextIn):
    behavior: Text = Field(description="a behavior of GET /v1/behaviors (or a raw label of the label map)")


class PredictIn(BaseModel):
    user_id: Text | None = None
    events: list[EventIn] = Field(min_length=1, description="recent events; the last L (by time) are used")
    next: NextIn
    top_k: int | None = Field(default=None, ge=1, description="behaviors to return (default: server's)")
    instruction_template: Mode | None = Field(default=None, description="'mean' or a fixed template 0-2")


class BehaviorP(BaseModel):
    behavior: str
    p: float


class Context(BaseModel):
    timestamp: str
    weekday: str
    hour: int
    place: str


class PredictOut(BaseModel):
    user_id: str | None
    context: Context
    top: list[BehaviorP]
    history_len: int
    instruction_template: str
    model: str
    run: str
    temperature: float = Field(description="T the log-probabilities were divided by before the softmax (1: none)")
    warning: str | None = None


class BatchOut(BaseModel):
    predictions: list[PredictOut]


class FieldMessage(BaseModel):
    field: str
    msg: str


class ErrorOut(BaseModel):
    error: str = Field(description="one line: what is wrong, naming the field")
    field: str | None = Field(default=None, description="the request field at fault, e.g. events[2].timestamp")
    closest: list[str] | None = Field(default=None, description="for an unknown behavior: the nearest known names")
    detail: list[FieldMessage] | None = Field(default=None, description="every field error, when there are several")


class BehaviorOut(BaseModel):
    name: str
    label_id: int
    freq_group: str | None = None
    is_anchor: bool | None = None


class BehaviorsOut(BaseModel):
    behaviors: list[BehaviorOut]
    history_len: int
    instruction_template: str
    model: str
    run: str


class BatchingOut(BaseModel):
    requests: int
    batches: int
    prompts: int
    largest_batch: int
    busy_s: float


class HealthOut(BaseModel):
    status: str
    run: str
    model: str
    batching: BatchingOut


BEARER = HTTPBearer(auto_error=False, description="API_KEY of the server")   # module level: a resolvable annotation


def _errors(*codes: int) -> dict:
    words = {401: "no or a wrong Authorization: Bearer <API_KEY>", 413: "request body over the server's limit",
             422: "invalid request: the field is named"}
    return {code: {"model": ErrorOut, "description": words[code]} for code in codes}


MAX_BATCH_ITEMS = 256   # users per /v1/predict/batch request: larger batches belong to `make predict`


@dataclass
class AppConfig:
    """What the app serves with: the command line's checked configs (their defaults by default) and what the
    process found."""
    prediction: PredictionConfig = field(default_factory=PredictionConfig)   # top_k, instruction template
    server: ServeConfig = field(default_factory=ServeConfig)   # request batching, body limit, /metrics
    model_load_s: float | None = None             # reported as behaviorlm_model_load_seconds
    api_key: str | None = None
    tz: str | None = None
    label_map: dict | None = None


def field_name(loc) -> str:
    """('body', 'events', 0, 'timestamp') -> 'events[0].timestamp'; batch items -> '[3].events[0]...'."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _located(error: dict) -> dict:
    # a JSON syntax error's loc is ('body', <character position>): the field is the body, not an item [pos]
    if error.get("type") == "json_invalid":
        where = error["loc"][-1] if isinstance(error["loc"][-1], int) else "?"
        return {**error, "loc": ("body",), "msg": f"invalid JSON at character {where}"}
    return error


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [_located(e) for e in exc.errors()]
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = field_name(first["loc"])
    return JSONResponse(status_code=422, content={"error": f"{field}: {first['msg']}", "field": field,
                                                  "detail": [{"field": field_name(e["loc"]), "msg": e["msg"]}
                                                             for e in errors]})


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:   # FastAPI's "error parsing the body" (e.g. JSON nested too deep): an invalid body
        return JSONResponse(status_code=422, content={"error": f"body: {exc.detail}", "field": "body"})
    return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers)


class BodyLimit:
    """413 for a body over `max_bytes`: by Content-Length up front, else while it streams in.

    Before answering, the rest of the body is read and dropped (up to `drain_factor` x the limit, at most
    `drain_s` seconds; memory stays flat): uvicorn closes the connection after an early answer, and closing a
    socket with unread data resets it, which can destroy the 413 before the client has read it."""

    def __init__(self, app, max_bytes: int, drain_factor: int = 16, drain_s: float = 10.0):
        self.app, self.max_bytes = app, max_bytes
        self.drain_bytes, self.drain_s = max_bytes * drain_factor, drain_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            if int(length) <= self.drain_bytes:
                await self._drain(receive, 0)
            response = JSONResponse(status_code=413, content={"error": self._message()})
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:   # FastAPI passes HTTPExceptions from body reading through
                if message.get("more_body", False):
                    await self._drain(receive, seen)
                raise HTTPException(status_code=413, detail=self._message())
            return message

        return await self.app(scope, limited, send)

    async def _drain(self, receive, seen: int) -> None:
        try:
            async with asyncio.timeout(self.drain_s):
                while seen <= self.drain_bytes:
                    message = await receive()
                    seen += len(message.get("body", b""))
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
        except TimeoutError:
            return

    def _message(self) -> str:
        return f"request body over the limit of {self.max_bytes} bytes: send fewer or smaller requests"


def _to_query(req: PredictIn, run, names: BehaviorNames, settings: AppConfig, prefix: str = ""):
    events = events_from_raw([e.model_dump() for e in req.events], names, settings.tz, f"{prefix}events")
    (next_time,) = parse_time_values([req.next.timestamp], [f"{prefix}next.timestamp"], settings.tz)
    top_k = min(req.top_k or settings.prediction.top_k, len(run.behaviors))
    return make_query(req.user_id, events, next_time, req.next.place, run.history_len, top_k,
                      req.instruction_template or settings.prediction.instruction_template, seed=run.seed,
                      fields=[f"{prefix}events[{i}]" for i in range(len(events))])


def _field_error(err: FieldError) -> JSONResponse:
    content = {"error": str(err), "field": err.field}
    if err.closest is not None:
        content["closest"] = err.closest
    return JSONResponse(status_code=422, content=content)


def create_app(predictor, settings: AppConfig | None = None) -> FastAPI:
    """The service around a loaded Predictor (the model is loaded once, before the app is built)."""
    settings = settings or AppConfig()
    run = predictor.run
    names = BehaviorNames(run.behaviors, settings.label_map)
    metrics = ServiceMetrics(run.behaviors, training_shares(run.stats)) if settings.server.metrics else None
    batcher = MicroBatcher(predictor.predict, lambda q: len(q.template_ids), settings.server.max_batch,
                           settings.server.max_wait_ms, on_batch=metrics.observe_batch if metrics else None)
    if metrics is not None:
        metrics.watch(lambda: batcher.waiting, settings.model_load_s)

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop()   # after uvicorn has finished the in-flight requests

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode("utf-8", "replace"),
                                                          settings.api_key.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong Authorization: Bearer <API_KEY>",
                                headers={"WWW-Authenticate": "Bearer"})

    # without API_KEY the schema declares no security scheme and no 401: nothing asks for a key
    auth = {"dependencies": [Depends(authorized)], "responses": _errors(401)} if settings.api_key else {}

    app = FastAPI(title="BehaviorLM next-behavior service", lifespan=lifespan,
                  description=f"run {run.run_name}, model {run.model_name}: p(next behavior | recent events)")
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodyLimit, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(Observed, metrics=metrics)   # added last: outermost, so it sees the 413s too
    app.state.batcher, app.state.settings, app.state.draining = batcher, settings, False

    def drain() -> None:
        """On SIGTERM (on the event loop): /healthz says "draining", the batcher scores what it holds at once."""
        app.state.draining = True
        batcher.drain()

    app.state.drain = drain

    async def predict_many(items: list[PredictIn], prefixes: list[str]):
        if not items:
            return [], None
        try:
            queries = [_to_query(r, run, names, settings, p) for r, p in zip(items, prefixes)]
        except FieldError as err:
            return None, _field_error(err)
        preds = await batcher.submit(queries)
        for pred, prefix in zip(preds, prefixes):
            if pred.error:
                return None, _field_error(FieldError(f"{prefix}events", pred.error))
        lines = [result_line(p, run) for p in preds]
        if metrics is not None:
            metrics.observe_predictions(lines)
        return lines, None

    def responses(*codes: int) -> dict:
        return {**auth.get("responses", {}), **_errors(*codes)}

    deps = auth.get("dependencies", [])

    @app.post("/v1/predict", response_model=PredictOut, response_model_exclude_none=True, dependencies=deps,
              responses=responses(413, 422))
    async def predict(req: PredictIn):
        lines, error = await predict_many([req], [""])
        return error or lines[0]

    @app.post("/v1/predict/batch", response_model=BatchOut, response_model_exclude_none=True, dependencies=deps,
              responses=responses(413, 422))
    async def predict_batch(reqs: Annotated[list[PredictIn], Field(max_length=MAX_BATCH_ITEMS)]):
        lines, error = await predict_many(reqs, [f"[{i}]." for i in range(len(reqs))])
        return error or {"predictions": lines}

    @app.get("/v1/behaviors", response_model=BehaviorsOut, response_model_exclude_none=True, dependencies=deps,
             responses=responses())
    async def behaviors():
        return {"behaviors": [{k: b[k] for k in ("name", "label_id", "freq_group", "is_anchor") if k in b}
                              for b in sorted(run.stats["behaviors"], key=lambda b: b["label_id"])],
                "history_len": run.history_len, "instruction_template": settings.prediction.instruction_template,
                "model": run.model_name, "run": run.run_name}

    @app.get("/healthz", response_model=HealthOut, responses={503: {
        "model": HealthOut, "description": "draining: the server is shutting down, send it nothing new"}})
    async def healthz():
        body = {"status": "draining" if app.state.draining else "ok", "run": run.run_name, "model": run.model_name,
                "batching": batcher.stats.as_dict()}
        return JSONResponse(body, status_code=503) if app.state.draining else body

    if metrics is not None:
        add_metrics_route(app, metrics, deps, responses())

    return app
