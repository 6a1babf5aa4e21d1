# Servers the tests start (in-process apps and `modelserve serve` subprocesses, which inherit
# this environment) serve no gRPC unless a test asks for a port: one port for every server of
# a test run, in parallel workers too, would make them share it.
import os

os.environ.setdefault("MODELSERVE_GRPC_PORT", "0")
