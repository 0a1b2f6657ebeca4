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
