#!/usr/bin/env bash
# Several servers on this one machine, for the tests, the demo and the benchmark of a run over
# several servers: each server is a network namespace (bgd-h1 … bgd-hN, and bgd-lb) joined to
# this machine by a bridge, with addresses from 198.18.0.0/15 (reserved for benchmarking
# networks). Each app server has its own Docker engine (own data root, exec root, socket and
# bridge), its own sshd and nginx; the load balancer has sshd and nginx. An sshd session sees
# its server's engine (/run/docker.sock) and state (/var/lib/bg-deploy) through a private mount
# namespace, as on a separate machine; so does its nginx directory (/srv/bgd-nginx). The registry of scripts/services.sh is 127.0.0.1:5000 on
# every server too, through a forwarder.
#   scripts/hosts.sh up [N]   start N app servers (default 3) and the load balancer
#   scripts/hosts.sh down     stop them and remove the namespaces
# Needs scripts/services.sh up first (the registry and the client key). Writes $DIR/hosts.env.
set -Eeuo pipefail

SERVICES="${BGD_SERVICES_DIR:-/tmp/bg-deploy-services}"
DIR="$SERVICES/hosts"
NET=198.18.0
BRIDGE=bgd-br0
REGISTRY_PORT="${BGD_REGISTRY_PORT:-5000}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'hosts: %s\n' "$*" >&2; exit 1; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within ${1}s"
    sleep 0.2
  done
}

address() { # address NAME -> its address: h1 .11 … h9 .19, lb .20, sw (scripts/swarm.sh) .30, h10 .40 … h99 .129
  case "$1" in
    lb) echo "$NET.20" ;;
    sw) echo "$NET.30" ;;
    *) local n="${1#h}"; if ((n < 10)); then echo "$NET.$((10 + n))"; else echo "$NET.$((30 + n))"; fi ;;
  esac
}

bridge_up() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
  ip link add "$BRIDGE" type bridge
  ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Docker's FORWARD policy is DROP, and with br_netfilter bridged frames pass through it
  iptables -w -I FORWARD 1 -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  # the registry, reached from every server at 198.18.0.1
  nohup socat "TCP-LISTEN:$REGISTRY_PORT,bind=$NET.1,fork,reuseaddr" "TCP:127.0.0.1:$REGISTRY_PORT" >/dev/null 2>&1 &
  echo $! >"$DIR/registry-forward.pid"
}

netns_up() { # netns_up NAME
  local ns="bgd-$1" addr
  addr="$(address "$1")"
  ip netns add "$ns"
  ip link add "$ns-out" type veth peer name eth0 netns "$ns"
  ip link set "$ns-out" master "$BRIDGE" up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via "$NET.1"
  ip netns exec "$ns" sh -c "nohup socat TCP-LISTEN:$REGISTRY_PORT,bind=127.0.0.1,fork,reuseaddr TCP:$NET.1:$REGISTRY_PORT >/dev/null 2>&1 & echo \$! >'$DIR/$1/registry-forward.pid'"
}

# as the README asks of a server; scripts/swarm.sh leaves it out (Swarm mode refuses it)
LIVE_RESTORE=--live-restore

dockerd_up() { # dockerd_up NAME
  local d="$DIR/$1"
  mkdir -p "$d/data" "$d/exec"
  ip netns exec "bgd-$1" unshare -m sh -c "mount --make-rprivate /; mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null || true;
    exec dockerd $LIVE_RESTORE --data-root '$d/data' --exec-root '$d/exec' -H 'unix://$d/docker.sock' --pidfile '$d/docker.pid'" \
    >"$d/dockerd.log" 2>&1 &
}

nginx_up() { # nginx_up NAME
  local d="$DIR/$1/nginx"
  mkdir -p "$d/conf.d" "$d/tmp"
  cat >"$d/nginx.conf" <<CFG
worker_processes 2;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  include $d/conf.d/*.conf;
}
CFG
  # the state directory at the path sessions see it (sshd_up): a log file the server's script names
  # (the watch's) is the one nginx writes
  mkdir -p "$DIR/$1/state"
  ip netns exec "bgd-$1" unshare -m sh -c "mount --make-rprivate /; mkdir -p /var/lib/bg-deploy;
    mount --bind '$DIR/$1/state' /var/lib/bg-deploy; exec nginx -c '$d/nginx.conf'"
}

sshd_up() { # sshd_up NAME
  local d="$DIR/$1" addr
  addr="$(address "$1")"
  mkdir -p "$d/state" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -C "bg-deploy-test-$1" -f "$d/ssh_host_ed25519_key"
  cat >"$d/sshd_config" <<CFG
Port 22
ListenAddress $addr
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile $SERVICES/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 50:30:100
MaxSessions 50
CFG
  # the server's own nginx directory at one path on every server, as /etc/nginx is
  local mounts="mount --make-rprivate /; mkdir -p /var/lib/bg-deploy /srv/bgd-nginx; mount --bind '$d/state' /var/lib/bg-deploy;
    mount --bind '$d/nginx' /srv/bgd-nginx;"
  if [[ -S "$d/docker.sock" ]]; then mounts+=" mount --bind '$d/docker.sock' /run/docker.sock;"; fi
  ip netns exec "bgd-$1" unshare -m sh -c "$mounts exec /usr/sbin/sshd -f '$d/sshd_config' -E '$d/sshd.log'"
}

up() {
  local n="${1:-3}" i name names=()
  if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 1 || n > 99)); then die "up takes a number of app servers from 1 to 99, not '$n'"; fi
  [[ -f "$SERVICES/env" ]] || die "run scripts/services.sh up first"
  command -v socat >/dev/null || die "socat is not installed (scripts/services.sh up installs it)"
  down # what an interrupted run left
  mkdir -p "$DIR"
  for ((i = 1; i <= n; i++)); do names+=("h$i"); done
  bridge_up
  for name in "${names[@]}" lb; do mkdir -p "$DIR/$name"; netns_up "$name"; done
  for name in "${names[@]}"; do dockerd_up "$name"; done
  for name in "${names[@]}"; do
    wait_for 60 "dockerd of $name" docker -H "unix://$DIR/$name/docker.sock" info
  done
  for name in "${names[@]}" lb; do nginx_up "$name"; sshd_up "$name"; done
  {
    printf 'BGD_HOSTS=%s\n' "${names[*]}"
    for name in "${names[@]}" lb; do
      printf 'BGD_HOST_%s=%s\n' "${name^^}" "$(address "$name")"
      printf 'BGD_HOST_%s_FINGERPRINT=%s\n' "${name^^}" "$(ssh-keygen -lf "$DIR/$name/ssh_host_ed25519_key.pub")"
    done
  } >"$DIR/hosts.env"
  log "servers ${names[*]} and lb ready; settings in $DIR/hosts.env"
}

stop_pidfile() { # stop_pidfile FILE
  local pid
  [[ -f "$1" ]] || return 0
  pid="$(cat "$1")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$1"
}

down() {
  local d name ns
  for d in "$DIR"/*/; do
    [[ -d "$d" ]] || continue
    name="$(basename "$d")"
    if [[ -S "$d/docker.sock" ]]; then
      docker -H "unix://$d/docker.sock" ps -aq | xargs -r docker -H "unix://$d/docker.sock" rm -f >/dev/null 2>&1 || true
    fi
    stop_pidfile "$d/sshd.pid"
    stop_pidfile "$d/nginx/nginx.pid"
    stop_pidfile "$d/docker.pid"
    stop_pidfile "$d/registry-forward.pid"
    # what the engine left mounted under its roots
    grep -o " ${d}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    ip netns del "bgd-$name" 2>/dev/null || true
    ip link del "bgd-$name-out" 2>/dev/null || true
  done
  stop_pidfile "$DIR/registry-forward.pid"
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^bgd-/ { print $1 }'); do
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$ns-out" 2>/dev/null || true
  done
  iptables -w -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  if [[ -d "$DIR" ]]; then rm -rf "$DIR"; log "servers stopped"; fi
}

# scripts/swarm.sh sources this file for its functions
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  case "${1:-}" in
    up) up "${2:-3}" ;;
    down) down ;;
    *) die "usage: $0 up [N]|down" ;;
  esac
fi
