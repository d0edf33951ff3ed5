"""Push triggers: the `ansflow.git.push` event, emitted by a git hook or a webhook receiver.

Light on purpose (no Prefect import: a post-receive hook starts it on every push): the
Prefect server is spoken to over its REST API with the standard library.
"""
