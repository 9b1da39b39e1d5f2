"""``artifactapi user | token | perm | key … | audit``: the auth tables from the command line,
straight against the configured database (what the management API does over HTTP).
A secret (a new password or token) is printed once, on stdout, and nowhere else."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Callable
from typing import Any

from app.auth.audit import MAX_PAGE, AuditRecords
from app.auth.manage import (
    all_permissions,
    checked_grant,
    create_principal,
    create_token,
    set_password,
)
from app.auth.permissions import ACTIONS
from app.auth.records import AuthRecords
from app.auth.service import Auth
from app.backends.metadata import Conflict, open_metadata
from app.config import Config, parse_seconds
from app.formats import available_formats, migrations

Command = Callable[[str], argparse.ArgumentParser]
COMMANDS = ("user", "token", "perm", "key", "audit")  # the ones :func:`run` does


def add_commands(command: Callable[..., argparse.ArgumentParser], commands: Any) -> None:
    user = command(commands, "user", "users and service accounts")
    users = user.add_subparsers(dest="action", metavar="ACTION")
    made = command(users, "create", "make a user (a random password is printed once)")
    made.add_argument("name")
    made.add_argument("--admin", action="store_true")
    made.add_argument("--service", action="store_true", help="a service account: tokens only")
    made.add_argument("--password-stdin", action="store_true", help="read the password")
    command(users, "list", "list users and service accounts")
    for verb in ("disable", "enable", "delete"):
        command(users, verb, f"{verb} a user").add_argument("name")
    password = command(users, "password", "set a user's password (read from stdin)")
    password.add_argument("name")

    token = command(commands, "token", "API tokens")
    tokens = token.add_subparsers(dest="action", metavar="ACTION")
    new = command(tokens, "create", "make a token (printed once)")
    new.add_argument("--user", required=True, help="its owner: a user or service account")
    new.add_argument(
        "--scope", action="append", default=[], metavar="REPO=ACTIONS",
        help=f"narrow it: a repository pattern and actions ({','.join(ACTIONS)}); repeatable",
    )  # fmt: skip
    new.add_argument("--expires-in", metavar="DURATION", help="e.g. 30d, 12h; default: never")
    new.add_argument("--description", default="")
    listed = command(tokens, "list", "list tokens (never their secrets)")
    listed.add_argument("--user")
    command(tokens, "revoke", "revoke a token").add_argument("id", type=int)

    perm = command(commands, "perm", "permissions granted in the database")
    perms = perm.add_subparsers(dest="action", metavar="ACTION")
    grant = command(perms, "grant", "let user:NAME or group:NAME do ACTIONS in REPO")
    grant.add_argument("subject")
    grant.add_argument("repository", help="a name, a glob or *")
    grant.add_argument("actions", help=f"comma-separated: {','.join(ACTIONS)}")
    revoke = command(perms, "revoke", "take a grant back")
    revoke.add_argument("subject")
    revoke.add_argument("repository")
    command(perms, "list", "list grants")

    key = command(commands, "key", "the keys that sign OCI bearer tokens")
    keys = key.add_subparsers(dest="action", metavar="ACTION")
    command(keys, "list", "list signing keys")
    command(keys, "rotate", "add a key that signs from now on (older ones still verify)")
    command(keys, "retire", "stop a key verifying anything").add_argument("kid")

    audit = command(commands, "audit", "the audit log, newest first, as JSON lines")
    audit.add_argument("--limit", type=int, default=100, help=f"entries, 1 to {MAX_PAGE}")
    audit.set_defaults(action=None)


async def run(config: Config, args: argparse.Namespace) -> int:
    metadata = await open_metadata(config.database.url, 1, 2)
    try:
        await metadata.migrate(migrations(available_formats().values()))
        records = AuthRecords(metadata.db)
        handler = _HANDLERS.get((args.command, args.action))
        if handler is None:
            print(f"artifactapi {args.command}: name an action (see --help)", file=sys.stderr)
            return 2
        return await handler(records, config, args)
    finally:
        await metadata.close()


async def _user_create(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    password = None
    if not args.service:
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        password = password or secrets.token_urlsafe(18)
    kind = "service" if args.service else "user"
    try:
        await create_principal(records, args.name, password, args.admin, kind)
    except (ValueError, Conflict) as exc:
        print(f"artifactapi: cannot create {args.name}: {exc}", file=sys.stderr)
        return 1
    if password and not args.password_stdin:
        print(f"created {kind} {args.name} with the password {password}")
    else:
        print(f"created {kind} {args.name}")
    return 0


async def _user_list(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    for row in await records.principals():
        flags = [f for f, on in (("admin", row.admin), ("disabled", row.disabled)) if on]
        print(f"{row.name}\t{row.kind}\t{','.join(flags)}")
    return 0


async def _user_flag(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    if args.action == "delete":
        found = await records.delete_principal(args.name)
    else:
        found = await records.update_principal(args.name, disabled=args.action == "disable")
    return _done(found, f"{args.action}d {args.name}", f"no user {args.name}")


async def _user_password(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("artifactapi: give the password on stdin", file=sys.stderr)
        return 1
    return _done(await set_password(records, args.name, password), "password set", "no such user")


async def _token_create(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    try:
        scopes = [_scope(s) for s in args.scope]
        expires = parse_seconds(args.expires_in) if args.expires_in else None
        secret, row = await create_token(records, args.user, scopes, args.description, expires)
    except (ValueError, LookupError) as exc:
        print(f"artifactapi: cannot create the token: {exc}", file=sys.stderr)
        return 1
    print(secret)
    print(f"token {row.id} ({row.prefix}…) for {args.user}: shown once, keep it", file=sys.stderr)
    return 0


async def _token_list(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    for row in await records.tokens(args.user):
        print(json.dumps(row.public()))
    return 0


async def _token_revoke(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    return _done(await records.revoke_token(args.id), "revoked", f"no live token {args.id}")


async def _perm_grant(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    try:
        actions = checked_grant(args.subject, args.repository, args.actions.split(","))
    except ValueError as exc:
        print(f"artifactapi: perm grant user:NAME|group:NAME REPO read,…: {exc}", file=sys.stderr)
        return 1
    await records.grant(args.subject, args.repository, actions)
    print(f"granted {','.join(actions)} in {args.repository} to {args.subject}")
    return 0


async def _perm_revoke(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    found = await records.revoke(args.subject, args.repository)
    return _done(found, "revoked", "no such grant")


async def _perm_list(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    listed = await all_permissions(records, config.auth)
    for row in listed["granted"]:
        print(f"{row['subject']}\t{row['repository']}\t{','.join(row['actions'])}")
    for declared in listed["configured"]:  # the configuration's, for the whole picture
        subjects = [f"user:{u}" for u in declared["users"]]
        subjects += [f"group:{g}" for g in declared["groups"]]
        where, actions = declared["repository"], ",".join(declared["actions"])
        print(f"{','.join(subjects)}\t{where}\t{actions}\t(config)")
    return 0


async def _key_list(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    for key in await records.signing_keys():
        state = "retired" if key.retired_at is not None else "verifies"
        print(f"{key.kid}\t{key.algorithm}\t{state}\t{key.created_at:.0f}")
    return 0


async def _key_rotate(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    key = await Auth(records, config.auth).keys.rotate()
    print(f"{key.kid} signs from now on; older keys verify until retired")
    return 0


async def _key_retire(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    return _done(await records.retire_signing_key(args.kid), "retired", f"no live key {args.kid}")


async def _audit(records: AuthRecords, config: Config, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= MAX_PAGE:
        print(f"artifactapi: --limit from 1 to {MAX_PAGE}", file=sys.stderr)
        return 2
    for entry in await AuditRecords(records.db).entries(limit=args.limit):
        print(json.dumps(entry))
    return 0


def _scope(text: str) -> dict[str, Any]:
    repository, equals, actions = text.partition("=")
    if not equals:
        raise ValueError(f"--scope {text!r}: REPO=ACTIONS, e.g. team-*=read,write")
    return {"repository": repository, "actions": [a for a in actions.split(",") if a]}


def _done(found: bool, said: str, missing: str) -> int:
    print(said if found else f"artifactapi: {missing}", file=sys.stdout if found else sys.stderr)
    return 0 if found else 1


_HANDLERS = {
    ("user", "create"): _user_create,
    ("user", "list"): _user_list,
    ("user", "disable"): _user_flag,
    ("user", "enable"): _user_flag,
    ("user", "delete"): _user_flag,
    ("user", "password"): _user_password,
    ("token", "create"): _token_create,
    ("token", "list"): _token_list,
    ("token", "revoke"): _token_revoke,
    ("perm", "grant"): _perm_grant,
    ("perm", "revoke"): _perm_revoke,
    ("perm", "list"): _perm_list,
    ("key", "list"): _key_list,
    ("key", "rotate"): _key_rotate,
    ("key", "retire"): _key_retire,
    ("audit", None): _audit,
}
