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
