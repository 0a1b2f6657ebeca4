#!/usr/bin/env bash
# bg-deploy remote script: a blue-green switch of one app behind nginx.
#
# Sent over SSH on stdin and run as `bash -s -- key=value...`. Parameters arrive as arguments;
# secrets follow the script on stdin as `name base64` lines ending with `end` (see read_secrets),
# so they never appear on a command line or in a file readable by others.
#
# Output: `==> ` log lines and docker output on stderr; on stdout, `::bg-deploy-phase:: NAME`
# when a phase starts, `::bg-deploy-event:: NAME EPOCH_MS` for the timeline, and one final
# `::bg-deploy-result:: key=value...` line.
set -Eeuo pipefail
umask 077

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '::bg-deploy-error:: %s\n' "$*"; printf 'error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
phase() { printf '::bg-deploy-phase:: %s\n' "$1"; }
event() { printf '::bg-deploy-event:: %s %s\n' "$1" "$(now_ms)"; }

# ---------------------------------------------------------------- parameters and secrets

declare -A P=(
  [action]=deploy [app]='' [image]='' [version]='' [container_port]=8080
  [blue_port]=8081 [green_port]=8082 [network]='' [env_file]=''
  [health_path]=/ [health_timeout]=60 [health_interval]=0.2 [drain_timeout]=30
  [upstream_file]='' [upstream_name]='' [nginx_test]='nginx -t' [nginx_reload]='nginx -s reload'
  [lock_timeout]=600 [actor]='' [run_url]='' [registry]='' [registry_user]='' [state_dir]=''
  [target]=''
)
RUN_ARGS=()
ENV_KEYS=()
ENV_VALUES=() # each value + 'x', so that command substitution keeps trailing newlines
REGISTRY_PASSWORD=''

parse_args() {
  local arg key
  for arg in "$@"; do
    key="${arg%%=*}"
    [[ "$arg" == *=* ]] || die "bad argument '$arg' (expected key=value)"
    if [[ "$key" == run_arg ]]; then
      RUN_ARGS+=("${arg#*=}")
    elif [[ -v "P[$key]" ]]; then
      P[$key]="${arg#*=}"
    else
      die "unknown parameter '$key'"
    fi
  done
  [[ -n "${P[app]}" ]] || die "parameter app is required"
  [[ -n "${P[image]}" ]] || die "parameter image is required"
}

# Secrets come after the script on stdin: `registry_password B64`, `env KEY B64`, then `end`.
read_secrets() {
  local name a b
  while IFS=' ' read -r name a b; do
    case "$name" in
      end) break ;;
      registry_password) REGISTRY_PASSWORD="$(printf '%s' "$a" | base64 -d)" ;;
      env)
        [[ "$a" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad env key"
        ENV_KEYS+=("$a")
        ENV_VALUES+=("$(printf '%s' "$b" | base64 -d; printf x)")
        ;;
      '') ;;
      *) die "unknown secret line '$name'" ;;
    esac
  done
  exec </dev/null
}

# ---------------------------------------------------------------- state

STATE_DIR=''
state_init() {
  if [[ -n "${P[state_dir]}" ]]; then STATE_DIR="${P[state_dir]}"
  elif [[ "$(id -u)" == 0 ]]; then STATE_DIR="/var/lib/bg-deploy/${P[app]}"
  else STATE_DIR="$HOME/.bg-deploy/${P[app]}"
  fi
  mkdir -p "$STATE_DIR" || die "cannot create the state directory $STATE_DIR"
  chmod 700 "$STATE_DIR"
}

state_get() { # state_get KEY -> value from the state file, empty when absent
  [[ -f "$STATE_DIR/state" ]] || return 0
  sed -n "s/^$1=//p" "$STATE_DIR/state" | tail -n 1
}

state_write() { # state_write color version image
  local tmp="$STATE_DIR/.state.tmp"
  if ! printf 'color=%s\nversion=%s\nimage=%s\nupdated=%s\n' "$1" "$2" "$3" "$(date -u +%FT%TZ)" >"$tmp" \
    || ! mv -f "$tmp" "$STATE_DIR/state"; then
    die "cannot write $STATE_DIR/state (disk full?)"
  fi
}

history_add() { # history_add action version image color result
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "${P[actor]:--}" "${P[run_url]:--}" \
    "$1" "${2:--}" "${3:--}" "${4:--}" "$5" >>"$STATE_DIR/history" 2>/dev/null \
    || log "warning: could not append to $STATE_DIR/history"
}

LOCK_FD=9
lock_acquire() {
  local holder
  exec 9>>"$STATE_DIR/lock"
  if ! flock -n "$LOCK_FD"; then
    holder="$(cat "$STATE_DIR/lock.holder" 2>/dev/null || echo 'unknown')"
    log "another deploy of ${P[app]} holds the lock ($holder); waiting up to ${P[lock_timeout]}s"
    flock -w "${P[lock_timeout]}" "$LOCK_FD" \
      || die "timed out after ${P[lock_timeout]}s waiting for the deploy lock of ${P[app]}, held by: $holder"
  fi
  printf '%s since %s\n' "${P[run_url]:-a run without URL}" "$(date -u +%FT%TZ)" >"$STATE_DIR/lock.holder"
}

# ---------------------------------------------------------------- docker helpers

container() { printf '%s-%s' "${P[app]}" "$1"; }
port_of() { if [[ "$1" == blue ]]; then echo "${P[blue_port]}"; else echo "${P[green_port]}"; fi; }
other() { if [[ "$1" == blue ]]; then echo green; else echo blue; fi; }
is_running() { [[ "$(docker inspect -f '{{.State.Running}}' "$(container "$1")" 2>/dev/null)" == true ]]; }
exists() { docker inspect -f '{{.Id}}' "$(container "$1")" >/dev/null 2>&1; }

upstream_target() { # the address nginx should use for a color
  if [[ -n "${P[network]}" ]]; then echo "$(container "$1"):${P[container_port]}"
  else echo "127.0.0.1:$(port_of "$1")"
  fi
}

# Which color does the upstream file send traffic to? Empty when none/unknown.
color_in_upstream() {
  local f="${P[upstream_file]}" c
  [[ -f "$f" ]] || return 0
  for c in blue green; do
    if grep -qE "^[[:space:]]*server[[:space:]]+$(upstream_target "$c" | sed 's/[.]/[.]/g')[[:space:];]" "$f"; then
      echo "$c"; return 0
    fi
  done
}

# The color serving now: what the upstream file says, else the state file, else the one running
# container (a server set up by hand or by a seed script is adopted, not broken).
detect_active() {
  local c
  c="$(color_in_upstream)"
  if [[ -z "$c" ]]; then c="$(state_get color)"; fi
  if [[ -z "$c" ]]; then
    if is_running blue && ! is_running green; then c=blue
    elif is_running green && ! is_running blue; then c=green
    fi
  fi
  echo "$c"
}

# ---------------------------------------------------------------- steps

pull_image() { # pull_image [WHAT_A_FAILURE_MEANS]
  phase pull; event pull
  local cfg='' rc=0 out
  if [[ -n "${P[registry_user]}" && -n "$REGISTRY_PASSWORD" ]]; then
    cfg="$(mktemp -d)"
    TMP_PATHS+=("$cfg")
    printf '%s' "$REGISTRY_PASSWORD" | docker --config "$cfg" login --username "${P[registry_user]}" --password-stdin -- "${P[registry]}" >/dev/null \
      || die "docker login to ${P[registry]} as ${P[registry_user]} failed on the server"
  fi
  log "pulling ${P[image]}"
  out="$(docker ${cfg:+--config "$cfg"} pull -q -- "${P[image]}" 2>&1)" || rc=$?
  if [[ -n "$cfg" ]]; then rm -rf "$cfg"; fi
  if ((rc != 0)); then
    if docker image inspect "${P[image]}" >/dev/null 2>&1; then
      log "pull failed, using the image already on the server: $out"
    else
      die "${1:-cannot pull ${P[image]}} (docker: $out)"
    fi
  fi
  event pulled
}

start_color() { # start_color COLOR
  local color="$1" name port key
  name="$(container "$color")"; port="$(port_of "$color")"
  phase "start $name"
  if exists "$color"; then
    log "replacing leftover container $name"
    docker rm -f "$name" >/dev/null
  fi
  local args=(run -d --name "$name" --init --restart unless-stopped
    --label "bg-deploy.app=${P[app]}" --label "bg-deploy.color=$color" --label "bg-deploy.version=${P[version]}"
    -p "127.0.0.1:$port:${P[container_port]}")
  if [[ -n "${P[network]}" ]]; then args+=(--network "${P[network]}"); fi
  if [[ -n "${P[env_file]}" ]]; then args+=(--env-file "${P[env_file]}"); fi
  if ((${#ENV_KEYS[@]} > 0)); then
    # owner-only file in the owner-only state directory, removed as soon as docker has read it
    local secret_env="$STATE_DIR/.env.$$" i
    TMP_PATHS+=("$secret_env")
    : >"$secret_env"
    for i in "${!ENV_KEYS[@]}"; do printf '%s=%s\n' "${ENV_KEYS[$i]}" "${ENV_VALUES[$i]%x}" >>"$secret_env"; done
    args+=(--env-file "$secret_env")
  fi
  args+=("${RUN_ARGS[@]}" -- "${P[image]}")
  log "starting $name (${P[image]}) on 127.0.0.1:$port"
  local out rc=0
  out="$(docker "${args[@]}" 2>&1)" || rc=$?
  if [[ -n "${secret_env:-}" ]]; then rm -f "$secret_env"; fi
  ((rc == 0)) || { docker rm -f "$name" >/dev/null 2>&1 || true; die "docker run $name failed: $out"; }
  event started
}

http_status() { # http_status PORT PATH TIMEOUT -> prints the status code or nothing
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout "$3" bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: bg-deploy\r\n\r\n" "$2" >&3
    read -r _ code _ <&3 && printf "%s" "$code"' _ "$1" "$2" 2>/dev/null || true
}

wait_healthy() { # wait_healthy COLOR
  local color="$1" name port start deadline code state now checked=0
  name="$(container "$color")"; port="$(port_of "$color")"
  phase "health $name"
  start="$(now_ms)"; deadline=$((start + ${P[health_timeout]%.*} * 1000))
  log "polling http://127.0.0.1:$port${P[health_path]} every ${P[health_interval]}s (up to ${P[health_timeout]}s)"
  while :; do
    code="$(http_status "$port" "${P[health_path]}" 2)"
    if [[ "$code" == 2?? ]]; then
      log "$name is healthy after $(( $(now_ms) - start )) ms (HTTP $code)"
      event healthy
      return 0
    fi
    # the container's own state, at most every 0.5 s (a docker call costs more than a probe)
    now="$(now_ms)"
    if ((now - checked >= 500)); then
      checked="$now"
      state="$(docker inspect -f '{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}' "$name" 2>/dev/null || echo 'gone 0 0')"
      if [[ "$state" != "running 0 "* ]]; then
        health_failed "$color" "$name exited or restarted before it became healthy (state: ${state% *}, exit code ${state##* })"
      fi
    fi
    if (( $(now_ms) >= deadline )); then
      health_failed "$color" "$name did not answer 2xx on ${P[health_path]} within ${P[health_timeout]}s (last: ${code:-no HTTP answer})"
    fi
    sleep "${P[health_interval]}"
  done
}

health_failed() { # health_failed COLOR MESSAGE: show the logs, remove the new container, leave the rest
  local name; name="$(container "$1")"
  log "last log lines of $name:"
  docker logs --tail 30 "$name" >&2 2>&1 || true
  docker rm -f "$name" >/dev/null 2>&1 || true
  history_add "${P[action]}" "${P[version]}" "${P[image]}" "$1" failed-health
  die "$2. Nothing was switched: the previous version is still serving."
}

render_upstream() { # render_upstream COLOR FILE
  printf '# Managed by bg-deploy (app %s, %s, version %s). Do not edit: the next deploy rewrites it.\nupstream %s {\n    server %s;\n}\n' \
    "${P[app]}" "$1" "${P[version]:-unknown}" "${P[upstream_name]}" "$(upstream_target "$1")" >"$2"
}

# Point nginx at COLOR: temp file, backup, atomic move, nginx test (restore on failure), reload.
switch_to() { # switch_to COLOR
  local color="$1" f="${P[upstream_file]}" dir tmp out
  phase "switch to $(container "$color")"
  dir="$(dirname "$f")"
  [[ -d "$dir" && -w "$dir" ]] || { remove_new "$color"; die "cannot write the upstream file: $dir is not a writable directory"; }
  tmp="$dir/.$(basename "$f").bg-deploy.tmp"
  TMP_PATHS+=("$tmp")
  render_upstream "$color" "$tmp" || { remove_new "$color"; die "cannot write $tmp"; }
  chmod 644 "$tmp"
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  if [[ -f "$f" ]]; then cp -p "$f" "$STATE_DIR/upstream.bak"; else touch "$STATE_DIR/upstream.none"; fi
  touch "$STATE_DIR/switch.pending"
  mv -f "$tmp" "$f"
  if ! out="$(bash -c "${P[nginx_test]}" 2>&1)"; then
    restore_upstream
    remove_new "$color"
    history_add "${P[action]}" "${P[version]}" "${P[image]}" "$color" failed-nginx-test
    die "nginx rejected the new upstream, so the previous config was restored and nothing was switched. nginx said: $out"
  fi
  if ! out="$(bash -c "${P[nginx_reload]}" 2>&1)"; then
    restore_upstream
    remove_new "$color"
    history_add "${P[action]}" "${P[version]}" "${P[image]}" "$color" failed-nginx-reload
    die "nginx reload failed, so the previous upstream file was restored and the new container removed. Is nginx running? It said: $out"
  fi
  rm -f "$STATE_DIR/switch.pending"
  event switched
  log "nginx now sends ${P[upstream_name]} to $(upstream_target "$color")"
}

restore_upstream() {
  if [[ -f "$STATE_DIR/upstream.bak" ]]; then mv -f "$STATE_DIR/upstream.bak" "${P[upstream_file]}"
  elif [[ -f "$STATE_DIR/upstream.none" ]]; then rm -f "${P[upstream_file]}"
  fi
  rm -f "$STATE_DIR/upstream.none" "$STATE_DIR/switch.pending"
}

remove_new() { docker rm -f "$(container "$1")" >/dev/null 2>&1 || true; }

# A previous run that died between moving the upstream file and reloading nginx left
# switch.pending: make nginx serve what the file says if that container runs, else restore.
recover_switch() {
  [[ -f "$STATE_DIR/switch.pending" ]] || return 0
  local c; c="$(color_in_upstream)"
  log "a previous run stopped in the middle of a switch; converging first"
  if [[ -n "$c" ]] && is_running "$c" && bash -c "${P[nginx_test]}" >/dev/null 2>&1; then
    bash -c "${P[nginx_reload]}" >&2 || die "nginx reload failed while recovering an interrupted switch"
    rm -f "$STATE_DIR/switch.pending" "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
    log "nginx serves $c, as the interrupted run had switched it"
  else
    restore_upstream
    if bash -c "${P[nginx_test]}" >/dev/null 2>&1; then bash -c "${P[nginx_reload]}" >&2 || true; fi
    log "restored the upstream file from before the interrupted run"
  fi
}

# Established TCP connections to the app port in the network namespace of a container's process
# (0 for none): nginx (directly or through docker-proxy) holds one per request in flight. With root,
# the kernel filters them (nsenter + ss); otherwise /proc/PID/net/tcp* is read, which is slow when
# the namespace holds thousands of TIME_WAIT sockets, as it does under load.
USE_SS=''
connections() { # connections PID
  local pid="$1"
  [[ "$pid" != 0 ]] || { echo 0; return; }
  if [[ -z "$USE_SS" ]]; then
    if command -v ss >/dev/null && nsenter -t "$pid" -n true 2>/dev/null; then USE_SS=1; else USE_SS=0; fi
  fi
  if [[ "$USE_SS" == 1 ]]; then
    nsenter -t "$pid" -n ss -Htn state established "( sport = :${P[container_port]} )" 2>/dev/null | wc -l
    return
  fi
  [[ -r "/proc/$pid/net/tcp" ]] || { echo 0; return; }
  awk -v port=":$(printf '%04X' "${P[container_port]}")" \
    '$4 == "01" && substr($2, length($2) - 4) == port { n++ } END { print n + 0 }' \
    "/proc/$pid/net/tcp" "/proc/$pid/net/tcp6" 2>/dev/null || echo 0
}

container_pid() { docker inspect -f '{{.State.Pid}}' "$(container "$1")" 2>/dev/null || echo 0; }

# Wait until the old color serves nothing. `nginx -s reload` returns before nginx has started its
# new workers, and the old workers accept requests until then: so the old color is drained once
# nginx is seen sending traffic to the new color (or 1 s passed with no traffic at all) and the old
# one has had no connection for 0.2 s; requests in flight there finish first, up to drain-timeout.
drain() { # drain OLD_COLOR NEW_COLOR
  local name start deadline now o n=0 seen_new=0 zero_since=0 old_pid new_pid
  name="$(container "$1")"
  is_running "$1" || { log "$name is not running; nothing to drain"; event drained; return 0; }
  phase "drain $name"
  start="$(now_ms)"
  deadline=$(( start + ${P[drain_timeout]%.*} * 1000 ))
  old_pid="$(container_pid "$1")"; new_pid="$(container_pid "$2")"
  while :; do
    o="$(connections "$old_pid")"
    if ((!seen_new)); then n="$(connections "$new_pid")"; fi
    now="$(now_ms)"
    if ((n > 0 || now - start >= 1000)); then seen_new=1; fi
    if ((o > 0)); then zero_since=0; elif ((zero_since == 0)); then zero_since="$now"; fi
    if ((seen_new && zero_since > 0 && now - zero_since >= 200)); then break; fi
    if ((now >= deadline)); then log "drain timeout: $o connection(s) still open on $name"; break; fi
    sleep 0.05
  done
  log "drained $name in $(( now - start )) ms"
  event drained
}

# After the result: stop the old color (kept, stopped, for a fast rollback) and prune images in the
# background, so the run does not wait for docker's container teardown. The background job holds
# the app's lock (it shares the lock's file descriptor), so the next deploy or rollback of this app
# waits for it; its output goes to $STATE_DIR/stop.log.
stop_later() { # stop_later [OLD_COLOR]
  local name=''
  if [[ -n "${1:-}" ]] && is_running "$1"; then name="$(container "$1")"; fi
  if [[ -n "$name" ]]; then log "stopping $name (kept for a fast rollback) in the background; the deploy lock is held until it has stopped"; fi
  (
    exec </dev/null >>"$STATE_DIR/stop.log" 2>&1
    trap - EXIT
    printf '%s stop %s\n' "$(date -u +%FT%TZ)" "${name:-(none)}"
    if [[ -n "$name" ]]; then docker stop -t 10 "$name" >/dev/null || echo "warning: docker stop $name failed"; fi
    prune_images
  ) &
  disown
}

# Keep the images of the last three versions and those the blue/green containers use;
# only this app's repository is looked at.
prune_images() {
  local repo="${P[image]%:*}" in_use='' ref id kept=0 c
  for c in blue green; do in_use+=" $(docker inspect -f '{{.Image}}' "$(container "$c")" 2>/dev/null || true)"; done
  while read -r ref id; do
    [[ "$ref" == *:latest || "$ref" == *'<none>'* ]] && continue
    [[ "$in_use" == *"$id"* ]] && continue
    kept=$((kept + 1))
    ((kept <= 3)) && continue
    if docker rmi "$ref" >/dev/null 2>&1; then log "removed old image $ref"; fi
  done < <(docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' "$repo" 2>/dev/null)
}

# ---------------------------------------------------------------- main

TMP_PATHS=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { local p; for p in "${TMP_PATHS[@]}"; do rm -rf "$p"; done; }

deploy() {
  local active idle
  recover_switch
  active="$(detect_active)"
  if [[ -n "$active" ]]; then idle="$(other "$active")"; else idle=blue; fi
  log "app ${P[app]}: ${active:-nothing} serving now; deploying ${P[version]:-${P[image]}} to $idle"
  pull_image
  start_color "$idle"
  wait_healthy "$idle"
  switch_to "$idle"
  state_write "$idle" "${P[version]}" "${P[image]}"
  if [[ -n "$active" && "$active" != "$idle" ]]; then drain "$active" "$idle"; fi
  history_add "${P[action]}" "${P[version]}" "${P[image]}" "$idle" ok
  event finished
  if [[ -n "$active" && "$active" != "$idle" ]]; then stop_later "$active"; else stop_later; fi
  printf '::bg-deploy-result:: deployed=true color=%s previous_color=%s version=%s image=%s\n' \
    "$idle" "${active:-}" "${P[version]}" "${P[image]}"
}

# Versions deployed successfully here, newest first, one per line: VERSION<TAB>IMAGE.
deployed_versions() {
  [[ -f "$STATE_DIR/history" ]] || return 0
  awk -F'\t' '$8 == "ok" && $5 != "-" { print $5 "\t" $6 }' "$STATE_DIR/history" | tac | awk -F'\t' '!seen[$1]++'
}

rollback() {
  local active idle current version='' image='' line available fast=0
  recover_switch
  active="$(detect_active)"
  [[ -n "$active" ]] || die "nothing is deployed for ${P[app]} on this server, so there is nothing to roll back to"
  current="$(state_get version)"
  available="$(deployed_versions | cut -f1 | paste -sd ' ' -)"
  if [[ "${P[target]}" == previous ]]; then
    # the most recent good version that is not the one serving now
    line="$(deployed_versions | awk -F'\t' -v cur="$current" '$1 != cur { print; exit }')"
    [[ -n "$line" ]] || die "there is no earlier version of ${P[app]} to roll back to (serving: ${current:-unknown}; deployed here: ${available:-none})"
    version="${line%%$'\t'*}"; image="${line#*$'\t'}"
  else
    version="${P[target]}"
    line="$(deployed_versions | awk -F'\t' -v v="$version" '$1 == v { print; exit }')"
    if [[ -n "$line" ]]; then image="${line#*$'\t'}"; else image="${P[image]}"; fi
  fi
  P[version]="$version"; P[image]="$image"
  idle="$(other "$active")"
  log "app ${P[app]}: ${current:-unknown} serving from $active; rolling back to $version"
  if exists "$idle" && [[ "$(docker inspect -f '{{index .Config.Labels "bg-deploy.version"}}' "$(container "$idle")")" == "$version" ]] \
    && [[ "$(docker inspect -f '{{.Config.Image}}' "$(container "$idle")")" == "$image" ]]; then
    fast=1
  fi
  if ((fast)); then
    phase "start $(container "$idle") (kept from $version)"
    log "fast path: starting the kept container $(container "$idle")"
    docker start "$(container "$idle")" >/dev/null || die "docker start $(container "$idle") failed"
    event started
  else
    log "slow path: no kept container for $version; running $image"
    if ! docker image inspect "$image" >/dev/null 2>&1; then
      pull_image "cannot roll back to $version: its image $image is neither on the server nor in the registry. Versions deployed here: ${available:-none}"
    fi
    start_color "$idle"
  fi
  wait_healthy "$idle"
  switch_to "$idle"
  state_write "$idle" "$version" "$image"
  drain "$active" "$idle"
  history_add rollback "$version" "$image" "$idle" ok
  event finished
  stop_later "$active"
  printf '::bg-deploy-result:: deployed=true color=%s previous_color=%s version=%s image=%s\n' \
    "$idle" "$active" "$version" "$image"
}

# shellcheck disable=SC2317 # called by the EXIT trap
print_history() {
  [[ -f "$STATE_DIR/history" ]] || return 0
  tail -n 5 "$STATE_DIR/history" | sed 's/^/::bg-deploy-history:: /'
}

main() {
  parse_args "$@"
  read_secrets
  trap cleanup EXIT
  command -v docker >/dev/null || die "docker is not installed on the server (or not on PATH for this user)"
  command -v flock >/dev/null || die "flock is not installed on the server (package util-linux)"
  state_init
  event begin
  lock_acquire
  trap 'print_history; cleanup' EXIT
  case "${P[action]}" in
    deploy) deploy ;;
    rollback) rollback ;;
    *) die "unknown action '${P[action]}'" ;;
  esac
}

main "$@"; exit "$?"
