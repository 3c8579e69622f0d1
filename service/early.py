"""Answers the HTTP server gives itself, before the app sees a request: a leaf module.

service/server.py is imported by gunicorn's arbiter, before gevent patches its workers: it must not
import the app's modules (Redis's client imported there keeps unpatched names), so this table
lives here, where both it and the OpenAPI document read it.
"""

#: Answers gunicorn gives itself, before the app sees the request (a request line or headers too
#: large, a malformed head): the problem code of each, so every error is application/problem+json.
SERVER_PROBLEMS = {
    400: "invalid_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_fields_too_large",
    501: "not_implemented",
}
