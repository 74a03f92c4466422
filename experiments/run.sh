#!/usr/bin/env bash
# Sourced by the launch and check scripts: `run CMD ARGS...` runs a command, or, when the script
# set dry_run=1 (its --dry_run flag), prints it shell-quoted instead.

run() {
  if [ "${dry_run:-0}" = 1 ]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}
