#!/usr/bin/env bash
# A single-node Docker Swarm for the tests and the demo of engine: swarm: a server (network
# namespace bgd-sw, 198.18.0.30, made as in scripts/hosts.sh) whose own Docker engine is a swarm
# manager, with its own sshd, an attachable overlay network bgd-swarm, and nginx in a container on
# that network (image bgd-nginx, built FROM scratch from Debian's nginx and its libraries: no image
# can be pulled here). The routing mesh does not work on this kernel (no IPVS), so nginx reaches a
# service's tasks directly: tasks.<service> through Docker's resolver. Each app's site is a file in
# $DIR/sw/front/conf.d; nginx publishes ports 18200-18209 on the server.
#   scripts/swarm.sh up | down | reload (nginx in the front container)
set -Eeuo pipefail
# shellcheck source=scripts/hosts.sh disable=SC1091
source "$(dirname "$0")/hosts.sh"
DIR="$SERVICES/swarm"
LIVE_RESTORE=''
FRONT_PORTS=18200-18209

front_image() { # build bgd-nginx on the swarm's engine
  local ctx="$DIR/nginx-image" lib
  rm -rf "$ctx"; mkdir -p "$ctx/rootfs/usr/sbin" "$ctx/rootfs/etc/bgd/conf.d" "$ctx/rootfs/tmp"
  cp /usr/sbin/nginx "$ctx/rootfs/usr/sbin/nginx"
  for lib in $(ldd /usr/sbin/nginx | grep -o '/[^ ]*') /lib/x86_64-linux-gnu/libnss_files.so.2; do
    [[ -e "$lib" ]] || continue
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ctx/rootfs/etc/passwd"
  printf 'root:x:0:\n' >"$ctx/rootfs/etc/group"
  printf 'passwd: files\ngroup: files\n' >"$ctx/rootfs/etc/nsswitch.conf"
  cat >"$ctx/Dockerfile" <<'DF'
FROM scratch
COPY rootfs /
CMD ["/usr/sbin/nginx", "-c", "/etc/bgd/nginx.conf", "-g", "daemon off;"]
DF
  docker -H "unix://$DIR/sw/docker.sock" build -q -t bgd-nginx "$ctx" >/dev/null
}

front_up() {
  local d="$DIR/sw/front"
  mkdir -p "$d/conf.d"
  cat >"$d/nginx.conf" <<'CFG'
user root;
worker_processes 2;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path /tmp/body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  # Docker's resolver: tasks.<service> names the service's healthy running tasks
  resolver 127.0.0.11 valid=1s ipv6=off;
  include /etc/bgd/conf.d/*.conf;
}
CFG
  docker -H "unix://$DIR/sw/docker.sock" run -d --name bgd-front --network bgd-swarm \
    -p "$FRONT_PORTS:$FRONT_PORTS" -v "$d:/etc/bgd:ro" bgd-nginx >/dev/null
}

swarm_up() {
  [[ -f "$SERVICES/env" ]] || die "run scripts/services.sh up first"
  swarm_down
  mkdir -p "$DIR/sw/nginx"
  bridge_up
  netns_up sw
  dockerd_up sw
  wait_for 60 "dockerd of sw" docker -H "unix://$DIR/sw/docker.sock" info
  sshd_up sw
  local dk=(docker -H "unix://$DIR/sw/docker.sock")
  "${dk[@]}" swarm init --advertise-addr 127.0.0.1 >/dev/null
  "${dk[@]}" network create -d overlay --attachable bgd-swarm >/dev/null
  front_image
  front_up
  printf 'BGD_SWARM_HOST=%s\nBGD_SWARM_FINGERPRINT=%s\nBGD_SWARM_DOCKER=unix://%s\nBGD_SWARM_FRONT=%s\nBGD_SWARM_NETWORK=bgd-swarm\n' \
    "$(address sw)" "$(ssh-keygen -lf "$DIR/sw/ssh_host_ed25519_key.pub")" "$DIR/sw/docker.sock" "$DIR/sw/front" >"$DIR/swarm.env"
  log "swarm manager sw ready at $(address sw); settings in $DIR/swarm.env"
}

swarm_down() {
  local d="$DIR/sw"
  if [[ -S "$d/docker.sock" ]]; then
    docker -H "unix://$d/docker.sock" service ls -q | xargs -r docker -H "unix://$d/docker.sock" service rm >/dev/null 2>&1 || true
    docker -H "unix://$d/docker.sock" ps -aq | xargs -r docker -H "unix://$d/docker.sock" rm -f >/dev/null 2>&1 || true
    docker -H "unix://$d/docker.sock" swarm leave --force >/dev/null 2>&1 || true
  fi
  if [[ -d "$d" ]]; then
    stop_pidfile "$d/sshd.pid"
    stop_pidfile "$d/docker.pid"
    stop_pidfile "$d/registry-forward.pid"
    grep -o " ${d}/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  fi
  ip netns del bgd-sw 2>/dev/null || true
  ip link del bgd-sw-out 2>/dev/null || true
  stop_pidfile "$DIR/registry-forward.pid"
  # the bridge only when no other test server uses it
  if ! ip netns list 2>/dev/null | grep -q '^bgd-'; then
    iptables -w -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  up) swarm_up ;;
  down) swarm_down ;;
  reload) docker -H "unix://$DIR/sw/docker.sock" exec bgd-front /usr/sbin/nginx -c /etc/bgd/nginx.conf -s reload ;;
  *) die "usage: $0 up|down|reload" ;;
esac
