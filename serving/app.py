"""The HTTP service (FastAPI): POST /v1/predict, POST /v1/predict/batch, GET /v1/behaviors, GET /healthz,
OpenAPI at /docs.

Errors are JSON ``{"error": "<one line>", "field": ...}``: 422 for an invalid request (the field is named,
e.g. ``events[2].timestamp``; an unknown behavior also lists the ``closest`` known names), 413 for a body
over the limit, 401 when API_KEY is set and the request lacks ``Authorization: Bearer <key>``.
"""
from __future__ import annotations

import hmac
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictStr, field_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.batcher import MicroBatcher
from serving.predictor import result_line
from serving.prompting import DEFAULT_MODE, MODES
from serving.queries import (
    BehaviorNames,
    FieldError,
    events_from_raw,
    make_query,
    parse_time_values,
)

Mode = Literal[MODES]


def _timestamp(value):
    # checked before pydantic's own union check, whose errors would name the union member, not the field
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PydanticCustomError("timestamp_type", "timestamp must be an ISO-8601 string or epoch seconds")
    return value


class NextIn(BaseModel):
    timestamp: str | float = Field(description="when the behavior to predict happens: gives weekday and hour; "
                                               "ISO-8601 (local wall time, or with an offset / Z) or epoch seconds")
    place: StrictStr

    _check_timestamp = field_validator("timestamp", mode="before")(_timestamp)


class EventIn(NextIn):
    behavior: StrictStr = Field(description="a behavior of GET /v1/behaviors (or a raw label of the label map)")


class PredictIn(BaseModel):
    user_id: StrictStr | None = None
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
    warning: str | None = None


class BatchOut(BaseModel):
    predictions: list[PredictOut]


@dataclass
class Settings:
    top_k: int = 5
    mode: str = DEFAULT_MODE
    max_batch: int = 32          # prompts per scorer call ("mean" requests count 3)
    max_wait_ms: float = 5.0
    max_body_bytes: int = 1 << 20
    api_key: str | None = None
    tz: str | None = None
    label_map: dict | None = None


def field_name(loc) -> str:
    """('body', 'events', 0, 'timestamp') -> 'events[0].timestamp'; batch items -> '[3].events[0]...'."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = field_name(first["loc"])
    return JSONResponse(status_code=422, content={"error": f"{field}: {first['msg']}", "field": field,
                                                  "detail": [{"field": field_name(e["loc"]), "msg": e["msg"]}
                                                             for e in errors]})


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers)


class BodyLimit:
    """413 for a body over `max_bytes`: by Content-Length up front, else while it streams in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse(status_code=413, content={"error": self._message()})
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:   # FastAPI passes HTTPExceptions from body reading through
                raise HTTPException(status_code=413, detail=self._message())
            return message

        return await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body over the limit of {self.max_bytes} bytes: send fewer or smaller requests"


def _to_query(req: PredictIn, run, names: BehaviorNames, settings: Settings, prefix: str = ""):
    events = events_from_raw([e.model_dump() for e in req.events], names, settings.tz, f"{prefix}events")
    (next_time,) = parse_time_values([req.next.timestamp], [f"{prefix}next.timestamp"], settings.tz)
    top_k = min(req.top_k or settings.top_k, len(run.behaviors))
    return make_query(req.user_id, events, next_time, req.next.place, run.history_len, top_k,
                      req.instruction_template or settings.mode, seed=run.seed, fields=[f"{prefix}events[{i}]"
                                                                         for i in range(len(events))])


def _field_error(err: FieldError) -> JSONResponse:
    content = {"error": str(err), "field": err.field}
    if err.closest is not None:
        content["closest"] = err.closest
    return JSONResponse(status_code=422, content=content)


def create_app(predictor, settings: Settings | None = None) -> FastAPI:
    """The service around a loaded Predictor (the model is loaded once, before the app is built)."""
    settings = settings or Settings()
    run = predictor.run
    names = BehaviorNames(run.behaviors, settings.label_map)
    batcher = MicroBatcher(predictor.predict, lambda q: len(q.template_ids), settings.max_batch,
                           settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop()   # after uvicorn has finished the in-flight requests

    def authorized(authorization: str | None = Header(default=None)) -> None:
        if settings.api_key and not hmac.compare_digest((authorization or "").encode(),
                                                        f"Bearer {settings.api_key}".encode()):
            raise HTTPException(status_code=401, detail="missing or wrong Authorization: Bearer <API_KEY>",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="BehaviorLM next-behavior service", lifespan=lifespan,
                  description=f"run {run.run_name}, model {run.model_name}: p(next behavior | recent events)")
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.batcher, app.state.settings = batcher, settings

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
        return [result_line(p, run) for p in preds], None

    @app.post("/v1/predict", response_model=PredictOut, response_model_exclude_none=True,
              dependencies=[Depends(authorized)])
    async def predict(req: PredictIn):
        lines, error = await predict_many([req], [""])
        return error or lines[0]

    @app.post("/v1/predict/batch", response_model=BatchOut, response_model_exclude_none=True,
              dependencies=[Depends(authorized)])
    async def predict_batch(reqs: list[PredictIn]):
        lines, error = await predict_many(reqs, [f"[{i}]." for i in range(len(reqs))])
        return error or {"predictions": lines}

    @app.get("/v1/behaviors", dependencies=[Depends(authorized)])
    async def behaviors():
        return {"behaviors": [{k: b[k] for k in ("name", "label_id", "freq_group", "is_anchor") if k in b}
                              for b in sorted(run.stats["behaviors"], key=lambda b: b["label_id"])],
                "history_len": run.history_len, "instruction_template": settings.mode,
                "model": run.model_name, "run": run.run_name}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "run": run.run_name, "model": run.model_name, "batching": batcher.stats.as_dict()}

    return app
