#!/bin/sh
# The image's entrypoint, as distribution's: a configuration file as the first argument (the default
# command) means `registry serve FILE`; anything else is a registry command (`garbage-collect`,
# `check-config`, `auth add-user`...) or a program to run.
set -e
case "$1" in
  *.yaml|*.yml) set -- registry serve "$@" ;;
  serve|check-config|reindex|garbage-collect|auth|--version|-v|--help|-h) set -- registry "$@" ;;
esac
exec "$@"
