"""`facever keys` and `facever audit`: the keys and the audit trail from the command line, on the
store FACEVER_STORAGE_URL names (or --storage), with the service running or not.

    facever keys create --name door --scopes read,enrol --galleries 'acme-*' [--expires 2027-01-01T00:00:00Z]
    facever keys list
    facever keys revoke KEY_ID
    facever audit verify
    facever audit export > audit.jsonl
    facever templates status
    facever templates rotate [--to KEY_ID]   # seal every template with a key (the first given by default)
    facever retention sweep [--dry-run] [--at 2027-01-01T00:00:00Z]

What the command line does is audited as key `cli`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import uuid

from app.logging import request_id_var
from app.schemas.keys import CreateKey, KeyResponse
from app.security import Principal, SCOPES
from app.services.keys import create_key, revoke_key
from app.settings import Settings
from app.storage import open_storage, redacted
from app.storage.audit import verify_chain
from app.storage.base import AuditQuery, Storage, StorageError

CLI = Principal("cli", frozenset(SCOPES), None)


def _storage(url: str | None) -> Storage:
    settings = Settings()
    storage = open_storage(url or settings.storage_url, settings.template_cipher())
    storage.migrate()
    return storage


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", help="the store's URL (default: FACEVER_STORAGE_URL, else the service's default)")
    return parser


def keys_main(argv: list[str]) -> None:
    parser = _parser("facever keys")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="a new key; its secret is printed this once")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help=f"comma-separated: {', '.join(SCOPES)}")
    create.add_argument("--galleries", help="comma-separated gallery ids and prefixes ending in '*'; default: all")
    create.add_argument("--expires", help="ISO 8601 time with a zone, e.g. 2027-01-01T00:00:00Z")
    create.add_argument("--rate", type=float, help="requests a second (default: the service's)")
    create.add_argument("--burst", type=int, help="requests at once (default: the service's)")
    commands.add_parser("list", help="every key, never a secret")
    revoke = commands.add_parser("revoke", help="revoke a key at once, on every replica within 0.5 s")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)
    request_id_var.set(f"cli-{uuid.uuid4().hex}")
    try:
        storage = _storage(args.storage)
        if args.command == "create":
            body = CreateKey(name=args.name, scopes=args.scopes.split(","),
                             galleries=args.galleries.split(",") if args.galleries else None,
                             expires_at=dt.datetime.fromisoformat(args.expires) if args.expires else None,
                             rate_per_s=args.rate, burst=args.burst)
            created = create_key(storage, body.name, body.scopes, body.galleries,
                                 body.expires_at.timestamp() if body.expires_at else None, body.rate_per_s,
                                 body.burst, CLI)
            print(json.dumps({**KeyResponse.of(created.record).model_dump(), "key": created.secret}, indent=2))
        elif args.command == "list":
            after = None
            while True:
                page = storage.list_keys(after, 1000)
                for key in page.items:
                    print(json.dumps(KeyResponse.of(key).model_dump()))
                if page.next_after is None:
                    break
                after = page.next_after
        else:
            print(json.dumps(KeyResponse.of(revoke_key(storage, args.key_id, CLI)).model_dump(), indent=2))
    except (StorageError, ValueError) as error:
        raise SystemExit(f"facever keys: {getattr(error, 'message', error)}") from None


def templates_main(argv: list[str]) -> None:
    parser = _parser("facever templates")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="templates by the key they are sealed with")
    rotate = commands.add_parser("rotate", help="seal every template with one key, in batches, while the service "
                                 "runs: those in the clear (encrypting a database in place) and those of other keys; "
                                 "rerun after a kill to finish")
    rotate.add_argument("--to", dest="key_id", help="the key's id (default: the first of FACEVER_TEMPLATE_KEYS)")
    rotate.add_argument("--batch", type=int, default=500, help="templates per transaction")
    args = parser.parse_args(argv)
    try:
        storage = _storage(args.storage)
        if args.command == "rotate":
            key_id = args.key_id or (storage.cipher.current if storage.cipher else None)
            if key_id is None:
                raise SystemExit("facever templates: no template keys given (FACEVER_TEMPLATE_KEYS)")
            done = 0
            while resealed := storage.reseal(key_id, args.batch):
                done += resealed
                print(f"sealed {done} templates with {key_id!r}", file=sys.stderr)
        print(json.dumps({"sealed_with": {key or "(clear)": count for key, count in storage.sealed_counts().items()}}))
    except StorageError as error:
        hint = ("; delete that template (DELETE /galleries/{g}/subjects/{s}/faces/{t}) or restore it, then run this "
                "again" if error.code == "template_corrupted" else "")
        raise SystemExit(f"facever templates: {error.message}{hint}") from None


def retention_main(argv: list[str]) -> None:
    parser = _parser("facever retention")
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="delete the subjects past their gallery's retention (the service does "
                                "this every minute), each with its audit entry")
    sweep.add_argument("--dry-run", action="store_true", help="list them; delete nothing")
    sweep.add_argument("--at", help="as at this time (ISO 8601 with a zone; default: now)")
    args = parser.parse_args(argv)
    at = dt.datetime.fromisoformat(args.at).timestamp() if args.at else time.time()
    try:
        storage = _storage(args.storage)
        while expired := storage.sweep_expired(at, args.dry_run, limit=1000 if not args.dry_run else 1_000_000):
            for item in expired:
                print(json.dumps({"gallery": item.gallery_id, "subject": item.subject_id, "expires_at": item.expires_at,
                                  "deleted": not args.dry_run}))
            if args.dry_run:
                break
    except StorageError as error:
        raise SystemExit(f"facever retention: {error.message}") from None


def audit_main(argv: list[str]) -> None:
    parser = _parser("facever audit")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="walk the hash chain; name the first broken entry (exit 1)")
    commands.add_parser("export", help="every entry as a JSON line, as stored")
    args = parser.parse_args(argv)
    try:
        storage = _storage(args.storage)
        if args.command == "export":
            after = 0
            while entries := storage.audit_entries(AuditQuery(after=after), 1000):
                sys.stdout.write("".join(json.dumps(entry.to_json()) + "\n" for entry in entries))
                after = entries[-1].seq
            return
        anchor, head, entries = storage.audit_chain()
        report = verify_chain(entries, anchor, head)
    except StorageError as error:
        raise SystemExit(f"facever audit: {error.message}") from None
    where = redacted(args.storage or Settings().storage_url)
    if report.intact:
        print(f"audit trail intact: {report.checked} entries ({where})")
        return
    print(f"audit trail broken at entry {report.broken_at}: {report.reason} ({report.checked} entries before it "
          f"are intact; {where})")
    raise SystemExit(1)
