"""Argo CD's own health test cases, transcribed: the fields each rule reads of every file in
gitops-engine pkg/health/testdata (and pkg/utils/kube/testdata/nginx.yaml) that its
health_test.go asserts for the kinds assessed here, with the status it expects; and Argo
CD's resource_customizations/batch/CronJob/health_test.yaml cases (status and message).

Source: github.com/argoproj/gitops-engine at 5baed560 (Apache-2.0); volatile fields
(timestamps, IDs, images) are left out. Regenerate from a checkout with
`ARGO_HEALTH_TESTDATA=<checkout>/pkg python -m pytest tests/upkeep/test_object_health_argo.py`,
which also runs the assessment on the original files.
"""

# ruff: noqa: E501

ARGO_CASES = [
    ('utils/kube/testdata/nginx.yaml', 'Healthy',
     {'apiVersion': 'apps/v1',
      'kind': 'Deployment',
      'metadata': {'name': 'nginx-deployment', 'generation': 1},
      'spec': {'replicas': 1},
      'status': {'availableReplicas': 1,
                 'conditions': [{'message': 'ReplicaSet "nginx-deployment-648fdd98d4" has '
                                            'successfully progressed.',
                                 'reason': 'NewReplicaSetAvailable',
                                 'status': 'True',
                                 'type': 'Progressing'},
                                {'message': 'Deployment has minimum availability.',
                                 'reason': 'MinimumReplicasAvailable',
                                 'status': 'True',
                                 'type': 'Available'}],
                 'observedGeneration': 1,
                 'readyReplicas': 1,
                 'replicas': 1,
                 'updatedReplicas': 1}}),
    ('health/testdata/deployment-progressing.yaml', 'Progressing',
     {'apiVersion': 'apps/v1',
      'kind': 'Deployment',
      'metadata': {'name': 'guestbook-ui', 'generation': 4},
      'spec': {'replicas': 1},
      'status': {'availableReplicas': 1,
                 'conditions': [{'message': 'Deployment has minimum availability.',
                                 'reason': 'MinimumReplicasAvailable',
                                 'status': 'True',
                                 'type': 'Available'},
                                {'message': 'ReplicaSet "guestbook-ui-75dd4d49d5" is '
                                            'progressing.',
                                 'reason': 'ReplicaSetUpdated',
                                 'status': 'True',
                                 'type': 'Progressing'}],
                 'observedGeneration': 4,
                 'readyReplicas': 1,
                 'replicas': 2,
                 'unavailableReplicas': 1,
                 'updatedReplicas': 1}}),
    ('health/testdata/deployment-suspended.yaml', 'Suspended',
     {'apiVersion': 'apps/v1',
      'kind': 'Deployment',
      'metadata': {'name': 'guestbook-ui', 'generation': 4},
      'spec': {'paused': True, 'replicas': 1},
      'status': {'availableReplicas': 1,
                 'conditions': [{'message': 'Deployment has minimum availability.',
                                 'reason': 'MinimumReplicasAvailable',
                                 'status': 'True',
                                 'type': 'Available'},
                                {'message': 'ReplicaSet "guestbook-ui-75dd4d49d5" is '
                                            'progressing.',
                                 'reason': 'ReplicaSetUpdated',
                                 'status': 'True',
                                 'type': 'Progressing'}],
                 'observedGeneration': 4,
                 'readyReplicas': 1,
                 'replicas': 2,
                 'unavailableReplicas': 1,
                 'updatedReplicas': 1}}),
    ('health/testdata/deployment-degraded.yaml', 'Degraded',
     {'apiVersion': 'apps/v1',
      'kind': 'Deployment',
      'metadata': {'name': 'guestbook-ui', 'generation': 4},
      'spec': {'replicas': 1},
      'status': {'availableReplicas': 1,
                 'conditions': [{'message': 'Deployment has minimum availability.',
                                 'reason': 'MinimumReplicasAvailable',
                                 'status': 'True',
                                 'type': 'Available'},
                                {'message': 'ReplicaSet "guestbook-ui-75dd4d49d5" has timed '
                                            'out progressing.',
                                 'reason': 'ProgressDeadlineExceeded',
                                 'status': 'False',
                                 'type': 'Progressing'}],
                 'observedGeneration': 4,
                 'readyReplicas': 1,
                 'replicas': 2,
                 'unavailableReplicas': 1,
                 'updatedReplicas': 1}}),
    ('health/testdata/statefulset.yaml', 'Healthy',
     {'apiVersion': 'apps/v1',
      'kind': 'StatefulSet',
      'metadata': {'name': 'redis-master', 'generation': 1},
      'spec': {'replicas': 1, 'updateStrategy': {'type': 'OnDelete'}},
      'status': {'currentReplicas': 1,
                 'currentRevision': 'redis-master-7b8f75b98',
                 'observedGeneration': 1,
                 'readyReplicas': 1,
                 'replicas': 1,
                 'updateRevision': 'redis-master-7b8f75b98'}}),
    ('health/testdata/statefulset-ondelete.yaml', 'Healthy',
     {'apiVersion': 'apps/v1',
      'kind': 'StatefulSet',
      'metadata': {'name': 'redis-master', 'generation': 1},
      'spec': {'replicas': 1, 'updateStrategy': {'type': 'OnDelete'}},
      'status': {'currentReplicas': 1,
                 'currentRevision': 'redis-master-7b8f75b98',
                 'observedGeneration': 1,
                 'readyReplicas': 1,
                 'replicas': 1,
                 'updateRevision': 'redis-master-7b8f75b98'}}),
    ('health/testdata/daemonset-ondelete.yaml', 'Healthy',
     {'apiVersion': 'apps/v1',
      'kind': 'DaemonSet',
      'metadata': {'name': 'fluentd-elasticsearch'},
      'spec': {'updateStrategy': {'type': 'OnDelete'}},
      'status': {'currentNumberScheduled': 1,
                 'desiredNumberScheduled': 1,
                 'numberAvailable': 1,
                 'numberMisscheduled': 0,
                 'numberReady': 1,
                 'observedGeneration': 4}}),
    ('health/testdata/pvc-bound.yaml', 'Healthy',
     {'apiVersion': 'v1',
      'kind': 'PersistentVolumeClaim',
      'metadata': {'name': 'testpvc'},
      'status': {'phase': 'Bound'}}),
    ('health/testdata/pvc-pending.yaml', 'Progressing',
     {'apiVersion': 'v1',
      'kind': 'PersistentVolumeClaim',
      'metadata': {'name': 'testpvc-2'},
      'status': {'phase': 'Pending'}}),
    ('health/testdata/svc-clusterip.yaml', 'Healthy',
     {'apiVersion': 'v1',
      'kind': 'Service',
      'metadata': {'name': 'argocd-metrics'},
      'spec': {'type': 'ClusterIP'},
      'status': {'loadBalancer': {}}}),
    ('health/testdata/svc-loadbalancer.yaml', 'Healthy',
     {'apiVersion': 'v1',
      'kind': 'Service',
      'metadata': {'name': 'argocd-server'},
      'spec': {'type': 'LoadBalancer'},
      'status': {'loadBalancer': {'ingress': [{'hostname': 'abc123.us-west-2.elb.amazonaws.com'}]}}}),
    ('health/testdata/svc-loadbalancer-unassigned.yaml', 'Progressing',
     {'apiVersion': 'v1',
      'kind': 'Service',
      'metadata': {'name': 'argo-artifacts'},
      'spec': {'type': 'LoadBalancer'},
      'status': {'loadBalancer': {}}}),
    ('health/testdata/svc-loadbalancer-nonemptylist.yaml', 'Healthy',
     {'apiVersion': 'v1',
      'kind': 'Service',
      'metadata': {'name': 'argocd-server'},
      'spec': {'type': 'LoadBalancer'},
      'status': {'loadBalancer': {'ingress': [{}]}}}),
    ('health/testdata/ingress.yaml', 'Healthy',
     {'apiVersion': 'networking.k8s.io/v1',
      'kind': 'Ingress',
      'metadata': {'name': 'argocd-server-ingress', 'generation': 9},
      'status': {'loadBalancer': {'ingress': [{'ip': '1.2.3.4'}]}}}),
    ('health/testdata/ingress-unassigned.yaml', 'Progressing',
     {'apiVersion': 'networking.k8s.io/v1',
      'kind': 'Ingress',
      'metadata': {'name': 'argocd-server-ingress', 'generation': 9},
      'status': {'loadBalancer': {}}}),
    ('health/testdata/ingress-nonemptylist.yaml', 'Healthy',
     {'apiVersion': 'networking.k8s.io/v1',
      'kind': 'Ingress',
      'metadata': {'name': 'grafana', 'generation': 1},
      'status': {'loadBalancer': {'ingress': [{}]}}}),
    ('health/testdata/job-running.yaml', 'Progressing',
     {'apiVersion': 'batch/v1',
      'kind': 'Job',
      'metadata': {'name': 'succeed'},
      'status': {'active': 1}}),
    ('health/testdata/job-failed.yaml', 'Degraded',
     {'apiVersion': 'batch/v1',
      'kind': 'Job',
      'metadata': {'name': 'fail'},
      'status': {'conditions': [{'message': 'Job has reached the specified backoff limit',
                                 'reason': 'BackoffLimitExceeded',
                                 'status': 'True',
                                 'type': 'Failed'}],
                 'failed': 1}}),
    ('health/testdata/job-succeeded.yaml', 'Healthy',
     {'apiVersion': 'batch/v1',
      'kind': 'Job',
      'metadata': {'name': 'succeed'},
      'status': {'conditions': [{'status': 'True', 'type': 'Complete'}], 'succeeded': 1}}),
    ('health/testdata/job-suspended.yaml', 'Suspended',
     {'apiVersion': 'batch/v1',
      'kind': 'Job',
      'metadata': {'name': 'succeed'},
      'spec': {'suspend': True},
      'status': {'conditions': [{'message': 'Job suspended',
                                 'reason': 'JobSuspended',
                                 'status': 'True',
                                 'type': 'Suspended'}]}}),
    ('health/testdata/hpa-v2-healthy.yaml', 'Healthy',
     {'apiVersion': 'autoscaling/v2',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'sample'},
      'status': {'conditions': [{'message': 'recommended size matches current size',
                                 'reason': 'ReadyForNewScale',
                                 'status': 'True',
                                 'type': 'AbleToScale'},
                                {'message': 'the HPA was able to successfully calculate a '
                                            'replica count from cpu resource utilization '
                                            '(percentage of request)',
                                 'reason': 'ValidMetricFound',
                                 'status': 'True',
                                 'type': 'ScalingActive'},
                                {'message': 'the desired count is within the acceptable range',
                                 'reason': 'DesiredWithinRange',
                                 'status': 'False',
                                 'type': 'ScalingLimited'}],
                 'currentReplicas': 1,
                 'desiredReplicas': 1}}),
    ('health/testdata/hpa-v2-degraded.yaml', 'Degraded',
     {'apiVersion': 'autoscaling/v2',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'sample'},
      'status': {'conditions': [{'message': 'the HPA controller was unable to get the '
                                            "target's current scale: deployments/scale.apps "
                                            '"sandbox-test-app-8" not found',
                                 'reason': 'FailedGetScale',
                                 'status': 'False',
                                 'type': 'AbleToScale'},
                                {'message': 'the HPA was able to successfully calculate a '
                                            'replica count from cpu resource utilization '
                                            '(percentage of request)',
                                 'reason': 'ValidMetricFound',
                                 'status': 'True',
                                 'type': 'ScalingActive'},
                                {'message': 'the desired count is within the acceptable range',
                                 'reason': 'DesiredWithinRange',
                                 'status': 'False',
                                 'type': 'ScalingLimited'}],
                 'currentReplicas': 1,
                 'desiredReplicas': 1}}),
    ('health/testdata/hpa-v2-progressing.yaml', 'Progressing',
     {'apiVersion': 'autoscaling/v2',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'sample'},
      'status': {'conditions': [{'message': 'the HPA was able to successfully calculate a '
                                            'replica count from cpu resource utilization '
                                            '(percentage of request)',
                                 'reason': 'ValidMetricFound',
                                 'status': 'True',
                                 'type': 'ScalingActive'},
                                {'message': 'the desired count is within the acceptable range',
                                 'reason': 'DesiredWithinRange',
                                 'status': 'False',
                                 'type': 'ScalingLimited'}],
                 'currentReplicas': 1,
                 'desiredReplicas': 1}}),
    ('health/testdata/hpa-v2beta2-healthy.yaml', 'Healthy',
     {'apiVersion': 'autoscaling/v2beta2',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'credential-hpa'},
      'status': {'conditions': [{'message': 'recommended size matches current size',
                                 'reason': 'ReadyForNewScale',
                                 'status': 'True',
                                 'type': 'AbleToScale'},
                                {'message': 'the HPA was able to successfully calculate a '
                                            'replica count from cpu resource utilization '
                                            '(percentage of request)',
                                 'reason': 'ValidMetricFound',
                                 'status': 'True',
                                 'type': 'ScalingActive'},
                                {'message': 'the desired count is within the acceptable range',
                                 'reason': 'DesiredWithinRange',
                                 'status': 'False',
                                 'type': 'ScalingLimited'}],
                 'currentReplicas': 1,
                 'desiredReplicas': 1}}),
    ('health/testdata/hpa-v2beta1-healthy-disabled.yaml', 'Healthy',
     {'apiVersion': 'autoscaling/v2beta1',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'sample'},
      'status': {'conditions': [{'message': "the HPA controller was able to get the target's "
                                            'current scale',
                                 'reason': 'SucceededGetScale',
                                 'status': 'True',
                                 'type': 'AbleToScale'},
                                {'message': 'scaling is disabled since the replica count of '
                                            'the target is zero',
                                 'reason': 'ScalingDisabled',
                                 'status': 'False',
                                 'type': 'ScalingActive'}],
                 'currentReplicas': 0,
                 'desiredReplicas': 0}}),
    ('health/testdata/hpa-v2beta1-healthy.yaml', 'Healthy',
     {'apiVersion': 'autoscaling/v2beta1',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'argocd-repo-server-hpa'},
      'status': {'conditions': [{'message': 'recommended size matches current size',
                                 'reason': 'ReadyForNewScale',
                                 'status': 'True',
                                 'type': 'AbleToScale'},
                                {'message': 'the HPA was able to successfully calculate a '
                                            'replica count from memory resource utilization '
                                            '(percentage of request)',
                                 'reason': 'ValidMetricFound',
                                 'status': 'True',
                                 'type': 'ScalingActive'},
                                {'message': 'the desired count is within the acceptable range',
                                 'reason': 'DesiredWithinRange',
                                 'status': 'False',
                                 'type': 'ScalingLimited'}],
                 'currentReplicas': 1,
                 'desiredReplicas': 1}}),
    ('health/testdata/hpa-v1-degraded.yaml', 'Degraded',
     {'apiVersion': 'autoscaling/v1',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'sample',
                   'annotations': {'autoscaling.alpha.kubernetes.io/conditions': '[{"type":"AbleToScale","status":"True","lastTransitionTime":"2020-11-23T19:38:38Z","reason":"FailedGetScale","message":"the '
                                                                                 'HPA '
                                                                                 'controller '
                                                                                 'was unable '
                                                                                 'to get the '
                                                                                 "target's "
                                                                                 'current '
                                                                                 'scale"},{"type":"ScalingActive","status":"False","lastTransitionTime":"2020-11-23T19:38:38Z","reason":"FailedGetResourceMetric","message":"the '
                                                                                 'HPA was '
                                                                                 'unable to '
                                                                                 'compute the '
                                                                                 'replica '
                                                                                 'count: '
                                                                                 'unable to '
                                                                                 'get metrics '
                                                                                 'for '
                                                                                 'resource '
                                                                                 'cpu: unable '
                                                                                 'to fetch '
                                                                                 'metrics '
                                                                                 'from '
                                                                                 'resource '
                                                                                 'metrics '
                                                                                 'API: the '
                                                                                 'server is '
                                                                                 'currently '
                                                                                 'unable to '
                                                                                 'handle the '
                                                                                 'request '
                                                                                 '(get '
                                                                                 'pods.metrics.k8s.io)"}]'}},
      'status': {'currentReplicas': 1, 'desiredReplicas': 0}}),
    ('health/testdata/hpa-v1-healthy.yaml', 'Healthy',
     {'apiVersion': 'autoscaling/v1',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'sample',
                   'annotations': {'autoscaling.alpha.kubernetes.io/conditions': '[{"type":"AbleToScale","status":"True","lastTransitionTime":"2020-11-23T19:38:38Z","reason":"SucceededRescale","message":"the '
                                                                                 'HPA '
                                                                                 'controller '
                                                                                 'was able to '
                                                                                 'update the '
                                                                                 'target '
                                                                                 'scale to '
                                                                                 '1"},{"type":"ScalingActive","status":"False","lastTransitionTime":"2020-11-23T19:38:38Z","reason":"FailedGetResourceMetric","message":"the '
                                                                                 'HPA was '
                                                                                 'unable to '
                                                                                 'compute the '
                                                                                 'replica '
                                                                                 'count: '
                                                                                 'unable to '
                                                                                 'get metrics '
                                                                                 'for '
                                                                                 'resource '
                                                                                 'cpu: unable '
                                                                                 'to fetch '
                                                                                 'metrics '
                                                                                 'from '
                                                                                 'resource '
                                                                                 'metrics '
                                                                                 'API: the '
                                                                                 'server is '
                                                                                 'currently '
                                                                                 'unable to '
                                                                                 'handle the '
                                                                                 'request '
                                                                                 '(get '
                                                                                 'pods.metrics.k8s.io)"}]'}},
      'status': {'currentReplicas': 1, 'desiredReplicas': 1}}),
    ('health/testdata/hpa-v1-healthy-toofew.yaml', 'Healthy',
     {'apiVersion': 'autoscaling/v1',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'sample',
                   'annotations': {'autoscaling.alpha.kubernetes.io/conditions': '[{"type":"AbleToScale","status":"True","lastTransitionTime":"2021-03-08T17:42:11Z","reason":"ReadyForNewScale","message":"recommended '
                                                                                 'size '
                                                                                 'matches '
                                                                                 'current '
                                                                                 'size"},{"type":"ScalingActive","status":"True","lastTransitionTime":"2021-03-09T23:59:49Z","reason":"ValidMetricFound","message":"the '
                                                                                 'HPA was '
                                                                                 'able to '
                                                                                 'successfully '
                                                                                 'calculate a '
                                                                                 'replica '
                                                                                 'count from '
                                                                                 'memory '
                                                                                 'resource '
                                                                                 'utilization '
                                                                                 '(percentage '
                                                                                 'of '
                                                                                 'request)"},{"type":"ScalingLimited","status":"True","lastTransitionTime":"2021-03-10T10:02:12Z","reason":"TooFewReplicas","message":"the '
                                                                                 'desired '
                                                                                 'replica '
                                                                                 'count is '
                                                                                 'less than '
                                                                                 'the minimum '
                                                                                 'replica '
                                                                                 'count"}]'}},
      'status': {'currentCPUUtilizationPercentage': 1,
                 'currentReplicas': 2,
                 'desiredReplicas': 2}}),
    ('health/testdata/hpa-v1-progressing.yaml', 'Progressing',
     {'apiVersion': 'autoscaling/v1',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'sample',
                   'annotations': {'autoscaling.alpha.kubernetes.io/conditions': '[{"type":"AbleToScale","status":"False","lastTransitionTime":"2020-11-23T19:38:38Z","reason":"SucceededGetScale","message":"the '
                                                                                 'HPA '
                                                                                 'controller '
                                                                                 'was not '
                                                                                 'able to get '
                                                                                 'the '
                                                                                 "target's "
                                                                                 'current '
                                                                                 'scale"}]'}},
      'status': {'currentReplicas': 1, 'desiredReplicas': 0}}),
    ('health/testdata/hpa-v1-progressing-with-no-annotations.yaml', 'Progressing',
     {'apiVersion': 'autoscaling/v1',
      'kind': 'HorizontalPodAutoscaler',
      'metadata': {'name': 'sample'},
      'status': {'currentReplicas': 1, 'desiredReplicas': 1}}),
    ('health/testdata/pod-pending.yaml', 'Progressing',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'image-pull-backoff'},
      'spec': {'restartPolicy': 'Always'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'message': 'containers with unready status: [main]',
                                 'reason': 'ContainersNotReady',
                                 'status': 'False',
                                 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {},
                                        'name': 'main',
                                        'ready': False,
                                        'restartCount': 0,
                                        'state': {'waiting': {'reason': 'PodInitializing'}}}],
                 'phase': 'Pending'}}),
    ('health/testdata/pod-running-not-ready.yaml', 'Progressing',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'never-ready'},
      'spec': {'restartPolicy': 'Always'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'message': 'containers with unready status: [main]',
                                 'reason': 'ContainersNotReady',
                                 'status': 'False',
                                 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {},
                                        'name': 'main',
                                        'ready': False,
                                        'restartCount': 0,
                                        'state': {'running': {}}}],
                 'phase': 'Running'}}),
    ('health/testdata/pod-crashloop.yaml', 'Degraded',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'my-pod'},
      'spec': {'restartPolicy': 'Always'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'message': 'containers with unready status: [main]',
                                 'reason': 'ContainersNotReady',
                                 'status': 'False',
                                 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {'terminated': {'exitCode': 1,
                                                                     'reason': 'Error'}},
                                        'name': 'main',
                                        'ready': False,
                                        'restartCount': 3,
                                        'state': {'waiting': {'message': 'Back-off 40s '
                                                                         'restarting failed '
                                                                         'container=main '
                                                                         'pod=my-pod_argocd(63674389-f613-11e8-a057-fe5f49266390)',
                                                              'reason': 'CrashLoopBackOff'}}}],
                 'phase': 'Running'}}),
    ('health/testdata/pod-imagepullbackoff.yaml', 'Degraded',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'guestbook-ui-errimagepullbackoff-66cfffb669-45w2j'},
      'spec': {'restartPolicy': 'Always'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'message': 'containers with unready status: '
                                            '[errimagepullbackoff]',
                                 'reason': 'ContainersNotReady',
                                 'status': 'False',
                                 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {},
                                        'name': 'errimagepullbackoff',
                                        'ready': False,
                                        'restartCount': 0,
                                        'state': {'waiting': {'message': 'Back-off pulling '
                                                                         'image '
                                                                         '"gcr.io/heptio-images/ks-guestbook-demo:0.3"',
                                                              'reason': 'ImagePullBackOff'}}}],
                 'phase': 'Pending'}}),
    ('health/testdata/pod-error.yaml', 'Degraded',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'my-pod'},
      'spec': {'restartPolicy': 'Always'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'message': 'containers with unready status: [main]',
                                 'reason': 'ContainersNotReady',
                                 'status': 'False',
                                 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {'terminated': {'exitCode': 1,
                                                                     'reason': 'Error'}},
                                        'name': 'main',
                                        'ready': False,
                                        'restartCount': 2,
                                        'state': {'terminated': {'exitCode': 1,
                                                                 'reason': 'Error'}}}],
                 'phase': 'Running'}}),
    ('health/testdata/pod-running-restart-always.yaml', 'Healthy',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'my-pod'},
      'spec': {'restartPolicy': 'Always'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'status': 'True', 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {},
                                        'name': 'main',
                                        'ready': True,
                                        'restartCount': 0,
                                        'state': {'running': {}}}],
                 'phase': 'Running'}}),
    ('health/testdata/pod-running-restart-never.yaml', 'Progressing',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'my-pod'},
      'spec': {'restartPolicy': 'Never'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'status': 'True', 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {},
                                        'name': 'main',
                                        'ready': True,
                                        'restartCount': 0,
                                        'state': {'running': {}}}],
                 'phase': 'Running'}}),
    ('health/testdata/pod-running-restart-onfailure.yaml', 'Progressing',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'my-pod'},
      'spec': {'restartPolicy': 'OnFailure'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'message': 'containers with unready status: [main]',
                                 'reason': 'ContainersNotReady',
                                 'status': 'False',
                                 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {'terminated': {'exitCode': 1,
                                                                     'reason': 'Error'}},
                                        'name': 'main',
                                        'ready': False,
                                        'restartCount': 4,
                                        'state': {'waiting': {'message': 'Back-off 1m20s '
                                                                         'restarting failed '
                                                                         'container=main '
                                                                         'pod=my-pod_argocd(3cf9325e-f617-11e8-a057-fe5f49266390)',
                                                              'reason': 'CrashLoopBackOff'}}}],
                 'phase': 'Running'}}),
    ('health/testdata/pod-failed.yaml', 'Degraded',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'my-pod'},
      'spec': {'restartPolicy': 'Never'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'message': 'containers with unready status: [main]',
                                 'reason': 'ContainersNotReady',
                                 'status': 'False',
                                 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {},
                                        'name': 'main',
                                        'ready': False,
                                        'restartCount': 0,
                                        'state': {'terminated': {'exitCode': 1,
                                                                 'reason': 'Error'}}}],
                 'phase': 'Failed'}}),
    ('health/testdata/pod-succeeded.yaml', 'Healthy',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'my-pod'},
      'spec': {'restartPolicy': 'Never'},
      'status': {'conditions': [{'reason': 'PodCompleted',
                                 'status': 'True',
                                 'type': 'Initialized'},
                                {'reason': 'PodCompleted', 'status': 'False', 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {},
                                        'name': 'main',
                                        'ready': False,
                                        'restartCount': 0,
                                        'state': {'terminated': {'exitCode': 0,
                                                                 'reason': 'Completed'}}}],
                 'phase': 'Succeeded'}}),
    ('health/testdata/pod-deletion.yaml', 'Progressing',
     {'apiVersion': 'v1',
      'kind': 'Pod',
      'metadata': {'name': 'image-pull-backoff', 'deletionTimestamp': '2018-12-03T10:16:04Z'},
      'spec': {'restartPolicy': 'Always'},
      'status': {'conditions': [{'status': 'True', 'type': 'Initialized'},
                                {'message': 'containers with unready status: [main]',
                                 'reason': 'ContainersNotReady',
                                 'status': 'False',
                                 'type': 'Ready'},
                                {'status': 'True', 'type': 'PodScheduled'}],
                 'containerStatuses': [{'lastState': {},
                                        'name': 'main',
                                        'ready': False,
                                        'restartCount': 0,
                                        'state': {'waiting': {'reason': 'PodInitializing'}}}],
                 'phase': 'Pending'}}),
]

_CRON_SPEC = {"schedule": "* * * * *"}
CRONJOB_CASES = [
    ("CronJob/testdata/healthy.yaml", "Healthy",
     "CronJob has completed its last execution successfully",
     {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
      "spec": _CRON_SPEC, "status": {"lastScheduleTime": "2025-07-30T13:46:00Z",
                                     "lastSuccessfulTime": "2025-07-30T13:46:19Z"}}),
    ("CronJob/testdata/never-scheduled.yaml", "Healthy", "CronJob has not been scheduled yet",
     {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
      "spec": _CRON_SPEC, "status": {}}),
    ("CronJob/testdata/degraded.yaml", "Degraded",
     "CronJob has not completed its last execution successfully",
     {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
      "spec": _CRON_SPEC, "status": {"lastScheduleTime": "2025-07-30T13:46:00Z",
                                     "lastSuccessfulTime": "2025-07-30T13:44:19Z"}}),
    ("CronJob/testdata/never-succeeded.yaml", "Healthy",
     "The Cronjob never completed succesfully. It may not be healthy",
     {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
      "spec": _CRON_SPEC, "status": {"lastScheduleTime": "2025-07-30T13:46:00Z"}}),
    ("CronJob/testdata/active.yaml", "Healthy",
     "The job is running. Its last execution may not have been successful",
     {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
      "spec": _CRON_SPEC, "status": {
          "active": [{"apiVersion": "batch/v1", "kind": "Job", "name": "hello-29231490"}],
          "lastScheduleTime": "2025-07-30T13:46:00Z",
          "lastSuccessfulTime": "2025-07-30T13:44:19Z"}}),
    ("CronJob/testdata/suspended.yaml", "Suspended", "CronJob is Suspended",
     {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
      "spec": {**_CRON_SPEC, "suspend": True},
      "status": {"lastScheduleTime": "2025-07-30T13:46:00Z"}}),
]


# ---- the tests ----------------------------------------------------------------------------

import os  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from ansflow.engines.object_health import assess  # noqa: E402


@pytest.mark.parametrize(("source", "expected", "obj"), ARGO_CASES,
                         ids=[case[0] for case in ARGO_CASES])
def test_argo_testdata(source, expected, obj):
    health = assess(obj)
    assert health.status == expected, f"{source}: {health}"
    assert health.message, "every assessment says why"


@pytest.mark.parametrize(("source", "expected", "message", "obj"), CRONJOB_CASES,
                         ids=[case[0] for case in CRONJOB_CASES])
def test_argo_cronjob_script(source, expected, message, obj):
    health = assess(obj)
    assert (health.status, health.message) == (expected, message), source


def test_the_table_covers_every_kind_argo_tests():
    kinds = {obj["kind"] for _, _, obj in ARGO_CASES} | {"CronJob"}
    assert kinds >= {"Deployment", "StatefulSet", "DaemonSet", "Pod", "Job", "CronJob",
                     "PersistentVolumeClaim", "Service", "Ingress", "HorizontalPodAutoscaler"}
    statuses = {expected for _, expected, _ in ARGO_CASES}
    assert statuses == {"Healthy", "Progressing", "Degraded", "Suspended"}


_CHECKOUT = os.environ.get("ARGO_HEALTH_TESTDATA", "")


@pytest.mark.skipif(not _CHECKOUT, reason="set ARGO_HEALTH_TESTDATA=<gitops-engine>/pkg to "
                                          "run on Argo CD's original files")
def test_argo_original_files():
    import yaml

    for source, expected, _ in ARGO_CASES:
        text = (Path(_CHECKOUT) / source).read_text()
        # Argo's test loads with sigs.k8s.io/yaml: timestamps stay strings.
        original = yaml.load(text, Loader=yaml.BaseLoader)
        assert assess(_typed(original)).status == expected, source


def _typed(value):
    """BaseLoader gives every scalar as a string: ints and booleans back, as the API would."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value
