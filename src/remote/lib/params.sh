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
