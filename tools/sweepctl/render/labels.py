"""THE vocabulary of Kubernetes label and annotation names sweepctl writes or reads.

One spelling each: render/ writes them, backends/ selects and compares by them. Names
Kubernetes or Kueue define are here too, because sweepctl depends on their exact text.
"""

from __future__ import annotations

# labels: what selectors find (reconcile, status, cancel, the headless Service)
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "sweepctl"
LABEL_EXPERIMENT = "sweepctl.io/experiment"
LABEL_TRIAL_ID = "sweepctl.io/trial-id"
# Kueue reads the LocalQueue from the Job's own labels (not the pod template's)
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
# set by the Job controller on its pods (Kubernetes >= 1.27); the multi-node Service selects
# on it because it is unique per Job name in a namespace and no one else can set it on a Job
LABEL_JOB_NAME = "batch.kubernetes.io/job-name"

# annotations: what a human or launch reads back, never selected on
ANNOTATION_TRIAL = "sweepctl.io/trial"
ANNOTATION_GIT_SHA = "sweepctl.io/git-sha"
ANNOTATION_PR = "sweepctl.io/pr"
ANNOTATION_SPEC_HASH = "sweepctl.io/spec-hash"           # the work: Job (+ Service) + train config
ANNOTATION_EXPERIMENT_SPEC = "sweepctl.io/experiment-spec-hash"
ANNOTATION_CONFIG_HASH = "sweepctl.io/config-hash"       # the exact ConfigMap data a pod mounts
# set by the Job controller on each pod of an Indexed Job: the pod's index (NODE_RANK)
ANNOTATION_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
