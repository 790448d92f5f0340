"""Security: identities, RBAC, audit, PII redaction, encryption."""
