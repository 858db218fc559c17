"""Which events this process knows: the five, and the application's own, declared in the
modules that INSIGHT_EVENT_MODULES names.

Every process reads the same modules (producers, the HTTP publish API, the edge), once, so
they agree on what may be published and what the page may receive. A module is refused when
it loads, with a message naming it and the type at fault: one that does not import, a type
that shadows one of the five or another declaration, a name the edge reserves (`insight_...`)
or one the wire cannot carry. Refusing at load, not at the first publish, turns a typo in a
deployment into a process that does not start rather than events that vanish.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import ModuleType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, Field, TypeAdapter, ValidationError

from realtime import payloads
from realtime.events import (
    CONTROL_FRAMES,
    DECLARED_TYPE,
    RESERVED_PREFIX,
    SEED_EVENTS,
    AppEvent,
    Event,
    Update,
    UpdatePayload,
)
from realtime.settings import events_settings

INSIGHT_PAYLOADS = payloads.__name__  # Insight's own ui_update payloads: always declared


class EventDeclarationError(Exception):
    """A module of INSIGHT_EVENT_MODULES cannot be used; the message names it and why."""


class UndeclaredEvent(ValueError):
    """An event whose type this process does not know (its module is not declared)."""


def declared_type(model: type[Event] | type[UpdatePayload]) -> str | None:
    """The name a model declares (`type: Literal["cart_updated"]`), or None if it names none."""
    annotation = model.model_fields["type"].annotation
    if get_origin(annotation) is not Literal or len(get_args(annotation)) != 1:
        return None
    name = get_args(annotation)[0]
    return name if isinstance(name, str) else None


class EventRegistry:
    """The events and typed `ui_update` payloads one process knows, and their one validator."""

    def __init__(
        self,
        app_events: Mapping[str, type[AppEvent]],
        update_payloads: Mapping[str, type[UpdatePayload]],
    ) -> None:
        seeds = {declared_type(model) or "": model for model in SEED_EVENTS}
        self.events: dict[str, type[Event]] = {**seeds, **app_events}
        self.app_events = dict(app_events)
        self.payloads = dict(update_payloads)
        self._payload_adapters = {name: TypeAdapter(m) for name, m in self.payloads.items()}
        self.event_type = _tagged([self._member(model) for model in self.events.values()])
        self._adapter: TypeAdapter[Event] = TypeAdapter(self.event_type)

    def _member(self, model: type[Event]) -> Any:
        """A member of the union: `ui_update` checks its data against the declared payloads."""
        return Annotated[model, AfterValidator(self._check_update)] if model is Update else model

    def parse(self, value: object) -> Event:
        """Validate a dict (an event without `id` and context keys) into a declared event."""
        return self._adapter.validate_python(value)

    def check(self, event: Event) -> Event:
        """Refuse an event this process did not declare, or a `ui_update` whose data names a
        declared payload and does not match it; the event itself when it is fine."""
        if self.events.get(event.type) is not type(event):
            raise UndeclaredEvent(
                f"event type {event.type!r} ({type(event).__qualname__}) is not declared: name "
                f"its module in INSIGHT_EVENT_MODULES (declared: {sorted(self.events)})"
            )
        return self._check_update(event) if isinstance(event, Update) else event

    def _check_update(self, event: Update) -> Update:
        data = event.data
        name = data.get("type") if isinstance(data, dict) else None
        adapter = self._payload_adapters.get(name) if isinstance(name, str) else None
        if adapter is not None:
            try:
                adapter.validate_python(data, strict=True)  # sent as given: no coercion
            except ValidationError as error:  # located under `data`, as the caller wrote it
                errors: list[Any] = [
                    {**e, "loc": ("data", *e["loc"])} for e in error.errors(include_url=False)
                ]
                raise ValidationError.from_exception_data(error.title, errors) from None
        return event

    def frame_models(self) -> list[type[Event]]:
        """Every frame the edge may send: the events, then the control frames."""
        return [*self.events.values(), *CONTROL_FRAMES]

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of an event (the union of the declared), for clients and generators."""
        schema = self._adapter.json_schema(mode="serialization")
        schema["title"] = "InsightUIEvent"
        return schema

    def frame_json_schema(self) -> dict[str, Any]:
        """JSON Schema of every frame the edge sends: the declared events, the control frames."""
        frames: TypeAdapter[Event] = TypeAdapter(_tagged(self.frame_models()))
        schema = frames.json_schema(mode="serialization")
        schema["title"] = "InsightFrame"
        return schema


def _tagged(members: list[Any]) -> Any:
    """The union of `members`, told apart by their `type`."""
    return Annotated[Union.__getitem__(tuple(members)), Field(discriminator="type")]


def load_registry(modules: Iterable[str]) -> EventRegistry:
    """The registry of these modules (import paths) beside Insight's own payloads; raises
    EventDeclarationError naming the first module or type that cannot be used."""
    names = tuple(dict.fromkeys(m.strip() for m in modules if m.strip()))
    events: dict[str, type[AppEvent]] = {}
    update_payloads: dict[str, type[UpdatePayload]] = {}
    seeds = {declared_type(model) for model in SEED_EVENTS}
    for module_name in (INSIGHT_PAYLOADS, *names):
        module = _import(module_name)
        declared = _declared_in(module, AppEvent) + _declared_in(module, UpdatePayload)
        if not declared:
            raise EventDeclarationError(
                f"INSIGHT_EVENT_MODULES names {module_name!r}, which defines no AppEvent or "
                "UpdatePayload (a class counts in the module that defines it, not in one that "
                "imports it: name that module)"
            )
        for model in _declared_in(module, AppEvent):
            name = _checked_name(model, module_name, events)
            if name in seeds:
                raise EventDeclarationError(
                    f"{module_name}: {model.__qualname__} declares {name!r}, one of Insight's "
                    "five events: give it a name of its own"
                )
            events[name] = model
        for payload in _declared_in(module, UpdatePayload):
            update_payloads[_checked_name(payload, module_name, update_payloads)] = payload
    return EventRegistry(events, update_payloads)


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as error:  # whatever it raised, the process must say which module
        raise EventDeclarationError(
            f"INSIGHT_EVENT_MODULES names {module_name!r}, which does not import: {error!r}"
        ) from error


def _declared_in(module: ModuleType, base: type[BaseModel]) -> list[type[Any]]:
    """The subclasses of `base` that `module` defines (not those it imports), but for the
    bases of its own models: a class whose `type` is still the base's plain `str` declares
    no type of its own (its subclasses do)."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, base)
        and value is not base
        and value.__module__ == module.__name__
        and value.model_fields["type"].annotation is not str
    ]


def _checked_name(
    model: type[Event] | type[UpdatePayload], module_name: str, taken: Mapping[str, type[Any]]
) -> str:
    """The model's declared name, refused (naming the module and the model) when unusable."""
    where = f"{module_name}: {model.__qualname__}"
    name = declared_type(model)
    if name is None:
        raise EventDeclarationError(f'{where} must declare `type: Literal["<its name>"]`, one name')
    if not DECLARED_TYPE.fullmatch(name):
        raise EventDeclarationError(f"{where} declares {name!r}: a type is [a-z][a-z0-9_]{{0,63}}")
    if name.startswith(RESERVED_PREFIX):
        raise EventDeclarationError(
            f"{where} declares {name!r}: the {RESERVED_PREFIX}* types are Insight's own frames"
        )
    if name in taken:
        other = taken[name]
        raise EventDeclarationError(
            f"{where} declares {name!r}, already declared by "
            f"{other.__module__}.{other.__qualname__}"
        )
    return name


@lru_cache(maxsize=1)
def event_registry() -> EventRegistry:
    """The process's registry, from INSIGHT_EVENT_MODULES, loaded on first use."""
    return load_registry(events_settings().event_modules)
