# nginx: the upstream file (rendered, backed up, tested, reloaded or restored) and its workers.
# Globals: CIP (a color's container address), IPS_FORMAT, NGINX_BEFORE (workers before a reload).

upstream_target() { # the address nginx should use for a color
  if [[ -n "${P[network]}" ]]; then echo "$(container_name "$1"):${P[container_port]}"
  else echo "127.0.0.1:$(color_port "$1")"
  fi
}

# nginx's second way to the same container: its own address on the docker bridge, used only when
# the published port refuses. The published port goes through docker's proxy, which is down while
# the Docker daemon restarts; the container (with live-restore) and its address are not. Empty
# with a network (nginx reaches the container by name there) or when the container has no address.
declare -A CIP=()

IPS_FORMAT='{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' # docker inspect: a container's addresses

upstream_backup() { # upstream_backup COLOR
  [[ -z "${P[network]}" ]] || return 0
  if [[ -z "${CIP[$1]:-}" ]]; then
    CIP[$1]="$(docker_call inspect -f "$IPS_FORMAT" "$(container_name "$1")" 2>/dev/null | awk '{ print $1 }')"
  fi
  if [[ "${CIP[$1]}" =~ ^[0-9.]+$ ]]; then echo "${CIP[$1]}:${P[container_port]}"; fi
}

upstream_render() { # upstream_render TARGET LABEL FILE [BACKUP]
  {
    printf '# Managed by bg-deploy (app %s, %s, version %s). Do not edit: the next deploy rewrites it.\nupstream %s {\n    server %s;\n' \
      "${P[app]}" "$2" "${RUN_VERSION:-unknown}" "${P[upstream_name]}" "$1"
    if [[ -n "${4:-}" ]]; then
      printf '    # the same container by its docker address, while the port above refuses (a Docker daemon restart)\n    server %s backup;\n' "$4"
    fi
    printf '}\n'
  } >"$3"
}

# The user's nginx commands, through bash, without the script's extra descriptors: a command that
# starts a daemon must not keep the SSH session (fds 7, 8) or the deploy lock (fd 9) open.
nginx_run() { bash -c "$1" 7>&- 8>&- 9>&-; }

upstream_points_to() { # upstream_points_to HOST:PORT
  [[ -f "${P[upstream_file]}" ]] && grep -qE "^[[:space:]]*server[[:space:]]+${1//./[.]}[[:space:];]" "${P[upstream_file]}"
}

# Point nginx's upstream at TARGET for COLOR: temp file, backup, atomic move, nginx test (restore on
# failure), reload. On failure the new container is removed, UNDO (a command, if set) runs, and the
# run ends with a message.
upstream_switch() { # upstream_switch TARGET COLOR [UNDO] [BACKUP]
  local target="$1" color="$2" undo="${3:-}" backup="${4:-}" f="${P[upstream_file]}" dir tmp out
  dir="$(dirname "$f")"
  fail() { # fail RESULT MESSAGE
    if [[ -n "$undo" ]]; then "$undo" || true; fi
    container_remove "$color"
    if [[ -n "$1" ]]; then history_add "$1" "$color"; fi
    die "$2"
  }
  [[ -d "$dir" && -w "$dir" ]] || fail failed-upstream-write "cannot write the upstream file: $dir is not a writable directory for user $(id -un). Make it writable, or set nginx-upstream-file to a file in a directory that user owns. Nothing was switched; the previous version is still serving."
  # a new file of our own (mktemp creates it exclusively: never through a link someone left), with
  # its final mode before its content
  tmp="$(mktemp "$dir/.$(basename "$f").bg-deploy.XXXXXX")" \
    || fail failed-upstream-write "cannot create a temporary file in $dir (disk full?). Nothing was switched; the previous version is still serving."
  TMP_PATHS+=("$tmp")
  chmod 644 "$tmp"
  upstream_render "$target" "$color" "$tmp" "$backup" || fail failed-upstream-write "cannot write $tmp (disk full?). Nothing was switched; the previous version is still serving."
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  # the backup is owner-only like everything in the state directory; upstream_restore gives the
  # file back nginx's usual 644
  if [[ -f "$f" ]]; then cp "$f" "$STATE_DIR/upstream.bak" && chmod 600 "$STATE_DIR/upstream.bak"; else touch "$STATE_DIR/upstream.none"; fi
  touch "$STATE_DIR/switch.pending"
  mv -f "$tmp" "$f"
  if ! out="$(nginx_run "${P[nginx_test]}" 2>&1)"; then
    upstream_restore
    fail failed-nginx-test "nginx rejected the new upstream, so the previous config was restored and nothing was switched. nginx said: $out"
  fi
  NGINX_BEFORE="$(nginx_workers)"
  if ! out="$(nginx_run "${P[nginx_reload]}" 2>&1)"; then
    upstream_restore
    fail failed-nginx-reload "nginx reload failed, so the previous upstream file was restored and the new container removed. Is nginx running? It said: $out"
  fi
  rm -f "$STATE_DIR/switch.pending"
}

upstream_restore() {
  if [[ -f "$STATE_DIR/upstream.bak" ]]; then mv -f "$STATE_DIR/upstream.bak" "${P[upstream_file]}" && chmod 644 "${P[upstream_file]}"
  elif [[ -f "$STATE_DIR/upstream.none" ]]; then rm -f "${P[upstream_file]}"
  fi
  rm -f "$STATE_DIR/upstream.none" "$STATE_DIR/switch.pending"
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

# The nginx workers ("PID PPID" lines) taken just before this run's reload, for the drain: empty
# until a reload, and without one (dnat mode).
NGINX_BEFORE=''

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
