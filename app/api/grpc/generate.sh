#!/bin/sh
# Regenerates the Python modules of grpc_predict_v2.proto (needs grpcio-tools, a generator
# only, in the dev extra). The proto path is the repository root, so they import each other as
# app.api.grpc. The messages (grpc_predict_v2_pb2.py and its .pyi) stay here, for the server;
# the generated stub and servicer (grpc_predict_v2_pb2_grpc.py) are not used by the server
# (app.api.grpc.service registers typed handlers) and go to tests/helpers/ for the test client.
set -eu
cd "$(dirname "$0")/../../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"${PYTHON:-.venv/bin/python}" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \
    --grpc_python_out="$out" app/api/grpc/grpc_predict_v2.proto
mv "$out/app/api/grpc/grpc_predict_v2_pb2_grpc.py" tests/helpers/grpc_predict_v2_pb2_grpc.py
