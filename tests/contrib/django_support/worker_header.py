"""A middleware of the process tests only: ``X-Worker`` says which process served the response."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class WorkerHeaderMiddleware:
    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        response["X-Worker"] = str(os.getpid())
        return response
