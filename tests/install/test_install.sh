#!/usr/bin/env bash
# test_install: the installed package is what is tested, not the build tree.
#
#   tests/install/test_install.sh BUILD_DIR SOURCE_DIR
#
# 1. `cmake --install BUILD_DIR` into a temporary prefix;
# 2. checks that libderecho.so exports exactly the functions and variables declared in the
#    installed headers (internal dr_* names stay hidden) and carries its SONAME;
# 3. builds examples/*.c with pkg-config only (PKG_CONFIG_PATH = the prefix), counter also
#    statically (pkg-config --static), a one-line program against derecho-infer, and counter
#    and that program again with find_package(derecho) in a CMake project;
# 4. runs them on 127.0.0.1, ports 15800..15829: 3 counters (every member ends with the same
#    value, every call's replies agreed), 3 KV members and an outside client (reads back from
#    every member what it put), 3 chat members (same lines in the same order everywhere, a
#    view without the member that left).
# Every process runs under `timeout`; the EXIT trap kills what is left and removes the prefix.
set -euo pipefail
build=$(cd "$1" && pwd)
source=$(cd "$2" && pwd)
cc=${CC:-cc}
tmp=$(mktemp -d /tmp/dr_install_XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "test_install: FAIL: $*" >&2
  for f in "$tmp"/run/*.out "$tmp"/run/*.err; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }
  done
  exit 1
}

# ---- 1. install ---------------------------------------------------------------------------
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name derecho.pc)
[ -n "$pc" ] || fail "no derecho.pc installed"
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir derecho)
[ "$(cd "$libdir" && pwd)" = "$(cd "$(dirname "$pc")/.." && pwd)" ] || fail "derecho.pc libdir $libdir"

# ---- 2. exported symbols and SONAME -------------------------------------------------------
readelf -d "$libdir/libderecho.so" | grep -q 'SONAME.*\[libderecho\.so\.[0-9]*\]' ||
  fail "libderecho.so has no SONAME libderecho.so.MAJOR"
declared() { # functions and variables declared at the top level of headers, static inlines out
  sed -e 's#/\*.*\*/##' "$@" | grep -E '^[a-z]' | grep -v '^static inline' |
    grep -oE '[ *]dr_[a-z0-9_]+(\(|\[)' | grep -oE 'dr_[a-z0-9_]+' | sort -u
}
exported() { nm -D --defined-only "$1" | awk '{print $3}' | sort -u; }
headers=$prefix/include/derecho
diff <(declared $(ls "$headers"/*.h | grep -v infer.h)) <(exported "$libdir/libderecho.so") ||
  fail "libderecho.so exports differ from the headers' declarations (< declared, > exported)"
diff <(declared "$headers/infer.h") <(exported "$libdir/libderecho-infer.so") ||
  fail "libderecho-infer.so exports differ from infer.h"

# ---- 3. build against the installed package -------------------------------------------------
bin=$tmp/bin
mkdir -p "$bin" "$tmp/run"
flags=(-std=c17 -O2 -Wall -Wextra -Werror)
for example in counter kv chat; do
  # shellcheck disable=SC2046 # pkg-config output is a list of words
  "$cc" "${flags[@]}" -o "$bin/$example" "$source/examples/$example.c" \
    $(pkg-config --cflags --libs derecho) -Wl,-rpath,"$libdir" || fail "cannot build $example"
done
# shellcheck disable=SC2046
"$cc" "${flags[@]}" -o "$bin/counter_static" "$source/examples/counter.c" \
  $(pkg-config --cflags derecho) "$libdir/libderecho.a" \
  $(pkg-config --static --libs derecho | sed 's/-lderecho\b//') || fail "cannot link libderecho.a"
readelf -d "$bin/counter_static" | grep -q 'libderecho\.so' && fail "counter_static needs libderecho.so"
cat >"$tmp/infer_check.c" <<'EOF'
#include <derecho/infer.h>
#include <stdio.h>
int main(void) {
    printf("infer: dnnl=%d %s\n", dr_infer_have_dnnl(), dr_strerror(DR_ENOTFOUND));
    return 0;
}
EOF
# shellcheck disable=SC2046
"$cc" "${flags[@]}" -o "$bin/infer_check" "$tmp/infer_check.c" \
  $(pkg-config --cflags --libs derecho-infer) -Wl,-rpath,"$libdir" || fail "cannot build infer_check"
"$bin/infer_check" >/dev/null || fail "infer_check does not run"

mkdir -p "$tmp/cmake"
cat >"$tmp/cmake/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.25)
project(derecho_consumer LANGUAGES C)
find_package(derecho 0 REQUIRED)
add_executable(counter_cmake "$source/examples/counter.c")
target_link_libraries(counter_cmake PRIVATE derecho::derecho_static)
add_executable(infer_cmake "$tmp/infer_check.c")
target_link_libraries(infer_cmake PRIVATE derecho::infer)
EOF
cmake -S "$tmp/cmake" -B "$tmp/cmake/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" >"$tmp/run/cmake.out" 2>&1 || fail "find_package(derecho) configure"
cmake --build "$tmp/cmake/build" >>"$tmp/run/cmake.out" 2>&1 || fail "find_package(derecho) build"
"$tmp/cmake/build/infer_cmake" >/dev/null || fail "infer_cmake does not run"
echo "test_install: installed, exports checked, examples built"

# ---- 4. run ---------------------------------------------------------------------------------
cd "$tmp/run"
write_config() { # BASE_PORT: derecho.cfg for a 3-member group on 127.0.0.1
  cat >derecho.cfg <<EOF
[DERECHO]
contact_ip = 127.0.0.1
contact_port = $1
local_ip = 127.0.0.1
heartbeat_ms = 100
[SUBGROUP/DEFAULT]
max_payload_size = 10240
max_reply_payload_size = 4096
window_size = 16
[SUBGROUP/COUNTER]
num_shards = 1
min_nodes = 1
max_nodes = 3
[SUBGROUP/KV]
num_shards = 1
min_nodes = 1
max_nodes = 3
[SUBGROUP/CHAT]
num_shards = 1
min_nodes = 1
max_nodes = 8
[LOGGER]
default_log_level = error
EOF
}
node_args() { echo "--DERECHO/local_id=$1 --DERECHO/gms_port=$(($2 + $1))"; }
wait_for() { # FILE REGEX SECONDS
  for _ in $(seq $(($3 * 10))); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# counter: 3 members (the static build among them), each adds 10 times.
write_config 15800
counter_pids=()
for i in 0 1 2; do
  program=$bin/counter
  [ "$i" = 2 ] && program=$bin/counter_static
  # shellcheck disable=SC2046
  timeout 60 "$program" $(node_args "$i" 15800) >"counter$i.out" 2>"counter$i.err" &
  counter_pids+=($!)
  pids+=($!)
done
for i in 0 1 2; do wait "${counter_pids[$i]}" || fail "counter $i exited with $?"; done
for i in 0 1 2; do
  grep -qx "FINAL node=$i value=30 agreed=10/10" "counter$i.out" || fail "counter $i"
done
echo "test_install: counter: 3 members agree on 30"

# kv: 3 members, an outside client puts through member 1 and reads from every member.
write_config 15810
kv_pids=()
for i in 0 1 2; do
  # shellcheck disable=SC2046
  timeout 60 "$bin/kv" $(node_args "$i" 15810) >"kv$i.out" 2>"kv$i.err" &
  kv_pids+=($!)
  pids+=($!)
done
wait_for kv0.out 'members=3' 30 || fail "kv: no 3-member view"
timeout 20 "$bin/kv" --client 127.0.0.1:15811 put colour blue >client.out 2>client.err ||
  fail "kv client put"
grep -qx "put colour: applied by 3 replicas" client.out || fail "kv put"
timeout 20 "$bin/kv" --client 127.0.0.1:15812 get colour >client.out 2>client.err ||
  fail "kv client get"
[ "$(sort client.out | tr '\n' ' ')" = "node 0: blue node 1: blue node 2: blue " ] || fail "kv get"
timeout 20 "$bin/kv" --client 127.0.0.1:15810 get nothing >client.out 2>client.err &&
  fail "kv get of a missing key succeeded"
for i in 2 1 0; do
  kill -TERM "${kv_pids[$i]}"
  wait "${kv_pids[$i]}" || fail "kv member $i exited with $?"
done
echo "test_install: kv: put through one member, read back from all three"

# chat: 3 members on fifos; two lines; member 2 leaves, the others see it go.
write_config 15820
chat_pids=()
for i in 0 1 2; do
  mkfifo "chat$i.in"
  # shellcheck disable=SC2046
  timeout 60 "$bin/chat" $(node_args "$i" 15820) <"chat$i.in" >"chat$i.out" 2>"chat$i.err" &
  chat_pids+=($!)
  pids+=($!)
done
exec 3>chat0.in 4>chat1.in 5>chat2.in
three='members [0-9]+ [0-9]+ [0-9]+( |$)'
for i in 0 1 2; do wait_for "chat$i.out" "$three" 30 || fail "chat $i: no 3-member view"; done
echo "hello from 1" >&4
echo "hello from 2" >&5
for i in 0 1 2; do wait_for "chat$i.out" '^<2> hello from 2$' 20 || fail "chat $i: lines"; done
for i in 1 2; do
  cmp <(grep '^<' chat0.out) <(grep '^<' "chat$i.out") || fail "chat: members 0 and $i differ"
done
exec 5>&-
wait "${chat_pids[2]}" || fail "chat 2 exited with $?"
for i in 0 1; do wait_for "chat$i.out" '\| left 2$' 20 || fail "chat $i: no view without 2"; done
exec 4>&-
wait "${chat_pids[1]}" || fail "chat 1 exited with $?"
exec 3>&-
wait "${chat_pids[0]}" || fail "chat 0 exited with $?"
echo "test_install: chat: same lines everywhere, member 2 left"
echo "test_install: PASS"
