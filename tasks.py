"""GL-Native Deploy tasks (`invoke --list`): phase tasks plus the cluster, scripts, settings, lab and box
collections. Composition only; the tasks live in gldeploy/tasks/."""
from __future__ import annotations

from invoke import Collection

from gldeploy.tasks import (
    box,
    bundle_tasks,
    ca_tasks,
    cluster,
    day2_tasks,
    doctor_tasks,
    lab,
    phases,
    scripts,
    settings_tasks,
    site_tasks,
)

ns = Collection()
for top_task in (*phases.TASKS, *doctor_tasks.TASKS, *day2_tasks.TASKS):
    ns.add_task(top_task)
ns.add_collection(cluster.ns)
ns.add_collection(scripts.ns)
ns.add_collection(bundle_tasks.ns)
ns.add_collection(settings_tasks.ns)
ns.add_collection(ca_tasks.ns)
ns.add_collection(site_tasks.ns)
ns.add_collection(day2_tasks.backup_ns)
ns.add_collection(day2_tasks.certs_ns)
ns.add_collection(lab.ns)
ns.add_collection(box.ns)
