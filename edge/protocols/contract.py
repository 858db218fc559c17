"""What `edge.protocols` relies on in uvicorn's classes, beyond its public interface, and the
check (`check_uvicorn`) that the installed uvicorn still has all of it, naming each change.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass, field

import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

# The versions these classes were tested against, as pyproject.toml requires them (a test
# keeps the two equal); tests/test_uvicorn_contract.py says how to test another.
UVICORN_REQUIREMENT = "uvicorn[standard]>=0.52.1,<0.55"
WEBSOCKETS_REQUIREMENT = "websockets>=17.0,<18"


# Every attribute uvicorn's WebSocket protocol sets on itself, as of the tested versions:
# `edge.protocols.websocket` keeps them in slots (a test keeps this list whole).
WEBSOCKET_PROTOCOL_ATTRIBUTES = (
    "app", "app_state", "asgi_version", "client", "close_sent", "close_timeout", "close_timer",
    "config", "conn", "connections", "curr_msg_data_type", "default_headers", "disconnected",
    "frames", "handshake_complete", "handshake_initiated", "initial_response", "last_ping_rtt",
    "logger", "loop", "pending_ping_payload", "ping_interval", "ping_sent_at", "ping_timeout",
    "ping_timer", "pong_timer", "queue", "read_paused", "request", "response", "root_path",
    "scheme", "scope", "server", "tasks", "transport", "writable",
)  # fmt: skip


@dataclass(frozen=True)
class Reliance:
    """What this module relies on in one of uvicorn's classes, beyond its public interface."""

    owner: type
    # Set by the class (`self.<name> = ...`, in __init__ or a handler), read or replaced here.
    attributes: tuple[str, ...] = ()
    # Overridden or called here: each one's parameter names, `self` first.
    methods: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A method of the class -> the methods (overridden here) it must go on calling.
    calls: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # An attribute replaced here -> every method the class may call on it (what the
    # replacement implements).
    uses: dict[str, frozenset[str]] = field(default_factory=dict)


UVICORN_RELIANCE = (
    Reliance(
        WebSocketsSansIOProtocol,
        attributes=(
            "queue", "writable", "conn", "loop", "transport", "scope", "request", "response",
            "handshake_initiated", "handshake_complete", "close_sent", "close_timer",
            "close_timeout", "disconnected", "read_paused", "frames", "curr_msg_data_type",
            "ping_interval", "ping_timer", "last_ping_rtt",
        ),
        methods={
            "__init__": ("self", "config", "server_state", "app_state", "_loop"),
            "connection_lost": ("self", "exc"),
            "data_received": ("self", "data"),
            "send_receive_event_to_app": ("self",),
            "handle_parser_exception": ("self",),
            "handle_connect": ("self", "event"),
            "keepalive_timeout": ("self",),
            "shutdown": ("self",),
            "on_task_complete": ("self", "task"),
            "send": ("self", "message"),
            "schedule_ping": ("self",),
            "send_keepalive_ping": ("self",),
        },
        calls={
            "data_received": ("handle_parser_exception", "handle_events"),
            "start_keepalive": ("schedule_ping",),
            "handle_pong": ("schedule_ping",),
            "handle_events": ("handle_connect",),
            "handle_connect": ("on_task_complete",),  # the ASGI task's done callback
            "handle_text": ("send_receive_event_to_app",),
            "handle_cont": ("send_receive_event_to_app",),
        },
        uses={
            "queue": frozenset({"put_nowait", "get", "empty"}),
            "writable": frozenset({"is_set", "set", "clear", "wait"}),
            "ping_timer": frozenset({"cancel"}),
        },
    ),
    Reliance(
        HttpToolsProtocol,
        attributes=("server_state", "loop", "logger", "transport", "scope", "cycle", "flow"),
        methods={
            "__init__": ("self", "config", "server_state", "app_state", "_loop"),
            "connection_made": ("self", "transport"),
            "connection_lost": ("self", "exc"),
            "data_received": ("self", "data"),
            "send_400_response": ("self", "msg"),
            "on_message_begin": ("self",),
            "on_url": ("self", "url"),
            "on_header": ("self", "name", "value"),
            "on_headers_complete": ("self",),
        },
        calls={"data_received": ("send_400_response",)},
    ),
    Reliance(
        RequestResponseCycle,
        attributes=(
            "scope", "response_started", "response_complete", "disconnected",
            "chunked_encoding", "keep_alive", "message_event",
        ),
    ),
    Reliance(FlowControl, attributes=("write_paused",), methods={"drain": ("self",)}),
    Reliance(ServerState, attributes=("default_headers",)),
)  # fmt: skip


class UvicornContractError(RuntimeError):
    """The installed uvicorn lacks or changed something `UVICORN_RELIANCE` names."""


def check_uvicorn(reliances: tuple[Reliance, ...] = UVICORN_RELIANCE) -> None:
    """Fail at start-up, naming each change, rather than serve with an override that uvicorn
    no longer calls or an attribute it no longer reads."""
    if breaks := [change for reliance in reliances for change in _changes(reliance)]:
        raise UvicornContractError(
            f"uvicorn {uvicorn.__version__} is not the uvicorn edge/protocols/ "
            f"was written for (tested: {UVICORN_REQUIREMENT}, {WEBSOCKETS_REQUIREMENT}): "
            + "; ".join(breaks)
        )


def _changes(reliance: Reliance) -> list[str]:
    """What `reliance` names that its owner no longer has, read from the owner's own code
    (its syntax tree: a comment or a string that mentions a name does not count, nor does a
    method only inherited from asyncio's base classes)."""
    owner = reliance.owner.__name__
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(reliance.owner)))
    except (OSError, TypeError, SyntaxError):
        return [f"the source of {owner} cannot be read, so it cannot be checked"]
    methods = {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assigned = {name for node in ast.walk(tree) for name in _assigned_on_self(node)}
    changes = [
        f"{owner} does not set self.{name}" for name in reliance.attributes if name not in assigned
    ]
    for name, expected in reliance.methods.items():
        if name not in vars(reliance.owner):
            changes.append(f"{owner}.{name} is missing")
        elif (found := tuple(inspect.signature(vars(reliance.owner)[name]).parameters)) != expected:
            changes.append(
                f"{owner}.{name} takes ({', '.join(found)}), not ({', '.join(expected)})"
            )
    for name, callees in reliance.calls.items():
        if name not in methods:
            changes.append(f"{owner}.{name} is missing")
            continue
        made = {attribute for attribute, _ in _calls_on_self(methods[name])}
        changes += [
            f"{owner}.{name} does not call self.{callee}()"
            for callee in callees
            if callee not in made
        ]
    for name, allowed in reliance.uses.items():
        called = {
            method
            for attribute, method in _calls_on_self(tree)
            if attribute == name and method is not None
        }
        changes += [
            f"{owner} calls self.{name}.{extra}(), which its replacement here lacks"
            for extra in sorted(called - allowed)
        ]
    return changes


def attributes_set_by(owner: type) -> set[str]:
    """The names `owner`'s own code sets on its instances (`self.<name> = ...`)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(owner)))
    return {name for node in ast.walk(tree) for name in _assigned_on_self(node)}


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _assigned_on_self(node: ast.AST) -> list[str]:
    """The names of `self.<name> = ...` (plain, annotated, augmented or unpacked) at `node`."""
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    else:
        return []
    names = []
    while targets:
        target = targets.pop()
        if isinstance(target, ast.Tuple | ast.List):
            targets.extend(target.elts)
        elif isinstance(target, ast.Attribute) and _is_self(target.value):
            names.append(target.attr)
    return names


def _calls_on_self(tree: ast.AST) -> list[tuple[str, str | None]]:
    """Every call `self.<a>(...)` and every `self.<a>` handed to a call (a callback, as in
    `task.add_done_callback(self.<a>)`), as (a, None), and `self.<a>.<m>(...)`, as (a, m)."""
    calls: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        calls += [
            (argument.attr, None)
            for argument in node.args
            if isinstance(argument, ast.Attribute) and _is_self(argument.value)
        ]
        if not isinstance(node.func, ast.Attribute):
            continue
        called = node.func
        if _is_self(called.value):
            calls.append((called.attr, None))
        elif isinstance(called.value, ast.Attribute) and _is_self(called.value.value):
            calls.append((called.value.attr, called.attr))
    return calls
