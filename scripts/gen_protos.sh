#!/usr/bin/env bash
# Rebuild the committed gRPC stubs from kernel/protocol/*.proto.
# The protos are compiled with a temporary tree where kernel/ is named microray/,
# so descriptors register as "microray/protocol/*.proto" (never clashing with the
# etcd client's protos) and generated imports read "from microray.protocol import ...".
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/microray/protocol"
cp "$here"/kernel/protocol/*.proto "$tmp/microray/protocol/"
cd "$tmp"
"$py" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. microray/protocol/*.proto
cp microray/protocol/*_pb2*.py microray/protocol/*.pyi "$here/kernel/protocol/"
"$py" -c "import grpc_tools, google.protobuf; print('generated with grpcio-tools', grpc_tools.__version__ if hasattr(grpc_tools,'__version__') else '?', 'protobuf', google.protobuf.__version__)"
