"""What every app shares and no app owns: problem details and DomainError, money helpers,
the JSON parser, shared serializers, schema helpers, webhook signatures. Imports no app."""
