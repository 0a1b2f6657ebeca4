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
