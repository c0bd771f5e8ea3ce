"""keyward: IdP-independent MFA with FIDO2/WebAuthn security keys. This module only wires."""

from typing import TYPE_CHECKING, Any

from chalice.app import CloudWatchEvent, DynamoDBEvent, Rate

from chalicelib.api.auth import auth
from chalicelib.api.console import console, dev_sign_in
from chalicelib.api.http import KeywardApp, LambdaDeadline, no_store
from chalicelib.api.introspection import token_introspection
from chalicelib.api.me import me
from chalicelib.api.oidc_clients import oidc_clients
from chalicelib.api.openapi import openapi
from chalicelib.api.org import org
from chalicelib.api.outbox import local_outbox
from chalicelib.api.provider import provider
from chalicelib.api.webhooks import webhooks
from chalicelib.base.config import settings
from chalicelib.base.deferred import deferred

# Only the stream functions' and the authorizer's invocations need them; the API's cold starts never load them.
if TYPE_CHECKING:
    from chalicelib.background import org_stream
    from chalicelib.delivery import outbox
    from chalicelib.provider import authorizer
else:
    org_stream = deferred("chalicelib.background.org_stream")
    outbox = deferred("chalicelib.delivery.outbox")
    authorizer = deferred("chalicelib.provider.authorizer")

app = KeywardApp(app_name="keyward")
app.register_middleware(no_store, "http")
app.register_blueprint(auth)
app.register_blueprint(me)
app.register_blueprint(org)
app.register_blueprint(webhooks)
app.register_blueprint(token_introspection)
app.register_blueprint(oidc_clients)
app.register_blueprint(openapi)
app.register_blueprint(provider)
app.register_blueprint(console)
# The demo sign-in mints ID tokens for anyone: it exists only where the dev IdP's key is configured.
if settings().dev_idp_key_file is not None:
    app.register_blueprint(dev_sign_in)
# The local outbox reads moto's SES: it exists only where SES is moto.
if settings().aws_endpoint is not None:
    app.register_blueprint(local_outbox)


@app.on_dynamodb_record(stream_arn=settings().orgs_stream_arn, batch_size=100, starting_position="TRIM_HORIZON")
def end_sessions_on_enforcement(event: DynamoDBEvent) -> dict[str, Any]:
    """The organizations table's stream: end an organization's sessions in bulk once it enforces MFA."""
    failed = org_stream.process_org_changes(records=event.to_dict()["Records"], deadline=LambdaDeadline(event.context))
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failed]}


@app.schedule(Rate(1, unit=Rate.DAYS))
def refresh_authenticator_metadata(event: CloudWatchEvent) -> dict[str, Any]:
    """Daily: load the FIDO Metadata Service's newest BLOB once its signature chain verifies. A BLOB
    that does not verify, or a failed download, fails the invocation: Lambda retries it, counts
    an error, and then sends the event to the refresh's dead-letter queue."""
    from chalicelib.background import (
        metadata_refresh,  # python-fido2 loads here, not in the API's cold start
    )

    context: Any = event.context  # the Lambda context, whatever chalice's annotation says
    loaded = metadata_refresh.refresh(function_name=context.function_name)
    if loaded is None:
        return {"loaded": False}  # the BLOB in use is the newest
    return {
        "loaded": True,
        "blob_number": loaded.blob_number,
        "newly_compromised": list(loaded.newly_compromised),
        "keys_flagged": loaded.keys_flagged,
    }


@app.on_dynamodb_record(stream_arn=settings().audit_stream_arn, batch_size=25, starting_position="TRIM_HORIZON")
def deliver_audit_events(event: DynamoDBEvent) -> dict[str, Any]:
    """The audit table's stream: deliver each event to its channels (EventBridge, mail, webhooks)."""
    failed = outbox.deliver_audit_events(records=event.to_dict()["Records"], deadline=LambdaDeadline(event.context))
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failed]}


@app.lambda_function(name="api_authorizer")
def api_authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda authorizer (REQUEST) organizations attach to their own API Gateway routes: allows
    a request whose bearer token stands (docs/integrations.md#an-api-behind-api-gateway)."""
    return authorizer.authorize(event)
