#!/usr/bin/env bash
# The documented alternative to tpu_cluster.sh: the same Ray cluster on GKE with KubeRay — a GKE
# cluster, a TPU node pool of N single-host v4-8 nodes (Spot with --spot: GKE re-creates a
# preempted node and KubeRay its Ray pod, which rejoins), the KubeRay operator, a RayCluster (a
# CPU head pod, no actor; one worker pod per TPU node offering gancmp_host), and the sweep's
# driver in the head pod.
#
#   experiments/ray/kuberay.sh [--dry_run] [--spot] NAME ZONE N GS_WORKDIR [SWEEP_CONFIG]
#       [-- GANCMP_SWEEP_FLAGS...]
#
# --dry_run prints every command (and the RayCluster manifest) instead of running it.
# Environment: IMAGE (a container image with this checkout installed as gancmp[cluster] and
# jax[tpu]; default gcr.io/PROJECT/gancmp:COMMIT, built by you: `docker build` of a Dockerfile
# that runs the TPU setup of tpu_cluster.sh), PROJECT, DATA_DIR, INCEPTION_WEIGHTS.
# The pods reach gs:// through Workload Identity (GKE docs: "Access Cloud Storage buckets").
# Teardown: printed at the end.
set -euo pipefail
usage_lines='2,16p'
# shellcheck source=experiments/ray/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_args "$@"

image=${IMAGE:-gcr.io/${PROJECT:-PROJECT}/gancmp:${commit:0:12}}
kind=()
if [ "$spot" = 1 ]; then kind=(--spot); fi
run gcloud container clusters create "$name" --zone "$zone" "${project[@]}" \
  --machine-type e2-standard-8 --num-nodes 1 --workload-pool "${PROJECT:-PROJECT}.svc.id.goog"
run gcloud container node-pools create "$name-tpu" --cluster "$name" --zone "$zone" \
  "${project[@]}" --machine-type ct4p-hightpu-4t --tpu-topology 2x2x1 --num-nodes "$count" \
  "${kind[@]}"
run helm repo add kuberay https://ray-project.github.io/kuberay-helm/
run helm install kuberay-operator kuberay/kuberay-operator

manifest="apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: $name
spec:
  headGroupSpec:
    rayStartParams: {num-cpus: \"0\"}
    template:
      spec:
        containers:
        - name: ray-head
          image: $image
          resources: {requests: {cpu: \"4\", memory: 16Gi}}
  workerGroupSpecs:
  - groupName: tpu-v4-8
    replicas: $count
    minReplicas: $count
    maxReplicas: $count
    numOfHosts: 1
    rayStartParams: {resources: '\"{\\\"gancmp_host\\\": 1}\"'}
    template:
      spec:
        nodeSelector:
          cloud.google.com/gke-tpu-accelerator: tpu-v4-podslice
          cloud.google.com/gke-tpu-topology: 2x2x1
        containers:
        - name: ray-worker
          image: $image
          resources: {requests: {google.com/tpu: \"4\"}, limits: {google.com/tpu: \"4\"}}"
if [ "$dry_run" = 1 ]; then
  printf '%s\n' "$manifest"
else
  printf '%s\n' "$manifest" >"/tmp/raycluster-$name.yaml"
fi
run kubectl apply -f "/tmp/raycluster-$name.yaml"
run kubectl wait --for=condition=RayClusterProvisioned "raycluster/$name" --timeout=30m

args=(gancmp sweep --engine ray --ray_address 127.0.0.1:6379 --config "$sweep"
      --workdir "$workdir" --noprogress --compilation_cache "$workdir/xla")
if [ -n "${DATA_DIR:-}" ]; then args+=(--trial "data_dir=$DATA_DIR"); fi
if [ -n "${INCEPTION_WEIGHTS:-}" ]; then args+=(--trial "fid.inception_weights=$INCEPTION_WEIGHTS"); fi
args+=("${extra[@]}")
run kubectl exec "service/$name-head-svc" -- bash -c \
  "GANCMP_GIT_COMMIT=$commit nohup $(printf '%q ' "${args[@]}")>/tmp/sweep.log 2>&1 </dev/null &"
echo "progress: kubectl exec service/$name-head-svc -- tail /tmp/sweep.log"
echo "teardown: kubectl delete raycluster $name; gcloud container clusters delete $name" \
  "--zone $zone --quiet"
