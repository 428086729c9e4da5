#!/usr/bin/env bash
# Starts the node whose derecho.cfg is in this folder (run it from anywhere).
cd "$(dirname "$0")"
# The cluster's credentials (not in git): made on first start when missing.
if [ ! -f ../tls/server.pem ] || [ ! -f ../secrets/admin.token ]; then
  if [ -x ../../scripts/gen-cluster.sh ]; then
    ../../scripts/gen-cluster.sh --credentials-only ..
  else
    echo "no credentials in ../tls, ../secrets: run scripts/gen-cluster.sh --credentials-only $(cd .. && pwd)" >&2
    exit 1
  fi
fi
exec ../../build/bin/sospdemo server "$@"
