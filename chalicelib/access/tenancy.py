"""Organizations and the IdPs they are bound to, and who may create an organization.

The rule: an organization signs in through exactly one IdP. Configuration may bind it (an IdP's
``organizations`` in KEYWARD_IDENTITY_PROVIDERS); otherwise it is bound to the issuer recorded on
the organization when it was created (or, for an organization older than this record, at its
next login). An ID token from any other issuer naming it is refused, however validly signed:
one customer's IdP cannot sign users in to another customer's organization.

With KEYWARD_ORG_CREATION=operator an unknown organization is refused until an operator creates
it (``python -m keyward org create``); with on_first_login the first ID token naming it does.
"""

from __future__ import annotations

import re

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.base import clock
from chalicelib.base.config import IdentityProvider, settings
from chalicelib.base.errors import (
    OrganizationExists,
    UnknownOrganization,
    WrongIdentityProvider,
)
from chalicelib.base.models import Organization
from chalicelib.base.storage import condition_failed

_ORG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def valid_org_id(org_id: str) -> bool:
    """The shape an organization ID must have, in an ID token or an operator's command."""
    return bool(_ORG_ID.fullmatch(org_id))


def provider_for_issuer(issuer: object) -> IdentityProvider | None:
    """The configured IdP with this ``iss``, if any."""
    return next((provider for provider in settings().identity_providers if provider.issuer == issuer), None)


def configured_issuer(org_id: str) -> str | None:
    """The issuer configuration binds this organization to, if it does."""
    for provider in settings().identity_providers:
        if provider.organizations is not None and org_id in provider.organizations:
            return provider.issuer
    return None


def check_configured_binding(*, provider: IdentityProvider, org_id: str) -> None:
    """Refuse an organization that configuration gives to another IdP, or that this IdP does not serve.

    Raises:
        WrongIdentityProvider: the organization signs in through another IdP.
    """
    bound = configured_issuer(org_id)
    if bound is not None and bound != provider.issuer:
        raise WrongIdentityProvider("This organization signs in through another identity provider.")
    if provider.organizations is not None and org_id not in provider.organizations:
        raise WrongIdentityProvider("This identity provider does not serve this organization.")


_UNREAD = object()


def organization_for_sign_in(*, org_id: str, issuer: str, found: object = _UNREAD) -> Organization:
    """The organization an ID token from ``issuer`` names, created if the deployment allows it.

    One read on every login (none when the caller read it already: ``found``, the item or None);
    the organization item is written only when it is created or gets its issuer recorded, so a
    busy organization's logins do not all write one item.

    Raises:
        UnknownOrganization: the organization does not exist and only an operator may create it.
        WrongIdentityProvider: the organization is bound to another issuer.
    """
    for _ in range(2):
        try:
            if found is _UNREAD:
                org = Organization.get(org_id, consistent_read=True)
            elif found is None:
                raise Organization.DoesNotExist()
            else:
                org = found  # type: ignore[assignment]
            found = _UNREAD  # a second pass reads again
        except Organization.DoesNotExist:
            found = _UNREAD
            if settings().org_creation != "on_first_login":
                raise UnknownOrganization(
                    "This organization is not set up on keyward; ask the operator to create it."
                ) from None
            try:
                return create(org_id=org_id, issuer=issuer)
            except OrganizationExists:
                continue  # a simultaneous first login created it
        _check_bound(org=org, issuer=issuer)
        if org.issuer is None and configured_issuer(org_id) is None:
            _record_issuer(org=org, issuer=issuer)
        return org
    raise AssertionError("the organization disappeared during this login")


def _check_bound(*, org: Organization, issuer: str) -> None:
    bound = configured_issuer(org.org_id) or org.issuer
    if bound is not None and bound != issuer:
        raise WrongIdentityProvider("This organization signs in through another identity provider.")


def _record_issuer(*, org: Organization, issuer: str) -> None:
    """Bind an organization created before issuers were recorded to the IdP of its next login."""
    try:
        org.update(actions=[Organization.issuer.set(issuer)], condition=Organization.issuer.does_not_exist())
    except UpdateError as error:
        if not condition_failed(error):
            raise
        org.refresh(consistent_read=True)  # another login recorded it first: that one binds
        _check_bound(org=org, issuer=issuer)


def create(*, org_id: str, issuer: str | None) -> Organization:
    """Create an organization with no members yet, bound to ``issuer`` (or, when None, to the
    IdP configuration names or the issuer of its first login).

    Raises:
        OrganizationExists: it exists already.
    """
    org = Organization(
        org_id,
        created_at=clock.now(),
        mfa_enforced=False,
        enforcement_generation=0,
        members_total=0,
        members_with_key=0,
        issuer=issuer,
    )
    try:
        org.save(condition=Organization.org_id.does_not_exist())
    except PutError as error:
        if condition_failed(error):
            raise OrganizationExists(f"The organization {org_id!r} exists already.") from None
        raise
    return org
