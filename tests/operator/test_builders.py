"""Every builder is a pure function: plain asserts on the manifests it returns."""

import json
from typing import Any

from modelkube_operator.api.crd import structural_schema
from modelkube_operator.api.finetunejob import FineTuneJobSpec
from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.api.pods import RESERVED_ENV, RESERVED_ENV_PREFIX
from modelkube_operator.builders.adapters import AdapterPlan, plan_adapters
from modelkube_operator.builders.common import Owner
from modelkube_operator.builders.monitoring import build_servicemonitor
from modelkube_operator.builders.networking import build_service, service_name_problem, service_url
from modelkube_operator.builders.programs import ProgramPlan
from modelkube_operator.builders.runtime import build_configmap, build_deployment, settings_hash
from modelkube_operator.builders.scaling import build_hpa, build_pdb, build_scaledobject
from modelkube_operator.builders.training import build_job, build_trainer_rbac
from modelkube_operator.images import Images
from modelkube_operator.status.conditions import Cond, merge_conditions, transitions
from modelkube_operator.status.finetunejob import job_conditions, pending_reason, trainer_message
from modelkube_operator.status.modelservice import deployment_conditions, summary_fields

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


def test_the_engine_reaches_the_runtime_only_when_not_the_default() -> None:
    default = build_deployment(OWNER, spec(), NONE, "h")["spec"]["template"]["spec"]
    assert "--engine" not in default["containers"][0]["args"]
    assert "MODELKUBE_ENGINE" not in build_configmap(OWNER, spec(), NONE, NO_PROGRAMS)["data"]
    s = spec(runtime={"engine": "llamacpp"})
    args = build_deployment(OWNER, s, NONE, "h")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert args[args.index("--engine") + 1] == "$(MODELKUBE_ENGINE)"
    assert build_configmap(OWNER, s, NONE, NO_PROGRAMS)["data"]["MODELKUBE_ENGINE"] == "llamacpp"


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


def test_a_dora_fine_tune_is_not_handed_to_the_llamacpp_engine_and_says_why() -> None:
    done = {
        "conditions": [{"type": "Succeeded", "status": "True"}],
        "adapterURI": "pvc://adapters/ft",
    }
    jobs = {
        name: {"metadata": {"name": name}, "spec": {"method": method}, "status": done}
        for name, method in (("d", "dora"), ("l", "lora"))
    }
    adapters = [{"name": n, "fineTuneJobRef": {"name": n}} for n in jobs]
    llamacpp = spec(adapters=adapters, runtime={"engine": "llamacpp"})
    on_llamacpp = plan_adapters("chat", llamacpp, jobs)
    assert on_llamacpp.ready == (("l", "pvc://adapters/ft"),)
    assert on_llamacpp.waiting == (
        "d: FineTuneJob d trains a dora adapter, which the llama.cpp engine does not serve "
        "(it serves lora; use spec.runtime.engine mlx)",
    )
    on_mlx = plan_adapters("chat", spec(adapters=adapters), jobs)
    assert [name for name, _ in on_mlx.ready] == ["d", "l"]
    assert on_mlx.waiting == ()


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


def test_scale_down_delay_is_the_hpa_s_and_keda_s_stabilization_window() -> None:
    scaling = {"maxReplicas": 3, "target": 4}
    assert "behavior" not in (build_hpa(OWNER, spec(autoscaling=scaling)) or {})["spec"]
    delayed = spec(autoscaling={**scaling, "scaleDownDelaySeconds": 30})
    hpa = build_hpa(OWNER, delayed)
    assert hpa is not None
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 30}}
    keda_on = {"prometheusAddress": "http://prometheus:9090"}
    keda = spec(autoscaling={**scaling, "scaleDownDelaySeconds": 0, "keda": keda_on})
    scaled = build_scaledobject(OWNER, keda, keda_present=True)
    assert scaled is not None
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 0}}


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


def test_one_of_four_replicas_serves_but_is_degraded() -> None:
    unavailable = {
        "type": "Available",
        "status": "False",
        "reason": "MinimumReplicasUnavailable",
        "message": "Deployment does not have minimum availability.",
    }
    dep: dict[str, Any] = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 4},
        "status": {
            "observedGeneration": 1,
            "readyReplicas": 1,
            "updatedReplicas": 4,
            "conditions": [unavailable],
        },
    }
    conds = {c.type: c for c in deployment_conditions(spec(replicas=4), dep)}
    assert conds["Ready"].status and conds["Ready"].reason == "SomeReplicasReady"
    assert conds["Degraded"].status
    assert conds["Degraded"].message.startswith("only 1/4 replicas ready")
    starting = {**dep, "status": {**dep["status"], "readyReplicas": 0}}
    conds = {c.type: c for c in deployment_conditions(spec(replicas=4), starting)}
    assert not conds["Ready"].status and not conds["Degraded"].status


def test_finetune_status_from_job_conditions() -> None:
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert [c.status for c in job_conditions(done)] == [False, True, False]
    failed = {
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
        }
    }
    assert job_conditions(failed)[2].reason == "BackoffLimitExceeded"
    running = {"status": {"active": 1, "ready": 1}}
    assert job_conditions(running)[0].status


def test_a_training_pod_that_waits_is_pending_with_its_reason() -> None:
    waiting = {"status": {"active": 1, "ready": 0}}
    unschedulable = {
        "metadata": {"creationTimestamp": "2026-12-04T00:00:01Z"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available: pod has unbound immediate claims.",
                }
            ],
        },
    }
    running, succeeded, _ = job_conditions(waiting, "", pending_reason([unschedulable]))
    assert not running.status and running.reason == "Pending"
    assert "Unschedulable: 0/1 nodes are available: pod has unbound" in running.message
    assert succeeded.message == running.message
    pulling = {
        "metadata": {"creationTimestamp": "2026-12-04T00:00:02Z"},
        "status": {
            "containerStatuses": [
                {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}
            ]
        },
    }
    # The newest pod speaks.
    assert "ImagePullBackOff: no such image" in pending_reason([unschedulable, pulling])
    assert job_conditions(waiting)[0].message == "waiting for the training pod"


def test_a_service_needs_a_dns_label_where_a_modelservice_takes_a_subdomain() -> None:
    for name in ("tiny", "a", "llama-3-8b", "m" * 63):
        assert service_name_problem(name) == "", name
    for name in ("my.model", "3b", "-a", "a-", "m" * 64):
        assert "DNS-1035 label" in service_name_problem(name), name


# Images, pod settings and lifecycle (issue 15).

IMAGES = Images(runtime="reg.local/runtime:2", runtime_cuda="reg.local/runtime:2-cuda", trainer="")
FTJ_OWNER = Owner("modelkube.io/v1alpha1", "FineTuneJob", "run", "team-a", "uid-2")
FTJ = {
    "baseModel": {"uri": "builtin://tiny"},
    "dataset": {"configMapRef": {"name": "data", "key": "train.jsonl"}},
    "output": {"uri": "pvc://adapters/run"},
}


def _runtime(s: ModelServiceSpec) -> dict[str, Any]:
    container: dict[str, Any] = build_deployment(OWNER, s, NONE, "h", IMAGES)["spec"]["template"][
        "spec"
    ]["containers"][0]
    return container


def _job_pod(extra: dict[str, Any], images: Images = IMAGES) -> dict[str, Any]:
    ftj = FineTuneJobSpec.model_validate({**FTJ, **extra})
    pod: dict[str, Any] = build_job(FTJ_OWNER, ftj, images)["spec"]["template"]["spec"]
    return pod


def test_images_come_from_the_operator_unless_the_spec_pins_one() -> None:
    assert _runtime(spec())["image"] == "reg.local/runtime:2"
    gpu = spec(runtime={"resources": {"limits": {"nvidia.com/gpu": "1"}}})
    assert _runtime(gpu)["image"] == "reg.local/runtime:2-cuda"
    assert _runtime(spec(runtime={"image": "mine:1"}))["image"] == "mine:1"
    # Objects made under the old CRD carry its default image: they follow the operator too.
    legacy = spec(runtime={"image": "ghcr.io/modelkube/runtime:0.1.0"})
    assert _runtime(legacy)["image"] == "reg.local/runtime:2"
    assert _job_pod({})["containers"][0]["image"] == "reg.local/runtime:2"
    trainer = Images(runtime="r:1", runtime_cuda="r:1-cuda", trainer="t:1")
    assert _job_pod({}, trainer)["containers"][0]["image"] == "t:1"
    assert _job_pod({"trainer": {"image": "own:3"}})["containers"][0]["image"] == "own:3"


def test_images_are_read_from_the_operator_environment() -> None:
    env = {"MODELKUBE_RUNTIME_IMAGE": "a:1", "MODELKUBE_RUNTIME_CUDA_IMAGE": "a:1-cuda"}
    images = Images.from_environ(env)
    assert (images.runtime, images.runtime_cuda, images.trainer) == ("a:1", "a:1-cuda", "a:1")
    assert Images.from_environ({**env, "MODELKUBE_TRAINER_IMAGE": "t:2"}).trainer == "t:2"
    assert Images.from_environ({}).runtime.startswith("ghcr.io/modelkube/runtime:")


def test_the_crd_stamps_no_image_into_objects() -> None:
    """So an upgraded operator's image reaches every ModelService that did not pin one."""
    runtime = structural_schema(ModelServiceSpec)["properties"]["runtime"]["properties"]
    assert "default" not in runtime["image"]
    assert spec().runtime.image is None


def test_env_from_secrets_and_configmaps() -> None:
    env = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        {
            "name": "MODE",
            "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode", "optional": True}},
        },
        {"name": "PLAIN", "value": "1"},
        {"name": "EMPTY"},
    ]
    got = _runtime(spec(runtime={"env": env}))["env"]
    assert {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
    } in got
    assert {
        "name": "MODE",
        "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode", "optional": True}},
    } in got
    assert {"name": "PLAIN", "value": "1"} in got
    assert {"name": "EMPTY", "value": ""} in got
    trainer_env = _job_pod({"trainer": {"env": env[:1]}})["containers"][0]["env"]
    assert trainer_env[-1]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}


def test_scheduling_settings_reach_both_pods() -> None:
    settings = {
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
        "priorityClassName": "inference",
    }
    expected = {
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
        "priorityClassName": "inference",
    }
    pod = build_deployment(OWNER, spec(runtime=settings), NONE, "h", IMAGES)["spec"]["template"][
        "spec"
    ]
    job_pod = _job_pod({"trainer": settings})
    for key, value in expected.items():
        assert pod[key] == value, key
        assert job_pod[key] == value, key
    plain = build_deployment(OWNER, spec(), NONE, "h", IMAGES)["spec"]["template"]["spec"]
    assert not set(expected) & set(plain)


def test_default_requests_fill_what_the_spec_leaves_out() -> None:
    assert _runtime(spec())["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}}
    mine = spec(runtime={"resources": {"requests": {"cpu": "4"}, "limits": {"memory": "512Mi"}}})
    # No default memory request above a memory limit: Kubernetes requests the limit then.
    assert _runtime(mine)["resources"] == {
        "requests": {"cpu": "4"},
        "limits": {"memory": "512Mi"},
    }
    trainer = _job_pod({})["containers"][0]["resources"]
    assert trainer == {"requests": {"cpu": "1", "memory": "2Gi"}}


def test_drain_prestop_and_grace_period_follow_the_spec() -> None:
    s = spec(runtime={"drainSeconds": 120})
    pod = build_deployment(OWNER, s, NONE, "h", IMAGES)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert args[args.index("--drain-grace-period") + 1] == "120"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    # preStop, then the drain, then room to exit: SIGKILL never cuts a draining request.
    assert pod["terminationGracePeriodSeconds"] == 5 + 120 + 10
    default = build_deployment(OWNER, spec(), NONE, "h", IMAGES)["spec"]["template"]["spec"]
    assert default["terminationGracePeriodSeconds"] == 45


def test_startup_probe_waits_for_the_model_on_readyz() -> None:
    probe = _runtime(spec(runtime={"startupSeconds": 1800}))["startupProbe"]
    assert probe["httpGet"]["path"] == "/readyz"
    assert probe["periodSeconds"] * probe["failureThreshold"] == 1800
    default = _runtime(spec())["startupProbe"]
    assert default["periodSeconds"] * default["failureThreshold"] == 600


def test_a_loaded_model_is_ready_within_a_second_but_a_running_pod_is_probed_less() -> None:
    """Readiness and liveness start only once the startup probe passed, so its period is
    what a cold start waits after the model loaded; the probes of a running pod stay slow."""
    container = _runtime(spec())
    assert container["startupProbe"]["periodSeconds"] == 1
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert container["livenessProbe"]["periodSeconds"] == 10
    # The longest load the API allows (a day's download) still fits the startup probe.
    longest = _runtime(spec(runtime={"startupSeconds": 86400}))["startupProbe"]
    assert longest["failureThreshold"] == 86400


def test_rollout_needs_no_spare_accelerator_with_several_replicas() -> None:
    def strategy(s: ModelServiceSpec) -> dict[str, Any]:
        rolling: dict[str, Any] = build_deployment(OWNER, s, NONE, "h", IMAGES)["spec"]["strategy"][
            "rollingUpdate"
        ]
        return rolling

    assert strategy(spec(replicas=3)) == {"maxSurge": 0, "maxUnavailable": 1}
    assert strategy(spec(replicas=1)) == {"maxSurge": 1, "maxUnavailable": 0}
    scaled = spec(autoscaling={"minReplicas": 2, "maxReplicas": 4, "target": 8})
    assert strategy(scaled) == {"maxSurge": 0, "maxUnavailable": 1}
    assert strategy(spec(replicas=3, runtime={"rollout": {"maxSurge": 2}})) == {
        "maxSurge": 2,
        "maxUnavailable": 0,
    }
    assert strategy(spec(replicas=3, runtime={"rollout": {"maxUnavailable": 0}})) == {
        "maxSurge": 1,
        "maxUnavailable": 0,
    }


def test_training_job_has_a_deadline_a_ttl_and_a_retry_limit() -> None:
    job = build_job(FTJ_OWNER, FineTuneJobSpec.model_validate(FTJ), IMAGES)["spec"]
    assert job["activeDeadlineSeconds"] == 7 * 24 * 3600
    assert job["ttlSecondsAfterFinished"] == 24 * 3600
    assert job["backoffLimit"] == 2
    trainer = {"activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 0, "backoffLimit": 0}
    job = build_job(FTJ_OWNER, FineTuneJobSpec.model_validate({**FTJ, "trainer": trainer}), IMAGES)
    spec = job["spec"]
    assert (spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (3600, 0)
    assert spec["backoffLimit"] == 0


def test_a_long_claim_name_still_makes_valid_volume_names() -> None:
    claim = "c" * 63
    pod = _job_pod({"output": {"uri": f"pvc://{claim}/run"}})
    volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    assert len(volume["name"]) <= 63


def test_status_summary_names_the_model_replicas_and_image() -> None:
    dep = build_deployment(OWNER, spec(replicas=4), NONE, "h", IMAGES)
    dep["status"] = {"readyReplicas": 1}
    assert summary_fields(spec(replicas=4), dep) == {
        "model": "builtin://tiny",
        "replicasSummary": "1/4",
        "image": "reg.local/runtime:2",
    }
    proxy = ModelServiceSpec.model_validate(
        {"upstream": {"provider": "groq", "model": "llama-3.1-8b-instant"}}
    )
    assert summary_fields(proxy, None)["model"] == "groq/llama-3.1-8b-instant"
    assert summary_fields(proxy, None)["replicasSummary"] == "0/1"


def test_runtime_owned_env_names_cover_what_the_builders_set() -> None:
    """The CRD refuses env vars named like these; keep the rule in step with the builders."""
    s = spec(auth={"apiKeysSecretRef": {"name": "keys"}})
    names = [e["name"] for e in _runtime(s)["env"]]
    names += [e["name"] for e in _job_pod({})["containers"][0]["env"]]
    assert all(n.startswith(RESERVED_ENV_PREFIX) or n in RESERVED_ENV for n in names), names


def test_the_model_cache_is_a_claim_when_the_spec_names_one() -> None:
    def cache(s: ModelServiceSpec) -> dict[str, Any]:
        pod = build_deployment(OWNER, s, NONE, "h", IMAGES)["spec"]["template"]["spec"]
        volume: dict[str, Any] = next(v for v in pod["volumes"] if v["name"] == "cache")
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "cache")
        assert mount["mountPath"] == "/var/cache/modelkube" and not mount.get("readOnly")
        return volume

    assert cache(spec()) == {"name": "cache", "emptyDir": {}}
    bounded = spec(runtime={"modelCache": {"sizeLimit": "20Gi"}})
    assert cache(bounded) == {"name": "cache", "emptyDir": {"sizeLimit": "20Gi"}}
    shared = spec(runtime={"modelCache": {"claimName": "models-cache"}})
    assert cache(shared) == {
        "name": "cache",
        "persistentVolumeClaim": {"claimName": "models-cache"},
    }
    trainer = _job_pod({"trainer": {"modelCache": {"claimName": "models-cache"}}})
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "models-cache"}} in trainer[
        "volumes"
    ]
