"""``python -m keyward``: what an operator does to a deployment's tables, with AWS credentials
that may write them (the API's own role may not create organizations).

    python -m keyward org create ORG [--issuer URL]   create an organization, bound to an IdP
    python -m keyward org recount ORG | --all         set coverage counters from the members, and
                                                      start a compliance recount where none was kept
    python -m keyward org login-rate ORG N|default    sessions the organization may start a second
                                                      (0: no limit; default: KEYWARD_ORG_LOGIN_RATE)
    python -m keyward org audit-shards ORG N          spread the organization's audit events over N
                                                      shards, from the next full hour on
    python -m keyward webhooks seal-secrets           encrypt, with the webhook secret key, the signing
                                                      secrets of endpoints that still hold them in clear
    python -m keyward keys rotate [--algorithm RS256|ES256]
                                                      make a new signing key of the OpenID provider current;
                                                      the old one stays in the JWKS until its tokens expired
    python -m keyward keys list                       the provider's signing keys, current and retired
    python -m keyward migrate audit [--progress FILE] [--restart]
                                                      copy the audit events of the table from before
                                                      they were spread over shards (KEYWARD_LEGACY_AUDIT_TABLE)
    python -m keyward migrate sessions --from TABLE [--cursor C]
                                                      move the sessions of the table of before the
                                                      sharded layout into KEYWARD_SESSIONS_TABLE

The tables are the ones the KEYWARD_* variables name (as for the deployed functions, e.g.
KEYWARD_ORGS_TABLE), in AWS_REGION, or at DYNAMODB_ENDPOINT for a local DynamoDB. A rotation makes
its key in KMS (tagged for KEYWARD_SIGNING_KEYS_TABLE), or a PEM file where KEYWARD_PROVIDER_KEY_DIR
is set (the local stack's).
A command that fails says why in one line; KEYWARD_DEBUG=1 shows the traceback too.
"""

from __future__ import annotations

import argparse
import sys

from keyward import audit_migration
from keyward.exits import run
from keyward.migrate_sessions import add_migrate_sessions, migrate_sessions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keyward", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    org = commands.add_parser("org", help="organizations").add_subparsers(dest="action", required=True)

    create = org.add_parser("create", help="create an organization (needed with KEYWARD_ORG_CREATION=operator)")
    create.add_argument("org_id")
    create.add_argument(
        "--issuer",
        help="the IdP issuer whose ID tokens may sign in to it (default: "
        "the IdP configuration binds it to, else the issuer of its first login)",
    )

    recount = org.add_parser("recount", help="set coverage counters from the members (after an upgrade)")
    target = recount.add_mutually_exclusive_group(required=True)
    target.add_argument("org_id", nargs="?")
    target.add_argument("--all", action="store_true", help="every organization")

    rate = org.add_parser(
        "login-rate",
        help="sessions the organization may start a second: a number (0 for no limit), "
        "or 'default' for the deployment's KEYWARD_ORG_LOGIN_RATE",
    )
    rate.add_argument("org_id")
    # Read as text and checked here, so that a wrong value is one line, not argparse's usage.
    rate.add_argument("rate", metavar="N|default")

    shards = org.add_parser(
        "audit-shards",
        help="spread the organization's audit events over N shards (1 to 100), from the next full hour on "
        "(see docs/performance.md for N)",
    )
    shards.add_argument("org_id")
    shards.add_argument("shards", metavar="N")

    hooks = commands.add_parser("webhooks", help="webhook endpoints").add_subparsers(dest="action", required=True)
    hooks.add_parser(
        "seal-secrets",
        help="seal the secrets of endpoints from before secrets were sealed "
        "(needs kms:Encrypt on KEYWARD_WEBHOOK_SECRET_KEY)",
    )

    signing_keys = commands.add_parser("keys", help="the OpenID provider's signing keys").add_subparsers(
        dest="action", required=True
    )
    rotate = signing_keys.add_parser(
        "rotate", help="make a new key current; the old one stays published until the tokens it signed expired"
    )
    rotate.add_argument("--algorithm", choices=("RS256", "ES256"), default="RS256")
    signing_keys.add_parser("list", help="the signing keys, current and retired, and until when each is published")

    migrate = commands.add_parser("migrate", help="move data to a newer table layout").add_subparsers(
        dest="action", required=True
    )
    audit_migration.add_arguments(
        migrate.add_parser("audit", help="copy the audit events of the table from before they were spread over shards")
    )
    add_migrate_sessions(migrate)

    args = parser.parse_args(argv)
    if (args.command, args.action) == ("migrate", "audit"):
        return audit_migration.main(args)
    if (args.command, args.action) == ("migrate", "sessions"):
        return migrate_sessions(args)
    if args.command == "keys":
        return _signing_keys(args.action, algorithm=getattr(args, "algorithm", "RS256"))
    if args.command == "webhooks":
        from chalicelib.delivery import webhooks

        print(f"{webhooks.seal_clear_secrets()} webhook secret(s) sealed")
        return 0
    # Imported late: the models read the table names and endpoint from the environment.
    from chalicelib.access import tenancy
    from chalicelib.base.errors import OrganizationExists
    from chalicelib.base.models import Organization
    from chalicelib.counters import compliance, coverage

    if args.action == "login-rate":
        return _login_rate(args.org_id, args.rate)
    if args.action == "audit-shards":
        return _audit_shards(args.org_id, args.shards)
    if args.action == "create":
        if not tenancy.valid_org_id(args.org_id):
            print(f"not a usable organization ID: {args.org_id!r}", file=sys.stderr)
            return 2
        try:
            tenancy.create(org_id=args.org_id, issuer=args.issuer)
        except OrganizationExists as exists:
            print(exists, file=sys.stderr)
            return 1
        print(f"organization {args.org_id} created")
        return 0
    if not args.all:
        try:
            Organization.get(args.org_id, consistent_read=True)
        except Organization.DoesNotExist:
            print(
                f"no organization {args.org_id!r} in {Organization.Meta.table_name}: "
                f"`python -m keyward org create {args.org_id}` creates one",
                file=sys.stderr,
            )
            return 1
    for org_id in coverage.organizations() if args.all else [args.org_id]:
        counted = coverage.recount(org_id=org_id)
        print(
            f"{org_id}: {counted.members_total} members, {counted.members_with_key} with a security key, "
            f"{counted.admins_total} admins, {counted.admins_with_key} of them with a key"
        )
        if compliance.of(Organization.get(org_id, consistent_read=True)).state == compliance.UNCOUNTED:
            # A policy saved before compliance was counted: the stream function counts it now.
            compliance.restart(org_id=org_id)
            print(f"{org_id}: compliance recount started")
    return 0


def _login_rate(org_id: str, given: str) -> int:
    from chalicelib.access import login_rate, tenancy
    from chalicelib.base.config import settings
    from chalicelib.base.models import Organization

    if not tenancy.valid_org_id(org_id):
        print(f"not a usable organization ID: {org_id!r}", file=sys.stderr)
        return 2
    if given == "default":
        rate = None
    elif given.isascii() and given.isdigit():
        rate = int(given)
    else:
        print(
            f"not a login rate: {given!r}: give a whole number of logins a second (0: no limit) or 'default'",
            file=sys.stderr,
        )
        return 2
    try:
        login_rate.set_limit(org_id=org_id, rate=rate)
    except Organization.DoesNotExist:
        print(
            f"no organization {org_id!r} in {Organization.Meta.table_name}: "
            f"`python -m keyward org create {org_id}` creates one",
            file=sys.stderr,
        )
        return 1
    if rate is None:
        default = settings().org_login_rate
        print(f"{org_id}: the deployment's login rate, now {default or 'no limit'} a second (KEYWARD_ORG_LOGIN_RATE)")
    else:
        print(f"{org_id}: {rate} logins a second" if rate else f"{org_id}: no login rate limit")
    return 0


def _audit_shards(org_id: str, given: str) -> int:
    from datetime import timedelta

    from chalicelib.access import tenancy
    from chalicelib.base import audit_shards, clock
    from chalicelib.base.config import settings
    from chalicelib.base.models import Organization

    if not tenancy.valid_org_id(org_id):
        print(f"not a usable organization ID: {org_id!r}", file=sys.stderr)
        return 2
    if not (given.isascii() and given.isdigit()) or not 1 <= int(given) <= audit_shards.MAX_SHARDS:
        print(f"not a shard count: {given!r}: give a whole number from 1 to {audit_shards.MAX_SHARDS}", file=sys.stderr)
        return 2
    try:
        start = audit_shards.set_count(
            org_id=org_id,
            shards=int(given),
            now=clock.now(),
            retention=timedelta(days=settings().audit_retention_days),
        )
    except Organization.DoesNotExist:
        print(
            f"no organization {org_id!r} in {Organization.Meta.table_name}: "
            f"`python -m keyward org create {org_id}` creates one",
            file=sys.stderr,
        )
        return 1
    print(f"{org_id}: audit events spread over {int(given)} shard(s) from {clock.iso(start)}")
    return 0


def _signing_keys(action: str, *, algorithm: str) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from pynamodb.exceptions import PynamoDBException

    from chalicelib.base import clock
    from chalicelib.base.errors import ConfigurationError, Refusal
    from chalicelib.provider import signing

    try:
        if action == "rotate":
            rotation = signing.rotate(algorithm=algorithm)
            print(f"{algorithm}: {rotation.current.kid} is current ({rotation.current.private_key_ref})")
            for old in rotation.retired:
                print(f"{algorithm}: {old.kid} retired, published until {clock.iso(old.published_until)}")
            return 0
        now = clock.now()
        for key in signing.all_keys():
            if key.state == signing.CURRENT:
                shown = "current"
            elif key.published_until is not None and key.published_until > now:
                shown = f"retired, published until {clock.iso(key.published_until)}"
            else:
                shown = f"retired {clock.iso(key.retired_at)}, no longer published"
            print(f"{key.kid}  {key.algorithm}  {shown}  created {clock.iso(key.created_at)}  {key.private_key_ref}")
        return 0
    except (Refusal, ConfigurationError) as refused:
        print(refused, file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError, PynamoDBException) as error:
        print(f"{action} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run(main))
