"""Every builder is a pure function: plain asserts on the manifests it returns."""

import json

from modelkube_operator.api.finetunejob import FineTuneJobSpec
from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.adapters import AdapterPlan, plan_adapters
from modelkube_operator.builders.common import Owner
from modelkube_operator.builders.monitoring import build_servicemonitor
from modelkube_operator.builders.networking import build_service, service_name_problem, service_url
from modelkube_operator.builders.programs import ProgramPlan
from modelkube_operator.builders.runtime import build_configmap, build_deployment, settings_hash
from modelkube_operator.builders.scaling import build_hpa, build_pdb
from modelkube_operator.builders.training import build_job, build_trainer_rbac
from modelkube_operator.status.conditions import Cond, merge_conditions, transitions
from modelkube_operator.status.finetunejob import job_conditions, trainer_message
from modelkube_operator.status.modelservice import deployment_conditions

OWNER = Owner("modelkube.io/v1alpha1", "ModelService", "chat", "team-a", "uid-1", 3)
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


NONE = AdapterPlan()
NO_PROGRAMS = ProgramPlan()


def spec(**extra: object) -> ModelServiceSpec:
    return ModelServiceSpec.model_validate({"model": {"uri": "builtin://tiny"}, **extra})


def test_deployment_runs_the_runtime_restricted_with_probes() -> None:
    s = spec(replicas=2)
    dep = build_deployment(OWNER, s, NONE, "abc")
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:3] == ["serve", "--model", "$(MODELKUBE_MODEL)"]
    assert container["securityContext"] == RESTRICTED
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert dep["spec"]["template"]["metadata"]["annotations"]["modelkube.io/settings-hash"] == "abc"
    assert dep["spec"]["selector"]["matchLabels"] == {"modelkube.io/modelservice": "chat"}


def test_api_keys_secret_is_mounted_and_passed() -> None:
    s = spec(auth={"apiKeysSecretRef": {"name": "keys", "key": "list"}})
    pod = build_deployment(OWNER, s, NONE, "h")["spec"]["template"]["spec"]
    assert {"name": "api-keys", "secret": {"secretName": "keys"}} in pod["volumes"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--api-keys-file") + 1] == "/etc/modelkube/keys/list"


def test_pvc_model_is_mounted_read_only() -> None:
    pod = build_deployment(OWNER, spec(model={"uri": "pvc://models/llama"}), NONE, "h")["spec"][
        "template"
    ]["spec"]
    assert {
        "name": "claim-0",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "claim-0", "mountPath": "/mnt/models/models", "readOnly": True} in mounts


def test_settings_hash_follows_the_settings_but_not_the_adapters() -> None:
    a = settings_hash(build_configmap(OWNER, spec(), NONE, NO_PROGRAMS))
    b = settings_hash(
        build_configmap(OWNER, spec(runtime={"maxConcurrentRequests": 8}), NONE, NO_PROGRAMS)
    )
    assert a != b
    assert a == settings_hash(build_configmap(OWNER, spec(), NONE, NO_PROGRAMS))
    tuned = AdapterPlan(ready=(("tuned", "pvc://adapters/tuned"),))
    configmap = build_configmap(OWNER, spec(), tuned, NO_PROGRAMS)
    assert json.loads(configmap["data"]["adapters.json"]) == {
        "adapters": [{"name": "tuned", "uri": "pvc://adapters/tuned"}]
    }
    assert settings_hash(configmap) == a, "a new adapter must not roll the pods"


def test_adapters_wait_for_their_fine_tune_and_their_claims_are_mounted_up_front() -> None:
    s = spec(
        adapters=[
            {"name": "static", "uri": "pvc://shared/static"},
            {"name": "tuned", "fineTuneJobRef": {"name": "ft"}},
            {"name": "missing", "fineTuneJobRef": {"name": "nope"}},
        ]
    )
    training = {
        "metadata": {"name": "ft"},
        "spec": {"output": {"uri": "pvc://adapters/ft"}},
        "status": {"progress": {"percent": 40}},
    }
    labelled = {
        "metadata": {"name": "api-job", "labels": {"modelkube.io/model-service": "chat"}},
        "spec": {"output": {"uri": "pvc://adapters/api-job"}},
        "status": {
            "conditions": [{"type": "Succeeded", "status": "True"}],
            "adapterURI": "pvc://adapters/api-job",
        },
    }
    plan = plan_adapters("chat", s, {"ft": training, "api-job": labelled})
    assert plan.ready == (
        ("static", "pvc://shared/static"),
        ("api-job", "pvc://adapters/api-job"),
    )
    assert plan.waiting == (
        "tuned: FineTuneJob ft is training (40%)",
        "missing: FineTuneJob nope does not exist",
    )
    assert plan.claims == ("adapters", "shared")
    pod = build_deployment(OWNER, s, plan, "h")["spec"]["template"]["spec"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"adapters", "shared"}
    args = pod["containers"][0]["args"]
    assert args[args.index("--adapters-file") + 1] == "/etc/modelkube/adapters/adapters.json"
    done = {
        **training,
        "status": {
            "conditions": [{"type": "Succeeded", "status": "True"}],
            "adapterURI": "pvc://adapters/ft",
        },
    }
    assert ("tuned", "pvc://adapters/ft") in plan_adapters("chat", s, {"ft": done}).ready


def test_autoscaling_builds_an_hpa_and_leaves_replicas_to_it() -> None:
    s = spec(autoscaling={"minReplicas": 2, "maxReplicas": 5, "target": 8})
    hpa = build_hpa(OWNER, s)
    assert hpa is not None
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "modelkube_requests_in_flight"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert "replicas" not in build_deployment(OWNER, s, NONE, "h")["spec"]
    cpu = build_hpa(OWNER, spec(autoscaling={"maxReplicas": 3, "metric": "cpu", "target": 70}))
    assert cpu is not None
    assert cpu["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert build_hpa(OWNER, spec()) is None


def test_pdb_only_with_more_than_one_replica() -> None:
    assert build_pdb(OWNER, spec(replicas=1)) is None
    pdb = build_pdb(OWNER, spec(replicas=3))
    assert pdb is not None
    assert pdb["spec"]["maxUnavailable"] == 1


def test_servicemonitor_needs_both_the_flag_and_the_crd() -> None:
    on = spec(monitoring={"serviceMonitor": True})
    assert build_servicemonitor(OWNER, on, crd_present=False) is None
    assert build_servicemonitor(OWNER, spec(), crd_present=True) is None
    monitor = build_servicemonitor(OWNER, on, crd_present=True)
    assert monitor is not None
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_service_and_url() -> None:
    svc = build_service(OWNER)
    assert svc["spec"]["ports"][0]["port"] == 8000
    assert service_url(OWNER) == "http://chat.team-a.svc:8000/v1"


def test_job_runs_modelkube_finetune_with_the_hyperparameters() -> None:
    ftj = FineTuneJobSpec.model_validate(
        {
            "baseModel": {"uri": "builtin://tiny"},
            "dataset": {"configMapRef": {"name": "data", "key": "train.jsonl"}},
            "hyperparameters": {"iterations": 30, "learningRate": "2e-4"},
            "output": {"uri": "pvc://adapters/run-1"},
        }
    )
    owner = Owner("modelkube.io/v1alpha1", "FineTuneJob", "run-1", "team-a", "uid-2")
    job = build_job(owner, ftj)
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "finetune"
    assert args[args.index("--iterations") + 1] == "30"
    assert args[args.index("--learning-rate") + 1] == "2e-4"
    assert args[args.index("--output") + 1] == "/mnt/models/adapters/run-1"
    assert args[args.index("--data") + 1] == "/etc/modelkube/dataset/train.jsonl"
    assert container["securityContext"] == RESTRICTED
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "run-1-trainer"
    assert {"name": "MODELKUBE_FINETUNEJOB", "value": "run-1"} in container["env"]
    assert job["spec"]["suspend"] is False
    assert "--num-layers" not in args  # the trainer picks 16, or all of a smaller model
    (rule,) = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2]


def test_a_failed_job_says_what_the_trainer_said() -> None:
    def pod(created: str, phase: str, message: str) -> dict[str, object]:
        terminated = {"exitCode": 1, "message": message}
        return {
            "metadata": {"creationTimestamp": created},
            "status": {
                "phase": phase,
                "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}],
            },
        }

    pods = [
        pod("t1", "Failed", "old"),
        pod("t2", "Failed", "line 3:\n bad"),
        pod("t3", "Running", ""),
    ]
    assert trainer_message(pods) == "line 3: bad"
    job = {"status": {"conditions": [{"type": "Failed", "status": "True", "message": "limit"}]}}
    failed = job_conditions(job, "line 3: bad")[2]
    assert failed.status and failed.message == "line 3: bad (limit)"


def test_the_training_pod_may_patch_its_own_status_and_nothing_else() -> None:
    owner = Owner("modelkube.io/v1alpha1", "FineTuneJob", "run-1", "team-a", "uid-2")
    account, role, binding = build_trainer_rbac(owner)
    assert account["automountServiceAccountToken"] is False
    assert role["rules"] == [
        {
            "apiGroups": ["modelkube.io"],
            "resources": ["finetunejobs/status"],
            "resourceNames": ["run-1"],
            "verbs": ["get", "patch"],
        }
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "run-1-trainer", "namespace": "team-a"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == "run-1-trainer"


def test_conditions_keep_their_transition_time_until_status_changes() -> None:
    first = merge_conditions([], [Cond("Ready", False, "NoReplicasReady")], 1, "t1")
    same = merge_conditions(first, [Cond("Ready", False, "NoReplicasReady", "0/2")], 1, "t2")
    assert same[0]["lastTransitionTime"] == "t1"
    assert transitions(first, same) == []
    flipped = merge_conditions(same, [Cond("Ready", True, "AllReplicasReady")], 2, "t3")
    assert flipped[0]["lastTransitionTime"] == "t3"
    assert [c["type"] for c in transitions(same, flipped)] == ["Ready"]


def test_status_from_deployment_state() -> None:
    dep = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 2},
    }
    conds = {c.type: c for c in deployment_conditions(spec(replicas=2), dep)}
    assert conds["Ready"].status and conds["Ready"].reason == "AllReplicasReady"
    assert not conds["Progressing"].status
    stuck = {
        **dep,
        "status": {
            "observedGeneration": 2,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "m",
                }
            ],
        },
    }
    conds = {c.type: c for c in deployment_conditions(spec(replicas=2), stuck)}
    assert not conds["Ready"].status
    assert conds["Degraded"].status and conds["Degraded"].reason == "ProgressDeadlineExceeded"


def test_finetune_status_from_job_conditions() -> None:
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert [c.status for c in job_conditions(done)] == [False, True, False]
    failed = {
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
        }
    }
    assert job_conditions(failed)[2].reason == "BackoffLimitExceeded"
    running = {"status": {"active": 1}}
    assert job_conditions(running)[0].status


def test_a_service_needs_a_dns_label_where_a_modelservice_takes_a_subdomain() -> None:
    for name in ("tiny", "a", "llama-3-8b", "m" * 63):
        assert service_name_problem(name) == "", name
    for name in ("my.model", "3b", "-a", "a-", "m" * 64):
        assert "DNS-1035 label" in service_name_problem(name), name
