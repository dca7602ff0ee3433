"""What every app shares and no app owns: problem details and DomainError, money helpers,
the JSON parser, shared serializers, schema helpers, webhook signatures, the Idempotency-Key
machinery (its model, decorator and schema parameter), the admin base classes. Imports no app."""
