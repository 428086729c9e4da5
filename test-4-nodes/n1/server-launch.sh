#!/usr/bin/env bash
# Starts the node whose derecho.cfg is in this folder (run it from anywhere).
cd "$(dirname "$0")"
exec ../../build/bin/sospdemo server "$@"
