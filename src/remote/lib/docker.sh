# Docker: every call rides through a daemon restart; the colors' containers and ports.

# The Docker daemon can restart under a deploy (a docker package upgrade restarts it). Every docker
# call goes through this function: when one fails and the daemon does not answer, it waits for the
# daemon (up to docker_timeout seconds) and runs the call again. A `run` that was cut off may have
# created its container, so that container is removed before the `run` is repeated. The output of
# a call cut off is dropped (an inspect prints an empty line as it fails). Messages go to fd 8, the
# script's stderr, because callers silence or capture the call's own stderr.
docker_call() {
  local rc=0 name='' i out
  out="$(command docker "$@"; r=$?; printf .; exit "$r")" || rc=$?
  if ((rc == 0)) || docker_answers; then printf '%s' "${out%.}"; return "$rc"; fi
  docker_wait "docker $1"
  if [[ "$1" == run ]]; then
    for ((i = 1; i < $#; i++)); do if [[ "${!i}" == --name ]]; then i=$((i + 1)); name="${!i}"; break; fi; done
    if [[ -n "$name" ]]; then command docker rm -f "$name" >/dev/null 2>&1 || true; fi
  fi
  command docker "$@"
}

# true also when the daemon runs but refuses this user: waiting would not help then
docker_answers() {
  local err
  err="$(command docker version -f '{{.Server.Version}}' 2>&1 >/dev/null)" || [[ "$err" == *'permission denied'* ]]
}

docker_wait() { # docker_wait WHAT_WAS_CUT_OFF
  local start deadline
  start="$(now_ms)"; deadline=$((start + ${P[docker_timeout]%.*} * 1000))
  printf '==> the Docker daemon is not answering (%s failed; is it restarting?): waiting up to %ss for it\n' "$1" "${P[docker_timeout]}" >&8
  until docker_answers; do
    if (($(now_ms) >= deadline)); then
      history_add failed-docker
      die "the Docker daemon on the server did not answer for ${P[docker_timeout]}s (during $1). Start it (systemctl start docker) and run the deploy again: the next run finishes or undoes this one. nginx still points where it pointed."
    fi
    sleep 0.2
  done
  printf '==> the Docker daemon answers again after %s ms\n' "$(($(now_ms) - start))" >&8
}

# Before anything changes: the daemon must answer, and without live-restore a daemon restart stops
# every container, the one serving too; say so (once per run).
docker_preflight() {
  local live
  if ! live="$(docker_call info -f '{{.LiveRestoreEnabled}}' 2>/dev/null)"; then
    die "docker info failed on the server for user $(id -un) (is it in the docker group?): $(command docker info 2>&1 >/dev/null | head -n 1)"
  fi
  if [[ "$live" != true ]]; then
    warn "the Docker daemon on the server runs without live-restore: if it restarts (a docker package upgrade restarts it), every container stops, the serving one too, until it is back. Add \"live-restore\": true to /etc/docker/daemon.json and run 'systemctl reload docker' (containers keep running)."
  fi
}

# The pull credential, logged in to a temporary Docker config whose directory REGISTRY_CONFIG
# names (empty without a credential), for a pull or a Swarm service with --with-registry-auth.
REGISTRY_CONFIG=''

registry_login() {
  [[ -n "${P[registry_user]}" && -n "$REGISTRY_PASSWORD" && -z "$REGISTRY_CONFIG" ]] || return 0
  REGISTRY_CONFIG="$(mktemp -d)"
  TMP_PATHS+=("$REGISTRY_CONFIG")
  printf '%s' "$REGISTRY_PASSWORD" | docker_call --config "$REGISTRY_CONFIG" login --username "${P[registry_user]}" --password-stdin -- "${P[registry]}" >/dev/null \
    || die "docker login to ${P[registry]} as ${P[registry_user]} failed on the server"
}

container_name() { printf '%s-%s' "${P[app]}" "$1"; }

color_port() { if [[ "$1" == blue ]]; then echo "${P[blue_port]}"; else echo "${P[green_port]}"; fi; }

color_other() { if [[ "$1" == blue ]]; then echo green; else echo blue; fi; }

container_running() { [[ "$(docker_call inspect -f '{{.State.Running}}' "$(container_name "$1")" 2>/dev/null)" == true ]]; }

container_exists() { docker_call inspect -f '{{.Id}}' "$(container_name "$1")" >/dev/null 2>&1; }

container_pid() { docker_call inspect -f '{{.State.Pid}}' "$(container_name "$1")" 2>/dev/null || echo 0; }

container_remove() { docker_call rm -f "$(container_name "$1")" >/dev/null 2>&1 || true; }

# Where a color's published port answers on this server: the bind address, or loopback when the
# ports are published on loopback or on every address.
bind_host() {
  case "${P[bind_address]}" in 127.0.0.1 | 0.0.0.0) echo 127.0.0.1 ;; *) echo "${P[bind_address]}" ;; esac
}
