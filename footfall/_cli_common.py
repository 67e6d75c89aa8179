"""What every `footfall` sub-command shares: the error console and the error decorator."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from ._errors import ConfigError, FootfallError

__all__ = ["err", "friendly"]

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True)


def friendly(func: F) -> F:
    """Turn footfall's errors into a one-line message and exit code (2: config, 1: other)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            err.print(f"[bold red]configuration error:[/] {exc}")
            raise typer.Exit(2) from None
        except FootfallError as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
