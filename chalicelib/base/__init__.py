"""What every domain stands on: refusals, time, settings, the DynamoDB tables and how their failures
become refusals, the audit log, and the shapes of a request (its caller, its deadline)."""
