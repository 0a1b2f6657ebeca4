#!/usr/bin/env bash
# ==== src/remote/lib/output.sh
# Before anything is read: a server whose SHELLOPTS or BASH_ENV turns on xtrace must not make
# this shell print the secrets it reads from stdin. Child shells get neither.
{ set +x; } 2>/dev/null

unset BASH_ENV ENV

# bg-deploy remote script: a blue-green switch of one app behind nginx.
#
# Sent over SSH on stdin and run as `bash -s -- key=value...`. Parameters arrive as arguments;
# secrets follow the script on stdin as `name base64` lines ending with `end` (see params_read_secrets),
# so they never appear on a command line or in a file readable by others.
#
# Output: `==> ` log lines and everything any command prints on stderr. The script's stdout
# carries only its marker lines, written explicitly to fd 7: `::bg-deploy-phase:: NAME` when a
# phase starts, `::bg-deploy-event:: NAME EPOCH_MS` for the timeline, and one final
# `::bg-deploy-result:: key=value...` line. Text in a marker is one line: `\`, newline and CR are
# escaped as `\\`, `\n` and `\r`, so no output of a command can forge a marker.
set -Eeuo pipefail

umask 077

# fd 7: the marker channel (the SSH session's stdout); fd 8: the script's stderr, for messages from
# inside `$(...)` or a silenced call. Anything else written to stdout goes to stderr.
exec 7>&1 8>&2 1>&2

MAIN_PID=$$

IN_JOB=0

# A write to the runner never ends the run: in a run in two phases SIGPIPE is ignored (main.sh), and
# a session that was cut makes these writes fail, not the step that made them.
log() { printf '==> %s\n' "$*" >&2 || true; }

marker() { # marker NAME TEXT: one marker line, TEXT escaped onto one line
  local t="${2//\\/\\\\}"
  t="${t//$'\n'/\\n}"
  printf '::bg-deploy-%s:: %s\n' "$1" "${t//$'\r'/\\r}" >&7 || true
}

# die works from a subshell too (a `$(...)`): its message reaches the runner and the whole run ends
die() {
  marker error "$*"
  printf 'error: %s\n' "$*" >&8 || true
  if [[ "$BASHPID" != "$MAIN_PID" && "$IN_JOB" == 0 ]]; then kill -USR1 "$MAIN_PID" 2>/dev/null || true; fi
  exit 1
}

trap 'exit 1' USR1

now_ms() { date +%s%3N; }

phase() { marker phase "$1"; }

event() { printf '::bg-deploy-event:: %s %s\n' "$1" "$(now_ms)" >&7 || true; }

warn() { marker warning "$*"; }

# ==== src/remote/protocol.sh
# Generated from src/remote/protocol.ts by scripts/join-remote.mjs: edit that file, not this part.
# The parameters (`key=value` arguments) with their defaults, what each role reads of the secret
# lines, the result line's fields, the stages and the exit codes the action knows.

declare -A P=(
  [action]=deploy [app]='' [image]='' [version]='' [container_port]=8080 [blue_port]=8081
  [green_port]=8082 [network]='' [env_file]='' [health_path]=/ [health_timeout]=60 [health_interval]=0.05
  [drain_timeout]=30 [upstream_file]='' [upstream_name]='' [nginx_test]='nginx -t' [nginx_reload]='nginx -s reload' [lock_timeout]=600
  [actor]='' [run_url]='' [registry]='' [registry_user]='' [state_dir]='' [target]=''
  [switch_mode]=reload [live_port]=8083 [docker_timeout]=60 [role]=single [color]='' [bind_address]=127.0.0.1
  [lb_servers]='' [preview_file]='' [preview_allow]='' [commit_timeout]=900 [watch]=0 [watch_max_error_rate]=1
  [watch_max_health_failures]=3 [watch_health_only]=false [canary]='' [canary_step_time]=60 [canary_key]='' [keep_warm]=0
  [engine]=ssh [replicas]=2 [health_cmd]='' [max_parallel]=1 [build_wait]=0 [command]=''
  [task]='' [task_timeout]=300 [task_force]=0 [workers]='' [single_workers]=here [explicit]=''
)

# The secret lines each role's steps read (action status reads none).
declare -A PROTOCOL_ROLE_SECRETS=(
  [single]='registry_password env run_arg accessory'
  [host]='registry_password env run_arg'
  [app]='registry_password env run_arg'
  [lb]=''
)

PROTOCOL_RESULT_FIELDS=(deployed color previous_color version image open_connections watch previous_version)

# A version's run spec: the parameters recorded with it (the secret lines env and run_arg too).
PROTOCOL_RUN_SPEC_PARAMETERS=(container_port command health_path health_cmd network env_file task workers)

PROTOCOL_STAGES=(locked ready prepared switched watched watching)

EXIT_AWAIT_GAVE_UP=75

# The result line: one value per field of PROTOCOL_RESULT_FIELDS, in order (missing ones empty);
# previous_version is the version serving when the run took the lock (PREVIOUS_VERSION, main.sh).
PREVIOUS_VERSION=''
result_print() { # result_print DEPLOYED COLOR PREVIOUS_COLOR VERSION IMAGE [OPEN_CONNECTIONS] [WATCH]
  local i line=''
  for ((i = 1; i <= $#; i++)); do line+="${line:+ }${PROTOCOL_RESULT_FIELDS[i - 1]}=${!i}"; done
  marker result "$line previous_version=$PREVIOUS_VERSION"
}

# ==== src/remote/lib/params.sh
# Parameters (`key=value` arguments; names and defaults: the table P in the generated part
# protocol.sh, from src/remote/protocol.ts) and the secrets that follow the script on stdin. Roles (`role`): single, one server switching itself in
# one go; host, a server with its own nginx in a run over several; app, a server behind a
# load-balancer host; lb, that load balancer. Globals: P, RUN_ARGS, ENV_KEYS, ENV_VALUES, REGISTRY_PASSWORD.

RUN_ARGS=() # docker run arguments, from `run_arg` secret lines (they may embed a secret)

ENV_KEYS=()

ENV_VALUES=() # each value + 'x', so that command substitution keeps trailing newlines

REGISTRY_PASSWORD=''

ACCESSORIES=() # compose-file's services of other images, base64 each (steps/accessories.sh)

params_parse() {
  local arg key
  for arg in "$@"; do
    key="${arg%%=*}"
    [[ "$arg" == *=* ]] || die "bad argument '$arg' (expected key=value)"
    if [[ -v "P[$key]" ]]; then
      P[$key]="${arg#*=}"
    else
      die "unknown parameter '$key'"
    fi
  done
  [[ -n "${P[app]}" ]] || die "parameter app is required"
  [[ -n "${P[image]}" ]] || die "parameter image is required"
}

# Secrets come after the script on stdin: `registry_password B64`, `env KEY B64`, `run_arg B64`,
# then `end`. A line this run does not read is refused: the runner sends each host only what its
# steps use (PROTOCOL_ROLE_SECRETS: a server that runs containers reads them all, the load
# balancer none; `status` and `check` change nothing and read none).
params_read_secrets() {
  local name a b wanted=' '
  if [[ "${P[action]}" != status && "${P[action]}" != check ]]; then wanted+="${PROTOCOL_ROLE_SECRETS[${P[role]}]-} "; fi
  while IFS=' ' read -r name a b; do
    if [[ -n "$name" && "$name" != end && "$wanted" != *" $name "* ]]; then
      die "the runner sent a secret line '$name', which ${P[action]} in role ${P[role]} does not read: refused"
    fi
    case "$name" in
      end) break ;;
      registry_password) REGISTRY_PASSWORD="$(printf '%s' "$a" | base64 -d)" ;;
      run_arg) RUN_ARGS+=("$(printf '%s' "$a" | base64 -d; printf x)"); RUN_ARGS[-1]="${RUN_ARGS[-1]%x}" ;;
      accessory) ACCESSORIES+=("$a") ;;
      env)
        [[ "$a" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad env key"
        ENV_KEYS+=("$a")
        ENV_VALUES+=("$(printf '%s' "$b" | base64 -d; printf x)")
        ;;
      '') ;;
      *) die "unknown secret line '$name'" ;;
    esac
  done
  # the rest of stdin carries the runner's commands to a run in two phases (lib/commands.sh); no
  # command the script runs reads it
  exec 6<&0 </dev/null
}

# ==== src/remote/lib/state.sh
# The app's state directory: its state file (color, version, image, mode) and its append-only
# history. Globals: STATE_DIR; RUN_VERSION and RUN_IMAGE, what this run puts in place (a deploy's
# version and image; on a rollback, the version it goes back to and its image), set once by main.

STATE_DIR=''
RUN_VERSION=''
RUN_IMAGE=''

state_dir_pick() {
  if [[ -n "${P[state_dir]}" ]]; then STATE_DIR="${P[state_dir]}"
  elif [[ "$(id -u)" == 0 ]]; then STATE_DIR="/var/lib/bg-deploy/${P[app]}"
  else STATE_DIR="$HOME/.bg-deploy/${P[app]}"
  fi
}

state_init() {
  state_dir_pick
  mkdir -p "$STATE_DIR" || die "cannot create the state directory $STATE_DIR"
  chmod 700 "$STATE_DIR"
  # a full disk would stop the run half-way through writing its state: refuse before any change
  local free
  free="$(df -Pk "$STATE_DIR" 2>/dev/null | awk 'NR == 2 { print $4 }')"
  if [[ "$free" =~ ^[0-9]+$ ]] && ((free < 1024)); then
    die "the filesystem of the state directory $STATE_DIR has only ${free} KB free; bg-deploy needs 1 MB there for its state, history and lock. Free some space and run again. Nothing was changed."
  fi
}

state_get() { # state_get KEY -> value from the state file, empty when absent
  [[ -f "$STATE_DIR/state" ]] || return 0
  sed -n "s/^$1=//p" "$STATE_DIR/state" | tail -n 1
}

state_write() { # state_write color version image
  local tmp="$STATE_DIR/.state.tmp"
  if ! printf 'color=%s\nversion=%s\nimage=%s\nupdated=%s\nswitch_mode=%s\nport=%s\nlive_port=%s\nnat_chain=%s\n' \
    "$1" "$2" "$3" "$(date -u +%FT%TZ)" "$SWITCH_MODE" "$(color_port "$1")" "${P[live_port]}" "$(nat_chain)" >"$tmp" \
    || ! mv -f "$tmp" "$STATE_DIR/state"; then
    die "cannot write $STATE_DIR/state (disk full?)"
  fi
}

HISTORY_KEEP=1000 # rows the history keeps: trimmed to that once it holds 200 more

history_add() { # history_add RESULT [COLOR]: this run's action, version and image, and how it ended
  local f="$STATE_DIR/history"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "${P[actor]:--}" "${P[run_url]:--}" \
    "${P[action]}" "${RUN_VERSION:--}" "${RUN_IMAGE:--}" "${2:--}" "$1" >>"$f" 2>/dev/null \
    || log "warning: could not append to $f"
  if (($(wc -l <"$f" 2>/dev/null || echo 0) > HISTORY_KEEP + 200)); then
    if tail -n "$HISTORY_KEEP" "$f" >"$f.tmp" 2>/dev/null; then mv -f "$f.tmp" "$f"; else rm -f "$f.tmp"; fi
  fi
}

# Versions deployed successfully here, newest first, one per line: VERSION<TAB>IMAGE.
history_versions() {
  [[ -f "$STATE_DIR/history" ]] || return 0
  awk -F'\t' '$8 == "ok" && $5 != "-" { print $5 "\t" $6 }' "$STATE_DIR/history" | tac | awk -F'\t' '!seen[$1]++'
}

# shellcheck disable=SC2317 # called by the EXIT trap
serving_print() { # what serves as the script ends (success or not), from the state file
  [[ -f "$STATE_DIR/state" ]] || return 0
  marker serving "color=$(state_get color) version=$(state_get version)"
}

# shellcheck disable=SC2317 # called by the EXIT trap
history_print() { # history_print [N]: the last N (5) history lines
  [[ -f "$STATE_DIR/history" ]] || return 0
  local line
  while IFS= read -r line; do marker history "$line"; done < <(tail -n "${1:-5}" "$STATE_DIR/history")
}

# action status: what serves and the last 10 history lines; reads, takes no lock, changes nothing
status_print() {
  state_dir_pick
  if [[ ! -d "$STATE_DIR" ]]; then log "nothing was deployed here for ${P[app]} (no $STATE_DIR)"; return 0; fi
  history_print 10
  serving_print
}

# ==== src/remote/lib/docker.sh
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

# ==== src/remote/lib/nginx.sh
# nginx: the upstream file (rendered, backed up, tested, reloaded or restored) and its workers.

# Lines the upstream file carries at the http level besides the upstreams: the watch window's
# access log, set by watch_open (steps/watch.sh) before the new color starts.
UPSTREAM_EXTRA=''

# Why upstream_write failed: the history result and the message.
UPSTREAM_FAILED=''
UPSTREAM_ERROR=''

# This run wrote the upstream file (its backup is the file from before): an undo restores it.
UPSTREAM_WROTE=0

# The nginx workers ("PID PPID" lines) taken just before this run's reload, for the drain: empty
# until a reload, and without one (dnat mode).
NGINX_BEFORE=''

# nginx's second way to the same container: its own address on the docker bridge, used only when
# the published port refuses. The published port goes through docker's proxy, which is down while
# the Docker daemon restarts; the container (with live-restore) and its address are not. Empty
# with a network (nginx reaches the container by name there) or when the container has no address.
declare -A CIP=()

IPS_FORMAT='{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' # docker inspect: a container's addresses

upstream_target() { # the address(es) nginx should use for a color, space-separated
  if [[ "${P[role]}" == lb ]]; then
    local h out=''
    for h in ${P[lb_servers]//,/ }; do out+="$h:$(color_port "$1") "; done
    echo "${out% }"
  elif [[ -n "${P[network]}" ]]; then echo "$(container_name "$1"):${P[container_port]}"
  else echo "$(bind_host):$(color_port "$1")"
  fi
}

# The container's docker address, for the upstream's backup line (see CIP above).
upstream_backup() { # upstream_backup COLOR
  # none with a network (nginx reaches the container by name), nor on the load balancer (the
  # containers are on the app servers)
  [[ -z "${P[network]}" && "${P[role]}" != lb ]] || return 0
  if [[ -z "${CIP[$1]:-}" ]]; then
    CIP[$1]="$(docker_call inspect -f "$IPS_FORMAT" "$(container_name "$1")" 2>/dev/null | awk '{ print $1 }')"
  fi
  if [[ "${CIP[$1]}" =~ ^[0-9.]+$ ]]; then echo "${CIP[$1]}:${P[container_port]}"; fi
}

# The upstream file: the live upstream (TARGETS, space-separated; none: every request answers 502,
# as before a first deploy) and, with previews on, one upstream per color for the preview routes.
upstream_render() { # upstream_render TARGETS LABEL FILE [BACKUP]
  local t c
  {
    printf '# Managed by bg-deploy (app %s, %s, version %s). Do not edit: the next deploy rewrites it.\nupstream %s {\n' \
      "${P[app]}" "$2" "${RUN_VERSION:-unknown}" "${P[upstream_name]}"
    if ((CANARY_SHARE > 0)); then canary_upstream_lines; fi
    for t in $1; do printf '    server %s;\n' "$t"; done
    if [[ -z "$1" ]] && ((CANARY_SHARE == 0)); then printf '    server 127.0.0.1:1 down; # nothing deployed yet\n'; fi
    if [[ -n "${4:-}" ]]; then
      printf '    # the same container by its docker address, while the port above refuses (a Docker daemon restart)\n    server %s backup;\n' "$4"
    fi
    printf '}\n'
    if [[ -n "${P[preview_file]}" ]]; then
      for c in blue green; do
        printf '# the %s color, whether it serves or not: the preview route /%s/ (%s)\nupstream %s-%s {\n' "$c" "$c" "${P[preview_file]}" "${P[upstream_name]}" "$c"
        for t in $(upstream_target "$c"); do printf '    server %s;\n' "$t"; done
        printf '}\n'
      done
      preview_http_directives
    fi
    if [[ -n "$UPSTREAM_EXTRA" ]]; then printf '%s\n' "$UPSTREAM_EXTRA"; fi
  } >"$3"
}

# For the upstream file (http level), with previews: who may reach them (preview_allow; everyone
# when empty), and the color a request names by the X-Bg-Preview header or, without one, the
# bg_preview cookie (empty for everyone else: the live version).
preview_http_directives() {
  local n a; n="$(watch_name)"
  printf '# who may reach the previews, and the color a request names by header or cookie\ngeo $%s_preview_ok {\n' "$n"
  if [[ -z "${P[preview_allow]}" ]]; then printf '    default 1;\n'
  else printf '    default 0;\n'; for a in ${P[preview_allow]}; do printf '    %s 1;\n' "$a"; done; fi
  # shellcheck disable=SC2016 # nginx variables
  printf '}\nmap "$%s_preview_ok $http_x_bg_preview $cookie_bg_preview" $%s_preview {\n' "$n" "$n"
  printf '    "~^1 blue " blue;\n    "~^1 green " green;\n    "~^1 \\S* blue$" blue;\n    "~^1 \\S* green$" green;\n    default "";\n}\n'
}

# The preview routes, for the user's server block to include: /blue/... and /green/... reach that
# color with the prefix stripped, and any path reaches the color the X-Bg-Preview header or the
# bg_preview cookie names (through an internal location), for the addresses preview_allow lets
# through. Written when it is missing or differs; true when it was written.
preview_write() {
  local f="${P[preview_file]}" text n c a allow=''
  [[ -n "$f" ]] || return 1
  n="$(watch_name)"
  if [[ -n "${P[preview_allow]}" ]]; then
    for a in ${P[preview_allow]}; do allow+="allow $a; "; done
    allow+='deny all; '
  fi
  text="$(printf '# Managed by bg-deploy (app %s): the preview routes. Include it in the server block.\n' "${P[app]}"
    for c in blue green; do
      printf 'location /%s/ { %sproxy_pass http://%s-%s/; }\n' "$c" "$allow" "${P[upstream_name]}" "$c"
      # shellcheck disable=SC2016 # nginx variables
      printf 'if ($%s_preview = %s) { rewrite ^ /__%s_%s$uri last; }\n' "$n" "$c" "$n" "$c"
      # shellcheck disable=SC2016 # nginx variables
      printf 'location ^~ /__%s_%s/ { internal; rewrite ^/__%s_%s(/.*)$ $1 break; proxy_pass http://%s-%s; }\n' \
        "$n" "$c" "$n" "$c" "${P[upstream_name]}" "$c"
    done
    # a server block with logs of its own: the watch's log line too (steps/watch.sh)
    if [[ " $WATCH_INCLUDES " == *" $f "* ]]; then watch_log_line block; fi)"
  [[ -f "$f" && "$(cat "$f")" == "$text" ]] && return 1
  # a new file of our own, as for the upstream file: never written through a link left in its place
  local tmp
  tmp="$(mktemp "$(dirname "$f")/.$(basename "$f").bg-deploy.XXXXXX")" || return 1
  TMP_PATHS+=("$tmp")
  chmod 644 "$tmp" && printf '%s\n' "$text" >"$tmp" && mv -f "$tmp" "$f"
}

# The user's nginx commands, through bash, without the script's extra descriptors: a command that
# starts a daemon must not keep the SSH session (fds 7, 8) or the deploy lock (fd 9) open.
nginx_run() { bash -c "$1" 6<&- 7>&- 8>&- 9>&-; }

upstream_points_to() { # upstream_points_to HOST:PORT
  [[ -f "${P[upstream_file]}" ]] && grep -qE "^[[:space:]]*server[[:space:]]+${1//./[.]}[[:space:];]" "${P[upstream_file]}"
}

# Which color does the upstream file send traffic to (through the NAT rule when it names the live
# port)? Empty when none/unknown.
detect_upstream_color() {
  local c
  if [[ -z "${P[network]}" ]] && upstream_points_to "127.0.0.1:${P[live_port]}"; then nat_color; return 0; fi
  for c in blue green; do
    if upstream_points_to "$(upstream_target "$c")"; then echo "$c"; return 0; fi
  done
}

# Point nginx's upstream at TARGETS for COLOR; on failure the new container is removed, UNDO (a
# command, if set) runs, and the run ends with a message.
upstream_switch() { # upstream_switch TARGETS COLOR [UNDO] [BACKUP]
  upstream_write "$1" "$2" "${4:-}" && return 0
  if [[ -n "${3:-}" ]]; then "$3" || true; fi
  container_remove "$2"
  if [[ -n "$UPSTREAM_FAILED" ]]; then history_add "$UPSTREAM_FAILED" "$2"; fi
  die "$UPSTREAM_ERROR"
}

# Write the upstream file for TARGETS: temp file, backup, atomic move, nginx test (restore on
# failure), reload. False, with UPSTREAM_FAILED and UPSTREAM_ERROR set, when nginx did not take it.
upstream_write() { # upstream_write TARGETS LABEL [BACKUP]
  local f="${P[upstream_file]}" dir tmp out preview=0
  dir="$(dirname "$f")"
  failed() { UPSTREAM_FAILED="$1"; UPSTREAM_ERROR="$2"; return 1; }
  [[ -d "$dir" && -w "$dir" ]] || { failed failed-upstream-write "cannot write the upstream file: $dir is not a writable directory for user $(id -un). Make it writable, or set nginx-upstream-file to a file in a directory that user owns. Nothing was switched; the previous version is still serving."; return 1; }
  # a new file of our own (mktemp creates it exclusively: never through a link someone left), with
  # its final mode before its content
  tmp="$(mktemp "$dir/.$(basename "$f").bg-deploy.XXXXXX")" \
    || { failed failed-upstream-write "cannot create a temporary file in $dir (disk full?). Nothing was switched; the previous version is still serving."; return 1; }
  TMP_PATHS+=("$tmp")
  chmod 644 "$tmp"
  upstream_render "$1" "$2" "$tmp" "${3:-}" || { failed failed-upstream-write "cannot write $tmp (disk full?). Nothing was switched; the previous version is still serving."; return 1; }
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  # the backup is owner-only like everything in the state directory; upstream_restore gives the
  # file back nginx's usual 644
  if [[ -f "$f" ]]; then cp "$f" "$STATE_DIR/upstream.bak" && chmod 600 "$STATE_DIR/upstream.bak"; else touch "$STATE_DIR/upstream.none"; fi
  touch "$STATE_DIR/switch.pending"
  mv -f "$tmp" "$f"
  if preview_write; then preview=1; fi
  watch_include_write
  if ! out="$(nginx_run "${P[nginx_test]}" 2>&1)"; then
    upstream_restore
    if ((preview)); then rm -f "${P[preview_file]}"; fi
    failed failed-nginx-test "nginx rejected the new upstream, so the previous config was restored and nothing was switched. nginx said: $out"
    return 1
  fi
  NGINX_BEFORE="$(nginx_workers)"
  if ! out="$(nginx_run "${P[nginx_reload]}" 2>&1)"; then
    upstream_restore
    failed failed-nginx-reload "nginx reload failed, so the previous upstream file was restored and the new container removed. Is nginx running? It said: $out"
    return 1
  fi
  UPSTREAM_WROTE=1
  rm -f "$STATE_DIR/switch.pending"
}

upstream_restore() {
  if [[ -f "$STATE_DIR/upstream.bak" ]]; then mv -f "$STATE_DIR/upstream.bak" "${P[upstream_file]}" && chmod 644 "${P[upstream_file]}"
  elif [[ -f "$STATE_DIR/upstream.none" ]]; then rm -f "${P[upstream_file]}"
  fi
  rm -f "$STATE_DIR/upstream.none" "$STATE_DIR/switch.pending"
  # the file restored may have no window: the include of ours then carries no log line either
  watch_include_write off
}

# A previous run that died between moving the upstream file and reloading nginx left
# switch.pending: make nginx serve what the file says if that container runs, else restore.
upstream_recover() {
  [[ -f "$STATE_DIR/switch.pending" ]] || return 0
  local c; c="$(detect_upstream_color)"
  log "a previous run stopped in the middle of a switch; converging first"
  if [[ -n "$c" ]] && container_running "$c" && nginx_run "${P[nginx_test]}" >/dev/null 2>&1; then
    nginx_run "${P[nginx_reload]}" >&2 || die "nginx reload failed while recovering an interrupted switch"
    rm -f "$STATE_DIR/switch.pending" "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
    log "nginx serves $c, as the interrupted run had switched it"
  else
    upstream_restore
    if nginx_run "${P[nginx_test]}" >/dev/null 2>&1; then nginx_run "${P[nginx_reload]}" >&2 || true; fi
    log "restored the upstream file from before the interrupted run"
  fi
}

# nginx worker processes ("PID PPID"), shutting-down ones excluded.
nginx_workers() {
  ps -eo pid=,ppid=,args= 2>/dev/null \
    | awk '$3 == "nginx:" && $4 == "worker" && $5 == "process" && NF == 5 { print $1, $2 }' || true
}

# The workers a reload replaced: those of BEFORE (the workers before it) whose master now has a
# worker that did not exist before. Empty until the reloaded master has started its new workers.
nginx_replaced_workers() { # nginx_replaced_workers BEFORE
  local before="$1" now pid ppid masters=' '
  now="$(nginx_workers)"
  while read -r pid ppid; do
    [[ -n "$pid" ]] || continue
    if ! grep -qx "$pid $ppid" <<<"$before"; then masters+="$ppid "; fi
  done <<<"$now"
  while read -r pid ppid; do
    if [[ -n "$pid" && "$masters" == *" $ppid "* ]]; then printf '%s ' "$pid"; fi
  done <<<"$before"
}

# ==== src/remote/lib/nginx-log.sh
# nginx's effective config (`nginx -T`), read: will nginx log the app's answers where the watch
# reads them? An access_log directive applies where it is written and is inherited by an inner
# block (http > server > location) only when that block has none of its own; `access_log off`
# turns every log of its block off. So each block that proxies to the app's upstream is judged by
# the innermost block around it with access_log directives of its own.

# The verdicts, one line per block that proxies to the upstream (tab-separated: kind, two
# details, where that block is, where its server block is):
#   http              inherits the http level, where the upstream file adds the watch's log
#   ours FILE         its block has logs of its own and includes FILE, a file bg-deploy owns,
#                     which then carries the watch's log line beside them
#   need LEVEL WHERE  its LEVEL block (at WHERE) has logs of its own and no include of ours
#   off LEVEL WHERE   access_log off at WHERE turns every log of that block off
# and `none` when no block proxies to the upstream by its name.
nginx_log_verdicts() { # nginx_log_verdicts UPSTREAM_NAME OUR_LOG OUR_FILE... < nginx -T output
  local name="$1" log="$2"; shift 2
  awk -v name="$name" -v ourlog="$log" -v ours_list="$*" '
    function tokenize(f,    i, j, line, ch, word, inword, q, n) {
      n = 0
      for (i = 1; i <= nl[f]; i++) {
        line = tx[f, i]; word = ""; inword = 0; q = ""
        for (j = 1; j <= length(line); j++) {
          ch = substr(line, j, 1)
          if (q != "") {
            if (ch == "\\" && j < length(line)) { j++; word = word substr(line, j, 1); continue }
            if (ch == q) { q = ""; continue }
            word = word ch; continue
          }
          if (ch == "\"" || ch == "\047") { q = ch; inword = 1; continue }
          if (ch == "#" && !inword) break
          if (ch == " " || ch == "\t" || ch == "\r") { if (inword) { tk[f, ++n] = word; tl[f, n] = i; word = ""; inword = 0 } continue }
          if (ch == "{" && substr(word, length(word)) == "$") { word = word ch; inword = 1; continue }
          if (ch == "{" || ch == "}" || ch == ";") {
            if (inword) { tk[f, ++n] = word; tl[f, n] = i; word = ""; inword = 0 }
            tk[f, ++n] = ch; tl[f, n] = i; continue
          }
          word = word ch; inword = 1
        }
        if (inword) { tk[f, ++n] = word; tl[f, n] = i }
      }
      nt[f] = n
    }
    function glob_re(p,    out, i, ch) {
      out = ""
      for (i = 1; i <= length(p); i++) {
        ch = substr(p, i, 1)
        if (ch == "*") out = out "[^/]*"
        else if (ch == "?") out = out "[^/]"
        else if (ch == "[" || ch == "]") out = out ch
        else if (index(".+()^$|{}\\", ch)) out = out "\\" ch
        else out = out ch
      }
      return "^" out "$"
    }
    function walk(f, depth,    i, j2, k, w, c, re, g, t, wline) {
      if (depth > 20 || !(f in nl)) return
      if (!(f in nt)) tokenize(f)
      k = 0
      for (i = 1; i <= nt[f]; i++) {
        t = tk[f, i]
        if (t != "{" && t != "}" && t != ";") { if (k == 0) wline = tl[f, i]; w[++k] = t; continue }
        c = stk[sp]
        if (t == "{") {
          id = ++nctx; tp[id] = w[1]; par[id] = c; wh[id] = f ":" wline; stk[++sp] = id
        } else if (t == "}") {
          if (sp > 0) sp--
        } else if (w[1] == "access_log") {
          if (w[2] == "off") { off[c] = 1; offw[c] = f ":" wline }
          else if (w[2] != ourlog && !(c in has)) has[c] = f ":" wline
        } else if (w[1] == "proxy_pass") {
          if (w[2] ~ ("^https?://" name "(/|$)")) px[++np] = c
        } else if (w[1] == "include" && k >= 2) {
          g = w[2]; if (substr(g, 1, 1) != "/") g = prefix g
          re = glob_re(g)
          for (j2 = 1; j2 <= nf; j2++) {
            if (files[j2] !~ re) continue
            if (index(" " ours_list " ", " " files[j2] " ") && !(c in ours)) ours[c] = files[j2]
            walk(files[j2], depth + 1)
          }
        }
        k = 0; delete w
      }
    }
    /^# configuration file .*:$/ {
      cur = substr($0, 22, length($0) - 22)
      if (!(cur in nl)) { files[++nf] = cur; nl[cur] = 0 }
      next
    }
    cur != "" { tx[cur, ++nl[cur]] = $0 }
    END {
      if (nf == 0) { print "none"; exit }
      prefix = files[1]; sub(/[^\/]*$/, "", prefix)
      sp = 1; stk[1] = 0; tp[0] = "main"
      walk(files[1], 0)
      if (np == 0) { print "none"; exit }
      for (i = 1; i <= np; i++) {
        p = px[i]; if (p in done) continue; done[p] = 1
        v = ""; cand = ""
        for (c = p; c != "" && c != 0; c = par[c]) {
          if (tp[c] != "location" && tp[c] != "server" && tp[c] != "http") continue
          if (c in off) {
            if (cand != "" && tp[c] == "http") v = "ours\t" ours[cand] "\t" cand
            else v = "off\t" tp[c] "\t" offw[c]
            break
          }
          if (tp[c] == "http") { v = "http\t\t" wh[c]; break }
          if (c in has) {
            if (c in ours) v = "ours\t" ours[c] "\t" c
            else v = "need\t" tp[c] "\t" wh[c]
            break
          }
          if ((c in ours) && cand == "") cand = c
        }
        if (v == "") v = "http\t\t"
        if (v ~ /^ours\t/) { split(v, parts, "\t"); v = "ours\t" parts[2] "\t" wh[parts[3]] }
        srv = ""
        for (c = p; c != "" && c != 0; c = par[c]) if (tp[c] == "server") { srv = wh[c]; break }
        print v "\t" wh[p] "\t" srv
      }
    }'
}

# ==== src/remote/lib/nat.sh
# switch-mode dnat: the app's NAT rule, its conntrack entries, and the boot-time restore.

nat_proxied() { # nat_proxied PORT: a docker-proxy process serves this published port (true if we cannot tell)
  command -v pgrep >/dev/null || return 0
  pgrep -f -- "^(/[^ ]*/)?docker-proxy .*-host-port $1( |\$)" >/dev/null
}

as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo -n "$@"; fi; }

# bg-deploy's own chain for this app in the nat table (iptables chain names: at most 28 characters)
nat_chain() {
  local a="${P[app]}"
  if ((${#a} <= 24)); then echo "BGD-$a"; else echo "BGD-${a:0:13}-$(printf '%s' "$a" | cksum | cut -d' ' -f1)"; fi
}

# Make CHAIN send locally generated TCP to 127.0.0.1:LIVE to 127.0.0.1:TARGET, in one transaction:
# declaring the chain in iptables-restore --noflush replaces its rules atomically, so connections
# already open keep their translation (conntrack) and new ones get the new target. The jump from
# nat OUTPUT is added the first time. Nothing else in the nat table is touched.
nat_apply() { # nat_apply CHAIN LIVE TARGET
  local jump=''
  if ! as_root iptables -w -t nat -C OUTPUT -d 127.0.0.1/32 -p tcp --dport "$2" -j "$1" 2>/dev/null; then
    jump="-I OUTPUT 1 -d 127.0.0.1/32 -p tcp --dport $2 -j $1"
  fi
  printf '*nat\n:%s - [0:0]\n-A %s -d 127.0.0.1/32 -p tcp --dport %s -j DNAT --to-destination 127.0.0.1:%s\n%s\nCOMMIT\n' \
    "$1" "$1" "$2" "$3" "$jump" | as_root iptables-restore -w --noflush
}

# The port the app's rule sends the live port to (empty: no rule).
nat_port() {
  as_root iptables -w -t nat -S "$(nat_chain)" 2>/dev/null | sed -n 's/.*--to-destination 127\.0\.0\.1:\([0-9]*\).*/\1/p' | head -n 1
}

nat_color() {
  local p; p="$(nat_port)"
  if [[ "$p" == "${P[blue_port]}" ]]; then echo blue; elif [[ "$p" == "${P[green_port]}" ]]; then echo green; fi
}

# Remove the app's rule and chain (leaving dnat mode, or undoing a first dnat switch).
# shellcheck disable=SC2317 # also called indirectly, as upstream_switch's undo command
nat_remove() {
  local chain rule
  chain="$(nat_chain)"
  while read -r rule; do
    # shellcheck disable=SC2086 # the rule's words, as iptables -S printed them
    as_root iptables -w -t nat ${rule/#-A/-D} 2>/dev/null || true
  done < <(as_root iptables -w -t nat -S OUTPUT 2>/dev/null | awk -v c="$chain" '$(NF - 1) == "-j" && $NF == c')
  as_root iptables -w -t nat -F "$chain" 2>/dev/null || true
  as_root iptables -w -t nat -X "$chain" 2>/dev/null || true
}

# dnat mode: a connection that the old color's side ended with a reset keeps its conntrack entry
# (state CLOSE, nf_conntrack_tcp_timeout_close: 10 s) and, with it, the old translation: a new
# connection from nginx that reuses its source port reuses that entry and reaches the old color,
# after the switch, and after the old color stopped: a 502. Right after the switch and again after
# the drain, those CLOSE entries from the live port to the old color are deleted, so every new
# connection is translated anew. TIME_WAIT entries (closed with FINs) are left alone: the kernel
# translates a reused one anew by itself, and deleting them, thousands at a time, would now and then
# hit the fresh entry of a connection that just reused the port. False when conntrack cannot be
# used here (no conntrack tool, or no root for it).
nat_forget() { # nat_forget OLD_COLOR
  [[ "$SWITCH_MODE" == dnat && "$PREV_MODE" == dnat ]] || return 0
  local port
  port="$(color_port "$1")"
  as_root conntrack -L -p tcp --orig-dst 127.0.0.1 --dport "${P[live_port]}" --reply-port-src "$port" --state CLOSE >/dev/null 2>&1 || return 1
  # exit 1 when no entry matched
  as_root conntrack -D -p tcp --orig-dst 127.0.0.1 --dport "${P[live_port]}" --reply-port-src "$port" --state CLOSE >/dev/null 2>&1 || true
}

# Without conntrack, how long the old color runs on after the drain: the kernel's CLOSE timeout.
nat_stop_delay() { # nat_stop_delay OLD_COLOR -> seconds
  log "conntrack (package conntrack) is not usable here: $(container_name "$1") keeps running for the kernel's CLOSE timeout before it stops, so no reused connection reaches a stopped container"
  cat /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close 2>/dev/null || echo 10
}

# Before anything changes: dnat mode needs iptables as root (or passwordless sudo), and nginx must
# not keep upstream connections alive (a pooled connection would stay on the old color).
nat_preflight() {
  command -v iptables-restore >/dev/null || as_root sh -c 'command -v iptables-restore' >/dev/null 2>&1 \
    || die "switch-mode dnat needs iptables (package iptables) on the server"
  as_root iptables -w -t nat -S OUTPUT >/dev/null 2>&1 \
    || die "switch-mode dnat needs root on the server, or passwordless sudo for iptables and iptables-restore (user $(id -un) has neither). Nothing was changed. Use switch-mode reload, or allow it in sudoers: $(id -un) ALL=(root) NOPASSWD: /usr/sbin/iptables, /usr/sbin/iptables-restore"
  if [[ -f "${P[upstream_file]}" ]] && grep -qE '^[[:space:]]*keepalive[[:space:]]' "${P[upstream_file]}"; then
    die "switch-mode dnat cannot work with 'keepalive' in the upstream block of ${P[upstream_file]}: nginx would keep pooled connections to the old color. Remove it (bg-deploy writes that file), or use switch-mode reload. Nothing was changed."
  fi
}

# At boot the NAT rules are gone: a restore script (every app in dnat mode under this state root,
# from its state file) and, where systemd runs, a unit that calls it. The unit runs the script as
# the user who owns it (a deploy user runs iptables through its sudo rule), never as root a file
# that a deploy user can edit; the script takes only a chain name and port numbers from a state file.
nat_install_restore() {
  local root script user unit
  root="$(dirname "$STATE_DIR")"; script="$root/restore-dnat.sh"; user="$(id -un)"
  unit="/etc/systemd/system/$(nat_unit_name "$user")"
  {
    printf '#!/usr/bin/env bash\n# Written by bg-deploy: puts back the NAT rule of every app deployed with switch-mode dnat\n'
    printf '# under %s, from its state file. Run at boot (%s), or by hand.\nset -u\n' "$root" "$(nat_unit_name "$user")"
    declare -f as_root nat_apply state_get
    printf 'rc=0\nfor state in %q/*/state; do\n' "$root"
    cat <<'EOS'
  [[ -f "$state" ]] || continue
  STATE_DIR="${state%/state}"
  [[ "$(state_get switch_mode)" == dnat ]] || continue
  chain="$(state_get nat_chain)"; live="$(state_get live_port)"; port="$(state_get port)"
  if ! [[ "$chain" =~ ^BGD-[A-Za-z0-9_.-]{1,24}$ && "$live" =~ ^[0-9]{1,5}$ && "$port" =~ ^[0-9]{1,5}$ ]]; then
    echo "skipped $state: it does not hold a bg-deploy chain name and two ports" >&2; rc=1; continue
  fi
  if nat_apply "$chain" "$live" "$port"; then echo "restored $chain: 127.0.0.1:$live -> 127.0.0.1:$port"
  else echo "could not restore $chain from $state" >&2; rc=1; fi
done
exit "$rc"
EOS
  } >"$script.tmp" || { log "warning: could not write $script"; return 0; }
  chmod 700 "$script.tmp"
  mv -f "$script.tmp" "$script"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    if [[ ! -f "$unit" ]] || ! grep -qxF "User=$user" "$unit"; then
      if nat_unit "$user" "$script" | as_root tee "$unit" >/dev/null && as_root systemctl daemon-reload \
        && as_root systemctl enable "$(nat_unit_name "$user")" >/dev/null 2>&1; then
        log "installed $(nat_unit_name "$user"): it restores the NAT rule at boot, as $user"
      else
        log "warning: could not install $unit; run $script at boot to restore the NAT rule"
      fi
    fi
  else
    log "no systemd here: run $script at boot as $user to restore the NAT rule (it reads the state files)"
  fi
}

nat_unit_name() { if [[ "$1" == root ]]; then echo bg-deploy-dnat.service; else echo "bg-deploy-dnat-$1.service"; fi; }

nat_unit() { # nat_unit USER SCRIPT: the systemd unit that runs SCRIPT as USER at boot
  printf '[Unit]\nDescription=bg-deploy: restore the NAT rules of apps in switch-mode dnat (%s)\nAfter=network.target docker.service\n\n[Service]\nType=oneshot\nUser=%s\nExecStart=/bin/bash %s\n\n[Install]\nWantedBy=multi-user.target\n' "$1" "$1" "$2"
}

# ==== src/remote/lib/commands.sh
# A run in two phases (roles host, app and lb): the script reports the stage it reached
# (`::bg-deploy-await:: STAGE key=value...`) and waits for the runner's next command, one word per
# line on the rest of stdin (fd 6): switch, finish, keep, undo, abort. The journal file says where
# an unfinished run stopped, for the next run and for a person looking at the server.

# The runner's next command, or `eof` when its SSH session ended or it sent nothing within
# TIMEOUT seconds (default commit_timeout). Once the runner is gone, this run's messages go to
# $STATE_DIR/runner-gone.log.
command_next() { # command_next [TIMEOUT]
  local cmd=''
  if read -r -t "${1:-${P[commit_timeout]}}" -u 6 cmd && [[ "$cmd" =~ ^[a-z]+(\ (blue|green))?$ ]]; then
    printf '%s' "$cmd"
  else
    printf eof
  fi
}

command_await() { # command_await STAGE [key=value...]: the stage reached, for the runner (with
  # the version that served when the run took the lock)
  [[ " ${PROTOCOL_STAGES[*]} " == *" $1 "* ]] || die "stage '$1' is not declared in src/remote/protocol.ts"
  marker await "$* previous_version=$PREVIOUS_VERSION"
}

# After `eof`: nobody reads the SSH session any more; what this run still says goes to a file.
runner_gone() {
  exec 2>>"$STATE_DIR/runner-gone.log" 7>&2 8>&2
  log "$(date -u +%FT%TZ) the runner of ${P[run_url]:-this run} went away (or sent nothing for ${P[commit_timeout]}s) at: $1"
}

journal_write() { # journal_write STAGE COLOR: where this run stands, for the next one
  if ! printf 'stage=%s\ncolor=%s\nversion=%s\nimage=%s\nrun=%s\nrole=%s\nupdated=%s\n' "$1" "$2" "$RUN_VERSION" \
    "$RUN_IMAGE" "${P[run_url]:--}" "${P[role]}" "$(date -u +%FT%TZ)" >"$STATE_DIR/journal.tmp" \
    || ! mv -f "$STATE_DIR/journal.tmp" "$STATE_DIR/journal"; then
    log "warning: could not write $STATE_DIR/journal"
  fi
}

journal_get() { # journal_get KEY
  [[ -f "$STATE_DIR/journal" ]] || return 0
  sed -n "s/^$1=//p" "$STATE_DIR/journal" | tail -n 1
}

journal_clear() { rm -f "$STATE_DIR/journal"; }

# What an unfinished run left, said once at the start: this run finishes or replaces it.
journal_report() {
  [[ -f "$STATE_DIR/journal" ]] || return 0
  log "the run $(journal_get run) stopped at stage $(journal_get stage) (color $(journal_get color), version $(journal_get version)); this run takes over from there"
}

# A color prepared and kept by a run with promote: false, running RUN_IMAGE as RUN_VERSION: a later
# run promotes that container instead of starting another.
journal_kept() { # journal_kept COLOR
  [[ "$(journal_get stage)" == kept && "$(journal_get color)" == "$1" && "$(journal_get version)" == "$RUN_VERSION" \
    && "$(journal_get image)" == "$RUN_IMAGE" ]] && container_running "$1"
}

# ==== src/remote/steps/lock.sh
# Step: one deploy or rollback of an app at a time. Globals: LOCK_FD.

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

# ==== src/remote/steps/detect.sh
# Step: which color serves now.

# The color serving now: what the upstream file says, else the state file, else the one running
# container (a server set up by hand or by a seed script is adopted, not broken).
detect_active() {
  local c
  c="$(detect_upstream_color)"
  if [[ -z "$c" ]]; then c="$(state_get color)"; fi
  if [[ -z "$c" ]]; then
    if container_running blue && ! container_running green; then c=blue
    elif container_running green && ! container_running blue; then c=green
    fi
  fi
  echo "$c"
}

# ==== src/remote/steps/target.sh
# Step (rollback): the version to go back to and its image, from the history of successful deploys
# here: `previous`, the newest one that is not serving now; or a version, with the registry's tag
# as its image when it was never deployed here. Sets RUN_VERSION and RUN_IMAGE.

# The versions deployed here, for a message (set by target_pick).
TARGET_AVAILABLE=''

target_pick() { # target_pick CURRENT_VERSION
  local current="$1" line available
  available="$(history_versions | cut -f1 | paste -sd ' ' -)"
  if [[ "${P[target]}" == previous ]]; then
    line="$(history_versions | awk -F'\t' -v cur="$current" '$1 != cur { print; exit }')"
    [[ -n "$line" ]] || die "there is no earlier version of ${P[app]} to roll back to (serving: ${current:-unknown}; deployed here: ${available:-none})"
    RUN_VERSION="${line%%$'\t'*}"; RUN_IMAGE="${line#*$'\t'}"
  else
    RUN_VERSION="${P[target]}"
    line="$(history_versions | awk -F'\t' -v v="$RUN_VERSION" '$1 == v { print; exit }')"
    if [[ -n "$line" ]]; then RUN_IMAGE="${line#*$'\t'}"; else RUN_IMAGE="${P[image]}"; fi
  fi
  TARGET_AVAILABLE="$available"
}

# ==== src/remote/steps/spec.sh
# Step: a version's run spec (RUN_SPEC in the protocol: container port, health path or command,
# network, env file, the task's command, the env and the docker run arguments), recorded after
# every run that put the version in place, so that a rollback puts it back exactly as it ran
# instead of with the rollback run's own inputs. One file per version in the owner-only state
# directory (it holds the env's values: owner-only, as the directory is), kept for the versions
# the history still lists (SPEC_KEEP, newest first). Globals: SPEC_KEEP.

SPEC_KEEP=10

spec_file() { # spec_file VERSION
  printf '%s/specs/%s' "$STATE_DIR" "$(printf '%s' "$1" | tr -c 'A-Za-z0-9._-' '_')"
}

spec_b64() { printf '%s' "$1" | base64 -w0; }

# After a run that put RUN_VERSION in place: what its containers run with.
spec_save() {
  local f tmp k i a
  f="$(spec_file "$RUN_VERSION")"; tmp="$f.tmp.$$"
  if ! { mkdir -p "${f%/*}" && chmod 700 "${f%/*}"; } 2>/dev/null; then
    log "warning: cannot create ${f%/*}: the run spec of $RUN_VERSION is not recorded"
    return 0
  fi
  if ! (umask 077
    for k in "${PROTOCOL_RUN_SPEC_PARAMETERS[@]}"; do printf 'param %s %s\n' "$k" "$(spec_b64 "${P[$k]}")"; done
    for i in "${!ENV_KEYS[@]}"; do printf 'env %s %s\n' "${ENV_KEYS[$i]}" "$(spec_b64 "${ENV_VALUES[$i]%x}")"; done
    for a in "${RUN_ARGS[@]}"; do printf 'run_arg %s\n' "$(spec_b64 "$a")"; done) >"$tmp" || ! mv -f "$tmp" "$f"; then
    rm -f "$tmp"
    log "warning: could not write $f (disk full?): the run spec of $RUN_VERSION is not recorded"
    return 0
  fi
  spec_prune
}

# Only the specs of the newest SPEC_KEEP versions the history lists stay.
spec_prune() {
  local keep=' ' v f
  while IFS= read -r v; do keep+="$(spec_file "$v") "; done < <(history_versions | cut -f1 | head -n "$SPEC_KEEP")
  keep+="$(spec_file "$RUN_VERSION") "
  for f in "$STATE_DIR"/specs/*; do
    [[ -f "$f" && "$keep" != *" $f "* ]] || continue
    rm -f "$f"
  done
}

# A rollback to RUN_VERSION: each item of the recorded spec this run does not set itself
# (`explicit`) is taken from the record; SPEC_OVERRIDES lists those it sets to something else.
# Without a record (a version deployed before bg-deploy kept them) the run's own inputs stay, and
# the log says so.
SPEC_OVERRIDES=''

spec_load() {
  local f name a b v taken=() keys=() values=() args=() explicit=",${P[explicit]},"
  f="$(spec_file "$RUN_VERSION")"
  if [[ ! -f "$f" ]]; then
    warn "no run spec is recorded for $RUN_VERSION on this server (deployed by an earlier bg-deploy, or its record was pruned): it starts with this rollback run's own inputs (port, health path, env, run arguments, network)"
    return 0
  fi
  while IFS=' ' read -r name a b; do
    case "$name" in
      param)
        [[ " ${PROTOCOL_RUN_SPEC_PARAMETERS[*]} " == *" $a "* ]] || continue
        v="$(printf '%s' "$b" | base64 -d; printf x)"; v="${v%x}"
        if [[ "$explicit" == *",$a,"* ]]; then
          [[ "${P[$a]}" == "$v" ]] || SPEC_OVERRIDES+=",$a"
        else
          P[$a]="$v"; [[ -z "$v" ]] || taken+=("$a")
        fi
        ;;
      env) keys+=("$a"); values+=("$(printf '%s' "$b" | base64 -d; printf x)") ;;
      run_arg) v="$(printf '%s' "$a" | base64 -d; printf x)"; args+=("${v%x}") ;;
    esac
  done <"$f"
  if [[ "$explicit" != *,env,* ]]; then
    ENV_KEYS=("${keys[@]}"); ENV_VALUES=("${values[@]}")
    taken+=("env (${#keys[@]} variable(s))")
  elif [[ "${keys[*]}"$'\1'"${values[*]}" != "${ENV_KEYS[*]}"$'\1'"${ENV_VALUES[*]}" ]]; then
    SPEC_OVERRIDES+=",env"
  fi
  if [[ "$explicit" != *,run_arg,* ]]; then
    RUN_ARGS=("${args[@]}")
    taken+=("docker run arguments (${#args[@]})")
  elif [[ "${#args[@]}:${args[*]}" != "${#RUN_ARGS[@]}:${RUN_ARGS[*]}" ]]; then
    SPEC_OVERRIDES+=",run_arg"
  fi
  SPEC_OVERRIDES="${SPEC_OVERRIDES#,}"
  log "putting $RUN_VERSION back as it ran: $(spec_list "${taken[@]}") from its record${SPEC_OVERRIDES:+; this run sets its own ${SPEC_OVERRIDES//,/, }}"
}

spec_list() { local IFS=','; printf '%s' "$*" | sed 's/,/, /g'; }

# Does this rollback start the version with something else than the kept container was started
# with? Then a new container starts (the slow path), not the kept one.
spec_changes_container() {
  local k overrides=",$SPEC_OVERRIDES,"
  for k in container_port network env_file env run_arg workers; do [[ "$overrides" != *",$k,"* ]] || return 0; done
  return 1
}

# ==== src/remote/steps/await.sh
# Step (a deploy that overlaps the runner's build, build_wait > 0; one server, or each app server
# of a run over several): the lock, the checks, the recovery, which color serves and the registry
# login have run while the runner builds and pushes the image. Now wait for its word: `pull` (the
# image is in the registry: go on) or `abort` (its build failed). Without a word within build_wait
# seconds (a runner that died or hangs), give up: nothing here changed, and the lock is free again
# as the script ends.

# Whether TO_COLOR has a container, found while waiting: start_color need not ask Docker again.
IDLE_EXISTS=''
# The runner's word that the image is pushed: `pull`, or to an app server `pull COLOR` (await_word).
AWAIT_WORD=''

await_image() { # await_image FROM_COLOR TO_COLOR
  registry_login
  if container_exists "$2"; then IDLE_EXISTS=yes; else IDLE_EXISTS=no; fi
  command_await locked "color=$2 previous_color=$1"
  await_word
}

# An app server behind a load balancer, started while the image builds and before the load balancer
# said which color to start (no color parameter): the lock and the checks have run; wait for
# `pull COLOR` (the image is pushed, start COLOR) or `abort`, as await_image does.
await_color() {
  registry_login
  await_word
  [[ "$AWAIT_WORD" == "pull "* ]] || die "the runner said pull without the color to start: nothing was changed here"
  P[color]="${AWAIT_WORD#pull }"
}

# Wait for the runner's word into AWAIT_WORD; `abort` (its build or release failed), or none within
# build_wait seconds, ends the script with nothing changed.
await_word() {
  local cmd
  cmd="$(command_next "${P[build_wait]}")"
  AWAIT_WORD="$cmd"
  case "$cmd" in
    pull) ;;
    "pull blue" | "pull green") ;;
    abort) die "the runner's build or release failed (it said abort): nothing was changed here" ;;
    *)
      marker error "no image from the runner within ${P[build_wait]}s of waiting (build_wait): nothing was changed here"
      exit "$EXIT_AWAIT_GAVE_UP" # the runner then starts the script anew ;;
  esac
}

# ==== src/remote/steps/pull.sh
# Step: pull the image (with the pull credential, in a temporary Docker config).

pull_image() { # pull_image [WHAT_A_FAILURE_MEANS]
  phase pull; event pull
  local rc=0 out
  registry_login
  log "pulling $RUN_IMAGE"
  local progress="$STATE_DIR/pull.progress" beat t0
  : >"$progress"; t0="$(now_ms)"
  # a heartbeat every 5 s while the pull runs: its time, and the layers done of those seen. Its
  # sleep is killed with it, and holds none of the script's descriptors (the session's output, the
  # commands, the lock): one that outlived a kill would keep them open
  (
    s=''
    trap - EXIT; trap '[[ -z "$s" ]] || kill "$s" 2>/dev/null || true; exit 0' TERM
    while :; do
      sleep 5 >/dev/null 2>&1 6<&- 7>&- 8>&- 9>&- & s=$!
      wait "$s" || true
      pull_progress "$progress" "$t0"
    done
  ) & beat=$!
  # docker itself (not docker_call, which holds the output until the end) so progress is seen
  command docker ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} pull -- "$RUN_IMAGE" >"$progress" 2>&1 || rc=$?
  kill "$beat" 2>/dev/null || true; wait "$beat" 2>/dev/null || true
  if ((rc != 0)) && ! docker_answers; then # dockerd restarting: docker_call waits for it
    rc=0; docker_call ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} pull -q -- "$RUN_IMAGE" >"$progress" 2>&1 || rc=$?
  fi
  out="$(tail -n 5 "$progress")"; rm -f "$progress"
  if [[ -n "$REGISTRY_CONFIG" ]]; then rm -rf "$REGISTRY_CONFIG"; REGISTRY_CONFIG=''; fi
  if ((rc != 0)); then
    if docker_call image inspect "$RUN_IMAGE" >/dev/null 2>&1; then
      log "pull failed, using the image already on the server: $out"
    else
      history_add failed-pull
      local anon=''
      if [[ -z "${P[registry_user]}" ]]; then anon=' This server pulled anonymously: for a private image give it a read-only credential in pull-registry-username and pull-registry-password.'; fi
      die "${1:-cannot pull $RUN_IMAGE: is the registry reachable from the server, and was the image pushed? Nothing was changed; the previous version is still serving.}$anon (docker: $out)"
    fi
  fi
  event pulled
}

pull_progress() { # pull_progress FILE START_MS: one line on a pull that runs, from docker's output
  local layers
  layers="$(awk '/: (Pulling fs layer|Waiting|Downloading|Verifying Checksum|Download complete|Extracting|Pull complete|Already exists)$/ {
      id = $1; seen[id] = 1; if ($0 ~ /(Pull complete|Already exists)$/) done[id] = 1 }
    END { n = 0; d = 0; for (i in seen) n++; for (i in done) d++; printf "%d of %d layers done", d, n }' "$1" 2>/dev/null)"
  log "still pulling $RUN_IMAGE: $(( ($(now_ms) - $2) / 1000 ))s, ${layers:-no layer yet}"
}

# ==== src/remote/steps/accessories.sh
# Step (compose-file's services of other images: a database, a cache): the app's accessories, each
# started once when its container is missing (or started again when stopped), and never recreated
# by a deploy or a rollback: their data and connections stay. The network they share with the app
# (Compose's default, APP_default: they reach each other by service name) is created when
# missing. One server only (the config refuses them with several). Globals: ACCESSORIES (from the
# `accessory` secret lines, lib/params.sh).

accessories_ensure() {
  ((${#ACCESSORIES[@]} > 0)) || return 0
  local line f=() name image net n args=() m envs=() acmd=() state out rc envfile
  for line in "${ACCESSORIES[@]}"; do
    # name, image, network, N, N run arguments, M, M KEY=VALUE, the command's words: each NUL-ended
    mapfile -d '' f < <(printf '%s' "$line" | base64 -d)
    name="${P[app]}-${f[0]}"; image="${f[1]}"; net="${f[2]}"; n="${f[3]}"
    args=("${f[@]:4:n}"); m="${f[4 + n]}"; envs=("${f[@]:5 + n:m}"); acmd=("${f[@]:5 + n + m}")
    if [[ -n "$net" ]] && ! docker_call network inspect "$net" >/dev/null 2>&1; then
      docker_call network create "$net" >/dev/null 2>&1 || die "could not create the network $net for the app and its accessories"
      log "created the network $net: the app and its accessories reach each other by service name there"
    fi
    state="$(docker_call inspect -f '{{.State.Running}}' "$name" 2>/dev/null || echo missing)"
    case "$state" in
      true) log "accessory ${f[0]}: $name runs; left as it is" ;;
      false)
        docker_call start "$name" >/dev/null 2>&1 || die "accessory ${f[0]}: $name exists but does not start (docker start $name)"
        log "accessory ${f[0]}: started the stopped $name" ;;
      *)
        log "accessory ${f[0]}: $name is missing: starting it from compose-file ($image)"
        # its env through an owner-only file, never on docker's command line
        envfile="$STATE_DIR/.accessory.$$"; TMP_PATHS+=("$envfile")
        (umask 077 && printf '%s\n' "${envs[@]}" >"$envfile")
        rc=0
        out="$(docker_call run -d --name "$name" --restart unless-stopped --label "bg-deploy.app=${P[app]}" \
          --label "bg-deploy.accessory=${f[0]}" --env-file "$envfile" "${args[@]}" -- "$image" "${acmd[@]}" 2>&1)" || rc=$?
        rm -f "$envfile"
        ((rc == 0)) || { docker_call rm -f "$name" >/dev/null 2>&1 || true; die "accessory ${f[0]}: docker run $name failed: $out"; } ;;
    esac
  done
}

# ==== src/remote/steps/task.sh
# Step: the pre-switch task (a migration): the command `task` (its words, NUL-separated, base64)
# in a one-off container of the new image, with the app's env, network and run arguments, once per
# deploy, after the image is on this server and before any color starts. Its output streams into
# the log as it comes; a failure, or no end within task_timeout seconds, ends the run before
# anything started. A version whose task succeeded here is not run again (task_force=1 runs it
# anyway). $STATE_DIR/tasks records each run (VERSION IMAGE TIME RESULT), $STATE_DIR/task.log the
# last one's output. The task's container is run once, not through docker_call: a migration cut off
# by a daemon restart must not run a second time behind the user's back.

task_done() { # the task succeeded for RUN_VERSION (as RUN_IMAGE) here: prints when
  [[ -f "$STATE_DIR/tasks" ]] || return 1
  awk -F'\t' -v v="$RUN_VERSION" -v i="$RUN_IMAGE" '$1 == v && $2 == i && $4 == "ok" { t = $3 } END { if (t == "") exit 1; print t }' "$STATE_DIR/tasks"
}

task_record() { # task_record RESULT
  printf '%s\t%s\t%s\t%s\n' "$RUN_VERSION" "$RUN_IMAGE" "$(date -u +%FT%TZ)" "$1" >>"$STATE_DIR/tasks" 2>/dev/null \
    || log "warning: could not append to $STATE_DIR/tasks"
}

# The task's output, line by line: into the log (the runner keeps it inert) and its file.
task_stream() { # task_stream FILE
  local line
  while IFS= read -r line || [[ -n "$line" ]]; do
    printf '%s\n' "$line" >>"$1"
    printf 'task| %s\n' "$line" >&2 || true
  done
}

task_run() { # task_run WHAT_SERVES: what serves if the task fails, for the message
  [[ -n "${P[task]}" ]] || return 0
  local words=() name out rc=0 start when why
  mapfile -d '' words < <(printf '%s' "${P[task]}" | base64 -d)
  ((${#words[@]} > 0)) || die "parameter task holds no command"
  if [[ "${P[task_force]}" != 1 ]] && when="$(task_done)"; then
    log "pre-switch task: it succeeded for $RUN_VERSION on this server already ($when): not run again (pre-switch-force: true runs it anyway)"
    return 0
  fi
  name="${P[app]}-task"
  phase "pre-switch task"
  event task
  docker_call rm -f "$name" >/dev/null 2>&1 || true
  app_run_args
  out="$STATE_DIR/task.log"; : >"$out"
  log "pre-switch task: running '${words[*]}' in a one-off container of $RUN_IMAGE (up to ${P[task_timeout]}s)"
  start="$(now_ms)"
  (app_env_export
    exec timeout -k 10 "${P[task_timeout]}" docker run --rm --name "$name" --init --label "bg-deploy.app=${P[app]}" \
      --label "bg-deploy.task=$RUN_VERSION" "${APP_ARGS[@]}" -- "$RUN_IMAGE" "${words[@]}") </dev/null 2>&1 | task_stream "$out" \
    || rc="${PIPESTATUS[0]}"
  app_run_args_done
  if ((rc != 0)); then
    # the CLI was stopped (timeout) or the container failed: nothing of it may keep running
    docker_call rm -f "$name" >/dev/null 2>&1 || true
    task_record failed
    history_add failed-task
    if ((rc == 124 || rc == 137)); then why="did not end within ${P[task_timeout]}s (pre-switch-timeout) and was stopped"
    else why="failed with exit code $rc"; fi
    die "the pre-switch task '${words[*]}' $why. Nothing was started or switched: ${1:-nothing of ${P[app]} ran here before}. Its last lines:
$(tail -n 10 "$out")"
  fi
  task_record ok
  log "pre-switch task: done in $(($(now_ms) - start)) ms"
  event tasked
}

# ==== src/remote/steps/start.sh
# Step: start the idle color: a new container of RUN_IMAGE, or (a rollback's fast path) the kept
# container of RUN_VERSION. Globals: APP_ARGS, APP_SPANNING, APP_ENV_FILE (app_run_args).

APP_ARGS=()
APP_SPANNING=()
APP_ENV_FILE=''

# The `docker run` arguments every container of the app's version gets (a color, the pre-switch
# task): network, env file, the env and the run arguments, into APP_ARGS. Env values: one line
# each in an owner-only file in the owner-only state directory (APP_ENV_FILE), removed as soon as
# docker has read it (app_run_args_done); a value that spans lines (a PEM key) cannot be written
# there, so docker reads it from its own environment (`-e KEY`; app_env_export, in the subshell of
# that one command): APP_SPANNING holds their indices.
app_run_args() {
  local i
  APP_ARGS=(); APP_SPANNING=(); APP_ENV_FILE=''
  if [[ -n "${P[network]}" ]]; then APP_ARGS+=(--network "${P[network]}"); fi
  if [[ -n "${P[env_file]}" ]]; then APP_ARGS+=(--env-file "${P[env_file]}"); fi
  if ((${#ENV_KEYS[@]} > 0)); then
    APP_ENV_FILE="$STATE_DIR/.env.$$"
    TMP_PATHS+=("$APP_ENV_FILE")
    : >"$APP_ENV_FILE"
    for i in "${!ENV_KEYS[@]}"; do
      if [[ "${ENV_VALUES[$i]}" == *[$'\n\r']* ]]; then APP_SPANNING+=("$i"); APP_ARGS+=(-e "${ENV_KEYS[$i]}")
      else printf '%s=%s\n' "${ENV_KEYS[$i]}" "${ENV_VALUES[$i]%x}" >>"$APP_ENV_FILE"
      fi
    done
    APP_ARGS+=(--env-file "$APP_ENV_FILE")
  fi
  APP_ARGS+=("${RUN_ARGS[@]}")
}

app_env_export() { local i; for i in "${APP_SPANNING[@]}"; do export "${ENV_KEYS[$i]}=${ENV_VALUES[$i]%x}"; done; }

app_run_args_done() { if [[ -n "$APP_ENV_FILE" ]]; then rm -f "$APP_ENV_FILE"; fi; }

start_color() { # start_color COLOR
  local color="$1" name port
  name="$(container_name "$color")"; port="$(color_port "$color")"
  phase "start $name"
  if [[ "$IDLE_EXISTS" == yes ]] || { [[ -z "$IDLE_EXISTS" ]] && container_exists "$color"; }; then
    if container_running "$color"; then
      # a previous run died after its switch, before draining this color: nginx's old workers may
      # still be answering requests through it
      log "$name is still running (a previous run stopped before draining it); draining it first"
      drain_color "$color" "$(color_other "$color")" ''
      phase "start $name"
    fi
    log "replacing leftover container $name"
    docker_call rm -f "$name" >/dev/null
  fi
  app_run_args
  local args=(run -d --name "$name" --init --restart unless-stopped
    --label "bg-deploy.app=${P[app]}" --label "bg-deploy.color=$color" --label "bg-deploy.version=$RUN_VERSION"
    -p "${P[bind_address]}:$port:${P[container_port]}")
  # a health command (health-cmd, or compose-file's healthcheck): Docker runs it, and health_wait
  # waits for its verdict; compose-file's interval and the rest come in the run arguments
  if [[ -n "${P[health_cmd]}" ]]; then
    args+=(--health-cmd "${P[health_cmd]}")
    if [[ " ${RUN_ARGS[*]} " != *" --health-interval "* ]]; then args+=(--health-interval 1s); fi
  fi
  args+=("${APP_ARGS[@]}" -- "$RUN_IMAGE")
  # the web's own command (compose-file's), else the image's CMD
  if [[ -n "${P[command]}" ]]; then
    local words=()
    mapfile -d '' words < <(printf '%s' "${P[command]}" | base64 -d)
    args+=("${words[@]}")
  fi
  log "starting $name ($RUN_IMAGE) on ${P[bind_address]}:$port"
  local out rc=0
  out="$(app_env_export; docker_call "${args[@]}" 2>&1)" || rc=$?
  app_run_args_done
  ((rc == 0)) || { docker_call rm -f "$name" >/dev/null 2>&1 || true; die "docker run $name failed: $out"; }
  event started
}

# A rollback's fast path: the idle color's container was kept (stopped) after the deploy it served
# in, with RUN_VERSION and RUN_IMAGE: start it again. False when there is no such container.
start_kept() { # start_kept COLOR
  local name kept running version image ip
  name="$(container_name "$1")"
  # one docker call for all it needs to know (the fewer on this path, the sooner it serves), the
  # address nginx's backup line names too (upstream_backup, lib/nginx.sh)
  kept="$(docker_call inspect -f "{{.State.Running}} {{index .Config.Labels \"bg-deploy.version\"}} {{.Config.Image}} $IPS_FORMAT" "$name" 2>/dev/null)" || return 1
  read -r running version image ip _ <<<"$kept"
  [[ "$version" == "$RUN_VERSION" && "$image" == "$RUN_IMAGE" ]] || return 1
  phase "start $name (kept from $RUN_VERSION)"
  if [[ "$running" == true ]]; then
    CIP[$1]="${ip:-}"
    log "fast path: $name is running still (kept warm): a switch only"
  else
    log "fast path: starting the kept container $name"
    docker_call start "$name" >/dev/null || die "docker start $name failed"
  fi
  event started
}

# ==== src/remote/steps/health.sh
# Step: wait until the new color answers 2xx on the health path.

health_probe() { # health_probe PORT PATH TIMEOUT -> prints the status code or nothing
  # bash's own /dev/tcp, no program started: a probe costs about a millisecond, so it can run often.
  # The address is this server's own (loopback or its bind address), where a connect is answered
  # or refused at once; the answer is awaited up to TIMEOUT seconds.
  # Called as $(health_probe …), in a subshell of its own: a connection that Docker's port proxy
  # accepts and then closes (the app not listening yet) must fail this write, not kill the run
  local code=''
  trap '' PIPE
  { exec 3<>"/dev/tcp/$(bind_host)/$1"; } 2>/dev/null || return 0
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: bg-deploy\r\n\r\n' "$2" >&3 2>/dev/null || { exec 3>&-; return 0; }
  read -r -t "$3" _ code _ <&3 2>/dev/null || true
  exec 3>&-
  printf '%s' "$code"
}

health_wait() { # health_wait COLOR
  local color="$1" name port start deadline code state now checked=0 status restarts exit_code ip beat
  name="$(container_name "$color")"; port="$(color_port "$color")"
  phase "health $name"
  start="$(now_ms)"; deadline=$((start + ${P[health_timeout]%.*} * 1000)); beat="$start"
  if [[ -n "${P[health_cmd]}" ]]; then
    log "waiting for Docker's health check of $name ($(printf '%q' "${P[health_cmd]}")), then http://$(bind_host):$port${P[health_path]}, up to ${P[health_timeout]}s"
  else
    log "polling http://$(bind_host):$port${P[health_path]} every ${P[health_interval]}s (up to ${P[health_timeout]}s)"
  fi
  local docker_health=''
  while :; do
    # with a health command, Docker's verdict first (every probe's own time: one inspect each)
    if [[ -n "${P[health_cmd]}" && "$docker_health" != healthy ]]; then
      docker_health="$(docker_call inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$name" 2>/dev/null || true)"
      if [[ "$docker_health" == unhealthy ]]; then
        health_failed "$color" "$name: Docker's health check ($(printf '%q' "${P[health_cmd]}")) says unhealthy"
      fi
    fi
    code=''
    if [[ -z "${P[health_cmd]}" || "$docker_health" == healthy ]]; then code="$(health_probe "$port" "${P[health_path]}" 2)"; fi
    if [[ "$code" == 2?? ]]; then
      log "$name is healthy after $(( $(now_ms) - start )) ms (HTTP $code)"
      event healthy
      return 0
    fi
    if (( $(now_ms) >= deadline )); then
      health_failed "$color" "$name did not answer 2xx on ${P[health_path]} within ${P[health_timeout]}s (last: ${code:-no HTTP answer}${P[health_cmd]:+; the Docker health check: ${docker_health:-none yet}})"
    fi
    now="$(now_ms)"
    # a heartbeat every 5 s, so a long wait is never silent: how long, and the last answer
    if ((now - beat >= 5000)); then
      beat="$now"
      log "still waiting for $name: $(( (now - start) / 1000 ))s of ${P[health_timeout]}s, last: ${code:+HTTP }${code:-no HTTP answer}"
    fi
    # the container's own state, at most every second (a docker call costs more than a probe)
    if ((now - checked >= 1000)); then
      checked="$now"
      state="$(docker_call inspect -f "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}} $IPS_FORMAT" "$name" 2>/dev/null || echo 'gone 0 0')"
      read -r status restarts exit_code ip _ <<<"$state"
      if [[ "$status" != running || "$restarts" != 0 ]]; then
        health_failed "$color" "$name exited or restarted before it became healthy (state: $status $restarts, exit code $exit_code)"
      fi
      CIP[$color]="${ip:-}"
    fi
    sleep "${P[health_interval]}"
  done
}

health_failed() { # health_failed COLOR MESSAGE: show the logs, remove the new container, leave the rest
  local name; name="$(container_name "$1")"
  log "last log lines of $name:"
  docker_call logs --tail 30 "$name" >&2 2>&1 || true
  docker_call rm -f "$name" >/dev/null 2>&1 || true
  workers_undo "$1" "$(color_other "$1")"
  history_add failed-health "$1"
  die "$2. Nothing was switched: the previous version is still serving."
}

# ==== src/remote/steps/workers.sh
# Step: the workers (`workers`: commands of the app's image with its env, e.g. a job runner and a
# scheduler) swap with the web in one transaction. The new color's workers start with its web
# container and must stay up WORKER_SETTLE_MS before anything switches; a single worker (a
# scheduler) never runs twice: the old one is stopped (its stop signal, its stop timeout) before
# the new one starts, still before the web switches, and on one server only (single_workers: here;
# elsewhere, a server that must not hold them; leave, a prepare for a later promote).
# After the switch the old color's workers get their stop signal and their stop timeout to finish
# the jobs in progress, in the background under the deploy lock. keep-warm keeps the old web
# running, never its workers: a warm worker would go on taking jobs with the old code; a rollback
# starts the kept ones again. Containers: APP-COLOR-NAME.
# Globals: WORKER_*, WORKERS_STARTED_MS, WORKERS_SWAPPED.

WORKER_SETTLE_MS=3000
WORKER_NAMES=()
WORKER_SINGLE=()
WORKER_SIGNAL=()
WORKER_TIMEOUT=()
WORKER_WORDS=() # base64 of the words, NUL-separated
WORKERS_STARTED_MS=0
WORKERS_SWAPPED=0 # the single workers were swapped to the new color on this server

workers_read() {
  local n s sig t w
  WORKER_NAMES=(); WORKER_SINGLE=(); WORKER_SIGNAL=(); WORKER_TIMEOUT=(); WORKER_WORDS=()
  [[ -n "${P[workers]}" ]] || return 0
  while IFS=$'\t' read -r n s sig t w || [[ -n "$n" ]]; do
    [[ -n "$n" ]] || continue
    [[ "$n" =~ ^[a-z0-9][a-z0-9_.-]{0,30}$ && "$s" =~ ^[01]$ && "$sig" =~ ^[A-Z0-9+-]{1,19}$ && "$t" =~ ^[0-9]{1,4}$ ]] \
      || die "parameter workers holds a malformed worker"
    WORKER_NAMES+=("$n"); WORKER_SINGLE+=("$s"); WORKER_SIGNAL+=("$sig"); WORKER_TIMEOUT+=("$t"); WORKER_WORDS+=("$w")
  done < <(printf '%s' "${P[workers]}" | base64 -d)
}

worker_container() { printf '%s-%s-%s' "${P[app]}" "$1" "$2"; } # worker_container COLOR NAME

# The indices of the workers of a kind: regular (not single) or single; single ones only where this
# server runs them.
workers_of() { # workers_of regular|single
  local i
  for i in "${!WORKER_NAMES[@]}"; do
    if [[ "$1" == single ]]; then [[ "${WORKER_SINGLE[$i]}" == 1 && "${P[single_workers]}" == here ]] || continue
    else [[ "${WORKER_SINGLE[$i]}" == 0 ]] || continue; fi
    printf '%s\n' "$i"
  done
}

# Start COLOR's workers of a kind: a rollback starts a kept container of its version again (unless
# it changes what the container was started with); anything else runs a new one.
workers_start() { # workers_start COLOR regular|single
  local color="$1" i name kept words=() out rc
  workers_read
  for i in $(workers_of "$2"); do
    name="$(worker_container "$color" "${WORKER_NAMES[$i]}")"
    if [[ "${P[action]}" == rollback ]] && ! spec_changes_container \
      && kept="$(docker_call inspect -f '{{index .Config.Labels "bg-deploy.version"}} {{.Config.Image}}' "$name" 2>/dev/null)" \
      && [[ "$kept" == "$RUN_VERSION $RUN_IMAGE" ]]; then
      log "worker ${WORKER_NAMES[$i]}: starting the kept $name"
      docker_call start "$name" >/dev/null || workers_failed "$color" "docker start $name failed"
      continue
    fi
    docker_call rm -f "$name" >/dev/null 2>&1 || true
    mapfile -d '' words < <(printf '%s' "${WORKER_WORDS[$i]}" | base64 -d)
    app_run_args
    # the worker's own stop signal and timeout after the app's run arguments: docker takes the last
    log "worker ${WORKER_NAMES[$i]}: starting $name ('${words[*]}'; stop: ${WORKER_SIGNAL[$i]}, ${WORKER_TIMEOUT[$i]}s)"
    rc=0
    out="$(app_env_export; docker_call run -d --name "$name" --init --restart unless-stopped \
      --label "bg-deploy.app=${P[app]}" --label "bg-deploy.color=$color" --label "bg-deploy.version=$RUN_VERSION" \
      --label "bg-deploy.worker=${WORKER_NAMES[$i]}" "${APP_ARGS[@]}" \
      --stop-signal "${WORKER_SIGNAL[$i]}" --stop-timeout "${WORKER_TIMEOUT[$i]}" -- "$RUN_IMAGE" "${words[@]}" 2>&1)" || rc=$?
    app_run_args_done
    ((rc == 0)) || workers_failed "$color" "docker run $name failed: $out"
  done
  WORKERS_STARTED_MS="$(now_ms)"
}

# The workers of a kind must stay up (running, never restarted) WORKER_SETTLE_MS from their start.
workers_settle() { # workers_settle COLOR regular|single
  local color="$1" i name state deadline list
  workers_read
  list="$(workers_of "$2")"
  [[ -n "$list" ]] || return 0
  deadline=$((WORKERS_STARTED_MS + WORKER_SETTLE_MS))
  phase "workers $2 of $color"
  while :; do
    for i in $list; do
      name="$(worker_container "$color" "${WORKER_NAMES[$i]}")"
      state="$(docker_call inspect -f '{{.State.Running}} {{.RestartCount}} {{.State.ExitCode}}' "$name" 2>/dev/null || echo 'gone 0 0')"
      [[ "$state" == 'true 0 '* ]] \
        || workers_failed "$color" "worker ${WORKER_NAMES[$i]} ($name) did not stay up for $((WORKER_SETTLE_MS / 1000))s (running, restarts, exit code: $state)" "$name"
    done
    (($(now_ms) < deadline)) || break
    sleep 0.25
  done
  log "workers ($2) of $color up for $((WORKER_SETTLE_MS / 1000))s: $(for i in $list; do printf '%s ' "${WORKER_NAMES[$i]}"; done)"
}

# Before the switch, on the server that runs them: the old single workers stop (their signal and
# stop timeout: a job in progress ends), then the new ones start and must stay up. A server that
# does not run them stops any it holds (the first server of the run does).
workers_swap_single() { # workers_swap_single FROM TO
  local from="$1" to="$2" i name c
  workers_read
  [[ "${P[single_workers]}" != leave ]] || return 0
  if [[ "${P[single_workers]}" == elsewhere ]]; then
    for i in "${!WORKER_NAMES[@]}"; do
      [[ "${WORKER_SINGLE[$i]}" == 1 ]] || continue
      for c in blue green; do
        name="$(worker_container "$c" "${WORKER_NAMES[$i]}")"
        if container_running_name "$name"; then
          log "worker ${WORKER_NAMES[$i]} is single and runs on the first server of the run only: stopping $name here"
          docker_call stop "$name" >/dev/null 2>&1 || true
        fi
      done
    done
    return 0
  fi
  [[ -n "$(workers_of single)" ]] || return 0
  WORKERS_SWAPPED=1
  if [[ -n "$from" ]]; then
    for i in $(workers_of single); do
      name="$(worker_container "$from" "${WORKER_NAMES[$i]}")"
      if container_running_name "$name"; then
        log "worker ${WORKER_NAMES[$i]} (single): stopping $name first (${WORKER_SIGNAL[$i]}, up to ${WORKER_TIMEOUT[$i]}s)"
        docker_call stop "$name" >/dev/null || workers_failed "$to" "docker stop $name failed"
      fi
    done
  fi
  workers_start "$to" single
  workers_settle "$to" single
}

container_running_name() { [[ "$(docker_call inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" == true ]]; }

# A worker failed before the switch: its last log lines, the new color's workers removed, the old
# single workers back; the caller's color is removed by health_failed's path below. Ends the run.
workers_failed() { # workers_failed COLOR MESSAGE [CONTAINER]
  if [[ -n "${3:-}" ]]; then
    log "last log lines of $3:"
    docker_call logs --tail 20 "$3" >&2 2>&1 || true
  fi
  workers_undo "$1" "$(color_other "$1")"
  container_remove "$1"
  history_add failed-workers "$1"
  die "$2. Nothing was switched: the previous version and its workers are as they were."
}

# Put the workers back as they were before this run: TO's removed (STOP: stopped, kept for their
# logs), FROM's single workers started again if this run stopped them.
workers_undo() { # workers_undo TO FROM [stop]
  local i name
  workers_read
  ((${#WORKER_NAMES[@]} > 0)) || return 0
  for i in "${!WORKER_NAMES[@]}"; do
    name="$(worker_container "$1" "${WORKER_NAMES[$i]}")"
    if [[ "${3:-}" == stop ]]; then docker_call stop "$name" >/dev/null 2>&1 || true
    else docker_call rm -f "$name" >/dev/null 2>&1 || true; fi
  done
  if ((WORKERS_SWAPPED)) && [[ -n "$2" ]]; then
    for i in $(workers_of single); do
      name="$(worker_container "$2" "${WORKER_NAMES[$i]}")"
      log "worker ${WORKER_NAMES[$i]} (single): starting $name again"
      docker_call start "$name" >/dev/null 2>&1 || log "warning: could not start $name again"
    done
  fi
}

# After the switch: FROM's regular workers get their stop signal and their stop timeout, in the
# background; the job holds the deploy lock (it shares its descriptor) until they have stopped.
workers_stop_later() { # workers_stop_later FROM
  local names
  [[ -n "$1" ]] || return 0
  # every running worker of that color, also one the new version no longer has
  names="$(docker_call ps --filter "label=bg-deploy.app=${P[app]}" --filter "label=bg-deploy.color=$1" \
    --filter label=bg-deploy.worker --format '{{.Names}}' 2>/dev/null | paste -sd ' ' -)"
  [[ -n "$names" ]] || return 0
  log "stopping the old workers in the background (each gets its stop signal and stop timeout to finish its jobs): $names"
  (
    exec </dev/null >>"$STATE_DIR/stop.log" 2>&1 7>&1 8>&2
    IN_JOB=1
    trap - EXIT
    local n
    for n in $names; do docker_call stop "$n" >/dev/null 2>&1 & done
    wait
    printf '%s stopped workers %s\n' "$(date -u +%FT%TZ)" "$names"
  ) &
  disown
}

# ==== src/remote/steps/switch.sh
# Step: send traffic to the new color (reload mode: the upstream; dnat mode: the NAT rule), and
# settle the mode afterwards. Globals: SWITCH_MODE (this run's mode, decided once by
# switch_mode_decide), PREV_MODE (the mode of the deploy before this one).

SWITCH_MODE=reload
PREV_MODE=reload
SWITCH_ERROR=''  # why switch_point did not take
SWITCH_BACKUP='' # reload mode: the color's docker address switch_point gave nginx as a backup

# The run's switch mode, decided once before anything changes: the mode given, except that a
# rollback switches in the mode of the deploy it undoes.
switch_mode_decide() {
  PREV_MODE="$(state_get switch_mode)"; PREV_MODE="${PREV_MODE:-reload}"
  SWITCH_MODE="${P[switch_mode]}"
  if [[ "${P[action]}" == rollback && "$PREV_MODE" != "$SWITCH_MODE" ]]; then
    log "rolling back in switch-mode $PREV_MODE, the mode of the deploy it undoes (switch-mode ${P[switch_mode]} was given)"
    SWITCH_MODE="$PREV_MODE"
  fi
}

# The switch: point the app's traffic at COLOR in this run's mode. dnat: one atomic replacement
# of the NAT rule, to the color's port; reload: the upstream file names the color (and its docker
# address as a backup), nginx tests and reloads it. Every place that points traffic calls it: the
# deploy's switch, the watch's switch back, the load balancer. False, with SWITCH_ERROR (and for
# the upstream file UPSTREAM_FAILED, the history's word) when it did not take: then nothing
# changed. An undo in a run over several servers is not a switch: it puts back the upstream file
# that was there before, byte for byte (steps/undo.sh).
switch_point() { # switch_point COLOR
  SWITCH_ERROR=''
  if [[ "$SWITCH_MODE" == dnat ]]; then
    nat_apply "$(nat_chain)" "${P[live_port]}" "$(color_port "$1")" >&2 && return 0
    SWITCH_ERROR='iptables-restore failed'
    return 1
  fi
  SWITCH_BACKUP="$(upstream_backup "$1")"
  upstream_write "$(upstream_target "$1")" "$1" "$SWITCH_BACKUP" && return 0
  SWITCH_ERROR="$UPSTREAM_ERROR"
  return 1
}

# The deploy's switch to its new color; when it does not take, that color is removed and the run
# ends: the previous version serves.
switch_to() { # switch_to COLOR
  phase "switch to $(container_name "$1")"
  if [[ "$SWITCH_MODE" == dnat ]]; then switch_dnat "$1"; event switched; else switch_reload "$1"; fi
}

# reload mode: the upstream names the color's port; nginx is reloaded.
switch_reload() { # switch_reload COLOR
  if ! switch_point "$1"; then
    container_remove "$1"
    if [[ -n "$UPSTREAM_FAILED" ]]; then history_add "$UPSTREAM_FAILED" "$1"; fi
    die "$SWITCH_ERROR"
  fi
  # stamped as soon as the reload returned: nginx's new workers may answer from then on
  event switched
  log "nginx now sends ${P[upstream_name]} to $(upstream_target "$1")${SWITCH_BACKUP:+ (or $SWITCH_BACKUP while that port refuses)}"
}

# dnat mode: one atomic rule replacement sends the live port to the color. nginx's upstream names
# the live port; it is written, tested and reloaded only when it does not yet (the first time).
switch_dnat() { # switch_dnat COLOR
  local live="127.0.0.1:${P[live_port]}" port had_rule=0
  port="$(color_port "$1")"
  # the rule sends traffic to the published port on 127.0.0.1, which only Docker's userland proxy
  # serves: with "userland-proxy": false, Docker's own NAT rule never sees it (dockerd still holds
  # the port, so connections would hang)
  if ! nat_proxied "$port"; then
    container_remove "$1"
    die "switch-mode dnat needs Docker's userland proxy on the server: no docker-proxy serves 127.0.0.1:$port, the published port of $(container_name "$1"), so the Docker daemon runs with \"userland-proxy\": false. Use switch-mode reload, which works with that setting, or turn the proxy back on. Nothing was switched; the previous version is still serving."
  fi
  if [[ -n "$(nat_port)" ]]; then had_rule=1; fi
  if ! switch_point "$1"; then
    container_remove "$1"
    die "could not install the NAT rule 127.0.0.1:${P[live_port]} -> 127.0.0.1:$port (iptables-restore failed, see above); nothing was switched"
  fi
  log "NAT rule: 127.0.0.1:${P[live_port]} -> 127.0.0.1:$port ($(container_name "$1")), chain $(nat_chain)"
  if ! upstream_points_to "$live"; then
    log "first switch in dnat mode: pointing the nginx upstream at $live (one nginx reload)"
    if ((had_rule)); then upstream_switch "$live" "$1"; else upstream_switch "$live" "$1" nat_remove; fi
  fi
}

# After the switch and the drain: in dnat mode, make sure the rule comes back after a reboot; when
# the app just left dnat mode, remove its rule (connections through it have drained).
switch_settle() {
  if [[ "$SWITCH_MODE" == dnat ]]; then
    nat_install_restore
  elif [[ "$PREV_MODE" == dnat ]]; then
    nat_remove
    log "left switch-mode dnat: removed the NAT rule (chain $(nat_chain))"
  fi
}

# ==== src/remote/steps/canary.sh
# Step (canary: percentages): before the full switch, a share of the clients goes to the new
# color, step by step, each step canary_step_time seconds. The upstream hashes canary_key over
# both colors with weights (new: the step's percent, old: the rest; nginx's hash walks the servers
# in order), so a client stays on its version within a step, and one on the new version stays on
# it as the share grows. nginx's answers of each color in the same seconds are told apart by the
# upstream's address (steps/watch.sh writes the canary's log) and compared as the watch compares
# them; a breach sends every client back to the old color in one write and fails the run. After
# the last step come the full switch and the watch. Globals: CANARY_*.

CANARY_TO=''    # the new color while the canary runs (the watch's log tells its answers apart)
CANARY_SHARE=0  # the percent of clients the upstream file sends to CANARY_TO (0: no split)
CANARY_REASON='' # why a step failed
CANARY_FIGURES='' # what the last step saw

# Seconds all the steps take (0 without canary).
canary_seconds() {
  local n=0 p
  for p in ${P[canary]//,/ }; do n=$((n + 1)); done
  echo $((n * ${P[canary_step_time]%.*}))
}

# The upstream's lines while the canary splits (upstream_render): the hash, then each server's new
# color and old color with their weights. No backup line: nginx's hash does not take one.
canary_upstream_lines() {
  local -a new old
  local i
  read -ra new <<<"$(upstream_target "$CANARY_TO")"
  read -ra old <<<"$(upstream_target "$(color_other "$CANARY_TO")")"
  printf '    # canary: %s %% of clients (told apart by %s) to %s, the others to %s\n' \
    "$CANARY_SHARE" "${P[canary_key]}" "$CANARY_TO" "$(color_other "$CANARY_TO")"
  printf '    hash %s;\n' "${P[canary_key]}"
  for i in "${!new[@]}"; do
    printf '    server %s weight=%d;\n    server %s weight=%d;\n' "${new[i]}" "$CANARY_SHARE" "${old[i]}" $((100 - CANARY_SHARE))
  done
}

# For the watch's log directives (http level): the map that tells the new color's answers by the
# upstream's address (its port: the colors' ports differ), only inside the watch's window.
canary_log_map() {
  [[ -n "$CANARY_TO" ]] || return 0
  local n; n="$(watch_name)"
  # shellcheck disable=SC2016 # nginx variables
  printf 'map "$%s $upstream_addr" $%s_canary {\n    "~^1 (.*[ ,] )?[^ ,]*:%s$" 1;\n    default 0;\n}\n' \
    "$n" "$n" "$(color_port "$CANARY_TO")"
}

# The lines and 5xx among them in FILE's bytes FROM..TO (access log lines of either format).
canary_tally() { # canary_tally FILE FROM TO
  if [[ ! -f "$1" ]] || (($3 <= $2)); then echo 0 0; return 0; fi
  head -c "$3" "$1" | tail -c "+$(($2 + 1))" | awk '
    {
      if (NF == 2 && $1 ~ /^[0-9]+[.][0-9]+$/) st = $2
      else { i = index($0, "\" "); if (!i) next; st = substr($0, i + 2, 3) + 0 }
      n++; if (st >= 500) b++
    }
    END { print n + 0, b + 0 }'
}

# Every step in turn; a breach switches every client back to FROM and ends the run. Nothing on a
# first deploy (no old version to compare with) or a rollback (it switches at once).
canary_run() { # canary_run FROM TO
  local from="$1" to="$2" pct
  [[ -n "${P[canary]}" && -n "$from" ]] || return 0
  if [[ "${P[action]}" == rollback ]]; then log "a rollback switches at once: no canary steps"; return 0; fi
  ((WATCH_FROM > 0)) || return 0
  WATCH_BASE_END="$(now_ms)"
  CANARY_TO="$to"
  watch_narrow "$(canary_seconds)"
  event canary
  for pct in ${P[canary]//,/ }; do
    if ! canary_step "$to" "$pct"; then canary_back "$from" "$to"; fi
  done
  CANARY_SHARE=0; CANARY_TO=''
}

# One step: PERCENT of clients to TO for canary_step_time seconds, judged every 0.1 s (the new
# version gets a small share of the answers: the evidence comes slower than in the watch, and
# each 0.1 s sooner saves the clients of the step an answer or two).
canary_step() { # canary_step TO PERCENT
  local to="$1" name port start end now code fails=0 cs as co ao nn nb on ob checked=0
  name="$(container_name "$to")"; port="$(color_port "$to")"
  if [[ "${P[role]}" == lb ]]; then name="${P[app]}-$to on every app server"; fi
  phase "canary: $2 % of clients to $name for ${P[canary_step_time]}s"
  CANARY_SHARE="$2"
  if ! upstream_write "" "$to, canary $2 %"; then
    CANARY_REASON="nginx did not take the canary's upstream file: $UPSTREAM_ERROR"
    return 1
  fi
  co="$(stat -c %s "$STATE_DIR/canary.log" 2>/dev/null || echo 0)"
  ao="$(stat -c %s "$STATE_DIR/access.log" 2>/dev/null || echo 0)"
  log "nginx sends $2 % of clients (by ${P[canary_key]}) to $name, the others to the old version"
  start="$(now_ms)"; end=$((start + ${P[canary_step_time]%.*} * 1000))
  nn=0; nb=0; on=0; ob=0
  while :; do
    now="$(now_ms)"
    if [[ "${P[role]}" != lb ]]; then
      code="$(health_probe "$port" "${P[health_path]}" 2)"
      if [[ "$code" == 2?? ]]; then fails=0; else fails=$((fails + 1)); fi
      if ((fails >= P[watch_max_health_failures])); then
        CANARY_REASON="its health check failed $fails times in a row (last: ${code:-no HTTP answer})"
        return 1
      fi
    fi
    if ((now - checked >= 100)); then
      checked="$now"
      # the canary's log first: nginx writes a request's line there after its line in the other
      cs="$(stat -c %s "$STATE_DIR/canary.log" 2>/dev/null || echo 0)"
      as="$(stat -c %s "$STATE_DIR/access.log" 2>/dev/null || echo 0)"
      read -r nn nb < <(canary_tally "$STATE_DIR/canary.log" "$co" "$cs")
      read -r on ob < <(canary_tally "$STATE_DIR/access.log" "$ao" "$as")
      on=$((on - nn)); ob=$((ob - nb))
      ((on >= 0)) || on=0
      ((ob >= 0)) || ob=0
      WATCH_BASE_TOTAL="$on"; WATCH_BASE_BAD="$ob"
      CANARY_FIGURES="at $2 % of clients, in $(( (now - start) / 1000 )).$(( (now - start) % 1000 / 100 )) s the new version answered $(watch_share "$nn" "$nb"), the old one in the same seconds $(watch_share "$on" "$ob")"
      if watch_breached "$nn" "$nb"; then
        CANARY_REASON="$nb of its $nn answers were 5xx, more than the old version's $(watch_base_rate) % + ${P[watch_max_error_rate]} beyond chance"
        return 1
      fi
    fi
    ((now < end)) || break
    sleep "${P[health_interval]}"
  done
  log "canary step passed: $CANARY_FIGURES"
}

# A failed step: every client back to the old color in one write, the new one drained and
# stopped (kept, for its logs); the run fails. Behind a load balancer the app servers stop theirs
# when the runner hears of it (abort).
canary_back() { # canary_back FROM TO
  local from="$1" to="$2"
  CANARY_SHARE=0
  phase "switch every client back to $(container_name "$from")"
  switch_point "$from" \
    || die "the canary found $RUN_VERSION bad ($CANARY_REASON), but could not switch back: $SWITCH_ERROR. $(container_name "$from") is running: run the workflow with rollback: previous."
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  CANARY_TO=''
  log "switched back: nginx sends every client of ${P[upstream_name]} to $(container_name "$from") again"
  event reverted
  if [[ "${P[role]}" != lb ]]; then
    drain_color "$to" "$from" "$NGINX_BEFORE"
    docker_call stop -t 10 "$(container_name "$to")" >/dev/null 2>&1 || true
    workers_undo "$to" "$from" stop
    journal_clear
  fi
  history_add rolled-back-after-canary "$to"
  local after
  after="the new version is stopped and kept for its logs (docker logs $(container_name "$to"))"
  if [[ "${P[role]}" == lb ]]; then after="the app servers remove the new version"; fi
  die "the canary switched back from $RUN_VERSION: $CANARY_REASON; ${CANARY_FIGURES:-no answer counted yet}. $(container_name "$from") ($(state_get version)) serves every client again; $after."
}

# ==== src/remote/steps/watch.sh
# Step (watch > 0): after the switch the old color keeps running, warm, and the new one is watched
# for `watch` seconds: its health path every health_interval, and the answers nginx gives for the
# app, from an access log that is on for this deploy only. The log opens before the new color
# starts, so the old color's answers in the seconds before the switch are the baseline. A breach
# (the new version's share of 5xx answers above the old one's by more than watch_max_error_rate
# points, or watch_max_health_failures health checks failing in a row) switches back to the warm
# old color at once. Before anything changes, watch_check makes sure nginx will log those answers
# (lib/nginx-log.sh reads `nginx -T`) or refuses. Globals: WATCH_*.

WATCH_FROM=0     # epoch second the access log window opens (0: no window)
WATCH_UNTIL=0    # epoch second it closes by itself
WATCH_SWITCHED=0 # epoch ms of the switch: answers logged before it are the old color's
WATCH_BASE_END=0 # epoch ms the canary's first step began (0: none): the baseline ends there
WATCH_REASON=''  # why the watch switched back
WATCH_FIGURES='' # what it saw
WATCH_OFFSET=0   # watch_count: the access log read up to here (bytes)
WATCH_TOTAL=0    # watch_count: nginx's answers for the new color counted
WATCH_BAD=0      # watch_count: of them 5xx
WATCH_BASE_TOTAL=0 # watch_count: the old color's answers before the switch
WATCH_BASE_BAD=0   # watch_count: of them 5xx
WATCH_INCLUDES=''  # files of ours that server or location blocks include to carry the log line

# nginx's names for the app's watch: the log format and the variable that turns the log on.
watch_name() { printf 'bgd_%s' "$(printf '%s' "${P[app]}" | tr -c 'A-Za-z0-9_' '_')"; }

# The file bg-deploy owns for a server block with access_log directives of its own to include:
# beside the upstream file, with a name nginx's usual `*.conf` include does not pick up.
watch_include_file() { printf '%s.watch.inc' "${P[upstream_file]%.conf}"; }

# The integers FROM..TO as a regular expression alternation (whole tens, hundreds... where they fit).
watch_range() { # watch_range FROM TO
  local s="$1" out='' k step stars i
  while ((s <= $2)); do
    k=0; step=1
    while ((s % (step * 10) == 0 && s + step * 10 - 1 <= $2)); do k=$((k + 1)); step=$((step * 10)); done
    if ((k == 0)); then out+="$s|"
    else stars=''; for ((i = 0; i < k; i++)); do stars+='[0-9]'; done; out+="${s:0:${#s}-k}$stars|"; fi
    s=$((s + step))
  done
  printf '%s' "${out%|}"
}

# For the upstream file (http level): log nginx's answers for this app ($proxy_host is the
# upstream's name) while the window is open, and nothing after it, without another reload: the
# condition matches only the seconds of the window. Nothing when no window is open.
watch_log_directives() {
  ((WATCH_FROM > 0)) || return 0
  local n; n="$(watch_name)"
  printf '# the watch window of this deploy: nginx logs its answers for %s from %s to %s (epoch seconds)\n' \
    "${P[upstream_name]}" "$WATCH_FROM" "$WATCH_UNTIL"
  # shellcheck disable=SC2016 # nginx variables
  printf 'log_format %s "$msec $status";\n' "$n"
  # shellcheck disable=SC2016 # nginx variables
  printf 'map "$proxy_host $msec" $%s {\n    "~^%s (%s)[.]" 1;\n    default 0;\n}\n' "$n" "${P[upstream_name]}" \
    "$(watch_range "$WATCH_FROM" "$WATCH_UNTIL")"
  canary_log_map
  watch_log_line http
}

# The access_log line itself: at the http level (the upstream file), in the format it declares
# there; in a server or location block that has logs of its own (through a file of ours it
# includes), in nginx's predefined `combined` format, because that block may come before the
# upstream file in nginx's reading order, and a log_format must be declared before a line names
# it. Nothing without a window.
watch_log_line() { # watch_log_line [block]
  ((WATCH_FROM > 0)) || return 0
  local n f; n="$(watch_name)"; f="$n"
  if [[ "${1:-}" == block ]]; then f=combined; fi
  printf 'access_log %s %s if=$%s;\n' "$STATE_DIR/access.log" "$f" "$n"
  # during the canary, the new color's answers a second time (nginx writes them in this order)
  if [[ -n "$CANARY_TO" ]]; then printf 'access_log %s %s if=$%s_canary;\n' "$STATE_DIR/canary.log" "$f" "$n"; fi
}

# The include file of ours (watch_include_file): the log line when a block needs it and a window
# is open, else a comment only. Written whenever the upstream file is (nginx tests both at once);
# OFF (after a restore) leaves the line out.
watch_include_write() { # watch_include_write [off]
  local f text tmp
  f="$(watch_include_file)"
  [[ "${P[watch]}" != 0 || -f "$f" ]] || return 0
  text="# Managed by bg-deploy (app ${P[app]}): the watch window's access log, for a server block with access_log directives of its own. Include it in that block."
  if [[ "${1:-}" != off && " $WATCH_INCLUDES " == *" $f "* ]]; then text+=$'\n'"$(watch_log_line block)"; fi
  [[ -f "$f" && "$(cat "$f")" == "$text" ]] && return 0
  tmp="$(mktemp "$(dirname "$f")/.$(basename "$f").bg-deploy.XXXXXX")" || return 0
  TMP_PATHS+=("$tmp")
  chmod 644 "$tmp" && printf '%s\n' "$text" >"$tmp" && mv -f "$tmp" "$f"
}

# Before anything changes: will nginx log the app's answers where the watch reads them? It reads
# nginx's effective config (nginx-test-command with -T for -t) and refuses, with the line to add,
# where a block with logs of its own would not; a health-only watch only when asked for by name.
watch_check() {
  [[ "${P[watch]}" != 0 ]] || return 0
  if [[ "${P[watch_health_only]}" == true ]]; then
    log "watch-health-only: the watch checks ${P[health_path]} only, not nginx's answers to users"
    return 0
  fi
  local cmd=" ${P[nginx_test]} " dump out kind a b at srv problems='' own
  if [[ "$cmd" != *" -t "* ]]; then
    die "the watch reads nginx's effective config with nginx -T, which it makes from nginx-test-command by writing -T for -t, but '${P[nginx_test]}' has no -t word. Set nginx-test-command to a command with -t (such as nginx -t), or watch-health-only: true to watch the health path only. Nothing was changed."
  fi
  cmd="${cmd/ -t / -T }"; cmd="${cmd# }"; cmd="${cmd% }"
  own="$(watch_include_file)"
  if [[ ! -f "$own" ]]; then watch_include_write || true; fi
  dump="$(mktemp)"; TMP_PATHS+=("$dump")
  if ! out="$(nginx_run "$cmd" 2>&1 >"$dump")"; then
    die "the watch could not read nginx's effective config with '$cmd': ${out:-no message}. It needs it to know that nginx will log the app's answers (a non-root user needs a sudo rule for nginx -T as for nginx -t). Set watch-health-only: true to watch the health path only. Nothing was changed."
  fi
  # nginx names a file by the path it was included by, maybe another way to one of ours (a link)
  local -A ours=() ; local p o
  while IFS= read -r p; do
    for o in "$own" ${P[preview_file]:+"${P[preview_file]}"}; do
      if [[ "$p" -ef "$o" ]]; then ours[$p]="$o"; fi
    done
  done < <(sed -n 's/^# configuration file \(.*\):$/\1/p' "$dump")
  WATCH_INCLUDES=''
  while IFS=$'\t' read -r kind a b at srv || [[ -n "$kind" ]]; do
    case "$kind" in
      http) ;;
      ours)
        a="${ours[$a]:-$a}"
        if [[ " $WATCH_INCLUDES " != *" $a "* ]]; then WATCH_INCLUDES+="${WATCH_INCLUDES:+ }$a"; fi ;;
      need)
        if [[ "$a" == location ]]; then problems+=" The location block at $b has access_log directives of its own, so it does not inherit the watch's log: add 'include $own;' in it."
        else problems+=" The server block at $b has access_log directives of its own, so it does not inherit the watch's log: add 'include $own;' in it."; fi ;;
      off)
        if [[ "$a" == http ]]; then problems+=" 'access_log off' at the http level ($b) turns off the watch's log too for the server block at $srv: add 'include $own;' in that server block."
        else problems+=" 'access_log off' in the $a block at $b turns off every log there, the watch's too (it proxies to ${P[upstream_name]} at $at): remove it there, or log to a file instead."; fi ;;
      none) problems+=" No block in nginx's config proxies to http://${P[upstream_name]}, so nginx's answers for the app cannot be told apart: proxy_pass to the upstream by its name." ;;
    esac
  done < <(nginx_log_verdicts "${P[upstream_name]}" "$STATE_DIR/access.log" "${!ours[@]}" <"$dump")
  if [[ -n "$problems" ]]; then
    die "the watch would not see nginx's answers for ${P[upstream_name]}, so it refuses before changing anything:$problems Or set watch-health-only: true to watch the health path only. Nothing was changed."
  fi
  log "the watch will see nginx's answers for ${P[upstream_name]}${WATCH_INCLUDES:+ (through $WATCH_INCLUDES, in blocks with logs of their own)}"
}

# Open the window as the script begins (one nginx reload, pointing where nginx points now), so
# the old color's answers while the image is built, pulled and started are the baseline. It
# closes by itself after 10 minutes, or when the deploy can no longer be in it: called again
# before the new color starts, it reopens only when the rest of the deploy (health-timeout +
# watch + a minute) would outlast it. The switch's upstream file (reload mode) narrows it to the
# watch (watch_narrow).
watch_open() { # watch_open ACTIVE_COLOR
  [[ "${P[watch]}" != 0 && -n "$1" ]] || return 0
  local now need
  now="$(date +%s)"; need=$((now + ${P[health_timeout]%.*} + $(canary_seconds) + P[watch] + 60))
  if ((WATCH_FROM > 0 && WATCH_UNTIL >= need)); then return 0; fi
  local fresh=0
  if ((WATCH_FROM == 0)); then WATCH_FROM="$now"; fresh=1; fi
  WATCH_UNTIL=$((now + 600 > need ? now + 600 : need))
  UPSTREAM_EXTRA="$(watch_log_directives)"
  # the log is this user's own file, which nginx (root) appends to: a file nginx created would be
  # root's, and a non-root deploy user could not read it
  local f
  for f in "$STATE_DIR/access.log" "$STATE_DIR/canary.log"; do
    if [[ -e "$f" && ! (-f "$f" && -r "$f" && -w "$f") ]]; then rm -f "$f"; fi
    # a new window starts the file anew: the last run's lines are read (the watch reads from
    # the window's opening on), so the file holds one run's answers, never more (the soak's bound)
    if ((fresh)) && [[ -f "$f" ]]; then : >"$f"; fi
    [[ -f "$f" ]] || (umask 077 && : >"$f")
  done
  local ok=0
  if [[ -z "${P[network]}" ]] && upstream_points_to "127.0.0.1:${P[live_port]}"; then
    upstream_write "127.0.0.1:${P[live_port]}" "$(nat_color)" && ok=1
  else
    upstream_write "$(upstream_target "$1")" "$1" "$(upstream_backup "$1")" && ok=1
  fi
  ((ok)) || die "could not turn on the watch window's access log: $UPSTREAM_ERROR"
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  UPSTREAM_WROTE=0; NGINX_BEFORE=''
}

# Just before the switch (or the canary's steps, which take SECONDS more): the next upstream file
# (reload mode) keeps the window open for the watch only (dnat mode writes no file there: the
# window closes when watch_open said).
watch_narrow() { # watch_narrow [SECONDS]
  ((WATCH_FROM > 0)) || return 0
  WATCH_UNTIL=$(($(date +%s) + ${1:-0} + P[watch] + 5))
  UPSTREAM_EXTRA="$(watch_log_directives)"
}

# nginx's answers for the app logged since the window opened, read on from where the last call
# stopped (WATCH_OFFSET, bytes; nginx writes a line in one write, so a size read is a line end):
# those before the switch (the old color) add to WATCH_BASE_*, those after to WATCH_TOTAL and
# WATCH_BAD (5xx); with a canary the baseline ends as its first step begins (WATCH_BASE_END), and
# the steps' answers count for neither. Lines are "$msec $status" (http level) or nginx's combined
# format (a block with logs of its own): its time has whole seconds, so the switch's own second
# counts for neither color.
watch_count() {
  local f="$STATE_DIR/access.log" size n b bn bb
  [[ -f "$f" ]] || return 0
  size="$(stat -c %s "$f" 2>/dev/null || echo 0)"
  if ((size < WATCH_OFFSET)); then WATCH_OFFSET=0; fi
  ((size > WATCH_OFFSET)) || return 0
  read -r n b bn bb < <(head -c "$size" "$f" | tail -c "+$((WATCH_OFFSET + 1))" \
    | awk -v from="$((WATCH_FROM * 1000))" -v sw="$WATCH_SWITCHED" -v be="$WATCH_BASE_END" '
        # "06/Dec/2026:10:21:29 +0000" -> epoch seconds (days from the civil date)
        function epoch(t,    d, m, y, era, yoe, doy, days, off) {
          d = substr(t, 1, 2) + 0; m = (index("JanFebMarAprMayJunJulAugSepOctNovDec", substr(t, 4, 3)) + 2) / 3
          y = substr(t, 8, 4) - (m <= 2); era = int(y / 400); yoe = y - era * 400
          doy = int((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1
          days = era * 146097 + yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy - 719468
          off = (substr(t, 23, 2) * 3600 + substr(t, 25, 2) * 60) * (substr(t, 22, 1) == "-" ? -1 : 1)
          return days * 86400 + substr(t, 13, 2) * 3600 + substr(t, 16, 2) * 60 + substr(t, 19, 2) - off
        }
        {
          if (NF == 2 && $1 ~ /^[0-9]+[.][0-9]+$/) { ms = $1 * 1000; st = $2 }
          else {
            i = index($0, " ["); if (!i) next
            rest = substr($0, i + 31); j = index(rest, "\" "); if (!j) next
            st = substr(rest, j + 2, 3) + 0; ms = epoch(substr($0, i + 2, 26)) * 1000
            if (sw > 0 && ms <= sw && sw < ms + 1000) next
            if (be > 0 && ms <= be && be < ms + 1000) next
          }
          if (ms < from) next
          if (ms < (be > 0 ? be : sw)) { bn++; if (st >= 500) bb++; next }
          if (ms < sw) next
          n++; if (st >= 500) b++
        }
        END { print n + 0, b + 0, bn + 0, bb + 0 }')
  WATCH_OFFSET="$size"; WATCH_TOTAL=$((WATCH_TOTAL + n)); WATCH_BAD=$((WATCH_BAD + b))
  WATCH_BASE_TOTAL=$((WATCH_BASE_TOTAL + bn)); WATCH_BASE_BAD=$((WATCH_BASE_BAD + bb))
}

# The baseline: the old color's share of 5xx (percent) when it answered at least 20 times before
# the switch, else 0 (the limit is then absolute).
watch_base_rate() {
  if ((WATCH_BASE_TOTAL >= 20)); then awk -v n="$WATCH_BASE_TOTAL" -v b="$WATCH_BASE_BAD" 'BEGIN { printf "%.1f", b * 100 / n }'
  else printf 0; fi
}

# A breach: the new share of 5xx above the baseline by more than the margin; before the window's
# end (FINAL empty) only when that excess is beyond chance: a version whose share were the limit
# (baseline + margin) would give that many 5xx or more with a chance under 1 in 1,000 (the
# binomial tail), so that the first answers of a flaky app do not switch it back by luck, and a
# version that fails everything is switched back after a handful. src/fleet-watch.ts judges the
# runner's sum over several servers the same way.
watch_breached() { # watch_breached TOTAL BAD [final]
  awk -v n="$1" -v b="$2" -v base="$(watch_base_rate)" -v r="${P[watch_max_error_rate]}" -v final="${3:-}" '
    # P(X >= b) for X ~ Binomial(n, q): the first term by its logarithm, then term by term
    function tail(n, b, q,    lc, i, t, s, k) {
      if (b <= n * q) return 1
      if (q <= 0) return 0
      if (q >= 1) return 1
      lc = 0; for (i = 1; i <= b; i++) lc += log((n - b + i) / i)
      t = exp(lc + b * log(q) + (n - b) * log(1 - q)); s = 0
      for (k = b; k <= n && t > 0; k++) { s += t; if (t < s * 1e-12) break; t *= (n - k) / (k + 1) * q / (1 - q) }
      return s
    }
    BEGIN {
      if (n == 0 || b * 100 <= (base + r) * n) exit 1
      if (final != "") exit 0
      exit !(tail(n, b, (base + r) / 100) < 0.001)
    }'
}

# "N request(s)[ WHOSE], B of them 5xx (R %)"
watch_share() { # watch_share TOTAL BAD [WHOSE]
  awk -v n="$1" -v b="$2" -v w="${3:+ $3}" 'BEGIN { printf "%d request(s)%s, %d of them 5xx (%.1f %%)", n, w, b, (n > 0 ? b * 100 / n : 0) }'
}

# What the old color did before the switch, for the figures.
watch_base_said() {
  if ((WATCH_BASE_TOTAL >= 20)); then printf 'before the switch the previous version answered %s' "$(watch_share "$WATCH_BASE_TOTAL" "$WATCH_BASE_BAD")"
  else printf 'before the switch the previous version answered %d request(s), too few to compare with (the limit is absolute)' "$WATCH_BASE_TOTAL"; fi
}

# Watch TO for `watch` seconds; false on a breach, with WATCH_REASON and WATCH_FIGURES set.
watch_window() { # watch_window TO_COLOR
  local to="$1" name port start end now code fails=0 total=0 bad=0 checked=0 t limit base alone=0
  name="$(container_name "$to")"; port="$(color_port "$to")"
  phase "watch $name for ${P[watch]}s"
  start="$(now_ms)"; end=$((start + P[watch] * 1000))
  WATCH_OFFSET=0; WATCH_TOTAL=0; WATCH_BAD=0; WATCH_BASE_TOTAL=0; WATCH_BASE_BAD=0
  watch_count
  base="$(watch_base_rate)"
  limit="$(awk -v a="$base" -v r="${P[watch_max_error_rate]}" 'BEGIN { printf "%g", a + r }')"
  if [[ "${P[role]}" == lb ]]; then
    name="${P[app]}-$to on every app server"
    log "watching $name for ${P[watch]}s: this nginx's answers for ${P[upstream_name]} (more than $limit % 5xx switch back: $(watch_base_said), plus ${P[watch_max_error_rate]}); the old color stays warm on every app server meanwhile"
  elif [[ "${P[watch_health_only]}" == true ]]; then
    log "watching $name for ${P[watch]}s: ${P[health_path]} every ${P[health_interval]}s (${P[watch_max_health_failures]} failures in a row switch back; watch-health-only: nginx's answers are counted where they are logged, but may not be); the old color stays warm meanwhile"
  else
    log "watching $name for ${P[watch]}s: ${P[health_path]} every ${P[health_interval]}s (${P[watch_max_health_failures]} failures in a row switch back), and nginx's answers for ${P[upstream_name]} (more than $limit % 5xx switch back: $(watch_base_said), plus ${P[watch_max_error_rate]}); the old color stays warm meanwhile"
  fi
  while :; do
    now="$(now_ms)"
    # the load balancer has no container to probe: its nginx's answers are for every app server
    if [[ "${P[role]}" != lb ]]; then
      code="$(health_probe "$port" "${P[health_path]}" 2)"
      if [[ "$code" == 2?? ]]; then fails=0; else fails=$((fails + 1)); fi
    fi
    if ((now - checked >= 200)); then
      checked="$now"
      watch_count
      total="$WATCH_TOTAL"; bad="$WATCH_BAD"
    fi
    t="$(( (now - start) / 100 ))"
    WATCH_FIGURES="in $((t / 10)).$((t % 10)) s after the switch nginx answered $(watch_share "$total" "$bad" 'for it'); $(watch_base_said); limit $limit %"
    if [[ "${P[role]}" == host ]] && ((alone == 0)); then
      # one of several servers, each with its own nginx: the runner sums what every one sees and
      # decides for all of them (revert or pass); its silence is the pause between two checks
      command_await watching "total=$WATCH_TOTAL bad=$WATCH_BAD base_total=$WATCH_BASE_TOTAL base_bad=$WATCH_BASE_BAD fails=$fails"
      local c='' rc=0
      read -r -t "${P[health_interval]}" -u 6 c || rc=$?
      case "$c" in
        revert) WATCH_REASON="the runner's sum over every server breached (see the run's log)"; return 1 ;;
        pass) break ;;
      esac
      if ((rc > 0 && rc <= 128)) || ((now >= end + 30000)); then
        alone=1
        log "the runner went away during the watch (or decided nothing 30 s after its end): this server judges alone"
      fi
      continue
    fi
    if ((fails >= P[watch_max_health_failures])); then
      WATCH_REASON="its health check failed $fails times in a row (last: ${code:-no HTTP answer})"
      return 1
    fi
    if ((total >= 20 || now >= end)) && watch_breached "$total" "$bad" "$( ((now >= end)) && echo final)"; then
      WATCH_REASON="$bad of its $total answers were 5xx, more than $limit %"
      if [[ "$base" != 0 && "$base" != 0.0 ]]; then WATCH_REASON+=" (the previous version's $base % + ${P[watch_max_error_rate]})"; fi
      return 1
    fi
    ((now < end)) || break
    sleep "${P[health_interval]}"
  done
  if ((total == 0)) && [[ "${P[watch_health_only]}" != true ]]; then
    warn "nginx logged no answer for ${P[upstream_name]} in the ${P[watch]} s after the switch (no traffic?): only the health checks were watched."
  fi
  log "the watch passed: $WATCH_FIGURES"
  event watched
}

# After a breach: back to the warm old color (no start-up), the new one drained and stopped
# (kept, for its logs); the state and history say so.
watch_revert() { # watch_revert FROM TO PREVIOUS_VERSION PREVIOUS_IMAGE
  local from="$1" to="$2"
  phase "switch back to $(container_name "$from")"
  switch_point "$from" \
    || die "the watch found $RUN_VERSION bad ($WATCH_REASON), but could not switch back: $SWITCH_ERROR. $(container_name "$from") is running: run the workflow with rollback: previous."
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  log "switched back: nginx sends ${P[upstream_name]} to $(container_name "$from") again"
  event reverted
  state_write "$from" "$3" "$4"
  drain_color "$to" "$from" "$NGINX_BEFORE"
  docker_call stop -t 10 "$(container_name "$to")" >/dev/null 2>&1 || true
  history_add rolled-back-after-watch "$to"
}

# ==== src/remote/steps/drain.sh
# Step: wait until the old color serves nothing. Globals: USE_SS.

# Established TCP connections to the app port in the network namespace of a container's process
# (0 for none): nginx (directly or through docker-proxy) holds one per request in flight. With root,
# the kernel filters them (nsenter + ss); otherwise /proc/PID/net/tcp* is read, which is slow when
# the namespace holds thousands of TIME_WAIT sockets, as it does under load.
USE_SS=''

DRAIN_OPEN=0 # connections still open on the old color when the drain gave up (drain-timeout)

drain_connections() { # drain_connections PID
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

# Wait until the old color serves nothing. `nginx -s reload` returns before nginx has started new
# workers, and an old worker that the CPU has not run yet can still pass a request it already read
# to the old color. So, after a reload, the drain waits for nginx's replaced workers to exit (they
# do once their last request is answered) and for the old color to have no established connection
# for 0.2 s. Without a reload (dnat mode) a connection opened after the rule changed goes to the
# new color, so the 0.2 s without connections after traffic reached the new color is enough. When
# nginx's processes cannot be seen, 1 s without connections stands in for the workers' exit.
# BEFORE: the nginx workers before the switch's reload (empty without a reload).
drain_color() { # drain_color OLD_COLOR NEW_COLOR BEFORE
  local before="$3" name start deadline now o n=0 seen_new=0 zero_since=0 old_pid new_pid workers='' quiet=200 p alive
  name="$(container_name "$1")"
  container_running "$1" || { log "$name is not running; nothing to drain"; event drained; return 0; }
  phase "drain $name"
  start="$(now_ms)"
  deadline=$(( start + ${P[drain_timeout]%.*} * 1000 ))
  old_pid="$(container_pid "$1")"; new_pid="$(container_pid "$2")"
  local watch=0
  if [[ -n "$before" ]]; then watch=1; elif [[ "$SWITCH_MODE" != dnat || "$PREV_MODE" != dnat ]]; then quiet=1000; fi
  while :; do
    o="$(drain_connections "$old_pid")"
    if ((!seen_new)); then n="$(drain_connections "$new_pid")"; fi
    now="$(now_ms)"
    if ((n > 0 || now - start >= 1000)); then seen_new=1; fi
    if ((o > 0)); then zero_since=0; elif ((zero_since == 0)); then zero_since="$now"; fi
    alive=0
    if ((watch == 1)); then
      if [[ -z "$workers" ]]; then workers="$(nginx_replaced_workers "$before")"; fi
      if [[ -z "$workers" ]]; then
        alive=1
        # no replaced worker found: nginx is not visible this way; fall back to a longer quiet time
        if ((now - start >= 2000)); then watch=0; quiet=1000; log "could not see nginx's replaced workers; draining by connections only"; fi
      else
        for p in $workers; do if [[ -e "/proc/$p" ]]; then alive=1; break; fi; done
      fi
    fi
    if ((seen_new && !alive && zero_since > 0 && now - zero_since >= quiet)); then break; fi
    if ((now >= deadline)); then
      log "drain timeout: $o connection(s) still open on $name${workers:+, nginx workers $workers}"
      DRAIN_OPEN="$o"
      break
    fi
    sleep 0.05
  done
  log "drained $name in $(( now - start )) ms"
  event drained
}

# ==== src/remote/steps/stop.sh
# Step: stop the old color (kept for a fast rollback) and prune images, in the background.

# After the result: stop the old color (kept, stopped, for a fast rollback) and prune images in the
# background, so the run does not wait for docker's container teardown. The background job holds
# the app's lock (it shares the lock's file descriptor), so the next deploy or rollback of this app
# waits for it; its output goes to $STATE_DIR/stop.log.
stop_later() { # stop_later [OLD_COLOR] [SECONDS_TO_WAIT_FIRST]
  local name='' wait="${2:-0}" after=''
  if [[ -n "${1:-}" ]] && container_running "$1"; then name="$(container_name "$1")"; fi
  if [[ -n "$name" && "${P[keep_warm]}" != 0 ]]; then keep_warm "$1"; return 0; fi
  if [[ "$wait" != 0 ]]; then after=" after ${wait}s"; fi
  if [[ -n "$name" ]]; then log "stopping $name (kept for a fast rollback) in the background$after; the deploy lock is held until it has stopped"; fi
  (
    exec </dev/null >>"$STATE_DIR/stop.log" 2>&1 7>&1 8>&2
    IN_JOB=1
    trap - EXIT
    printf '%s stop %s\n' "$(date -u +%FT%TZ)" "${name:-(none)}"
    if [[ -n "$name" && "$wait" != 0 ]]; then sleep "$wait"; fi
    if [[ -n "$name" ]]; then docker_call stop -t 10 "$name" >/dev/null || echo "warning: docker stop $name failed"; fi
    stop_prune_images
  ) &
  disown
}

# Keep the images of the last three versions and those the blue/green containers use;
# only this app's repository is looked at.
stop_prune_images() {
  local repo="${RUN_IMAGE%:*}" in_use='' ref id kept=0 c
  for c in blue green; do in_use+=" $(docker_call inspect -f '{{.Image}}' "$(container_name "$c")" 2>/dev/null || true)"; done
  while read -r ref id; do
    [[ "$ref" == *:latest || "$ref" == *'<none>'* ]] && continue
    [[ "$in_use" == *"$id"* ]] && continue
    kept=$((kept + 1))
    ((kept <= 3)) && continue
    if docker_call rmi "$ref" >/dev/null 2>&1; then log "removed old image $ref"; fi
  done < <(docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' "$repo" 2>/dev/null)
}

# keep-warm: the old color keeps running for keep_warm seconds, so a rollback within them is a
# switch only, then stops by itself. The background job prunes images under the deploy lock, lets
# the lock go while it waits, and takes it again to stop the container, but only if it is the
# same container and still not serving: a later deploy or rollback may have taken it over.
keep_warm() { # keep_warm OLD_COLOR
  local color="$1" name id wait="${P[keep_warm]}"
  name="$(container_name "$color")"
  id="$(docker_call inspect -f '{{.Id}}' "$name" 2>/dev/null || true)"
  log "$name stays running (warm) for ${wait}s: a rollback within them is a switch only; then it stops by itself"
  (
    exec </dev/null >>"$STATE_DIR/stop.log" 2>&1 7>&1 8>&2
    IN_JOB=1
    trap - EXIT
    printf '%s keep %s warm for %ss\n' "$(date -u +%FT%TZ)" "$name" "$wait"
    stop_prune_images
    exec 9>&-
    sleep "$wait"
    exec 9>>"$STATE_DIR/lock"
    flock -w "${P[lock_timeout]}" 9 || { echo "warning: no lock within ${P[lock_timeout]}s; $name left running"; exit 0; }
    if [[ "$(state_get color)" == "$color" ]]; then
      echo "$name serves again (a rollback took it over): not stopped"
    elif [[ "$(docker_call inspect -f '{{.Id}} {{.State.Running}}' "$name" 2>/dev/null)" != "$id true" ]]; then
      echo "$name was replaced or stopped since: nothing to do"
    else
      docker_call stop -t 10 "$name" >/dev/null || echo "warning: docker stop $name failed"
      printf '%s stopped %s after keeping it warm\n' "$(date -u +%FT%TZ)" "$name"
    fi
  ) &
  disown
}

# ==== src/remote/steps/preview.sh
# Step (nginx-preview-file set): the preview routes /blue/ and /green/, each to its color whether
# it serves or not, so the idle color can be tried before the switch. The upstream file then holds
# one upstream per color beside the live one; the first time, it is written and nginx reloaded
# before anything else (ACTIVE, the color serving now, stays the live upstream's target).

preview_ensure() { # preview_ensure ACTIVE_COLOR
  local targets=''
  if [[ -f "${P[upstream_file]}" ]] && grep -q "^upstream ${P[upstream_name]}-blue " "${P[upstream_file]}" \
    && ! preview_write; then
    return 0
  fi
  phase "preview routes"
  if [[ -n "$1" ]]; then targets="$(upstream_target "$1")"; fi
  upstream_write "$targets" "${1:-nothing} serving, previews" || return 1
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  UPSTREAM_WROTE=0
  log "preview routes in ${P[preview_file]}: /blue/ and /green/ reach each color"
}

# ==== src/remote/steps/undo.sh
# Step (a run over several servers): put back what served before this run's switch, when another
# server could not switch or the runner went away before it said `finish`.

switch_undo() { # switch_undo FROM TO
  local from="$1" to="$2"
  phase "undo the switch to $(container_name "$to")"
  NGINX_BEFORE=''
  if [[ "$SWITCH_MODE" == dnat ]]; then
    if [[ -n "$from" ]]; then
      nat_apply "$(nat_chain)" "${P[live_port]}" "$(color_port "$from")" >&2 || log "warning: could not put the NAT rule back to $(container_name "$from")"
    else
      nat_remove
    fi
  fi
  if ((UPSTREAM_WROTE)); then
    upstream_restore
    if nginx_run "${P[nginx_test]}" >/dev/null 2>&1; then
      NGINX_BEFORE="$(nginx_workers)"
      nginx_run "${P[nginx_reload]}" >&2 || log "warning: nginx reload failed while undoing the switch"
    else
      log "warning: nginx rejects the restored upstream file ${P[upstream_file]}; not reloaded"
    fi
  fi
  log "${from:+$(container_name "$from") serves again; }removing $(container_name "$to")"
  if [[ "${P[role]}" != lb ]]; then
    drain_color "$to" "$from" "$NGINX_BEFORE"
    container_remove "$to"
    workers_undo "$to" "$from"
  fi
  journal_clear
  history_add undone "$to"
}

# A server that switched (role host, or the load balancer): report it, then wait for the runner's
# `finish`. Anything else, or the runner gone, undoes the switch here and ends the run saying
# what serves (AFTER).
commit_or_undo() { # commit_or_undo FROM TO WHERE AFTER
  local cmd
  journal_write switched "$2"
  command_await switched "color=$2"
  cmd="$(command_next)"
  [[ "$cmd" != finish ]] || return 0
  if [[ "$cmd" == eof ]]; then runner_gone switched; fi
  switch_undo "$1" "$2"
  die "the switch to $RUN_VERSION was undone$3 (${cmd/#eof/the runner went away}): $4"
}

# ==== src/remote/steps/swarm.sh
# engine: swarm — the server is a Docker Swarm manager and the app is a service named after it:
# created the first time, then updated to each new image with start-first order, rollback on
# failure and a monitor period. The run waits until Swarm converged, and fails with the reason
# (the update status, the failing tasks' errors, their last log lines) when Swarm rolled it back:
# Swarm's own CLI exits 0 then (docker/cli#6752). State and history are kept as for ssh.

swarm_check() {
  local st
  st="$(docker_call info -f '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null || true)"
  [[ "$st" == 'active true' ]] \
    || die "engine swarm needs a Swarm manager: the Docker engine on this server is not one (swarm state: ${st:-unknown}). Run 'docker swarm init' here, or point host at a manager node. Nothing was changed."
}

# The service a step works on: the app's (the web), or SWARM_SVC while a worker's is updated.
SWARM_SVC=''
SWARM_UPDATED_WORKERS=() # workers' services this run updated (a failure rolls them back)
swarm_service() { printf '%s' "${SWARM_SVC:-${P[app]}}"; }

# A variable the docker CLI, the dynamic linker or bash read themselves (the same list as the
# action's check of env, src/config-app.ts): it cannot carry an app's value into the CLI.
swarm_env_name_ok() { # swarm_env_name_ok NAME
  local n="${1^^}"
  case "$n" in PATH | HOME | IFS | ENV | TMPDIR | SHELLOPTS | BASHOPTS | BASH_* | LD_* | DOCKER_* | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | ALL_PROXY) return 1 ;; esac
}

# The env values for a `docker service create`, one line each in an owner-only file in the
# owner-only state directory (main_swarm has EXIT remove it too; the caller removes it once docker
# has read it):
# prints its path, or nothing without env.
swarm_env_file() {
  ((${#ENV_KEYS[@]} > 0)) || return 0
  local f="$STATE_DIR/.env.$$" i
  : >"$f"
  for i in "${!ENV_KEYS[@]}"; do printf '%s=%s\n' "${ENV_KEYS[$i]}" "${ENV_VALUES[$i]%x}" >>"$f"; done
  printf '%s' "$f"
}

# The service's settings both create and update take.
swarm_settings() { # prints one argument per line
  local monitor="${P[watch]}"
  ((monitor > 0)) || monitor=5
  printf '%s\n' --update-order start-first --update-failure-action rollback --update-monitor "${monitor}s" \
    --update-parallelism "${P[max_parallel]}" --rollback-order start-first --rollback-parallelism "${P[max_parallel]}" \
    --stop-grace-period "${P[drain_timeout]%.*}s"
  if [[ -n "${P[health_cmd]}" ]]; then
    local every="${P[health_interval]}"
    if awk -v i="$every" 'BEGIN { exit !(i < 1) }'; then every=1; fi
    printf '%s\n' --health-cmd "${P[health_cmd]}" --health-interval "${every}s" --health-timeout 2s \
      --health-retries 3 --health-start-period "${P[health_timeout]%.*}s"
  fi
}

# compose-file's settings (src/compose-swarm.ts: `docker service create` arguments, carried as the
# run arguments so a rollback puts them back as they ran), in the form a FORM (create, update) of a
# KIND (service: the web; worker; task: the one-off job) takes: update adds and replaces by key
# (`--mount-add` replaces the mount at the same target) and cannot change networks; a worker or
# the job leaves out what is the web service's own (replicas, update and rollback settings,
# service labels) and its stop settings; the job its health check and restart policy too.
swarm_args() { # swarm_args KIND FORM: prints each argument NUL-terminated
  local i=0 opt val
  while ((i < ${#RUN_ARGS[@]})); do
    opt="${RUN_ARGS[$i]}"
    if [[ "$opt" == *=* ]]; then val=''; i=$((i + 1)); else val="${RUN_ARGS[$((i + 1))]}"; i=$((i + 2)); fi
    if [[ "$1" != service ]]; then
      case "$opt" in
        --replicas | --update-* | --rollback-* | --endpoint-mode | --label | --stop-signal | --stop-grace-period) continue ;;
      esac
      if [[ "$1" == task ]]; then case "$opt" in --health-* | --restart-*) continue ;; esac; fi
    fi
    if [[ "$2" == update ]]; then
      case "$opt" in
        --network) continue ;;
        --mount | --host | --container-label | --label | --ulimit | --constraint | --placement-pref) opt+=-add ;;
      esac
    elif [[ "$opt" == --network && "$val" == "${P[network]}" ]]; then continue # given once
    fi
    printf '%s\0' "$opt"
    if [[ "$opt" != *=* ]]; then printf '%s\0' "$val"; fi
  done
}

# Create or update the service to RUN_IMAGE as RUN_VERSION, and wait until Swarm converged.
swarm_deploy() {
  local svc cfg args=() line rc=0 out limit secret_env='' created=0
  svc="$(swarm_service)"
  registry_login
  cfg="$REGISTRY_CONFIG"
  while IFS= read -r line; do args+=("$line"); done < <(swarm_settings)
  local command=() cmdq='' w
  mapfile -d '' command < <(printf '%s' "${P[command]}" | base64 -d)
  for w in "${command[@]}"; do cmdq+=" $(swarm_quote "$w")"; done
  if ((${#ENV_KEYS[@]} > 0)); then
    local i
    for i in "${!ENV_KEYS[@]}"; do
      [[ "${ENV_VALUES[$i]}" != *[$'\n\r']* ]] || die "engine swarm takes env values of one line; ${ENV_KEYS[$i]} spans lines (use a Docker secret for it)"
      swarm_env_name_ok "${ENV_KEYS[$i]}" || die "engine swarm hands env values to the docker CLI through its environment, so ${ENV_KEYS[$i]}, a variable the CLI or bash reads itself, cannot be one. Rename it, or put it in env-file on the server. Nothing was changed."
    done
  fi
  limit=$(( ${P[health_timeout]%.*} + P[watch] + 60 ))
  phase "swarm service $svc"
  event started
  if docker_call service inspect "$svc" >/dev/null 2>&1; then
    log "updating service $svc to $RUN_IMAGE (start-first; Swarm rolls back on failure)"
    # `--env-add KEY` without a value: the docker CLI reads the value from its own environment,
    # set in this subshell only, so no value is in any process's arguments (ps, /proc/*/cmdline)
    for i in "${!ENV_KEYS[@]}"; do args+=(--env-add "${ENV_KEYS[$i]}"); done
    while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args service update)
    out="$(docker_bin="$(command -v docker)"
      for i in "${!ENV_KEYS[@]}"; do export "${ENV_KEYS[$i]}=${ENV_VALUES[$i]%x}"; done
      timeout "$limit" "$docker_bin" ${cfg:+--config "$cfg"} service update --quiet --with-registry-auth --image "$RUN_IMAGE" \
      --args "${cmdq# }" --container-label-add "bg-deploy.version=$RUN_VERSION" "${args[@]}" -- "$svc" 2>&1)" || rc=$?
  else
    log "creating service $svc from $RUN_IMAGE with ${P[replicas]} replica(s)"
    created=1
    secret_env="$(swarm_env_file)"
    if [[ -n "$secret_env" ]]; then args+=(--env-file "$secret_env"); fi
    if [[ -n "${P[env_file]}" ]]; then args+=(--env-file "${P[env_file]}"); fi
    if [[ -n "${P[network]}" ]]; then args+=(--network "${P[network]}"); fi
    while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args service create)
    out="$(timeout "$limit" docker ${cfg:+--config "$cfg"} service create --quiet --with-registry-auth --name "$svc" \
      --replicas "${P[replicas]}" --label "bg-deploy.app=${P[app]}" --container-label "bg-deploy.version=$RUN_VERSION" \
      "${args[@]}" -- "$RUN_IMAGE" "${command[@]}" 2>&1)" || rc=$?
  fi
  if [[ -n "$secret_env" ]]; then rm -f "$secret_env"; fi
  if ((rc != 0)); then
    local why="docker service failed: $out"
    if ((rc == 124)); then why="Swarm did not converge within ${limit}s"; fi
    # a first deploy that never converged leaves nothing behind: nothing served before it
    swarm_failed "$why" "$created"
  fi
  swarm_converged "$limit"
}

# After the CLI returned: did the update complete, or did Swarm roll it back? The CLI returns as
# a rollback starts; the run waits for it to end (up to LIMIT seconds), keeping Swarm's reason.
swarm_converged() { # swarm_converged LIMIT
  local svc state msg why='' deadline
  svc="$(swarm_service)"
  deadline=$(( $(now_ms) + $1 * 1000 ))
  while :; do
    IFS='|' read -r state msg <<<"$(docker_call service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}|{{.UpdateStatus.Message}}{{end}}' "$svc" 2>/dev/null)"
    if [[ "$state" == rollback_* && -z "$why" && -n "$msg" ]]; then why="$msg"; fi
    [[ "$state" == updating || "$state" == rollback_started ]] || break
    if (($(now_ms) >= deadline)); then swarm_failed "Swarm was still in state $state after ${1}s: ${why:-$msg}"; fi
    sleep 0.5
  done
  case "$state" in
    '' | completed) ;;
    rollback_completed) swarm_failed "Swarm rolled the update to $RUN_IMAGE back: ${why:-no reason given}" ;;
    *) swarm_failed "Swarm left the update to $RUN_IMAGE in state $state: ${why:-${msg:-no reason given}}" ;;
  esac
  log "service $svc converged on $RUN_IMAGE"
  [[ -z "$SWARM_SVC" ]] || return 0
  event healthy
  event switched
}

swarm_failed() { # swarm_failed WHY [REMOVE]: the failing tasks, their last log lines, history, then die
  local svc task_error; svc="$(swarm_service)"
  task_error="$(docker_call service ps "$svc" --no-trunc --filter desired-state=shutdown --format '{{.Error}}' 2>/dev/null | grep -m1 . || true)"
  log "tasks of $svc that did not run:"
  docker_call service ps "$svc" --no-trunc --filter desired-state=shutdown \
    --format '{{.Name}} {{.Image}} {{.CurrentState}} {{.Error}}' 2>&1 | head -n 6 >&2 || true
  log "last log lines of $svc:"
  docker_call service logs --raw --tail 10 "$svc" >&2 2>&1 || true
  history_add failed-swarm
  if [[ -n "$SWARM_SVC" ]]; then swarm_workers_failed "$1${task_error:+ (a task failed: $task_error)}"; fi
  if [[ "${2:-0}" == 1 ]]; then
    docker_call service rm "$svc" >/dev/null 2>&1 || true
    die "$1${task_error:+ (a task failed: $task_error)}. The service was new, so it was removed: nothing of ${P[app]} runs."
  fi
  die "$1${task_error:+ (a task failed: $task_error)}. $(swarm_serving)"
}

swarm_serving() { # what serves now, for a message
  local img
  img="$(docker_call service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$(swarm_service)" 2>/dev/null || true)"
  if [[ -n "$img" ]]; then printf 'The service runs %s.' "${img%@*}"; else printf 'The service does not exist.'; fi
}

# Workers on Swarm: each a service of its own, APP-NAME, updated after the web service converged,
# to the same image and env: start-first (the new task runs before the old one stops) for a regular
# worker; one replica and stop-first for a single one (its old task has stopped before the new one
# starts: never two). Swarm rolls a worker back when its new tasks fail within the update monitor;
# the run then rolls the web service and the workers it updated back too, so the app is never left
# half on the new version. A worker no longer listed has its service removed.
swarm_workers() {
  local i i2 svc words=() args=() rc out q w keep=' ' limit line
  workers_read
  limit=$(( ${P[health_timeout]%.*} + 60 ))
  for i in "${!WORKER_NAMES[@]}"; do
    svc="${P[app]}-${WORKER_NAMES[$i]}"; keep+="$svc "
    mapfile -d '' words < <(printf '%s' "${WORKER_WORDS[$i]}" | base64 -d)
    args=()
    if [[ "$(docker_call service inspect "$svc" --format x 2>/dev/null)" == x ]]; then
      while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args worker update)
    else
      while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args worker create)
    fi
    args+=(--update-failure-action rollback --update-monitor 5s --stop-signal "${WORKER_SIGNAL[$i]}"
      --stop-grace-period "${WORKER_TIMEOUT[$i]}s" --rollback-order stop-first)
    if [[ "${WORKER_SINGLE[$i]}" == 1 ]]; then args+=(--update-order stop-first --replicas 1)
    else args+=(--update-order start-first); fi
    SWARM_SVC="$svc"
    phase "swarm worker $svc"
    rc=0
    if docker_call service inspect "$svc" >/dev/null 2>&1; then
      # --args is one string the docker CLI splits like a shell: each word single-quoted
      q=''; for w in "${words[@]}"; do q+=" $(swarm_quote "$w")"; done
      for i2 in "${!ENV_KEYS[@]}"; do args+=(--env-add "${ENV_KEYS[$i2]}"); done
      log "worker ${WORKER_NAMES[$i]}: updating service $svc to $RUN_IMAGE ($([[ "${WORKER_SINGLE[$i]}" == 1 ]] && echo 'single: stop-first, one task' || echo start-first))"
      out="$(docker_bin="$(command -v docker)"
        for i2 in "${!ENV_KEYS[@]}"; do export "${ENV_KEYS[$i2]}=${ENV_VALUES[$i2]%x}"; done
        timeout "$limit" "$docker_bin" ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} service update --quiet --with-registry-auth \
          --image "$RUN_IMAGE" --args "${q# }" --container-label-add "bg-deploy.version=$RUN_VERSION" "${args[@]}" -- "$svc" 2>&1)" || rc=$?
    else
      local secret_env
      secret_env="$(swarm_env_file)"
      if [[ -n "$secret_env" ]]; then args+=(--env-file "$secret_env"); fi
      if [[ -n "${P[env_file]}" ]]; then args+=(--env-file "${P[env_file]}"); fi
      if [[ -n "${P[network]}" ]]; then args+=(--network "${P[network]}"); fi
      log "worker ${WORKER_NAMES[$i]}: creating service $svc from $RUN_IMAGE"
      out="$(timeout "$limit" docker ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} service create --quiet --with-registry-auth --name "$svc" \
        --label "bg-deploy.app=${P[app]}" --label "bg-deploy.worker=${WORKER_NAMES[$i]}" --container-label "bg-deploy.version=$RUN_VERSION" \
        "${args[@]}" -- "$RUN_IMAGE" "${words[@]}" 2>&1)" || rc=$?
      if [[ -n "$secret_env" ]]; then rm -f "$secret_env"; fi
    fi
    SWARM_UPDATED_WORKERS+=("$svc")
    if ((rc != 0)); then
      local why="docker service failed: $out"
      if ((rc == 124)); then why="Swarm did not converge within ${limit}s"; fi
      swarm_failed "$why"
    fi
    swarm_converged "$limit"
  done
  SWARM_SVC=''
  # the services of workers this version no longer has
  while IFS= read -r svc; do
    [[ -n "$svc" && "$keep" != *" $svc "* ]] || continue
    log "service $svc runs a worker this version does not have: removed"
    docker_call service rm "$svc" >/dev/null 2>&1 || log "warning: could not remove $svc"
  done < <(docker_call service ls --filter "label=bg-deploy.app=${P[app]}" --filter label=bg-deploy.worker --format '{{.Name}}' 2>/dev/null)
}

swarm_quote() { local w="$1"; printf "'%s'" "${w//\'/\'\\\'\'}"; } # one word, quoted for the CLI's split

# A worker's update failed (Swarm rolled it back): the web service and the workers this run updated
# go back to their previous spec too, then the run ends saying so.
swarm_workers_failed() { # swarm_workers_failed WHY
  local svc back=() failed="$SWARM_SVC"
  for svc in "${P[app]}" "${SWARM_UPDATED_WORKERS[@]}"; do
    [[ "$svc" != "$SWARM_SVC" ]] || continue
    if docker_call service rollback --quiet "$svc" >/dev/null 2>&1; then back+=("$svc"); fi
  done
  SWARM_SVC=''
  die "worker service $failed: $1. Rolled back to their previous version with it: ${back[*]:-nothing (the services were new)}. $(swarm_serving)"
}

# The pre-switch task on Swarm: a one-off job (a replicated-job service, no restart) of the new
# image on the service's network, with its env, before the service is updated; the run waits for
# its end (task_timeout), streams its log, and removes it. As on ssh, a failure or timeout changes
# nothing and a version whose task succeeded is not run again (task.sh).
swarm_task() {
  [[ -n "${P[task]}" ]] || return 0
  local words=() job when args=() i secret_env='' state err rc=0 deadline code out why start line
  mapfile -d '' words < <(printf '%s' "${P[task]}" | base64 -d)
  if [[ "${P[task_force]}" != 1 ]] && when="$(task_done)"; then
    log "pre-switch task: it succeeded for $RUN_VERSION on this swarm already ($when): not run again (pre-switch-force: true runs it anyway)"
    return 0
  fi
  job="${P[app]}-task-$(date +%s)"
  phase "pre-switch task"
  event task
  registry_login
  args=(--quiet --detach --mode replicated-job --restart-condition none --name "$job" --label "bg-deploy.app=${P[app]}"
    --label "bg-deploy.task=$RUN_VERSION" --with-registry-auth)
  if [[ -n "${P[network]}" ]]; then args+=(--network "${P[network]}"); fi
  while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args task create)
  if [[ -n "${P[env_file]}" ]]; then args+=(--env-file "${P[env_file]}"); fi
  secret_env="$(swarm_env_file)"
  if [[ -n "$secret_env" ]]; then args+=(--env-file "$secret_env"); fi
  log "pre-switch task: running '${words[*]}' as the one-off Swarm job $job of $RUN_IMAGE (up to ${P[task_timeout]}s)"
  start="$(now_ms)"
  out="$(docker ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} service create "${args[@]}" -- "$RUN_IMAGE" "${words[@]}" 2>&1)" || rc=$?
  if [[ -n "$secret_env" ]]; then rm -f "$secret_env"; fi
  ((rc == 0)) || { task_record failed; history_add failed-task; die "the pre-switch task could not start as a Swarm job: $out. Nothing was changed: $(swarm_serving)"; }
  deadline=$((start + ${P[task_timeout]%.*} * 1000))
  while :; do
    IFS='|' read -r state err <<<"$(docker_call service ps "$job" --no-trunc --format '{{.CurrentState}}|{{.Error}}' 2>/dev/null | head -n 1)"
    case "$state" in Complete* | Failed* | Rejected* | Shutdown*) break ;; esac
    if (($(now_ms) >= deadline)); then state=timeout; break; fi
    sleep 0.5
  done
  : >"$STATE_DIR/task.log"
  docker_call service logs --raw "$job" 2>&1 | task_stream "$STATE_DIR/task.log" || true
  docker_call service rm "$job" >/dev/null 2>&1 || true
  if [[ "$state" != Complete* ]]; then
    task_record failed
    history_add failed-task
    if [[ "$state" == timeout ]]; then why="did not end within ${P[task_timeout]}s (pre-switch-timeout) and was stopped"
    else
      code="$(printf '%s' "$err" | sed -n 's/.*non-zero exit (\([0-9]*\)).*/\1/p')"
      why="failed${code:+ with exit code $code} (${state%% *}${err:+: $err})"
    fi
    die "the pre-switch task '${words[*]}' $why. Nothing was changed: $(swarm_serving) Its last lines:
$(tail -n 10 "$STATE_DIR/task.log")"
  fi
  task_record ok
  log "pre-switch task: done in $(($(now_ms) - start)) ms"
  event tasked
}

main_swarm() {
  local current
  TMP_PATHS+=("$STATE_DIR/.env.$$") # swarm_env_file's
  swarm_check
  if [[ "${P[action]}" == rollback ]]; then
    current="$(state_get version)"
    [[ -n "$current" ]] || die "nothing is deployed for ${P[app]} on this swarm, so there is nothing to roll back to"
    target_pick "$current"
    log "service ${P[app]}: $current serving; rolling back to $RUN_VERSION ($RUN_IMAGE)"
    spec_load
  fi
  if [[ "${P[action]}" == deploy ]]; then swarm_task; fi
  if [[ -z "${P[health_cmd]}" ]]; then
    warn "engine swarm without health-cmd: Swarm sends traffic to a new task as soon as its process runs, before the app is ready, and cannot roll back a version that never gets healthy. Give health-cmd, a probe of ${P[health_path]} with a tool the image has."
  fi
  swarm_deploy
  swarm_workers
  state_write '' "$RUN_VERSION" "$RUN_IMAGE"
  spec_save
  history_add ok
  event finished
  result_print true "" "" "$RUN_VERSION" "$RUN_IMAGE"
}

# ==== src/remote/steps/check.sh
# Step (action=check, `bg-deploy check`): is this server ready for a first deploy? Each check is
# one `::bg-deploy-check:: ok|warn|fail NAME TEXT` line, TEXT the exact fix when it is not ok. It
# reads and changes nothing (no lock, no state directory made, nginx only tested).

check_line() { marker check "$1 $2 $3"; } # check_line ok|warn|fail NAME TEXT

check_run() {
  local v dir user
  user="$(id -un)"
  # bash and the tools the script uses
  if ((BASH_VERSINFO[0] >= 4)); then check_line ok bash "bash $BASH_VERSION"
  else check_line fail bash "bash $BASH_VERSION is too old: bg-deploy needs bash 4 or later"; fi
  if command -v flock >/dev/null; then check_line ok flock "flock is installed"
  else check_line fail flock "flock is missing: install util-linux (apt-get install util-linux)"; fi
  # Docker: reachable for this user, live-restore, the proxy setting the switch mode needs
  if ! command -v docker >/dev/null; then
    check_line fail docker "docker is not installed (or not on PATH for $user): install Docker (apt-get install docker.io)"
  elif ! v="$(docker_call info -f '{{.ServerVersion}} {{.LiveRestoreEnabled}} {{.DockerRootDir}}' 2>&1)"; then
    check_line fail docker "docker info failed for $user: ${v%%$'\n'*}. Add the user to the docker group (usermod -aG docker $user, then log in again)"
  else
    check_line ok docker "Docker ${v%% *} answers for $user"
    if [[ "$v" == *' true '* ]]; then check_line ok live-restore "live-restore is on: a daemon restart leaves the containers running"
    else check_line warn live-restore "live-restore is off: a daemon restart stops every container, the serving one too. Add \"live-restore\": true to /etc/docker/daemon.json and run systemctl reload docker"; fi
    dir="${v##* }"
    check_disk "$dir"
    check_proxy
  fi
  check_nginx
  check_ports
  check_state_dir
}

# "userland-proxy": false in daemon.json or on dockerd's command line
check_userland_proxy_off() {
  local pid
  if grep -Eqs '"userland-proxy"[[:space:]]*:[[:space:]]*false' /etc/docker/daemon.json; then return 0; fi
  for pid in $(pgrep -x dockerd 2>/dev/null); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq -- '--userland-proxy(=| )false' && return 0
  done
  return 1
}

check_proxy() {
  if [[ "${P[switch_mode]}" == dnat ]]; then
    if check_userland_proxy_off; then
      check_line fail userland-proxy "switch-mode dnat needs Docker's userland proxy, which is off (\"userland-proxy\": false): remove that setting and restart docker, or use switch-mode reload"
    else check_line ok userland-proxy "Docker's userland proxy is on, as switch-mode dnat needs"; fi
    if command -v iptables-restore >/dev/null; then check_line ok iptables "iptables-restore is installed"
    else check_line fail iptables "switch-mode dnat needs iptables: apt-get install iptables"; fi
  elif check_userland_proxy_off; then
    check_line ok userland-proxy "Docker's userland proxy is off: published ports stay served while the daemon restarts"
  else
    check_line warn userland-proxy "Docker's userland proxy is on: a daemon restart cuts the responses passing through docker-proxy. Add \"userland-proxy\": false to /etc/docker/daemon.json and restart docker (with live-restore on first)"
  fi
}

check_disk() { # check_disk DOCKER_ROOT
  local free
  free="$(df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print $4 }')"
  if [[ -z "$free" ]]; then check_line warn disk "cannot read the free space of $1"; return 0; fi
  if ((free < 1048576)); then
    check_line fail disk "$((free / 1024)) MiB free under $1: an image pull needs room. Free space (docker system prune -a removes unused images)"
  elif ((free < 5242880)); then
    check_line warn disk "$((free / 1024)) MiB free under $1: less than 5 GiB; each version kept is an image"
  else check_line ok disk "$((free / 1048576)) GiB free under $1"; fi
}

check_nginx() {
  local out file="${P[upstream_file]}" dir pattern found='' conf
  local -a patterns=() files=()
  dir="$(dirname "$file")"
  if ! out="$(nginx_run "${P[nginx_test]}" 2>&1)"; then
    # before the first deploy, a site may name the upstream the first deploy writes
    if [[ ! -e "$file" && "$out" == *"host not found in upstream \"${P[upstream_name]}\""* ]]; then
      check_line ok nginx-test "'${P[nginx_test]}' fails only for the upstream ${P[upstream_name]}, which the first deploy writes to $file"
    else
      local why
      why="$(printf '%s\n' "$out" | grep -m1 -E '\[(emerg|crit|alert)\]' || printf '%s' "${out##*$'\n'}")"
      check_line fail nginx-test "'${P[nginx_test]}' failed: ${why}. Fix nginx's config, or for a non-root user allow it in sudoers (see docs/getting-started.md)"
    fi
  else
    check_line ok nginx-test "'${P[nginx_test]}' passes"
  fi
  # the reload: for sudo, whether sudo would allow it, without running it
  if [[ "${P[nginx_reload]}" == "sudo -n "* ]]; then
    # shellcheck disable=SC2086 # the command's words, as sudo matches them
    if sudo -n -l ${P[nginx_reload]#sudo -n } >/dev/null 2>&1; then check_line ok nginx-reload "sudo allows '${P[nginx_reload]}'"
    else check_line fail nginx-reload "sudo does not allow '${P[nginx_reload]}' for $(id -un) without a password: add it to /etc/sudoers.d/bg-deploy (see docs/getting-started.md)"; fi
  fi
  # the upstream file: its directory writable, and nginx including it
  if [[ -e "$file" && -w "$file" ]] || [[ ! -e "$file" && -d "$dir" && -w "$dir" ]]; then
    check_line ok upstream-file "$file can be written by $(id -un)"
  elif [[ ! -d "$dir" ]]; then
    check_line fail upstream-file "$dir does not exist: create it (install -d -o $(id -un) $dir)"
  else
    check_line fail upstream-file "$(id -un) cannot write $file: make $dir the user's (chown $(id -un) $dir), or set nginx-upstream-file to a path it can write"
  fi
  # nginx's config as nginx reads it, include by include (nginx -T would refuse before the first
  # deploy, when a site names the upstream not written yet)
  conf="$(nginx_conf_path)"
  if [[ ! -r "$conf" ]]; then
    check_line warn nginx-include "cannot read nginx's config $conf as $(id -un) to see whether it includes $file"
    return 0
  fi
  nginx_conf_walk "$conf" 0
  for pattern in "${patterns[@]}"; do
    # shellcheck disable=SC2053 # the include is a glob, matched as one
    if [[ "$file" == $pattern ]]; then found="$pattern"; break; fi
  done
  if [[ -n "$found" ]]; then check_line ok nginx-include "nginx includes $file (include $found)"
  else check_line fail nginx-include "nginx does not include $file: add 'include $dir/${P[upstream_name]}-upstream*.conf;' at the http level (a site file is), then test and reload nginx"; fi
  if ((${#files[@]} > 0)) && grep -Eqs "proxy_pass[[:space:]]+https?://${P[upstream_name]}[;/[:space:]]" "${files[@]}"; then
    check_line ok nginx-site "a site proxies to http://${P[upstream_name]}"
  else
    check_line fail nginx-site "no site proxies to the upstream ${P[upstream_name]}: add 'location / { proxy_pass http://${P[upstream_name]}; }' to the site's server block (see docs/getting-started.md)"
  fi
}

# nginx_conf_walk FILE DEPTH: FILE and what it includes, into `files` and `patterns` (the
# caller's), relative paths taken from the main config's directory as nginx does
nginx_conf_walk() {
  local f="$1" inc base
  files+=("$f")
  (($2 < 8)) || return 0
  base="$(dirname "$(nginx_conf_path)")"
  while IFS= read -r inc; do
    inc="${inc#[\"\']}"; inc="${inc%[\"\']}"
    [[ "$inc" == /* ]] || inc="$base/$inc"
    patterns+=("$inc")
    local g
    # a glob that matches nothing yet (the upstream before the first deploy) is no error
    for g in $inc; do
      if [[ -f "$g" && -r "$g" ]]; then nginx_conf_walk "$g" $(($2 + 1)); fi
    done
  done < <(sed -e 's/#.*//' "$f" 2>/dev/null | grep -o 'include[[:space:]]\{1,\}[^;]*;' | sed 's/^include[[:space:]]*//; s/;$//')
  return 0
}

# the main config: -c in nginx-test-command, else nginx -V's conf-path
nginx_conf_path() {
  local p w next=0
  for w in ${P[nginx_test]}; do
    if ((next)); then printf '%s' "$w"; return 0; fi
    [[ "$w" == -c ]] && next=1
  done
  p="$(nginx -V 2>&1 | tr ' ' '\n' | sed -n 's/^--conf-path=//p')"
  printf '%s' "${p:-/etc/nginx/nginx.conf}"
}

# blue-port and green-port: free, or held by this app's own containers
check_ports() {
  local port color owner
  for color in blue green; do
    port="$(color_port "$color")"
    if ! (exec 3<>"/dev/tcp/${P[bind_address]}/$port") 2>/dev/null; then
      check_line ok "port-$color" "$port is free"
      continue
    fi
    owner="$(docker_call ps --filter "publish=$port" --format '{{.Names}}' 2>/dev/null | head -n 1)"
    if [[ "$owner" == "${P[app]}-blue" || "$owner" == "${P[app]}-green" ]]; then
      check_line ok "port-$color" "$port is $owner's"
    else
      check_line fail "port-$color" "$port is taken by ${owner:-another process} on ${P[bind_address]}: stop it, or set ${color}-port to a free port"
    fi
  done
}

check_state_dir() {
  state_dir_pick
  local d="$STATE_DIR"
  while [[ ! -e "$d" ]]; do d="$(dirname "$d")"; done
  if [[ -w "$d" ]]; then check_line ok state "the state goes to $STATE_DIR"
  else check_line fail state "$(id -un) cannot create $STATE_DIR: run as root, or give the user its home directory (the state then goes to ~/.bg-deploy)"; fi
}

# ==== src/remote/roles/fleet.sh
# Role host or app, in a run over several servers: prepared, then what the runner says.

# A run over several servers, on one of them (role host or app), once the new color is healthy:
# report `prepared` and do what the runner says. host: `switch` (then `finish`, or `undo`); app (the
# load balancer switches): `finish`; both: `keep` (promote: false) or `abort`. When the runner goes
# away, a host undoes its switch; an app server leaves both colors running, since the load
# balancer may point at either, and the next run takes over.
fleet_prepared() { # fleet_prepared FROM_COLOR TO_COLOR
  local from="$1" to="$2" cmd next=finish
  if [[ "${P[role]}" == host && -n "${P[preview_file]}" ]]; then
    preview_ensure "$from" || fleet_abort "$to" "$UPSTREAM_ERROR"
  fi
  journal_write prepared "$to"
  command_await prepared "color=$to previous_color=$from version=$RUN_VERSION image=$RUN_IMAGE"
  if [[ "${P[role]}" == host ]]; then next=switch; fi
  # behind a load balancer that watches, the old color stays warm until its watch has passed
  # (and its canary's steps, before it switches)
  cmd="$(command_next $((${P[commit_timeout]%.*} + $(canary_seconds) + P[watch])))"
  case "$cmd" in
    "$next") ;;
    keep)
      journal_write kept "$to"
      history_add prepared "$to"
      log "$(container_name "$to") keeps running $RUN_VERSION for a later run to promote"
      result_print false "$to" "$from" "$RUN_VERSION" "$RUN_IMAGE"
      return 0
      ;;
    revert)
      [[ "${P[role]}" == app ]] || fleet_abort "$to" "the runner said revert"
      # the load balancer's watch switched back to the old color, which kept running here
      docker_call stop -t 10 "$(container_name "$to")" >/dev/null 2>&1 || true
      workers_undo "$to" "$from" stop
      journal_clear
      history_add rolled-back-after-watch "$to"
      die "the load balancer's watch switched back to $(container_name "${from:-none}"); $(container_name "$to") is stopped and kept for its logs"
      ;;
    eof)
      runner_gone prepared
      if [[ "${P[role]}" == app ]]; then history_add interrupted "$to"; exit 1; fi
      fleet_abort "$to" "the runner went away before the switch" ;;
    *) fleet_abort "$to" "the runner said $cmd: another server could not get ready" ;;
  esac
  if [[ "${P[role]}" == host ]]; then
    canary_run "$from" "$to"
    watch_narrow
    WATCH_SWITCHED="$(now_ms)"
    switch_to "$to"
    commit_or_undo "$from" "$to" ' here' "$(container_name "${from:-none}") serves as before"
  fi
  main_finish "$from" "$to"
}

fleet_abort() { # fleet_abort COLOR WHY: remove the prepared color, switch nothing
  container_remove "$1"
  workers_undo "$1" "$(color_other "$1")"
  journal_clear
  history_add aborted "$1"
  die "$2; $(container_name "$1") was removed and nothing was switched here"
}

# ==== src/remote/roles/lb.sh
# Role lb, in a run over several servers: the load balancer switches every app server at once.

# The load-balancer host (role lb): it runs no container. It says which color serves (and, for a
# rollback, the version to go back to); the runner prepares the app servers, then has it switch
# its upstream to that color on every app server at once (`switch COLOR`, then `finish` or
# `undo`), or `keep` (promote: false) or `abort`.
lb_run() {
  local active current idle cmd
  upstream_recover
  active="$(state_get color)"; current="$(state_get version)"
  if [[ "${P[action]}" == rollback ]]; then
    [[ -n "$active" ]] || die "nothing is deployed for ${P[app]} behind this load balancer, so there is nothing to roll back to"
    target_pick "$current"
  fi
  if [[ -n "$active" ]]; then idle="$(color_other "$active")"; else idle=blue; fi
  # the watch: this nginx's log covers every app server; open before they start the new color
  if [[ -n "$active" ]]; then watch_check; watch_open "$active"; fi
  if [[ -n "${P[preview_file]}" ]]; then preview_ensure "$active" || die "$UPSTREAM_ERROR"; fi
  command_await ready "color=$idle previous_color=$active version=$RUN_VERSION image=$RUN_IMAGE"
  # a run that overlaps the build (build_wait > 0) gets here while the image still builds
  cmd="$(command_next $((${P[commit_timeout]%.*} + ${P[build_wait]%.*})))"
  case "$cmd" in
    "switch $idle") ;;
    keep)
      history_add prepared "$idle"
      result_print false "$idle" "$active" "$RUN_VERSION" "$RUN_IMAGE"
      return 0 ;;
    eof) runner_gone ready; exit 1 ;;
    *) die "nothing was switched (the runner said $cmd)" ;;
  esac
  canary_run "$active" "$idle"
  phase "switch to ${P[app]}-$idle on every app server"
  watch_narrow
  WATCH_SWITCHED="$(now_ms)"
  # the load balancer runs no container: a failed switch removes nothing
  switch_point "$idle" || {
    if [[ -n "$UPSTREAM_FAILED" ]]; then history_add "$UPSTREAM_FAILED" "$idle"; fi
    die "$SWITCH_ERROR"
  }
  log "nginx now sends ${P[upstream_name]} to $(upstream_target "$idle")"
  event switched
  commit_or_undo "$active" "$idle" '' "nginx sends ${P[upstream_name]} to ${active:-nothing} as before"
  if [[ "${P[watch]}" != 0 ]]; then
    if ((WATCH_FROM > 0)) && ! watch_window "$idle"; then lb_watch_revert "$active" "$idle"; fi
    # the runner tells the app servers to finish (stop the old colors) only now
    command_await watched
  fi
  state_write "$idle" "$RUN_VERSION" "$RUN_IMAGE"
  journal_clear
  history_add ok "$idle"
  event finished
  result_print true "$idle" "$active" "$RUN_VERSION" "$RUN_IMAGE" 0 \
    "$(if ((WATCH_FROM > 0)) && [[ "${P[watch]}" != 0 ]]; then echo "$WATCH_TOTAL,$WATCH_BAD,$WATCH_BASE_TOTAL,$WATCH_BASE_BAD"; fi)"
}

# After a breach of the watch: every app server back to its old color in one write (they kept it
# running); the runner then has them stop the new one.
lb_watch_revert() { # lb_watch_revert FROM TO
  local from="$1" to="$2"
  phase "switch back to ${P[app]}-$from on every app server"
  switch_point "$from" \
    || die "the watch found $RUN_VERSION bad ($WATCH_REASON), but could not switch back: $SWITCH_ERROR. ${P[app]}-$from still runs on every app server: run the workflow with rollback: previous."
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  log "switched back: nginx sends ${P[upstream_name]} to $(upstream_target "$from") again"
  event reverted
  history_add rolled-back-after-watch "$to"
  die "the watch window switched back from $RUN_VERSION: $WATCH_REASON; $WATCH_FIGURES. ${P[app]}-$from ($(state_get version)) serves again on every app server"
}

# ==== src/remote/main.sh
# The two runs as their lists of steps: deploy and rollback, sharing what follows the start; the
# roles of a run over several servers are in roles/ (fleet.sh: host and app; lb.sh: the load
# balancer). Globals: TMP_PATHS (files to remove at exit).

TMP_PATHS=()

# shellcheck disable=SC2317 # called by the EXIT trap
main_cleanup() { local p; for p in "${TMP_PATHS[@]}"; do rm -rf "$p"; done; }

main_deploy() {
  local active idle
  if [[ "${P[role]}" == app ]]; then
    # behind a load-balancer host, which says which color to start: the other one serves. Started
    # while the image builds, the color comes with the runner's word that it is pushed.
    if [[ -z "${P[color]}" ]]; then await_color; fi
    idle="${P[color]}"; active="$(color_other "$idle")"
    container_running "$active" || active=''
  else
    upstream_recover
    active="$(detect_active)"
    if [[ -n "$active" ]]; then idle="$(color_other "$active")"; else idle=blue; fi
  fi
  log "app ${P[app]}: ${active:-nothing} serving now; deploying ${RUN_VERSION:-$RUN_IMAGE} to $idle"
  if [[ "${P[role]}" =~ ^(single|host)$ && -n "$active" ]]; then watch_check; watch_open "$active"; fi
  # the runner still builds (one server, or each server of a run over several): wait for it
  if ((${P[build_wait]%.*} > 0)) && [[ "${P[role]}" != app ]]; then await_image "$active" "$idle"; fi
  if [[ "${P[role]}" != single ]] && journal_kept "$idle"; then
    log "$(container_name "$idle") runs $RUN_VERSION already, prepared by $(journal_get run): promoting it"
    event started
  else
    pull_image
    accessories_ensure
    task_run "${active:+$(container_name "$active") serves as before}"
    if [[ "${P[role]}" =~ ^(single|host)$ ]]; then watch_open "$active"; fi
    start_color "$idle"
    workers_start "$idle" regular
  fi
  main_go "$active" "$idle"
}

# action task, in a run over several servers: the pre-switch task alone, on the server the runner
# picked, before any server starts a color.
main_task() {
  log "app ${P[app]}: the pre-switch task of ${RUN_VERSION:-$RUN_IMAGE}, before any server starts it"
  pull_image
  task_run "no server was changed"
  result_print false '' '' "$RUN_VERSION" "$RUN_IMAGE"
}

main_rollback() {
  local active idle current
  if [[ "${P[role]}" == app ]]; then
    # the load-balancer host picked the version and its image
    idle="${P[color]}"; active="$(color_other "$idle")"
    container_running "$active" || active=''
    current="$(state_get version)"
  else
    upstream_recover
    active="$(detect_active)"
    [[ -n "$active" ]] || die "nothing is deployed for ${P[app]} on this server, so there is nothing to roll back to"
    current="$(state_get version)"
    target_pick "$current"
    idle="$(color_other "$active")"
  fi
  log "app ${P[app]}: ${current:-unknown} serving from ${active:-none}; rolling back to $RUN_VERSION"
  if [[ "${P[role]}" =~ ^(single|host)$ ]]; then watch_check; watch_open "$active"; fi
  spec_load
  accessories_ensure
  local slow=''
  if spec_changes_container; then
    slow="slow path: this run sets ${SPEC_OVERRIDES//,/, } itself, so a new container of $RUN_VERSION starts, not the kept one"
  elif ! start_kept "$idle"; then
    slow="slow path: no kept container for $RUN_VERSION; running $RUN_IMAGE"
  fi
  if [[ -n "$slow" ]]; then
    log "$slow"
    if ! docker_call image inspect "$RUN_IMAGE" >/dev/null 2>&1; then
      pull_image "cannot roll back to $RUN_VERSION: its image $RUN_IMAGE is neither on the server nor in the registry. Versions deployed here: ${TARGET_AVAILABLE:-none}"
    fi
    start_color "$idle"
  fi
  workers_start "$idle" regular
  main_go "$active" "$idle"
}

# One server switching itself goes on at once; in a run over several, the runner decides.
main_go() { # main_go FROM_COLOR TO_COLOR
  health_wait "$2"
  workers_settle "$2" regular
  workers_swap_single "$1" "$2"
  if [[ "${P[role]}" == single ]]; then
    canary_run "$1" "$2"
    watch_narrow
    WATCH_SWITCHED="$(now_ms)"
    switch_to "$2"
    main_finish "$1" "$2"
  else
    fleet_prepared "$1" "$2"
  fi
}

# After the switch: state, drain, history, and the old color stopped in the background. FROM is
# empty on the first deploy of the app.
main_finish() { # main_finish FROM_COLOR TO_COLOR
  local from="$1" to="$2" wait=0 prev_version prev_image
  prev_version="$(state_get version)"; prev_image="$(state_get image)"
  state_write "$to" "$RUN_VERSION" "$RUN_IMAGE"
  journal_clear
  if ((WATCH_FROM > 0)) && ! watch_window "$to"; then
    watch_revert "$from" "$to" "$prev_version" "$prev_image"
    workers_undo "$to" "$from" stop
    die "the watch window switched back from $RUN_VERSION: $WATCH_REASON; $WATCH_FIGURES. $(container_name "$from") (${prev_version:-the previous version}) serves again; $(container_name "$to") is stopped and kept for its logs (docker logs $(container_name "$to"))."
  fi
  workers_stop_later "$from"
  if [[ -n "$from" ]]; then
    nat_forget "$from" || true
    drain_color "$from" "$to" "$NGINX_BEFORE"
    nat_forget "$from" || wait="$(nat_stop_delay "$from")"
  fi
  switch_settle
  spec_save
  history_add ok "$to"
  event finished
  stop_later "$from" "$wait"
  result_print true "$to" "$from" "$RUN_VERSION" "$RUN_IMAGE" "$DRAIN_OPEN" \
    "$(if ((WATCH_FROM > 0)); then echo "$WATCH_TOTAL,$WATCH_BAD,$WATCH_BASE_TOTAL,$WATCH_BASE_BAD"; fi)"
}

main() {
  params_parse "$@"
  params_read_secrets
  RUN_VERSION="${P[version]}"; RUN_IMAGE="${P[image]}"
  trap main_cleanup EXIT
  # in a run over several servers, a cut session must not end the script half-way: it notices
  # when it reads the runner's next command, and undoes or leaves things as its role says
  if [[ "${P[role]}" != single ]]; then trap '' PIPE; fi
  if [[ "${P[action]}" == status ]]; then status_print; return 0; fi
  if [[ "${P[action]}" == check ]]; then check_run; return 0; fi
  if [[ "${P[role]}" != lb ]]; then
    command -v docker >/dev/null || die "docker is not installed on the server (or not on PATH for this user)"
  fi
  command -v flock >/dev/null || die "flock is not installed on the server (package util-linux)"
  state_init
  event begin
  lock_acquire
  PREVIOUS_VERSION="$(state_get version)"
  switch_mode_decide
  if [[ "$SWITCH_MODE" == dnat || "$PREV_MODE" == dnat ]]; then nat_preflight; fi
  journal_report
  trap 'history_print; serving_print; main_cleanup' EXIT
  if [[ "${P[role]}" == lb ]]; then lb_run; return; fi
  docker_preflight
  if [[ "${P[engine]}" == swarm ]]; then main_swarm; return; fi
  case "${P[action]}" in
    deploy) main_deploy ;;
    rollback) main_rollback ;;
    task) main_task ;;
    *) die "unknown action '${P[action]}'" ;;
  esac
}

main "$@"; exit "$?"
