"""examples/container/k8s: the Deployment validates against the Kubernetes API schemas (kubernetes-validate, strict:
no unknown fields) and has what the latency setup needs: Guaranteed QoS with whole CPUs, a low-latency
nodeSelector, readiness from /healthz on the metrics port, a grace period above the drain timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from brokers._util import missing

DEPLOYMENT = Path(__file__).resolve().parents[2] / "examples" / "container" / "k8s" / "validator-deployment.yaml"


def _kv():
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate", "pip install -e .[test]")
    return kubernetes_validate


def test_deployment_validates_strictly():
    kv = _kv()
    kv.validate(yaml.safe_load(DEPLOYMENT.read_text()), kv.latest_version(), strict=True)


def test_a_misspelt_field_is_caught():
    kv = _kv()
    bad = yaml.safe_load(DEPLOYMENT.read_text().replace("readinessProbe:", "readinesProbe:"))
    with pytest.raises(kv.ValidationError, match="readinesProbe"):
        kv.validate(bad, kv.latest_version(), strict=True)


def test_latency_settings():
    d = yaml.safe_load(DEPLOYMENT.read_text())
    pod = d["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    res = c["resources"]
    assert res["requests"] == res["limits"]                       # Guaranteed QoS
    assert str(res["limits"]["cpu"]).isdigit()                    # whole CPUs: exclusive under the static policy
    assert pod["nodeSelector"] == {"node.lowlat.io/low-latency": "true"}
    env = {e["name"]: e["value"] for e in c["env"]}
    port = int(env["LOWLAT_METRICS_PORT"])
    assert c["ports"] == [{"name": "metrics", "containerPort": port}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert env["LOWLAT_METRICS_HOST"] == "0.0.0.0"
    assert pod["terminationGracePeriodSeconds"] > float(env["LOWLAT_DRAIN_TIMEOUT"])
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"] is True
    # every LOWLAT_ variable is a config key the services read
    from lowlat.services.config import load_config

    load_config("validator", env={k: v for k, v in env.items()})
