"""ansflow: hybrid shell / Docker / Kubernetes pipelines compiled into Prefect flows."""

__version__ = "0.1.0"
