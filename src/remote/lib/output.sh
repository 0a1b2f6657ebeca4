#!/usr/bin/env bash
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
