#!/usr/bin/env bash
# Installs (Debian packages) and starts, on loopback, the real services the end-to-end
# tests deploy against: a Docker engine, an image registry, sshd and nginx.
#   scripts/services.sh up     install what is missing, start what is not running
#   scripts/services.sh down   stop what `up` started (an engine that was already running is left alone)
#   scripts/services.sh restart-docker   restart the Docker engine (what a package upgrade does),
#                                        with BGD_DOCKERD_ARGS as its arguments when set
# Everything lives in $BGD_SERVICES_DIR (default /tmp/bg-deploy-services); `up` writes
# $BGD_SERVICES_DIR/env with the ports, keys and fingerprints the tests read.
set -Eeuo pipefail

DIR="${BGD_SERVICES_DIR:-/tmp/bg-deploy-services}"
REGISTRY_PORT="${BGD_REGISTRY_PORT:-5000}"
SSH_PORT="${BGD_SSH_PORT:-2222}"
# live-restore, as the README asks of a server: containers keep running while the daemon restarts.
# BGD_DOCKERD_ARGS replaces these (the tests restart the engine with --userland-proxy=false too).
read -r -a DOCKERD_ARGS <<<"${BGD_DOCKERD_ARGS:---live-restore}"
PACKAGES=(docker.io docker-registry openssh-server openssh-client nginx busybox-static util-linux iproute2 iptables conntrack sudo shellcheck curl socat)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo -n "$@"; fi
}

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$DIR/apt.log" 2>&1 \
    || { tail -20 "$DIR/apt.log" >&2; die "apt-get install failed (log: $DIR/apt.log)"; }
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within ${seconds}s"
    sleep 0.2
  done
}

start_docker() {
  if docker info >/dev/null 2>&1; then log "docker engine already running"; return 0; fi
  log "starting dockerd ${DOCKERD_ARGS[*]}"
  as_root bash -c "nohup /usr/sbin/dockerd $(printf '%q ' "${DOCKERD_ARGS[@]}")--pidfile '$DIR/dockerd.pid' >'$DIR/dockerd.log' 2>&1 &"
  wait_for 60 dockerd docker info
  touch "$DIR/dockerd.started"
}

start_registry() {
  if curl_ok "http://127.0.0.1:$REGISTRY_PORT/v2/"; then log "registry already on :$REGISTRY_PORT"; return 0; fi
  log "starting registry on 127.0.0.1:$REGISTRY_PORT"
  mkdir -p "$DIR/registry-data"
  cat >"$DIR/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $DIR/registry-data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$REGISTRY_PORT}
YML
  nohup docker-registry serve "$DIR/registry.yml" >"$DIR/registry.log" 2>&1 &
  echo $! >"$DIR/registry.pid"
  wait_for 30 registry curl_ok "http://127.0.0.1:$REGISTRY_PORT/v2/"
}

# bash-only HTTP probe, so the script needs no curl
curl_ok() {
  local url="$1" hostport path
  hostport="${url#http://}"; path="/${hostport#*/}"; hostport="${hostport%%/*}"
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/${1%:*}/${1##*:}" && printf "GET %s HTTP/1.0\r\n\r\n" "$2" >&3 && read -r _ code _ <&3 && [[ "$code" == 2* ]]' _ "$hostport" "$path" 2>/dev/null
}

start_sshd() {
  if [[ -f "$DIR/sshd.pid" ]] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; then log "sshd already on :$SSH_PORT"; return 0; fi
  log "starting sshd on 127.0.0.1:$SSH_PORT"
  mkdir -p /run/sshd
  [[ -f "$DIR/ssh_host_ed25519_key" ]] || ssh-keygen -q -t ed25519 -N '' -C bg-deploy-test-host -f "$DIR/ssh_host_ed25519_key"
  [[ -f "$DIR/ssh_host_rsa_key" ]] || ssh-keygen -q -t rsa -b 2048 -N '' -C bg-deploy-test-host -f "$DIR/ssh_host_rsa_key"
  [[ -f "$DIR/client_key" ]] || ssh-keygen -q -t ed25519 -N '' -C bg-deploy-test-client -f "$DIR/client_key"
  cp "$DIR/client_key.pub" "$DIR/authorized_keys"
  # RSA is listed first on purpose: a pinned ed25519 fingerprint must still be negotiated.
  cat >"$DIR/sshd_config" <<CFG
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $DIR/ssh_host_rsa_key
HostKey $DIR/ssh_host_ed25519_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys .ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 50:30:100
MaxSessions 50
CFG
  /usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"
  wait_for 10 sshd test -s "$DIR/sshd.pid"
}

start_nginx() {
  mkdir -p "$DIR/nginx/conf.d" "$DIR/nginx/tmp"
  if [[ -f "$DIR/nginx/nginx.pid" ]] && kill -0 "$(cat "$DIR/nginx/nginx.pid")" 2>/dev/null; then log "nginx already running"; return 0; fi
  log "starting nginx ($DIR/nginx/nginx.conf)"
  # a site left by an interrupted run whose upstream file is gone would stop nginx from starting
  local site
  for site in "$DIR/nginx/conf.d/"*-site.conf; do
    [[ -e "$site" && ! -e "${site%-site.conf}-upstream.conf" ]] && rm -f "$site"
  done
  cat >"$DIR/nginx/nginx.conf" <<CFG
worker_processes 2;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log warn;
events { worker_connections 4096; }
http {
  # a directive, not "off": "off" would also cancel the access_log of a watch window (README, Watch window)
  access_log /dev/null;
  client_body_temp_path $DIR/nginx/tmp/body;
  proxy_temp_path $DIR/nginx/tmp/proxy;
  fastcgi_temp_path $DIR/nginx/tmp/fastcgi;
  uwsgi_temp_path $DIR/nginx/tmp/uwsgi;
  scgi_temp_path $DIR/nginx/tmp/scgi;
  include $DIR/nginx/conf.d/*.conf;
}
CFG
  nginx -c "$DIR/nginx/nginx.conf"
  wait_for 10 nginx test -s "$DIR/nginx/nginx.pid"
}

write_env() {
  local fp_ed fp_rsa
  fp_ed="$(ssh-keygen -lf "$DIR/ssh_host_ed25519_key.pub")"
  fp_rsa="$(ssh-keygen -lf "$DIR/ssh_host_rsa_key.pub")"
  cat >"$DIR/env" <<ENV
BGD_SERVICES_DIR=$DIR
BGD_REGISTRY=127.0.0.1:$REGISTRY_PORT
BGD_SSH_HOST=127.0.0.1
BGD_SSH_PORT=$SSH_PORT
BGD_SSH_USER=$(id -un)
BGD_SSH_KEY_FILE=$DIR/client_key
BGD_SSH_FINGERPRINT_ED25519=$fp_ed
BGD_SSH_FINGERPRINT_RSA=$fp_rsa
BGD_SSH_HOST_KEY_ED25519=$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")
BGD_NGINX_CONF=$DIR/nginx/nginx.conf
BGD_NGINX_CONFD=$DIR/nginx/conf.d
ENV
  log "services ready; settings in $DIR/env"
}

up() {
  mkdir -p "$DIR"; chmod 700 "$DIR"
  install_packages
  start_docker
  start_registry
  start_sshd
  start_nginx
  write_env
}

stop_pidfile() { # stop_pidfile NAME FILE
  local pid
  [[ -f "$2" ]] || return 0
  pid="$(cat "$2")"
  if kill "$pid" 2>/dev/null; then
    log "stopping $1"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$2"
}

down() {
  [[ -d "$DIR" ]] || return 0
  if docker info >/dev/null 2>&1; then
    # containers the tests started carry this label; nothing else is touched
    docker ps -aq --filter label=bg-deploy.test=1 | xargs -r docker rm -f >/dev/null 2>&1 || true
  fi
  stop_pidfile nginx "$DIR/nginx/nginx.pid"
  stop_pidfile sshd "$DIR/sshd.pid"
  stop_pidfile registry "$DIR/registry.pid"
  if [[ -f "$DIR/dockerd.started" ]]; then
    stop_pidfile dockerd "$DIR/dockerd.pid"
    rm -f "$DIR/dockerd.started"
  fi
}

# Stop the engine and start it again the way it was started: by this script, or by systemd.
restart_docker() {
  if [[ -f "$DIR/dockerd.started" ]]; then
    stop_pidfile dockerd "$DIR/dockerd.pid"
    rm -f "$DIR/dockerd.started"
    start_docker
  elif command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    as_root systemctl restart docker
    wait_for 60 dockerd docker info
  else
    die "the Docker engine was not started by this script nor by systemd: restart it by hand"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  restart-docker) restart_docker ;;
  *) die "usage: $0 up|down|restart-docker" ;;
esac
