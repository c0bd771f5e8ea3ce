"""What every domain stands on: refusals, time, settings, the DynamoDB tables and how their failures
become refusals, the audit log, the shapes of a request (its caller, its deadline), and what an
invocation writes for operators: its log lines and its metrics."""
