#!/usr/bin/env bash
# Writes a sospdemo cluster folder: DIR/nI/derecho.cfg and DIR/nI/server-launch.sh for
# nodes 0..N-1 (the seed's test-N-nodes layout), plus DIR/client/. All on 127.0.0.1 unless
# --hosts spreads them over several hosts.
#
#   scripts/gen-cluster.sh DIR N [options]
#     --function-nodes F   nodes in the function tier (default N/2; the rest are categorizers)
#     --spares K           the last K nodes start unassigned (spares): when a tier loses a
#                          node, the next view hands its place to a spare (default 0)
#     --shards S           categorizer shards (default 1); N-F must be divisible by S
#     --min-nodes M        categorizer shard minimum (default 1: a shard of 2 or more replicas
#                          goes on when one crashes; the seed used the shard size, with which
#                          one crash leaves the shard inadequate and waiting for a node)
#     --port-base P        ports from P: gms P+i, rpc P+20+i, sst P+40+i, rdmc P+60+i,
#                          gRPC P+80+id, HTTP P+90+id (needs N <= 10). Default: the seed's
#                          ports (gms 23580+i, rpc 28366+i, sst 37683+i, rdmc 31675+i) and
#                          gRPC 28000+id, HTTP 18000+id.
#     --heartbeat-ms H     failure detector period, written as the seed's `timeout_ms` (default
#                          500: a silent node is suspected after 5 periods, 2.5 s; the seed's
#                          10000 took 50 s). A crashed node whose connection closes is
#                          suspected at once whatever the period.
#     --launch-binary B    path of sospdemo used by server-launch.sh (default ../../build/bin/sospdemo)
#     --hosts H1,H2,...    IPv4 addresses or host names: node i runs on host i mod (number of
#                          hosts), with local_ip that host's address, and every node's contact
#                          (leader_ip) is node 0's host. A name is resolved here (getent) and
#                          written as its address (the configuration takes addresses only). Ports
#                          stay per node id, so nodes sharing a host do not clash. DIR/hosts
#                          lists "id address" per node (scripts/cluster.sh reads it). Copy the
#                          folder to the same path on every host (scripts/cluster.sh).
#     --volatile           the categorizer tier keeps its models in memory only (the seed's
#                          behaviour). Default: durable (docs/persistence.md): every model
#                          install/remove is logged under nI/.plog, and after a stop of the
#                          whole cluster (scripts/cluster.sh stop, or a power cut) a start
#                          rebuilds the models from the logs (total restart, replay)
#     --insecure           no credentials: gRPC and HTTP without TLS, install/remove open to
#                          anyone (the seed's behaviour; the server warns)
#   scripts/gen-cluster.sh --credentials-only DIR
#                          makes DIR's credentials (below) if they are missing, nothing else
#
# Credentials (default; openssl CLI; kept when they exist, so rerunning keeps the cluster's):
# DIR/tls/ca.pem + ca.key (the cluster CA), DIR/tls/server.pem + server.key (SAN IP:127.0.0.1,
# DNS:localhost and, with --hosts, each host: IP:address, and DNS:name for a name; signed by the
# CA; a kept certificate that lacks one of them is made again), DIR/secrets/admin.token (bearer token for install/remove),
# DIR/secrets/cluster.key, admin.key, client.key (64 hex chars each, for the group port's
# authentication); keys and secrets mode 0600. Each node's [SOSPDEMO] names the certificate,
# key and admin token; DIR/client/derecho.cfg names the CA and the token, so the client run
# from DIR/client uses TLS and the token (docs/security.md).
#
# Sizes: models travel in one multicast (CATEGORIZER_TIER max_payload_size 100 MiB) and, from
# the function tier to a categorizer member, in one p2p request, so max_p2p_request_payload_size
# is 100 MiB + 4 KiB (the seed's 10240 would limit photos to about 10 KB; see docs/sospdemo.md).
set -euo pipefail

usage() {
  sed -n '2,/^set/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

# Makes DIR's TLS files and secrets if they are missing (serialised by a lock: the nodes of a
# shipped folder may all start at once).
make_credentials() {
  local d=$1 sans="IP:127.0.0.1,DNS:localhost"
  [ -z "${2:-}" ] || sans="$sans,$2"
  mkdir -p "$d/tls" "$d/secrets"
  chmod 700 "$d/secrets"
  (
    flock 9
    cd "$d"
    umask 077
    if [ ! -f tls/ca.pem ] || [ ! -f tls/ca.key ]; then
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=sospdemo cluster CA" -keyout tls/ca.key -out tls/ca.pem 2>/dev/null
      rm -f tls/server.pem
    fi
    # a kept certificate that lacks one of the wanted names is made again
    if [ -f tls/server.pem ] && ! server_has_sans tls/server.pem "$sans"; then
      rm -f tls/server.pem
    fi
    if [ ! -f tls/server.pem ] || [ ! -f tls/server.key ]; then
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout tls/server.key -out tls/server.csr 2>/dev/null
      printf '%s\n' "subjectAltName=$sans" "basicConstraints=CA:FALSE" \
        "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >tls/server.ext
      openssl x509 -req -in tls/server.csr -CA tls/ca.pem -CAkey tls/ca.key -CAcreateserial \
        -days 825 -extfile tls/server.ext -out tls/server.pem 2>/dev/null
      rm -f tls/server.csr tls/server.ext
    fi
    for name in admin.token cluster.key admin.key client.key; do
      [ -s "secrets/$name" ] || openssl rand -hex 32 >"secrets/$name"
    done
    chmod 600 tls/ca.key tls/server.key secrets/*
    chmod 644 tls/ca.pem tls/server.pem
  ) 9>"$d/.credentials.lock"
}

# True when certificate $1 has every SAN of the list $2 ("IP:a,DNS:b,...").
server_has_sans() {
  local have san
  have=$(openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2 |
    sed 's/IP Address:/IP:/g; s/ //g' | tr ',' '\n')
  for san in ${2//,/ }; do
    grep -qxF "$san" <<<"$have" || return 1
  done
}

# The IPv4 address of host $1 (an address is itself; a name is resolved with getent).
host_address() {
  local address
  if [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    echo "$1"
    return
  fi
  if [[ "$1" == *:* ]]; then
    echo "gen-cluster.sh: $1: IPv6 addresses are not supported (the group port is IPv4)" >&2
    return 1
  fi
  address=$(getent ahostsv4 "$1" 2>/dev/null | awk '{print $1; exit}')
  if [ -z "$address" ]; then
    echo "gen-cluster.sh: cannot resolve host '$1' to an IPv4 address" >&2
    return 1
  fi
  echo "$address"
}

script_path=$(realpath "$0")
if [ "${1:-}" = --credentials-only ]; then
  [ $# -eq 2 ] || usage
  make_credentials "$2"
  exit 0
fi
[ $# -ge 2 ] || usage
dir=$1
nodes=$2
shift 2
function_nodes=$((nodes / 2))
shards=1
spares=0
min_nodes=""
port_base=""
heartbeat_ms=500
launch_binary="../../build/bin/sospdemo"
secure=1
durable=true
hosts_list=""
while [ $# -gt 0 ]; do
  case "$1" in
    --function-nodes) function_nodes=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --spares) spares=$2; shift 2 ;;
    --port-base) port_base=$2; shift 2 ;;
    --min-nodes) min_nodes=$2; shift 2 ;;
    --heartbeat-ms) heartbeat_ms=$2; shift 2 ;;
    --launch-binary) launch_binary=$2; shift 2 ;;
    --hosts)
      [ $# -ge 2 ] && [ -n "$2" ] || { echo "gen-cluster.sh: --hosts needs H1,H2,..." >&2; exit 2; }
      hosts_list=$2; shift 2 ;;
    --insecure) secure=0; shift ;;
    --volatile) durable=false; shift ;;
    *) usage ;;
  esac
done
categorizer_nodes=$((nodes - function_nodes - spares))
if [ "$function_nodes" -lt 1 ] || [ "$categorizer_nodes" -lt 1 ] ||
   [ $((categorizer_nodes % shards)) -ne 0 ]; then
  echo "gen-cluster.sh: $nodes nodes cannot make $function_nodes function-tier nodes and" \
       "$shards equal categorizer shards" >&2
  exit 2
fi
per_shard=$((categorizer_nodes / shards))
[ -n "$min_nodes" ] || min_nodes=1
if [ "$min_nodes" -lt 1 ] || [ "$min_nodes" -gt "$per_shard" ]; then
  echo "gen-cluster.sh: --min-nodes must be 1..$per_shard (the shard size)" >&2
  exit 2
fi
if [ -n "$port_base" ] && [ "$nodes" -gt 10 ]; then
  echo "gen-cluster.sh: --port-base supports at most 10 nodes" >&2
  exit 2
fi

# Per node: its host's address (node_ip[i]); extra certificate SANs for the hosts.
node_ip=()
extra_sans=""
if [ -n "$hosts_list" ]; then
  IFS=, read -r -a hosts <<<"$hosts_list"
  [ "${#hosts[@]}" -ge 1 ] || { echo "gen-cluster.sh: --hosts lists no host" >&2; exit 2; }
  addresses=()
  for h in "${hosts[@]}"; do
    [ -n "$h" ] || { echo "gen-cluster.sh: --hosts has an empty entry" >&2; exit 2; }
    a=$(host_address "$h") || exit 2
    addresses+=("$a")
    if [[ "$a" == 127.* ]] && [ "$hosts_list" != "$h" ]; then
      echo "gen-cluster.sh: warning: host $h is a loopback address ($a): nodes on the other" \
        "hosts cannot reach the nodes placed there" >&2
    fi
    [[ ",IP:127.0.0.1,$extra_sans," == *",IP:$a,"* ]] || extra_sans="$extra_sans,IP:$a"
    if [ "$h" != "$a" ] && [[ ",DNS:localhost,$extra_sans," != *",DNS:$h,"* ]]; then
      extra_sans="$extra_sans,DNS:$h"
    fi
  done
  extra_sans=${extra_sans#,}
  for ((i = 0; i < nodes; i++)); do
    node_ip[i]=${addresses[i % ${#addresses[@]}]}
  done
else
  for ((i = 0; i < nodes; i++)); do node_ip[i]=127.0.0.1; done
fi
contact_ip=${node_ip[0]}

if [ "$secure" -eq 1 ]; then
  make_credentials "$dir" "$extra_sans"
  security_section="# TLS on gRPC and HTTP, and the bearer token install/remove need (docs/security.md)
tls_cert_file = ../tls/server.pem
tls_key_file = ../tls/server.key
admin_token_file = ../secrets/admin.token
# the server runs it (--credentials-only ..) when the files above are missing: a fresh checkout
# of a shipped folder (credentials are never in git)
credentials_script = CREDENTIALS_SCRIPT
"
  group_keys="# the group port's keys (docs/security.md): members prove cluster.key to each other;
# outside libderecho clients prove admin.key (install/remove) or client.key
cluster_key_file = ../secrets/cluster.key
admin_key_file = ../secrets/admin.key
client_key_file = ../secrets/client.key
"
else
  security_section="# no credentials (gen-cluster.sh --insecure): plain gRPC and HTTP, install/remove open
"
  group_keys="# no group-port keys (gen-cluster.sh --insecure): anyone may connect to gms_port
"
fi

placement="local sospdemo cluster"
for ((i = 0; i < nodes; i++)); do
  mkdir -p "$dir/n$i"
  host_line=""
  if [ -n "$hosts_list" ]; then
    placement="sospdemo cluster across hosts"
    host_line="# This node runs on ${node_ip[i]}; node 0, the contact, on $contact_ip.
"
  fi
  if [ -n "$port_base" ]; then
    gms=$((port_base + i)); rpc=$((port_base + 20 + i)); sst=$((port_base + 40 + i))
    rdmc=$((port_base + 60 + i)); leader=$port_base
    sospdemo_section="[SOSPDEMO]
# gRPC port = function_tier_base_port + local_id; HTTP port = http_base_port + local_id
function_tier_base_port = $((port_base + 80))
http_base_port = $((port_base + 90))
"
  else
    gms=$((23580 + i)); rpc=$((28366 + i)); sst=$((37683 + i)); rdmc=$((31675 + i)); leader=23580
    sospdemo_section="[SOSPDEMO]
# gRPC port = function_tier_base_port + local_id (the seed's 28000 + id);
# HTTP API and web page on http_base_port + local_id (0 turns HTTP off)
function_tier_base_port = 28000
http_base_port = 18000
"
  fi
  # relative inside this checkout (the shipped folders move with it), else absolute
  script_ref=$script_path
  repo_root=$(dirname "$(dirname "$script_path")")
  [[ "$(realpath -m "$dir")/" == "$repo_root/"* ]] &&
    script_ref=$(realpath -m --relative-to="$dir/n$i" "$script_path")
  node_security=${security_section/CREDENTIALS_SCRIPT/$script_ref}
  # a host given by name: its web page is also reached by that name (Host header check)
  if [ -n "$hosts_list" ]; then
    name=${hosts[i % ${#hosts[@]}]}
    if [ "$name" != "${node_ip[i]}" ]; then
      sospdemo_section="$sospdemo_section# this node's host by name (requests with Host: $name are accepted)
http_allowed_hosts = $name
"
    fi
  fi
  cat > "$dir/n$i/derecho.cfg" <<EOF
# Node $i of a $nodes-node $placement: nodes 0-$((function_nodes - 1)) form the
# function tier, the next $categorizer_nodes the categorizer tier ($shards shard(s) of $per_shard);
# $spares spare(s) start unassigned and fill a tier's place after a failure.
${host_line}# Generated by scripts/gen-cluster.sh; keeps the seed's key names (leader_ip, rpc_port, ...).
[DERECHO]
# leader ip - the leader's ip address
leader_ip = $contact_ip
# leader gms port - the leader's gms port
leader_gms_port = $leader
# my local id - each node should have a different id
local_id = $i
# my local ip address
local_ip = ${node_ip[i]}
# derecho gms port
gms_port = $gms
# derecho rpc port
rpc_port = $rpc
# sst tcp port
sst_port = $sst
# rdmc tcp port
rdmc_port = $rdmc
# this is the frequency of the failure detector thread (ms): a node silent for 5 periods is
# suspected (a crashed node whose connection closes at once); the seed's 10000 took 50 s
timeout_ms = $heartbeat_ms
# total restart (durable categorizer tier, docs/persistence.md): the nodes of a stopped cluster
# restart through node 0 and wait up to 10 s per round; a majority of the last view waits half
# of that for the rest
restart_leaders = $contact_ip
restart_leader_ports = $leader
restart_timeout_ms = 10000
# maximum payload size for P2P requests: a whole model (100 MiB) plus framing, since the
# function tier hands a model to one categorizer member in one p2p request (seed: 10240)
max_p2p_request_payload_size = 104861696
# maximum payload size for P2P replies
max_p2p_reply_payload_size = 131072
# window size for P2P requests and replies
p2p_window_size = 16
$group_keys
# Subgroup configurations
[SUBGROUP/DEFAULT]
max_payload_size = 10240
max_reply_payload_size = 10240
max_smc_payload_size = 10240
block_size = 1048576
window_size = 16
rdmc_send_algorithm = binomial_send

# min_nodes: a shard with fewer live members cannot go on (the group waits for a node);
# the function tier keeps the seed's fixed size so roles follow join order
[SUBGROUP/FUNCTION_TIER]
num_shards = 1
min_nodes = $function_nodes
max_nodes = $function_nodes

[SUBGROUP/CATEGORIZER_TIER]
max_payload_size = 104857600
max_reply_payload_size = 131072
max_smc_payload_size = 10240
block_size = 1048576
window_size = 3
num_shards = $shards
# the shard goes on after a replica crashes as long as min_nodes replicas live
min_nodes = $min_nodes
max_nodes = $per_shard
# installed models survive a stop of the whole cluster: each install/remove (an ordered call,
# up to max_payload_size) is logged under [PERS] file_path and replayed at a total restart
durable = $durable

$sospdemo_section$node_security
[RDMA]
# 'provider' is the fabric provider: sockets, tcp, verbs, shm ...
provider = sockets
# 'domain': for sockets and tcp, the network interface
domain = lo
tx_depth = 256
rx_depth = 256

[PERS]
# the durable categorizer's log (nI/.plog/CATEGORIZER_TIER-0-<shard>.plog): one record per
# install/remove, a whole model each; max_data_size bounds its payload bytes (512 GiB: about
# 5000 installs of 100 MiB models), max_log_entry its records
file_path = .plog
ramdisk_path = /dev/shm/volatile_t
reset = false
max_log_entry = 1048576
max_data_size = 549755813888

[LOGGER]
default_log_name = derecho_debug
# default log level: trace, debug, info, warn, error, critical, off
default_log_level = info
EOF
  cat > "$dir/n$i/server-launch.sh" <<EOF
#!/usr/bin/env bash
# Starts the node whose derecho.cfg is in this folder (run it from anywhere).
cd "\$(dirname "\$0")"
exec $launch_binary server "\$@"
EOF
  chmod +x "$dir/n$i/server-launch.sh"
done
mkdir -p "$dir/client"
last=$((nodes - 1))
if [ -n "$port_base" ]; then grpc_base=$((port_base + 80)); else grpc_base=28000; fi
contact_grpc="$contact_ip:$grpc_base"
if [ -n "$hosts_list" ]; then
  for ((i = 0; i < nodes; i++)); do echo "$i ${node_ip[i]}"; done >"$dir/hosts"
  hosts_note="the function tier: node 0 at $contact_grpc"
  for ((i = 1; i < function_nodes; i++)); do
    hosts_note="$hosts_note, node $i at ${node_ip[i]}:$((grpc_base + i))"
  done
  client_cfg_note="# The address is the client's first argument: $hosts_note.
"
  readme_start="\`scripts/cluster.sh start $nodes --dir DIR\` starts one; $hosts_note):"
else
  rm -f "$dir/hosts"
  client_cfg_note=""
  readme_start="\`scripts/cluster.sh start $nodes\` starts one):"
fi
if [ "$secure" -eq 1 ]; then
  cat > "$dir/client/derecho.cfg" <<EOF
# The client's settings: \`sospdemo client\` run from this folder reads them (TLS with the
# cluster CA, the admin token for installmodel/removemodel). Generated by scripts/gen-cluster.sh.
${client_cfg_note}[SOSPDEMO]
tls_ca_file = ../tls/ca.pem
admin_token_file = ../secrets/admin.token
EOF
else
  rm -f "$dir/client/derecho.cfg"
fi
cat > "$dir/client/README.md" <<EOF
# $(basename "$dir")/client

Run the client from here, as in the seed README (the cluster in \`../n0\` .. \`../n$last\`, or any
\`test-N-nodes\` folder, must be running; $readme_start

\`\`\`sh
../../build/bin/sospdemo client $contact_grpc installmodel 1 \\
    ../../models/demo-shapes/synset.txt ../../models/demo-shapes/shapes-symbol.json \\
    ../../models/demo-shapes/shapes-0000.params
../../build/bin/sospdemo client $contact_grpc inference 1 ../../models/demo-shapes/photos/red-circle.jpg
\`\`\`
EOF
