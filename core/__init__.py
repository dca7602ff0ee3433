"""What every app shares and no app owns: problem details and DomainError, money helpers,
the JSON parser, shared serializers, schema helpers, webhook signatures, the Idempotency-Key
machinery (its model, decorator and schema parameter), task enqueueing, and the shared HTTP
plumbing (middleware, throttling, pagination, filters, logging, the admin base classes, the
periodic jobs helper). Imports no app."""
