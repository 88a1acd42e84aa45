"""The open JSON API under /api: routes, request schemas and the OpenAPI document."""
