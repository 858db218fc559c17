"""The `insight` command: development tokens, hand-made events, the schema of the declared
events, and running the system."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from core.config import get_settings


def _token(args: argparse.Namespace) -> int:
    from core.security import issue_token

    print(
        issue_token(
            get_settings(),
            args.user,
            business_id=args.business,
            name=args.name,
            ttl_seconds=args.ttl,
        )
    )
    return 0


def _publish(args: argparse.Namespace) -> int:
    import redis
    from pydantic import ValidationError

    from realtime import UIManager
    from realtime.registry import EventDeclarationError, event_registry

    if args.user is not None:
        ui = UIManager.for_user(args.user)
    elif args.business is not None:
        ui = UIManager.for_business(args.business)
    else:
        ui = UIManager.broadcast()
    try:
        match args.event:
            case "toast":
                event_id = ui.show_toast(args.title, args.description, args.variant)
            case "redirect":
                event_id = ui.redirect(args.target)
            case "refresh":
                event_id = ui.refresh()
            case "update":
                event_id = ui.update_ui(
                    json.loads(args.data), coalesce_key=args.coalesce_key, version=args.version
                )
            case "modal":
                event_id = ui.show_modal(args.modal_type, json.loads(args.payload))
            case "event":
                event_id = ui.publish(event_registry().parse(json.loads(args.json)))
            case _:
                raise AssertionError(args.event)
    except (ValidationError, ValueError, EventDeclarationError) as error:
        print(f"invalid event: {error}", file=sys.stderr)
        return 2
    except redis.RedisError as error:
        print(f"could not publish: {error}", file=sys.stderr)
        return 1
    print(event_id)
    return 0


def _run(args: argparse.Namespace) -> int:
    from cli.supervisor import Ports, run

    return run(get_settings(), Ports(api=args.api_port, edge=args.edge_port))


def _edge(args: argparse.Namespace) -> int:
    from edge.serving import serve

    serve(get_settings(), args.host, args.port)
    return 0


def _stripe_server(args: argparse.Namespace) -> int:
    """The local Stripe-compatible server in the foreground."""
    import os

    import uvicorn

    if args.webhook_url:
        os.environ["STRIPE_LOCAL_WEBHOOK_URL"] = args.webhook_url
    uvicorn.run("stripe_local.main:app", host=args.host, port=args.port)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from core.migrate import migrate

    migrate(args.database_url or get_settings().database_url)
    return 0


def _redis(args: argparse.Namespace) -> int:
    """Run a local Redis in the foreground (what `make run` does when none answers)."""
    from pathlib import Path

    from cli.local_redis import LocalRedis

    server = LocalRedis(args.port, Path(args.dir), persistent=True).start()
    print(f"redis on {server.url}; Ctrl-C stops it")
    try:
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


def _schema(args: argparse.Namespace) -> int:
    """The TypeScript declarations and the AsyncAPI document of the declared events."""
    from pathlib import Path

    from realtime import asyncapi, typescript
    from realtime.registry import EventDeclarationError, event_registry, load_registry

    try:
        modules = None if args.modules is None else args.modules.split(",")
        registry = event_registry() if modules is None else load_registry(modules)
    except EventDeclarationError as error:
        print(f"insight schema: {error}", file=sys.stderr)
        return 2
    typescript_path = args.typescript or (None if args.asyncapi else "insight.d.ts")
    asyncapi_path = args.asyncapi or (None if args.typescript else "asyncapi.json")
    if typescript_path is not None:
        Path(typescript_path).write_text(typescript.render(registry))
        print(f"wrote {typescript_path}")
    if asyncapi_path is not None:
        Path(asyncapi_path).write_text(json.dumps(asyncapi.render(registry), indent=2) + "\n")
        print(f"wrote {asyncapi_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insight", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    token = commands.add_parser("token", help="print a development JWT")
    token.add_argument("--user", required=True, help="user id (the sub claim)")
    token.add_argument("--business", help="business_id claim")
    token.add_argument("--name", help="name claim")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.set_defaults(handler=_token)

    publish = commands.add_parser("publish", help="push a UI event by hand")
    address = publish.add_mutually_exclusive_group(required=True)
    address.add_argument("--user", help="to every connection of this user")
    address.add_argument("--business", help="to every member of this business")
    address.add_argument("--all", action="store_true", help="to everyone")
    events = publish.add_subparsers(dest="event", required=True)
    toast = events.add_parser("toast")
    toast.add_argument("title")
    toast.add_argument("description")
    toast.add_argument("--variant", default="info", help="success, error, warning or info")
    events.add_parser("redirect").add_argument("target")
    events.add_parser("refresh")
    update = events.add_parser("update")
    update.add_argument("data", help="JSON")
    update.add_argument("--coalesce-key")
    update.add_argument(
        "--version", type=int, help="with --coalesce-key: dropped if a higher one was published"
    )
    modal = events.add_parser("modal")
    modal.add_argument("modal_type")
    modal.add_argument("payload", nargs="?", default="{}", help="JSON")
    events.add_parser("event", help="any declared event, as its JSON").add_argument(
        "json", help='e.g. {"type":"cart_updated","cartId":"c1","items":3}'
    )
    publish.set_defaults(handler=_publish)

    schema = commands.add_parser(
        "schema",
        help="write the TypeScript declarations and the AsyncAPI document of the declared events",
    )
    schema.add_argument("--typescript", help="where to write insight.d.ts")
    schema.add_argument("--asyncapi", help="where to write the AsyncAPI document (JSON)")
    schema.add_argument(
        "--modules", help="the event modules, comma-separated (default: INSIGHT_EVENT_MODULES)"
    )
    schema.set_defaults(handler=_schema)

    run = commands.add_parser("run", help="run the whole system in the foreground")
    run.add_argument("--api-port", type=int, default=8000)
    run.add_argument("--edge-port", type=int, default=8001)
    run.set_defaults(handler=_run)

    edge = commands.add_parser("edge", help="run one realtime edge process (WebSockets)")
    edge.add_argument("--host", default="127.0.0.1")
    edge.add_argument("--port", type=int, default=8001)
    edge.set_defaults(handler=_edge)

    stripe_server = commands.add_parser(
        "stripe-server", help="run the local Stripe-compatible server (development, tests)"
    )
    stripe_server.add_argument("--host", default="127.0.0.1")
    stripe_server.add_argument("--port", type=int, default=12111)
    stripe_server.add_argument(
        "--webhook-url", help="where to post signed events (default: STRIPE_LOCAL_WEBHOOK_URL)"
    )
    stripe_server.set_defaults(handler=_stripe_server)

    migrate = commands.add_parser("migrate", help="apply database migrations (Alembic)")
    migrate.add_argument("--database-url", help="default: DATABASE_URL")
    migrate.set_defaults(handler=_migrate)

    redis_server = commands.add_parser("redis", help="run a local Redis in the foreground")
    redis_server.add_argument("--port", type=int, default=6379)
    redis_server.add_argument("--dir", default="var/redis")
    redis_server.set_defaults(handler=_redis)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
