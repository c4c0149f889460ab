"""Write deploy/k8s/monitoring/prometheusrule.yaml from deploy/prometheus/alerts.yaml.

One source for the alert rules: plain Prometheus loads alerts.yaml, the
Prometheus Operator needs the same groups inside a PrometheusRule object.
Run from the repository root after editing alerts.yaml:
    python deploy/prometheus/render_prometheusrule.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
TARGET = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"

HEADER = (
    "# The rules of deploy/prometheus/alerts.yaml for the Prometheus Operator.\n"
    "# Generated from that file; tests/unit/test_deploy_config.py fails when they differ.\n"
    "# Regenerate after editing alerts.yaml:\n"
    "#   python deploy/prometheus/render_prometheusrule.py\n"
)


def render() -> str:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "galleryrank",
            "namespace": "galleryrank",
            # kube-prometheus-stack selects rules by its release label; adjust to yours.
            "labels": {"app.kubernetes.io/name": "galleryrank", "release": "kube-prometheus-stack"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=120)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")
