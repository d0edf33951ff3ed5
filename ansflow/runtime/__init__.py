"""The step runtime: what runs a step, below the public tasks of ``ansflow.tasks``.

- ``base``: the step context (deadline, cancellation, log, masking) and result.
- ``public``: how a step executor becomes a public Prefect task (``step_task``), and how a task
  called outside a pipeline runs standalone.
- ``k8s_session``, ``k8s_rollout`` (pure), ``k8s_watch``, ``k8s_workload``, ``k8s_manifests``,
  ``k8s_helm``, ``pod_step``: what the Kubernetes step types share.
- ``ssh_session``, ``remote``: resident SSH shells and steps on a remote host.
- ``ansible_data``, ``ansible_files``: what ansflow hands ansible-playbook, as data.

Nothing here imports a task module; the tasks import from here.
"""
