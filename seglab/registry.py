"""A tiny name -> factory registry, one per extension point (models, losses, datasets)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from seglab.errors import ConfigError


class UnknownNameError(ConfigError, KeyError):
    """An unknown registry name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class Registry:
    """Maps names to factories.

    >>> MODELS = Registry("model")
    >>> @MODELS.register()
    ... def tiny(num_classes): ...
    >>> MODELS.list()
    ['tiny']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: Dict[str, Callable[..., Any]] = {}

    def register(self, name: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a factory under ``name`` (default: its ``__name__``)."""

        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            key = name or factory.__name__
            if key in self._factories:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._factories[key] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._factories[name]
        except KeyError:
            valid = ", ".join(self.list())
            raise UnknownNameError(f"unknown {self.kind} '{name}'; valid {self.kind} names: {valid}") from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def list(self) -> List[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.list()})"
