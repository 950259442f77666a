"""Log lines of `serve`: uvicorn's and the access log's (logger ``serving.access``, one line per request with its
request id), as text or as one JSON object per line (``--log-format json``), on stderr."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

LOG_FORMATS = ("text", "json")
ACCESS = "serving.access"
FIELDS = ("request_id", "client", "method", "path", "status", "duration_ms")   # an access line's own keys


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", and an access line's FIELDS (and "exception")}; one line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        out.update({key: getattr(record, key) for key in FIELDS if hasattr(record, key)})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def log_config(level: str, fmt: str) -> dict:
    """uvicorn's log_config: uvicorn's loggers and the access log at `level`, in format `fmt` (one of LOG_FORMATS,
    as ServeConfig checked)."""
    formatter = ({"()": JsonFormatter} if fmt == "json" else
                 {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s", "use_colors": False})
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["default"], "level": level.upper(), "propagate": False}
               for name in ("uvicorn", "uvicorn.error", ACCESS)}
    return {"version": 1, "disable_existing_loggers": False, "formatters": {"default": formatter},
            "handlers": {"default": handler}, "loggers": loggers}
