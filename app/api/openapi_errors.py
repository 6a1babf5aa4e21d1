"""Make the OpenAPI schema truthful about errors every route can give.

Any route with a path parameter (a model name, a version) answers 404 in the common error shape
when it names nothing; schemathesis found these undocumented. Routes declare their own other
errors; this adds only the 404 they all share.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
# Open Inference Protocol routes answer in the protocol's own error shape.
_OIP_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def document_not_found(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            if "{" not in path:
                continue
            for operation in operations.values():
                operation.setdefault("responses", {}).setdefault(
                    "404",
                    {
                        "description": "No such model or version",
                        "content": {
                            "application/json": {
                                "schema": _OIP_ERROR if path.startswith("/v2/") else _ERROR_REF
                            }
                        },
                    },
                )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
