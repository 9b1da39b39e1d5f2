"""structlog set-up: JSON lines in production, readable lines in development."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

import structlog

from app.config import LoggingConfig

# The id of the request being answered, set by the observe middleware: one ContextVar
# of our own, because structlog's bind/unbind_contextvars cost a few microseconds a
# request, which a cache hit notices.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def add_request_id(
    logger: object, method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def configure_logging(config: LoggingConfig) -> None:
    level = getattr(logging, config.level.upper())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if config.format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_request_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, asyncpg, botocore) log through the stdlib; keep their warnings.
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)
