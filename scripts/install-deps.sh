#!/usr/bin/env bash
# The single list of Debian packages this project needs, installed idempotently.
# Runs `apt-get update` only when a package is missing. Needs root (or sudo) on Debian 12.
set -euo pipefail

PACKAGES=(
  # build and test
  build-essential cmake pkg-config git clang libclang-rt-14-dev clang-format
  libcmocka-dev
  # API reference (scripts/docs.sh, target docs)
  doxygen
  # line coverage of the suite (scripts/coverage.sh, run by .ci/run)
  gcovr
  # base / conf; net (HMAC-SHA256 of the group port handshake: libcrypto)
  libinih-dev libssl-dev
  # persist: crc32 of log records (src/persist/plog.c)
  zlib1g-dev
  # inference engine
  libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libdnnl-dev libopenblas-dev libcjson-dev
  libonnx-dev protobuf-c-compiler libprotobuf-c-dev
  # sospdemo: gRPC core C API, HTTP
  libgrpc-dev libmicrohttpd-dev
  # test tooling: real-model cross-checks (make_resnet50_v2.py), networking tools (ip netns,
  # bridge, veth and tc for tests/netns; setpriv there comes from util-linux, always installed)
  python3 python3-numpy python3-onnx iproute2 procps
  # scripts/gen-cluster.sh: a cluster's TLS certificates and secrets (openssl CLI); flock
  openssl util-linux
  # scripts/demo.sh: the HTTP part of the story
  curl
  # sospdemo: a Python client generated from the seed's gRPC interface (tests/sospdemo)
  python3-grpcio python3-grpc-tools
  # sospdemo: the web page rendered in headless Chromium (tests/sospdemo/test_web_page.c)
  chromium
  # tools: tools/demo-model (makes models/demo-shapes: numpy + Pillow)
  python3-pil
  # bench/compare_peers.sh: corosync CPG beside derecho-bench (../shared/tools/peers/cpg-bench.sh
  # builds its client against libcpg; gcc comes with build-essential)
  corosync libcpg-dev
  # bench/durable_puts.sh: etcd beside durable-bench (../shared/tools/peers/etcd-bench.sh; the
  # package's service is not started: the script runs its own three members on 127.0.0.1)
  etcd-server etcd-client
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
