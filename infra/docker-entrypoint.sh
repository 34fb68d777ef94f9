#!/bin/sh
# Entrypoint of the stanflow image (infra/Dockerfile).
#
#   docker run IMAGE train --model stan     ->  stanflow train --model stan
#   docker run IMAGE                        ->  stanflow --help
#   docker run IMAGE bash -c "exec airflow scheduler"   ->  runs as given
#
# A first argument that names a program on PATH runs as it is: the Airflow Helm chart passes whole
# commands as container arguments (`bash -c "exec airflow api-server"`), and Airflow's
# KubernetesExecutor does the same for each task (`python -m airflow.sdk.execution_time...`).
# No stanflow subcommand shares its name with a program in the image.
set -eu
if [ "$#" -gt 0 ] && command -v -- "$1" > /dev/null 2>&1; then
    exec "$@"
fi
exec stanflow "$@"
