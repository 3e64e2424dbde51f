"""The types of a CronWorkflow's `workflowSpec`, written as data: Argo's Workflow schema.

`scheduler.manifests.workflow_schema` checks a `workflowSpec` against `WORKFLOW_SPEC`; this
module only declares it, with a few small constructors (`Scalar`, `Enum`, `ListOf`, `MapOf`,
`Obj`, and `OPEN` and `ANY` for what is not modelled), so that a field Argo adds is one line
here and the checker does not change for it.

Choices, and what they trade:
- The schema is written here, compactly, from Argo's Go types and its full CRD (v4.1.2, and
  the fields v3.4 to v3.7 still had, so that a spec valid for an older Argo is not refused).
  Argo's own types (templates, steps, DAG tasks, parameters, artifacts, retry strategies...)
  are closed: an unknown field is reported with a "did you mean". Kubernetes' core types
  nested deeper (affinity, probes, security contexts, volume sources...) are `OPEN`: any
  mapping, unknown fields unreported. That misses some mistakes, but a field Argo or
  Kubernetes knows is never reported unknown: a false alarm is worse than a miss.
- Scalars follow the API server: a string field refuses `3` (quote it), an integer field
  refuses `"3"`. Parameter values are Argo's AnyString (string, integer, number or boolean),
  quantities (`cpu: 0.5`) accept numbers.
- Beyond the CRD, a template and a step must have a name (Argo's validation refuses them
  otherwise, `template name is required`); `templateDefaults` need not.
- Each object carries the help for its common mistakes (`shorthand`, `example`, a list's
  `hint`) and the fields a recent Argo removed (`deprecated`), next to the fields they are
  about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "ANY",
    "ANY_STRING",
    "BOOL",
    "INT",
    "INT_OR_STRING",
    "NUM",
    "OPEN",
    "QUANTITY",
    "STR",
    "WORKFLOW_SPEC",
    "AnyValue",
    "Enum",
    "ListOf",
    "MapOf",
    "Obj",
    "OpenMapping",
    "Scalar",
    "Schema",
]


# --- The constructors -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Scalar:
    """A leaf: `expected` says what it must be ("a string"), `kinds` what Python types pass."""

    expected: str
    kinds: tuple[type, ...]
    integral: bool = False  # numbers must be whole (an integral float passes, as in JSON)


@dataclass(frozen=True, eq=False)
class Enum:
    """A string out of a fixed set (the CRD's `enum`)."""

    values: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class ListOf:
    """A list of `item`s; `hint` is added when the value is not a list at all."""

    item: Schema
    hint: str | None = None


@dataclass(frozen=True, eq=False)
class MapOf:
    """A mapping of string keys to `value`s (labels, nodeSelector, hooks...)."""

    value: Schema


@dataclass(frozen=True, eq=False)
class Obj:
    """A closed object: its fields, those required, and help for the common mistakes.

    `shorthand` names the field a scalar given in place of the object was probably meant for
    (`podGC: OnPodCompletion` → `podGC: {strategy: OnPodCompletion}`); `example` is shown when
    there is none. `deprecated` maps a field Argo removed to what to write instead.
    """

    fields: Mapping[str, Schema]
    required: tuple[str, ...] = ()
    shorthand: str | None = None
    example: str | None = None
    deprecated: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [name for name in (*self.required, *self.deprecated) if name not in self.fields]
        if unknown or (self.shorthand is not None and self.shorthand not in self.fields):
            raise ValueError(f"schema names fields it does not declare: {unknown}")

    def extend(self, fields: Mapping[str, Schema], required: tuple[str, ...] = ()) -> Obj:
        """The same object with more fields (a sidecar is a container with more)."""
        return Obj(
            {**self.fields, **fields},
            required=(*self.required, *required),
            shorthand=self.shorthand,
            example=self.example,
            deprecated=self.deprecated,
        )

    def with_required(self, required: tuple[str, ...]) -> Obj:
        return Obj(
            self.fields,
            required=required,
            shorthand=self.shorthand,
            example=self.example,
            deprecated=self.deprecated,
        )


@dataclass(frozen=True, eq=False)
class OpenMapping:
    """Any mapping: a Kubernetes type not modelled field by field."""


@dataclass(frozen=True, eq=False)
class AnyValue:
    """Any value at all (`withItems` items, which Argo keeps as they are)."""


Schema: TypeAlias = Scalar | Enum | ListOf | MapOf | Obj | OpenMapping | AnyValue

STR = Scalar("a string", (str,))
BOOL = Scalar("true or false", (bool,))
INT = Scalar("an integer", (int, float), integral=True)
NUM = Scalar("a number", (int, float))
INT_OR_STRING = Scalar("an integer or a string", (int, float, str), integral=True)
# Kubernetes quantities (`cpu: 0.5`, `memory: 1Gi`): the client libraries accept numbers.
QUANTITY = Scalar("a quantity such as 500m or 1Gi", (int, float, str))
ANY_STRING = Scalar("a string, a number or a boolean", (str, int, float, bool))
OPEN = OpenMapping()
ANY = AnyValue()


# --- Argo's types, and the Kubernetes types a template uses ----------------------------------

STRINGS = ListOf(STR)
LABELS = MapOf(STR)
METADATA = Obj({"annotations": LABELS, "labels": LABELS})
KEY_SELECTOR = Obj({"key": STR, "name": STR, "optional": BOOL}, required=("key",))
NAME_REF = Obj({"name": STR, "optional": BOOL})

PARAMETER = Obj(
    {
        "name": STR,
        "value": ANY_STRING,
        "default": ANY_STRING,
        "description": ANY_STRING,
        "enum": ListOf(ANY_STRING),
        "globalName": STR,
        "valueFrom": Obj(
            {
                "configMapKeyRef": KEY_SELECTOR,
                "default": ANY_STRING,
                "event": STR,
                "expression": STR,
                "jqFilter": STR,
                "jsonPath": STR,
                "parameter": STR,
                "path": STR,
                "supplied": OPEN,
            }
        ),
    },
    required=("name",),
)

_S3 = Obj(
    {
        "accessKeySecret": KEY_SELECTOR,
        "addressingStyle": STR,
        "bucket": STR,
        "caSecret": KEY_SELECTOR,
        "createBucketIfNotPresent": Obj({"objectLocking": BOOL}),
        "encryptionOptions": Obj(
            {
                "enableEncryption": BOOL,
                "kmsEncryptionContext": STR,
                "kmsKeyId": STR,
                "serverSideCustomerKeySecret": KEY_SELECTOR,
            }
        ),
        "endpoint": STR,
        "insecure": BOOL,
        "key": STR,
        "region": STR,
        "roleARN": STR,
        "secretKeySecret": KEY_SELECTOR,
        "sessionTokenSecret": KEY_SELECTOR,
        "useSDKCreds": BOOL,
    }
)
_HTTP_AUTH = Obj(
    {
        "basicAuth": Obj({"passwordSecret": KEY_SELECTOR, "usernameSecret": KEY_SELECTOR}),
        "clientCert": Obj({"clientCertSecret": KEY_SELECTOR, "clientKeySecret": KEY_SELECTOR}),
        "oauth2": Obj(
            {
                "clientIDSecret": KEY_SELECTOR,
                "clientSecretSecret": KEY_SELECTOR,
                "endpointParams": ListOf(Obj({"key": STR, "value": STR}, required=("key",))),
                "scopes": STRINGS,
                "tokenURLSecret": KEY_SELECTOR,
            }
        ),
    }
)
ARTIFACT_LOCATIONS: Mapping[str, Schema] = {
    "archiveLogs": BOOL,
    "artifactory": Obj(
        {"passwordSecret": KEY_SELECTOR, "url": STR, "usernameSecret": KEY_SELECTOR},
        required=("url",),
    ),
    "azure": Obj(
        {
            "accountKeySecret": KEY_SELECTOR,
            "blob": STR,
            "container": STR,
            "endpoint": STR,
            "useSDKCreds": BOOL,
        },
        required=("blob", "container", "endpoint"),
    ),
    "gcs": Obj(
        {"bucket": STR, "key": STR, "serviceAccountKeySecret": KEY_SELECTOR}, required=("key",)
    ),
    "git": Obj(
        {
            "branch": STR,
            "depth": INT,
            "disableSubmodules": BOOL,
            "fetch": STRINGS,
            "insecureIgnoreHostKey": BOOL,
            "insecureSkipTLS": BOOL,
            "passwordSecret": KEY_SELECTOR,
            "repo": STR,
            "revision": STR,
            "singleBranch": BOOL,
            "sshPrivateKeySecret": KEY_SELECTOR,
            "usernameSecret": KEY_SELECTOR,
        },
        required=("repo",),
    ),
    "hdfs": Obj(
        {
            "addresses": STRINGS,
            "dataTransferProtection": STR,
            "force": BOOL,
            "hdfsUser": STR,
            "krbCCacheSecret": KEY_SELECTOR,
            "krbConfigConfigMap": KEY_SELECTOR,
            "krbKeytabSecret": KEY_SELECTOR,
            "krbRealm": STR,
            "krbServicePrincipalName": STR,
            "krbUsername": STR,
            "path": STR,
        },
        required=("path",),
    ),
    "http": Obj(
        {
            "auth": _HTTP_AUTH,
            "headers": ListOf(Obj({"name": STR, "value": STR}, required=("name", "value"))),
            "saveStreamViaFile": BOOL,
            "url": STR,
        },
        required=("url",),
    ),
    "oss": Obj(
        {
            "accessKeySecret": KEY_SELECTOR,
            "bucket": STR,
            "createBucketIfNotPresent": BOOL,
            "endpoint": STR,
            "key": STR,
            "lifecycleRule": Obj(
                {"markDeletionAfterDays": INT, "markInfrequentAccessAfterDays": INT}
            ),
            "secretKeySecret": KEY_SELECTOR,
            "securityToken": STR,
            "useSDKCreds": BOOL,
        },
        required=("key",),
    ),
    "plugin": Obj(
        {"configuration": STR, "connectionTimeoutSeconds": INT, "key": STR, "name": STR},
        required=("key",),
    ),
    "raw": Obj({"data": STR}, required=("data",)),
    "s3": _S3,
}
ARTIFACT_GC = Obj(
    {
        "podMetadata": METADATA,
        "serviceAccountName": STR,
        "strategy": Enum(("", "OnWorkflowCompletion", "OnWorkflowDeletion", "Never")),
    }
)
ARTIFACT_FIELDS: Mapping[str, Schema] = {
    **ARTIFACT_LOCATIONS,
    "name": STR,
    "path": STR,
    "mode": INT,
    "from": STR,
    "fromExpression": STR,
    "globalName": STR,
    "subPath": STR,
    "optional": BOOL,
    "recurseMode": BOOL,
    "deleted": BOOL,
    "archive": Obj({"none": OPEN, "tar": Obj({"compressionLevel": INT}), "zip": OPEN}),
    "artifactGC": ARTIFACT_GC,
}
ARTIFACT = Obj(ARTIFACT_FIELDS, required=("name",))

_PARAMETERS_HINT = "write parameters: [{name: message, value: hello}]"
ARGUMENTS = Obj(
    {
        "parameters": ListOf(PARAMETER, hint=_PARAMETERS_HINT),
        "artifacts": ListOf(ARTIFACT, hint="write artifacts: [{name: data, from: ...}]"),
    },
    example="{parameters: [{name: message, value: hello}]}",
)
INPUTS = Obj({"parameters": ARGUMENTS.fields["parameters"], "artifacts": ListOf(ARTIFACT)})
OUTPUTS = INPUTS.extend({"result": STR, "exitCode": STR})

TEMPLATE_REF = Obj({"name": STR, "template": STR, "clusterScope": BOOL})
LIFECYCLE_HOOK = Obj(
    {"template": STR, "templateRef": TEMPLATE_REF, "arguments": ARGUMENTS, "expression": STR},
    shorthand="template",
)
HOOKS = MapOf(LIFECYCLE_HOOK)

SEQUENCE = Obj(
    {"count": INT_OR_STRING, "start": INT_OR_STRING, "end": INT_OR_STRING, "format": STR}
)
STEP_FIELDS: Mapping[str, Schema] = {
    "name": STR,
    "template": STR,
    "templateRef": TEMPLATE_REF,
    "inline": OPEN,  # a Template; the CRD keeps it as it is (x-kubernetes-preserve-unknown-fields)
    "arguments": ARGUMENTS,
    "when": STR,
    "withItems": ListOf(ANY),
    "withParam": STR,
    "withSequence": SEQUENCE,
    "continueOn": Obj({"error": BOOL, "failed": BOOL}),
    "onExit": STR,
    "hooks": HOOKS,
}
WORKFLOW_STEP = Obj(STEP_FIELDS, required=("name",))
DAG_TASK = Obj(
    {
        **STEP_FIELDS,
        "dependencies": ListOf(STR, hint="write dependencies: [task-a, task-b]"),
        "depends": STR,
    },
    required=("name",),
)
_STEPS_HINT = (
    "steps is a list of groups, each a list of steps that run in parallel: "
    "write steps: [[{name: first, template: a}], [{name: second, template: b}]]"
)

ENV_VAR = Obj(
    {
        "name": STR,
        "value": STR,
        "valueFrom": Obj(
            {
                "configMapKeyRef": KEY_SELECTOR,
                "secretKeyRef": KEY_SELECTOR,
                "fieldRef": OPEN,
                "resourceFieldRef": OPEN,
                "fileKeyRef": OPEN,
            }
        ),
    },
    required=("name",),
)
VOLUME_MOUNT = Obj(
    {
        "name": STR,
        "mountPath": STR,
        "mountPropagation": STR,
        "readOnly": BOOL,
        "recursiveReadOnly": STR,
        "subPath": STR,
        "subPathExpr": STR,
    },
    required=("mountPath", "name"),
)
RESOURCES = Obj({"limits": MapOf(QUANTITY), "requests": MapOf(QUANTITY), "claims": ListOf(OPEN)})
CONTAINER = Obj(
    {
        "name": STR,
        "image": STR,
        "command": ListOf(STR, hint="write command: [sh, -c] (one item per argument)"),
        "args": ListOf(STR, hint='write args: ["echo hello"] (one item per argument)'),
        "workingDir": STR,
        "env": ListOf(ENV_VAR, hint="write env: [{name: GREETING, value: hello}]"),
        "envFrom": ListOf(Obj({"configMapRef": NAME_REF, "secretRef": NAME_REF, "prefix": STR})),
        "ports": ListOf(
            Obj(
                {
                    "containerPort": INT,
                    "hostIP": STR,
                    "hostPort": INT,
                    "name": STR,
                    "protocol": STR,
                },
                required=("containerPort",),
            )
        ),
        "resources": RESOURCES,
        "resizePolicy": ListOf(OPEN),
        "restartPolicy": STR,
        "restartPolicyRules": ListOf(OPEN),
        "volumeMounts": ListOf(VOLUME_MOUNT),
        "volumeDevices": ListOf(
            Obj({"devicePath": STR, "name": STR}, required=("devicePath", "name"))
        ),
        "imagePullPolicy": STR,
        "securityContext": OPEN,
        "lifecycle": OPEN,
        "livenessProbe": OPEN,
        "readinessProbe": OPEN,
        "startupProbe": OPEN,
        "stdin": BOOL,
        "stdinOnce": BOOL,
        "tty": BOOL,
        "terminationMessagePath": STR,
        "terminationMessagePolicy": STR,
    }
)
USER_CONTAINER = CONTAINER.extend({"mirrorVolumeMounts": BOOL}, required=("name",))
SCRIPT = CONTAINER.extend({"source": STR})

# The volume sources of Kubernetes' core Volume, each a core type not modelled further.
_VOLUME_SOURCES = (
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
)
VOLUME = Obj({"name": STR, **dict.fromkeys(_VOLUME_SOURCES, OPEN)}, required=("name",))
PERSISTENT_VOLUME_CLAIM = Obj(
    {"apiVersion": STR, "kind": STR, "metadata": OPEN, "spec": OPEN, "status": OPEN}
)

RETRY_STRATEGY = Obj(
    {
        "limit": INT_OR_STRING,
        "retryPolicy": Enum(("Always", "OnFailure", "OnError", "OnTransientError")),
        "expression": STR,
        "backoff": Obj({"duration": STR, "factor": INT_OR_STRING, "maxDuration": STR, "cap": STR}),
        "affinity": Obj({"nodeAntiAffinity": OPEN}),
    },
    shorthand="limit",
)
SYNCHRONIZATION = Obj(
    {
        "mutexes": ListOf(Obj({"name": STR, "namespace": STR, "database": BOOL})),
        "semaphores": ListOf(
            Obj(
                {
                    "configMapKeyRef": KEY_SELECTOR,
                    "database": Obj({"key": STR}, required=("key",)),
                    "namespace": STR,
                }
            )
        ),
        "mutex": Obj({"name": STR, "namespace": STR, "database": BOOL}),
        "semaphore": Obj(
            {
                "configMapKeyRef": KEY_SELECTOR,
                "database": Obj({"key": STR}, required=("key",)),
                "namespace": STR,
            }
        ),
    },
    deprecated={
        "mutex": "deprecated in Argo 3.6 and removed in 4.0; write mutexes: [{name: ...}]",
        "semaphore": (
            "deprecated in Argo 3.6 and removed in 4.0; "
            "write semaphores: [{configMapKeyRef: {name: ..., key: ...}}]"
        ),
    },
)
METRICS = Obj(
    {
        "prometheus": ListOf(
            Obj(
                {
                    "name": STR,
                    "help": STR,
                    "labels": ListOf(Obj({"key": STR, "value": STR}, required=("key", "value"))),
                    "when": STR,
                    "counter": Obj({"value": STR}, required=("value",)),
                    "gauge": Obj(
                        {"value": STR, "realtime": BOOL, "operation": STR},
                        required=("realtime", "value"),
                    ),
                    "histogram": Obj(
                        {"value": STR, "buckets": ListOf(NUM)}, required=("buckets", "value")
                    ),
                },
                required=("help", "name"),
            )
        )
    },
    required=("prometheus",),
)

TEMPLATE = Obj(
    {
        "name": STR,
        "inputs": INPUTS,
        "outputs": OUTPUTS,
        "container": CONTAINER,
        "script": SCRIPT,
        "containerSet": Obj(
            {
                "containers": ListOf(
                    CONTAINER.extend({"dependencies": STRINGS}, required=("name",))
                ),
                "volumeMounts": ListOf(VOLUME_MOUNT),
                "retryStrategy": Obj(
                    {"retries": INT_OR_STRING, "duration": STR}, required=("retries",)
                ),
            },
            required=("containers",),
        ),
        "steps": ListOf(ListOf(WORKFLOW_STEP, hint=_STEPS_HINT), hint=_STEPS_HINT),
        "dag": Obj(
            {"tasks": ListOf(DAG_TASK), "target": STR, "failFast": BOOL}, required=("tasks",)
        ),
        "resource": Obj(
            {
                "action": Enum(("get", "create", "apply", "delete", "replace", "patch")),
                "manifest": STR,
                "manifestFrom": Obj({"artifact": ARTIFACT}, required=("artifact",)),
                "mergeStrategy": Enum(("strategic", "merge", "json")),
                "successCondition": STR,
                "failureCondition": STR,
                "setOwnerReference": BOOL,
                "flags": STRINGS,
            },
            required=("action",),
        ),
        "suspend": Obj({"duration": STR}, example="{} (or {duration: 10m})"),
        "http": Obj(
            {
                "url": STR,
                "method": STR,
                "headers": ListOf(
                    Obj(
                        {
                            "name": STR,
                            "value": STR,
                            "valueFrom": Obj({"secretKeyRef": KEY_SELECTOR}),
                        },
                        required=("name",),
                    )
                ),
                "body": STR,
                "bodyFrom": Obj({"bytes": STR}),
                "timeoutSeconds": INT,
                "successCondition": STR,
                "insecureSkipVerify": BOOL,
            },
            required=("url",),
        ),
        "plugin": OPEN,  # shaped by the plugin; the CRD keeps it as it is
        "data": Obj(
            {
                "source": Obj({"artifactPaths": ARTIFACT}),
                "transformation": ListOf(Obj({"expression": STR}, required=("expression",))),
            },
            required=("source", "transformation"),
        ),
        "sidecars": ListOf(USER_CONTAINER),
        "initContainers": ListOf(USER_CONTAINER),
        "volumes": ListOf(VOLUME),
        "metadata": METADATA,
        "annotations": LABELS,
        "nodeSelector": LABELS,
        "affinity": OPEN,
        "tolerations": ListOf(OPEN),
        "securityContext": OPEN,
        "hostAliases": ListOf(OPEN),
        "resourceClaims": ListOf(OPEN),
        "podResources": OPEN,
        "activeDeadlineSeconds": INT_OR_STRING,
        "retryStrategy": RETRY_STRATEGY,
        "parallelism": INT,
        "failFast": BOOL,
        "daemon": BOOL,
        "timeout": STR,
        "pendingTimeout": STR,
        "memoize": Obj(
            {
                "key": STR,
                "maxAge": STR,
                "cache": Obj(
                    {"configMap": Obj({"name": STR, "key": STR, "optional": BOOL})},
                    required=("configMap",),
                ),
            },
            required=("cache", "key", "maxAge"),
        ),
        "synchronization": SYNCHRONIZATION,
        "metrics": METRICS,
        "archiveLocation": Obj(ARTIFACT_LOCATIONS),
        "executor": Obj({"serviceAccountName": STR}),
        "serviceAccountName": STR,
        "automountServiceAccountToken": BOOL,
        "schedulerName": STR,
        "priorityClassName": STR,
        "podSpecPatch": STR,
        "priority": INT,
    },
    required=("name",),
    deprecated={"priority": "removed in Argo 3.7; use priorityClassName"},
)

WORKFLOW_SPEC = Obj(
    {
        "entrypoint": STR,
        "arguments": ARGUMENTS,
        "templates": ListOf(TEMPLATE, hint="write templates: [{name: main, container: ...}]"),
        "templateDefaults": TEMPLATE.with_required(()),
        "workflowTemplateRef": Obj({"name": STR, "clusterScope": BOOL}, shorthand="name"),
        "onExit": STR,
        "hooks": HOOKS,
        "serviceAccountName": STR,
        "automountServiceAccountToken": BOOL,
        "executor": Obj({"serviceAccountName": STR}),
        "executorPlugins": ListOf(OPEN),
        "volumes": ListOf(VOLUME),
        "volumeClaimTemplates": ListOf(PERSISTENT_VOLUME_CLAIM),
        "volumeClaimGC": Obj({"strategy": STR}, shorthand="strategy"),
        "parallelism": INT,
        "artifactRepositoryRef": Obj({"configMap": STR, "key": STR}),
        "artifactGC": ARTIFACT_GC.extend({"forceFinalizerRemoval": BOOL, "podSpecPatch": STR}),
        "suspend": BOOL,
        "nodeSelector": LABELS,
        "affinity": OPEN,
        "tolerations": ListOf(OPEN),
        "imagePullSecrets": ListOf(OPEN),
        "hostNetwork": BOOL,
        "dnsPolicy": STR,
        "dnsConfig": OPEN,
        "hostAliases": ListOf(OPEN),
        "securityContext": OPEN,
        "podDisruptionBudget": OPEN,
        "podResources": OPEN,
        "resourceClaims": ListOf(OPEN),
        "activeDeadlineSeconds": INT,
        "priority": INT,
        "schedulerName": STR,
        "podGC": Obj(
            {
                "strategy": Enum(
                    (
                        "",
                        "OnPodCompletion",
                        "OnPodSuccess",
                        "OnWorkflowCompletion",
                        "OnWorkflowSuccess",
                    )
                ),
                "labelSelector": OPEN,
                "deleteDelayDuration": STR,
            },
            shorthand="strategy",
        ),
        "podPriorityClassName": STR,
        "podPriority": INT,
        "podSpecPatch": STR,
        "podMetadata": METADATA,
        "metrics": METRICS,
        "shutdown": STR,
        "synchronization": SYNCHRONIZATION,
        "ttlStrategy": Obj(
            {"secondsAfterCompletion": INT, "secondsAfterSuccess": INT, "secondsAfterFailure": INT},
            shorthand="secondsAfterCompletion",
        ),
        "retryStrategy": RETRY_STRATEGY,
        "archiveLogs": BOOL,
        "workflowMetadata": METADATA.extend(
            {"labelsFrom": MapOf(Obj({"expression": STR}, required=("expression",)))}
        ),
    },
    deprecated={
        "podPriority": "deprecated in Argo 3.6 and removed in 4.0; use podPriorityClassName"
    },
)
